//! The auth service over real gRPC, against real PostgreSQL, Redis and
//! RabbitMQ (`scripts/deps.sh`). Each test gets its own database, key prefix
//! and exchange.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod events;
mod helpers;
mod login;
mod register;
mod sessions;
mod tokens;
