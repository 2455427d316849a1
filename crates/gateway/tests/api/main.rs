//! The gateway over real HTTP, in front of the real auth service (PostgreSQL,
//! Redis, RabbitMQ).

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod helpers;
mod http;
