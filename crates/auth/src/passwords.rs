//! bcrypt hashing off the async runtime.
//!
//! Hashes run on `spawn_blocking` behind a semaphore sized below the core
//! count, so a storm of logins queues for hashing instead of starving every
//! other request of CPU. Verifying a login for an unknown user checks the
//! password against a dummy hash of the same cost, so both cases take the
//! same time.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::error::AuthError;

#[derive(Debug, Clone)]
pub struct PasswordHasher {
    cost: u32,
    permits: Arc<Semaphore>,
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    pub async fn new(cost: u32, parallelism: usize) -> Result<Self, AuthError> {
        let permits = Arc::new(Semaphore::new(parallelism.max(1)));
        let dummy = run_blocking(&permits, move || {
            bcrypt::hash("dummy password for timing", cost)
        })
        .await?;
        Ok(Self {
            cost,
            permits,
            dummy_hash: dummy.into(),
        })
    }

    /// Default parallelism: all cores but one (at least one).
    pub fn default_parallelism() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
    }

    pub async fn hash(&self, password: String) -> Result<String, AuthError> {
        let cost = self.cost;
        run_blocking(&self.permits, move || bcrypt::hash(password, cost)).await
    }

    /// `hash: None` (unknown user) still costs one full verification.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, AuthError> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let matches = run_blocking(&self.permits, move || bcrypt::verify(password, &hash)).await;
        // A malformed stored hash (e.g. the unusable hash of a bot) is a mismatch.
        Ok(known && matches.unwrap_or(false))
    }
}

async fn run_blocking<T: Send + 'static>(
    permits: &Arc<Semaphore>,
    work: impl FnOnce() -> Result<T, bcrypt::BcryptError> + Send + 'static,
) -> Result<T, AuthError> {
    let _permit = permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|error| AuthError::Hashing(error.to_string()))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| AuthError::Hashing(error.to_string()))?
        .map_err(|error| AuthError::Hashing(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_unknown_users_never_match() {
        let hasher = PasswordHasher::new(4, 1).await.unwrap();
        let hash = hasher.hash("correct horse battery".into()).await.unwrap();
        assert!(
            hasher
                .verify("correct horse battery".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("wrong horse battery".into(), Some(hash))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("dummy password for timing".into(), None)
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("anything".into(), Some("!unusable".into()))
                .await
                .unwrap()
        );
    }
}
