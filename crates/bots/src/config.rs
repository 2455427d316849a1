//! The bots service's configuration (env vars and flags; see the README table).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use service_kit::config::{
    AdminArgs, AmqpArgs, RedisArgs, TelemetryArgs, TokenArgs, parse_duration, parse_secret,
};

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "bots",
    about = "Bots: commands, rules, dialogues, intents, webhooks"
)]
pub struct Config {
    /// gRPC API address.
    #[arg(long, env = "GRPC_ADDR", default_value = "0.0.0.0:50054")]
    pub grpc_addr: SocketAddr,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub amqp: AmqpArgs,
    /// Verifies callers of the gRPC API; `AUTH_GRPC_URL` is also where bot
    /// accounts are provisioned.
    #[command(flatten)]
    pub token: TokenArgs,
    /// The bot definitions file (YAML or JSON); re-read when it changes.
    #[arg(long, env = "BOTS_DEFINITIONS", default_value = "/etc/bots/bots.yaml")]
    pub definitions: PathBuf,
    /// How often the definitions file is checked for changes.
    #[arg(long, env = "BOTS_RELOAD_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub reload_interval: Duration,
    /// Credential presented to auth (its `AUTH_SERVICE_TOKEN`) to provision
    /// bot accounts.
    #[arg(long, env = "AUTH_SERVICE_TOKEN", value_parser = parse_secret)]
    pub auth_service_token: SecretString,
    /// The chat service (replies are sent through it).
    #[arg(long, env = "CHAT_GRPC_URL", default_value = "http://chat:50053")]
    pub chat_grpc_url: String,
    /// The users service (senders' display names).
    #[arg(long, env = "USERS_GRPC_URL", default_value = "http://users:50052")]
    pub users_grpc_url: String,
    /// Durable queue of `message.created` events (shared by replicas).
    #[arg(long, env = "BOTS_QUEUE", default_value = "bots.messages")]
    pub queue: String,
    /// Messages handled at once per replica.
    #[arg(long, env = "BOTS_CONCURRENCY", default_value_t = 16)]
    pub concurrency: usize,
}
