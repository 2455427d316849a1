//! The bots definition format, shared by the bots service (which runs the
//! bots) and the operator (which validates `ChatBot`/`Bot` resources and
//! renders them into the bots ConfigMap). Kept apart from the bots runtime
//! so the operator does not link Redis, RabbitMQ and gRPC clients for it.

pub mod definition;
pub mod intent;
pub mod template;
