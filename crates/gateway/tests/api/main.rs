//! The gateway over real HTTP, in front of the real auth, users and chat
//! services (PostgreSQL, Redis, RabbitMQ, a MongoDB-protocol server).

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod chat;
mod helpers;
mod http;
mod realtime;
mod users;
