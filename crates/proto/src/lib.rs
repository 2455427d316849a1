//! The platform's wire contracts: gRPC services of auth, users, chat and bots,
//! and the domain-event envelope published on RabbitMQ.
//!
//! Generated from `proto/` at build time; see the `.proto` files for the
//! documentation of every message and call.
// Generated code is not ours to lint.
#![allow(clippy::all, clippy::pedantic, missing_debug_implementations)]

/// Encoded `FileDescriptorSet` of every contract, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/platform_descriptor.bin"));

pub mod common {
    pub mod v1 {
        tonic::include_proto!("platform.common.v1");
    }
}

pub mod events {
    pub mod v1 {
        tonic::include_proto!("platform.events.v1");
    }
}

pub mod auth {
    pub mod v1 {
        tonic::include_proto!("platform.auth.v1");
    }
}

pub mod users {
    pub mod v1 {
        tonic::include_proto!("platform.users.v1");
    }
}

pub mod chat {
    pub mod v1 {
        tonic::include_proto!("platform.chat.v1");
    }
}

pub mod bots {
    pub mod v1 {
        tonic::include_proto!("platform.bots.v1");
    }
}

pub use events::v1::EventEnvelope;
pub use events::v1::event_envelope::Payload as EventPayload;

/// Service names as they appear in `grpc.health.v1` and reflection.
pub mod service_names {
    pub const AUTH: &str = "platform.auth.v1.AuthService";
    pub const USERS: &str = "platform.users.v1.UsersService";
    pub const CHAT: &str = "platform.chat.v1.ChatService";
    pub const BOTS: &str = "platform.bots.v1.BotsService";
}
