//! Configuration pieces every service flattens into its own `clap` config:
//! each value comes from a flag or its environment variable (documented in the
//! README's table), and every URL that may hold a password is a
//! [`SecretString`], so it is never printed by `Debug` or logs.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;

/// Parses a secret from a flag or environment variable.
pub fn parse_secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value.to_owned()))
}

/// Parses durations written as `250ms`, `5s`, `10m`, `2h`, `30d`, or a bare
/// number of seconds.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let amount: u64 = digits
        .parse()
        .map_err(|_| format!("`{value}` is not a duration like 250ms, 5s, 10m, 2h or 30d"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(amount),
        "" | "s" => Duration::from_secs(amount),
        "m" => Duration::from_secs(amount * 60),
        "h" => Duration::from_secs(amount * 3600),
        "d" => Duration::from_secs(amount * 86_400),
        other => return Err(format!("unknown duration unit `{other}` in `{value}`")),
    };
    Ok(duration)
}

/// The admin port: `/healthz`, `/readyz`, `/metrics`.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// Address of the admin HTTP server.
    #[arg(
        id = "admin_addr",
        long = "admin-addr",
        env = "ADMIN_ADDR",
        default_value = "0.0.0.0:9090"
    )]
    pub admin_addr: SocketAddr,
    /// How long in-flight work may take to finish after SIGTERM.
    #[arg(id = "shutdown_grace", long = "shutdown-grace", env = "SHUTDOWN_GRACE", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryArgs {
    /// Log line format.
    #[arg(
        id = "log_format",
        long = "log-format",
        env = "LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    pub log_format: LogFormat,
    /// Log filter in `tracing` EnvFilter syntax.
    #[arg(
        id = "rust_log",
        long = "log-filter",
        env = "RUST_LOG",
        default_value = "info"
    )]
    pub log_filter: String,
    /// OTLP/gRPC endpoint for traces; unset means no export.
    #[arg(
        id = "otel_exporter_otlp_endpoint",
        long = "otlp-endpoint",
        env = "OTEL_EXPORTER_OTLP_ENDPOINT"
    )]
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PostgresArgs {
    /// PostgreSQL URL, e.g. postgres://user:pass@host:5432/db.
    #[arg(id = "database_url", long = "database-url", env = "DATABASE_URL", value_parser = parse_secret)]
    pub url: SecretString,
    #[arg(
        id = "database_max_connections",
        long = "database-max-connections",
        env = "DATABASE_MAX_CONNECTIONS",
        default_value_t = 10
    )]
    pub max_connections: u32,
    /// How long a query waits for a free connection before failing.
    #[arg(id = "database_acquire_timeout", long = "database-acquire-timeout", env = "DATABASE_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub acquire_timeout: Duration,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RedisArgs {
    /// Redis URL, e.g. redis://:pass@host:6379/0.
    #[arg(id = "redis_url", long = "redis-url", env = "REDIS_URL", value_parser = parse_secret)]
    pub url: SecretString,
    /// Prefix of every key this service writes (lets services share a Redis).
    #[arg(
        id = "redis_key_prefix",
        long = "redis-key-prefix",
        env = "REDIS_KEY_PREFIX",
        default_value = ""
    )]
    pub key_prefix: String,
    /// Per-command response timeout.
    #[arg(id = "redis_timeout", long = "redis-timeout", env = "REDIS_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Clone, clap::Args)]
pub struct MongoArgs {
    /// MongoDB URL, e.g. mongodb://user:pass@host:27017.
    #[arg(id = "mongodb_url", long = "mongodb-url", env = "MONGODB_URL", value_parser = parse_secret)]
    pub url: SecretString,
    #[arg(
        id = "mongodb_database",
        long = "mongodb-database",
        env = "MONGODB_DATABASE",
        default_value = "chat"
    )]
    pub database: String,
    /// Server selection and connect timeout.
    #[arg(id = "mongodb_timeout", long = "mongodb-timeout", env = "MONGODB_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Clone, clap::Args)]
