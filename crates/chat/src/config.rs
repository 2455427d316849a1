//! The chat service's configuration (env vars and flags; see the README table).

use std::net::SocketAddr;
use std::time::Duration;

use service_kit::config::{
    AdminArgs, AmqpArgs, MongoArgs, TelemetryArgs, TokenArgs, parse_duration,
};

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "chat", about = "Conversations, messages, receipts and history")]
pub struct Config {
    /// gRPC API address.
    #[arg(long, env = "GRPC_ADDR", default_value = "0.0.0.0:50053")]
    pub grpc_addr: SocketAddr,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(flatten)]
    pub mongo: MongoArgs,
    #[command(flatten)]
    pub amqp: AmqpArgs,
    #[command(flatten)]
    pub token: TokenArgs,
    /// The users service (block and privacy checks, bot flags).
    #[arg(long, env = "USERS_GRPC_URL", default_value = "http://users:50052")]
    pub users_grpc_url: String,
    /// How long answers of the users service are reused (a new block takes
    /// effect within this time).
    #[arg(long, env = "USERS_CACHE_TTL", default_value = "5s", value_parser = parse_duration)]
    pub users_cache_ttl: Duration,
    /// Credential the gateway presents (`x-service-token`) to mark messages
    /// delivered on a user's behalf when that user's socket acknowledged
    /// them. Unset: only users themselves mark deliveries.
    #[arg(long, env = "CHAT_SERVICE_TOKEN", value_parser = service_kit::config::parse_secret)]
    pub service_token: Option<secrecy::SecretString>,
    /// Most members a group may have.
    #[arg(long, env = "MAX_GROUP_MEMBERS", default_value_t = 1000)]
    pub max_group_members: u32,
}
