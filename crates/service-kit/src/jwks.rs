//! Where a service gets the keys that verify access tokens: a static JWK set
//! (`JWT_JWKS`), or the auth service's `GetJwks`, fetched at start-up (retried
//! until auth answers) and refreshed periodically so key rotations arrive
//! without a restart.

use std::time::Duration;

use proto::auth::v1::GetJwksRequest;
use proto::auth::v1::auth_service_client::AuthServiceClient;
use serde::Deserialize;

use crate::Shutdown;
use crate::config::TokenArgs;
use crate::token::{KeyError, KeySet, PublicJwk, TokenVerifier};

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error(
        "set JWT_JWKS (static keys) or AUTH_GRPC_URL (fetch from auth) to verify access tokens"
    )]
    NotConfigured,
    #[error("JWT_JWKS is not a JSON array of JWKs nor a JWK set: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("bad AUTH_GRPC_URL: {0}")]
    Url(String),
    #[error("fetching the JWK set from auth: {0}")]
    Fetch(#[from] tonic::Status),
    #[error("shut down before the keys arrived")]
    ShutDown,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JwksJson {
    Set { keys: Vec<PublicJwk> },
    List(Vec<PublicJwk>),
}

pub fn parse_jwks(json: &str) -> Result<KeySet, JwksError> {
    let keys = match serde_json::from_str(json)? {
        JwksJson::Set { keys } | JwksJson::List(keys) => keys,
    };
    Ok(KeySet::from_jwks(&keys)?)
}

async fn fetch(
    client: &mut AuthServiceClient<tonic::transport::Channel>,
) -> Result<KeySet, JwksError> {
    let response = client.get_jwks(GetJwksRequest {}).await?.into_inner();
    let keys: Vec<PublicJwk> = response
        .keys
        .into_iter()
        .map(|k| PublicJwk {
            kty: k.kty,
            crv: k.crv,
            x: k.x,
            kid: k.kid,
            alg: k.alg,
            use_: k.r#use,
        })
        .collect();
    Ok(KeySet::from_jwks(&keys)?)
}

/// A verifier per `args`; with `AUTH_GRPC_URL`, also a background refresher
/// that stops with `shutdown`.
pub async fn verifier(args: &TokenArgs, shutdown: &Shutdown) -> Result<TokenVerifier, JwksError> {
    if let Some(json) = &args.jwks {
        return Ok(TokenVerifier::from_args(parse_jwks(json)?, args));
    }
    let Some(url) = &args.auth_url else {
        return Err(JwksError::NotConfigured);
    };
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|error| JwksError::Url(error.to_string()))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    let mut client = AuthServiceClient::new(channel);
    let mut delay = Duration::from_millis(200);
    let keys = loop {
        match fetch(&mut client).await {
            Ok(keys) => break keys,
            Err(error) => {
                tracing::warn!(%error, ?delay, "auth's JWK set is not available yet; retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return Err(JwksError::ShutDown),
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    };
    let verifier = TokenVerifier::from_args(keys, args);
    let refreshed = verifier.clone();
    let every = args.jwks_refresh;
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => return,
            }
            match fetch(&mut client).await {
                Ok(keys) => refreshed.replace_keys(keys),
                // Keep the keys we have; the next round tries again.
                Err(error) => tracing::warn!(%error, "refreshing the JWK set failed"),
            }
        }
    });
    Ok(verifier)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::SigningKey;

    #[test]
    fn static_jwks_parse_as_a_list_or_a_set() {
        let key = SigningKey::generate("k1").unwrap();
        let list = serde_json::to_string(&[key.public_jwk()]).unwrap();
        let set = format!(r#"{{"keys": {list}}}"#);
        assert_eq!(parse_jwks(&list).unwrap().len(), 1);
        assert_eq!(parse_jwks(&set).unwrap().len(), 1);
        assert!(matches!(
            parse_jwks("{\"nope\": 1}"),
            Err(JwksError::Json(_))
        ));
    }
}
