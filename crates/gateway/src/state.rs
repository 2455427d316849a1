//! What every handler shares: the downstream services and token verification.

use std::sync::Arc;

use service_kit::grpc::Downstream;
use service_kit::token::TokenVerifier;

use crate::rate_limit::{Limit, RateLimiter};

#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Services>,
}

#[derive(Debug)]
pub struct Services {
    pub auth: Downstream,
    pub users: Downstream,
    pub chat: Downstream,
    pub verifier: TokenVerifier,
    pub limiter: RateLimiter,
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub auth: Limit,
    pub send: Limit,
    pub typing: Limit,
}

impl AppState {
    pub fn new(services: Services) -> Self {
        Self {
            inner: Arc::new(services),
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.inner
    }
}
