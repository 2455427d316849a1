//! The kit every service of the platform is built from.
//!
//! A service's `main.rs` parses its config (which flattens the `*Args` structs
//! of [`config`]), calls [`telemetry::init`], connects its stores with
//! [`stores`], and runs its library's `run(config, shutdown)`, which serves the
//! API with [`grpc`] (or axum), the admin port with [`admin`], and consumes
//! events with [`amqp`], all stopping on one [`shutdown::Shutdown`].
//!
//! Invariants kept here so no service has to:
//! - errors leave a service only as [`error::ApiError`] (stable code, message,
//!   field), never as a panic or an unexplained internal error;
//! - the caller's identity comes only from a verified access token
//!   ([`token::TokenVerifier`]);
//! - secrets are [`secrecy::SecretString`] and never printed.

pub mod admin;
pub mod amqp;
pub mod cache;
pub mod config;
pub mod error;
pub mod events;
pub mod grpc;
pub mod jwks;
pub mod mongo_outbox;
pub mod net;
mod outbox;
pub mod pg_outbox;
pub mod shutdown;
pub mod stores;
pub mod telemetry;
pub mod token;

pub use error::{ApiError, ErrorCode};
pub use shutdown::Shutdown;

/// Makes ring the process-wide rustls provider (what every TLS client here
/// uses); HTTP clients built without an explicit provider need one. Safe to
/// call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
