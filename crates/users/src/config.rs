//! The users service's configuration (env vars and flags; see the README table).

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use service_kit::config::{
    AdminArgs, AmqpArgs, PostgresArgs, RedisArgs, TelemetryArgs, TokenArgs, parse_duration,
    parse_secret,
};

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "users",
    about = "Profiles, search, contacts, blocking, privacy and presence"
)]
pub struct Config {
    /// gRPC API address.
    #[arg(long, env = "GRPC_ADDR", default_value = "0.0.0.0:50052")]
    pub grpc_addr: SocketAddr,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(flatten)]
    pub postgres: PostgresArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub amqp: AmqpArgs,
    #[command(flatten)]
    pub token: TokenArgs,
    /// A device counts as connected this long after its last heartbeat.
    #[arg(long, env = "PRESENCE_TTL", default_value = "60s", value_parser = parse_duration)]
    pub presence_ttl: Duration,
    /// How often expired devices are swept (and offline transitions published).
    #[arg(long, env = "PRESENCE_SWEEP_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub presence_sweep_interval: Duration,
    /// Credential services present (`x-service-token`) to report presence
    /// for a user (the gateway's heartbeats). Unset: only users themselves.
    #[arg(long, env = "USERS_SERVICE_TOKEN", value_parser = parse_secret)]
    pub service_token: Option<SecretString>,
    /// Queue this service consumes `user.registered` from.
    #[arg(long, env = "USERS_QUEUE", default_value = "users.user-registered")]
    pub queue: String,
}
