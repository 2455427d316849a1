//! The gateway's configuration (env vars and flags; see the README table).

use std::net::SocketAddr;

use std::time::Duration;

use secrecy::SecretString;
use service_kit::config::{
    AdminArgs, AmqpArgs, RedisArgs, TelemetryArgs, TokenArgs, parse_duration, parse_secret,
};

use crate::rate_limit::Limit;

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "gateway", about = "REST and Socket.IO entry point")]
pub struct Config {
    /// HTTP address (REST under /api/v1, Swagger UI at /docs).
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// Token verification; `AUTH_GRPC_URL` (required here) is also where
    /// registration, login and sessions go.
    #[command(flatten)]
    pub token: TokenArgs,
    /// Redis: the Socket.IO adapter (broadcasts between gateway replicas).
    #[command(flatten)]
    pub redis: RedisArgs,
    /// RabbitMQ: domain events fanned out to sockets.
    #[command(flatten)]
    pub amqp: AmqpArgs,
    /// Queue the replicas share (competing consumers) for events to fan out.
    #[arg(long, env = "FANOUT_QUEUE", default_value = "gateway.fanout")]
    pub fanout_queue: String,
    /// Credential for reporting presence to users on behalf of connected
    /// sockets (`USERS_SERVICE_TOKEN` there). Unset: presence is reported
    /// with each user's own token, which stops working when it expires.
    #[arg(long, env = "USERS_SERVICE_TOKEN", value_parser = parse_secret)]
    pub users_service_token: Option<SecretString>,
    /// Credential for marking messages delivered on users' behalf when their
    /// sockets acknowledge them (`CHAT_SERVICE_TOKEN` there). Unset: only
    /// clients' own `message:delivered` events move delivered receipts.
    #[arg(long, env = "CHAT_SERVICE_TOKEN", value_parser = parse_secret)]
    pub chat_service_token: Option<SecretString>,
    /// How often connected sockets renew their user's presence (keep it well
    /// under users' PRESENCE_TTL).
    #[arg(long, env = "PRESENCE_HEARTBEAT", default_value = "20s", value_parser = parse_duration)]
    pub presence_heartbeat: Duration,
    /// How often the gateway pings each socket (engine.io `pingInterval`):
    /// keep it under the idle timeout of every proxy in front of it.
    #[arg(long, env = "SOCKET_PING_INTERVAL", default_value = "25s", value_parser = parse_duration)]
    pub socket_ping_interval: Duration,
    /// How long a client has to answer a ping before its socket is closed
    /// (`pingTimeout`): a vanished client (lost network, no FIN) is offline
    /// after at most interval + timeout.
    #[arg(long, env = "SOCKET_PING_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub socket_ping_timeout: Duration,
    /// The shortest time between two writes of events to one websocket. A
    /// socket that has been quiet this long is written to at once; events
    /// that come sooner wait and go out with the next write (one system
    /// call for several events on a busy socket, at most this much added
    /// latency). Acks never wait. 0 writes every event when it is emitted.
    #[arg(long, env = "SOCKET_WRITE_INTERVAL", default_value = "100ms", value_parser = parse_duration)]
    pub socket_write_interval: Duration,
    /// The users service.
    #[arg(long, env = "USERS_GRPC_URL", default_value = "http://users:50052")]
    pub users_url: String,
    /// The chat service.
    #[arg(long, env = "CHAT_GRPC_URL", default_value = "http://chat:50053")]
    pub chat_url: String,
    /// Origins allowed by CORS, comma-separated (`*` for any; empty for none).
    #[arg(long, env = "CORS_ORIGINS", default_value = "", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Registration, login and refresh per client IP (BURST/PERIOD).
    #[arg(long, env = "AUTH_RATE_LIMIT", default_value = "20/1m")]
    pub auth_rate_limit: Limit,
    /// Messages sent per user, REST and Socket.IO together.
    #[arg(long, env = "SEND_RATE_LIMIT", default_value = "30/10s")]
    pub send_rate_limit: Limit,
    /// Typing notifications per user.
    #[arg(long, env = "TYPING_RATE_LIMIT", default_value = "10/10s")]
    pub typing_rate_limit: Limit,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
}
