//! The users service over real gRPC, against real PostgreSQL, Redis and
//! RabbitMQ (`scripts/deps.sh`). Accounts arrive the real way: as
//! `user.registered` events on the test's own exchange.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;
mod permissions;
mod presence;
mod profiles;
mod search;
