//! The chat service over real gRPC, against a real MongoDB-protocol server
//! (SecantusDB here), RabbitMQ, and the real users service (PostgreSQL,
//! Redis) for block and privacy checks.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access;
mod conversations;
mod events;
mod helpers;
mod messages;
mod receipts;
