//! Integration tests of the service kit against the real local servers
//! (PostgreSQL, Redis, RabbitMQ, a MongoDB-protocol server): start them with
//! `scripts/deps.sh`.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod amqp;
mod grpc;
mod isolation;
mod lifecycle;