pub struct AmqpArgs {
    /// RabbitMQ URL, e.g. amqp://user:pass@host:5672/%2f.
    #[arg(id = "amqp_url", long = "amqp-url", env = "AMQP_URL", value_parser = parse_secret)]
    pub url: SecretString,
    /// Topic exchange of domain events.
    #[arg(
        id = "amqp_exchange",
        long = "amqp-exchange",
        env = "AMQP_EXCHANGE",
        default_value = "platform.events"
    )]
    pub exchange: String,
}

/// How this service checks access tokens.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// Expected `iss` claim.
    #[arg(
        id = "jwt_issuer",
        long = "jwt-issuer",
        env = "JWT_ISSUER",
        default_value = "chat-platform-auth"
    )]
    pub issuer: String,
    /// Expected `aud` claim.
    #[arg(
        id = "jwt_audience",
        long = "jwt-audience",
        env = "JWT_AUDIENCE",
        default_value = "chat-platform"
    )]
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[arg(id = "jwt_leeway", long = "jwt-leeway", env = "JWT_LEEWAY", default_value = "30s", value_parser = parse_duration)]
    pub leeway: Duration,
    /// Static verification keys: a JSON array of public JWKs (or a JWK set
    /// `{"keys": [...]}`). Alternative to fetching them from auth.
    #[arg(id = "jwt_jwks", long = "jwt-jwks", env = "JWT_JWKS")]
    pub jwks: Option<String>,
    /// The auth service's gRPC URL, to fetch (and refresh) its JWK set.
    #[arg(id = "auth_grpc_url", long = "auth-grpc-url", env = "AUTH_GRPC_URL")]
    pub auth_url: Option<String>,
    /// How often fetched keys are refreshed (picks up rotations).
    #[arg(id = "jwt_jwks_refresh", long = "jwt-jwks-refresh", env = "JWT_JWKS_REFRESH", default_value = "5m", value_parser = parse_duration)]
    pub jwks_refresh: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use secrecy::ExposeSecret;

    #[derive(Debug, Parser)]
    struct Config {
        #[command(flatten)]
        postgres: PostgresArgs,
        #[command(flatten)]
        admin: AdminArgs,
    }

    /// Every group flattened together, as a service with all stores would.
    #[derive(Debug, Parser)]
    struct Everything {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(flatten)]
        telemetry: TelemetryArgs,
        #[command(flatten)]
        postgres: PostgresArgs,
        #[command(flatten)]
        redis: RedisArgs,
        #[command(flatten)]
        mongo: MongoArgs,
        #[command(flatten)]
        amqp: AmqpArgs,
        #[command(flatten)]
        token: TokenArgs,
    }

    #[test]
    fn all_groups_flatten_together_without_clashes() {
        use clap::CommandFactory as _;
        Everything::command().debug_assert();
        let parsed = Everything::try_parse_from([
            "svc",
            "--database-url=postgres://db",
            "--redis-url=redis://r",
            "--mongodb-url=mongodb://m",
            "--amqp-url=amqp://a",
            "--redis-timeout=1s",
            "--mongodb-timeout=3s",
        ])
        .unwrap();
        assert_eq!(parsed.redis.timeout, Duration::from_secs(1));
        assert_eq!(parsed.mongo.timeout, Duration::from_secs(3));
        assert_eq!(parsed.amqp.exchange, "platform.events");
    }

    #[test]
    fn durations_parse_with_units_and_reject_garbage() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("ms").is_err());
    }

    #[test]
    fn secrets_parse_but_never_print() {
        let config = Config::try_parse_from([
            "svc",
            "--database-url",
            "postgres://app:hunter2@db/app",
            "--shutdown-grace",
            "3s",
        ])
        .unwrap();
        assert_eq!(
            config.postgres.url.expose_secret(),
            "postgres://app:hunter2@db/app"
        );
        assert_eq!(config.admin.shutdown_grace, Duration::from_secs(3));
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
