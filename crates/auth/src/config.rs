//! The auth service's configuration (env vars and flags; see the README table).

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use service_kit::config::{
    AdminArgs, AmqpArgs, PostgresArgs, RedisArgs, TelemetryArgs, TokenArgs, parse_duration,
    parse_secret,
};

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "auth", about = "Accounts, credentials and sessions")]
pub struct Config {
    /// gRPC API address.
    #[arg(long, env = "GRPC_ADDR", default_value = "0.0.0.0:50051")]
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
    /// Lifetime of access tokens.
    #[arg(long, env = "ACCESS_TOKEN_TTL", default_value = "15m", value_parser = parse_duration)]
    pub access_token_ttl: Duration,
    /// Lifetime of a refresh token (sliding: each refresh renews the session).
    #[arg(long, env = "REFRESH_TOKEN_TTL", default_value = "30d", value_parser = parse_duration)]
    pub refresh_token_ttl: Duration,
    /// bcrypt cost factor (4-31); 12 ≈ 250 ms per hash on one core.
    #[arg(long, env = "BCRYPT_COST", default_value_t = 12, value_parser = clap::value_parser!(u32).range(4..=31))]
    pub bcrypt_cost: u32,
    /// Hashes computed at once; default: cores - 1, so a login storm leaves a
    /// core for everything else.
    #[arg(long, env = "BCRYPT_PARALLELISM")]
    pub bcrypt_parallelism: Option<usize>,
    /// Ed25519 private key (PKCS#8 PEM) that signs access tokens. Unset: a
    /// random key per process (development only; tokens die with it).
    #[arg(long, env = "AUTH_SIGNING_KEY", value_parser = parse_secret)]
    pub signing_key: Option<SecretString>,
    /// `kid` of the signing key.
    #[arg(long, env = "AUTH_SIGNING_KEY_ID", default_value = "auth-1")]
    pub signing_key_id: String,
    /// JSON array of retired public JWKs still accepted for verification
    /// (key rotation).
    #[arg(long, env = "AUTH_PREVIOUS_JWKS")]
    pub previous_jwks: Option<String>,
    /// Shared credential other services present (`x-service-token`) to
    /// provision bot accounts. Unset: ProvisionBot is refused.
    #[arg(long, env = "AUTH_SERVICE_TOKEN", value_parser = parse_secret)]
    pub service_token: Option<SecretString>,
}
