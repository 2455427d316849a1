//! The gateway: the platform's HTTP entry point. REST under `/api/v1`
//! (validated JSON in, consistent `{code, message, field}` errors out,
//! request ids, CORS, body limits) in front of the services' gRPC APIs, with
//! an OpenAPI document generated from the handlers and Swagger UI at `/docs`.

pub mod adapter_driver;
pub mod config;
pub mod delivery;
pub mod extract;
pub mod rate_limit;
pub mod realtime;
pub mod rest;
pub mod state;
pub mod web;

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method};
use prometheus_client::registry::Registry;
use secrecy::ExposeSecret as _;
use service_kit::admin::{self, AdminState, Readiness};
use service_kit::amqp::{Broker, ConsumerSpec, Exchange, run_consumer};
use service_kit::grpc::{ClientConfig, Downstream};
use service_kit::{Shutdown, jwks, net};
use socketioxide::SocketIo;
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr};
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_swagger_ui::SwaggerUi;

pub use config::Config;
use state::{AppState, Limits, Services};

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Chat platform API", description = "REST API of the chat platform gateway. Errors are `{code, message, field}` with a stable `code`."),
    paths(
        rest::auth::register,
        rest::auth::login,
        rest::auth::refresh,
        rest::auth::logout,
        rest::auth::change_password,
        rest::auth::list_sessions,
        rest::auth::revoke_session,
        rest::auth::revoke_other_sessions,
        rest::users::my_profile,
        rest::users::update_profile,
        rest::users::profiles,
        rest::users::search,
        rest::users::list_blocked,
        rest::users::block,
        rest::users::unblock,
        rest::users::list_contacts,
        rest::users::add_contact,
        rest::users::remove_contact,
        rest::users::privacy,
        rest::users::update_privacy,
        rest::users::presence,
        rest::chat::list_conversations,
        rest::chat::create_private,
        rest::chat::create_group,
        rest::chat::unread_counts,
        rest::chat::get_conversation,
        rest::chat::rename,
        rest::chat::list_members,
        rest::chat::add_members,
        rest::chat::remove_member,
        rest::chat::history,
        rest::chat::send,
        rest::chat::edit,
        rest::chat::delete_message,
        rest::chat::mark_read,
    ),
    components(schemas(rest::ErrorResponse)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Accounts, tokens and sessions"),
        (name = "users", description = "Profiles, search, blocks, contacts, privacy, presence"),
        (name = "chat", description = "Conversations, members, messages, receipts"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<&String> = origins.iter().filter(|o| !o.trim().is_empty()).collect();
    let allow = if origins.iter().any(|o| o.trim() == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin.trim()).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::PUT,
            Method::DELETE,
        ])
        .allow_headers([
            http::header::AUTHORIZATION,
            http::header::CONTENT_TYPE,
            REQUEST_ID,
        ])
        .expose_headers([REQUEST_ID, http::header::RETRY_AFTER])
}

/// One server span per request, continuing the caller's trace (W3C
/// `traceparent`), so a request's gRPC calls and the events they cause
/// share its trace id.
fn http_span<B>(request: &http::Request<B>) -> tracing::Span {
    let span = tracing::info_span!(
        "http",
        otel.kind = "server",
        http.request.method = %request.method(),
        url.path = %request.uri().path(),
        request_id = request
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default(),
    );
    service_kit::telemetry::set_remote_parent(
        &span,
        service_kit::telemetry::extract_http(request.headers()),
    );
    span
}

/// The HTTP application: REST routes, OpenAPI document, Swagger UI.
pub fn router(state: AppState, config: &Config) -> Router {
    let api = Router::new()
        .merge(rest::auth::routes())
        .merge(rest::users::routes())
        .merge(rest::chat::routes())
        .with_state(state);
    Router::new()
        .nest("/api/v1", api)
        .merge(SwaggerUi::new("/docs").url("/api/v1/openapi.json", ApiDoc::openapi()))
        .merge(web::routes())
        .fallback(|| async { service_kit::ApiError::not_found("no such route") })
        // Enforced where bodies are read, so the 413 has the usual JSON body.
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(cors(&config.cors_origins))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(http_span))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let http =
        net::bind(config.http_addr).with_context(|| format!("binding {}", config.http_addr))?;
    let admin = net::bind(config.admin.admin_addr)
        .with_context(|| format!("binding {}", config.admin.admin_addr))?;
    serve(config, http, admin, shutdown).await
}

pub async fn serve(
    config: Config,
    http_listener: TcpListener,
    admin_listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let auth_url = config
        .token
        .auth_url
        .clone()
        .context("AUTH_GRPC_URL is required by the gateway")?;
    let verifier = jwks::verifier(&config.token, &shutdown).await?;
    let redis_connection = service_kit::stores::redis(&config.redis)
        .await
        .context("connecting to Redis")?;
    let services = Services {
        auth: Downstream::connect_lazy("auth", &auth_url, ClientConfig::default())?,
        users: Downstream::connect_lazy("users", &config.users_url, ClientConfig::default())?,
        chat: Downstream::connect_lazy("chat", &config.chat_url, ClientConfig::default())?,
        verifier,
        limiter: rate_limit::RateLimiter::new(
            redis_connection.clone(),
            config.redis.key_prefix.clone(),
        ),
        limits: Limits {
            auth: config.auth_rate_limit,
            send: config.send_rate_limit,
            typing: config.typing_rate_limit,
        },
    };
    let readiness = Readiness::default();
    let mut registry = Registry::with_prefix("gateway");
    readiness.register_metrics(&mut registry);
    for downstream in [&services.auth, &services.users, &services.chat] {
        let downstream = downstream.clone();
        readiness.add(downstream.name(), move || {
            let downstream = downstream.clone();
            async move { downstream.health_check().await }
        });
    }
    {
        let redis = redis_connection.clone();
        readiness.add("redis", move || {
            service_kit::stores::redis_check(redis.clone())
        });
    }
    let deliveries = match &config.chat_service_token {
        Some(token) => {
            let credential = tonic::metadata::MetadataValue::try_from(token.expose_secret())
                .context("CHAT_SERVICE_TOKEN is not a valid header value")?;
            let directory = delivery::SocketDirectory::new(
                redis_connection.clone(),
                &config.redis.key_prefix,
                config.presence_heartbeat * 3,
            );
            let (tracker, marker) = delivery::DeliveryTracker::new(
                directory,
                services.chat.clone(),
                credential,
                shutdown.cancelled(),
            );
            shutdown.spawn(marker);
            Some(tracker)
        }
        None => {
            tracing::info!("CHAT_SERVICE_TOKEN unset: socket acks do not mark messages delivered");
            None
        }
    };
    let state = AppState::new(services);
    let realtime_state = realtime::RealtimeState {
        deliveries: deliveries.clone(),
        app: state.clone(),
        instance: std::env::var("HOSTNAME")
            .unwrap_or_else(|_| uuid::Uuid::new_v4().to_string())
            .into(),
        service_token: config
            .users_service_token
            .as_ref()
            .map(|token| tonic::metadata::MetadataValue::try_from(token.expose_secret()))
            .transpose()
            .context("USERS_SERVICE_TOKEN is not a valid header value")?,
    };
    let (socket_layer, io) = socket_io(&config, realtime_state.clone()).await?;

    shutdown.spawn(realtime::heartbeat(
        io.clone(),
        realtime_state,
        config.presence_heartbeat,
        shutdown.clone(),
    ));
    let broker = Broker::new(config.amqp.url.clone(), "gateway");
    {
        let broker = broker.clone();
        readiness.add("rabbitmq", move || {
            let broker = broker.clone();
            async move { broker.check().await }
        });
    }
    shutdown.spawn(run_consumer(
        broker.clone(),
        Exchange::new(&config.amqp.exchange),
        fanout_spec(&config.fanout_queue),
        Arc::new(realtime::Fanout {
            io: io.clone(),
            deliveries,
        }),
        shutdown.clone(),
    ));

    let app = router(state, &config)
        .layer(socket_layer)
        .layer(axum::middleware::map_request(detach_from_read_buffer));
    let admin_task = admin::spawn(
        admin_listener,
        AdminState {
            readiness,
            registry: Arc::new(registry),
        },
        &shutdown,
    );
    tracing::info!(addr = ?http_listener.local_addr().ok(), "gateway serving HTTP");
    axum::serve(
        http_listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled())
    .await
    .context("HTTP server")?;
    io.close().await;
    shutdown.drain(config.admin.shutdown_grace).await;
    broker.close().await;
    admin_task
        .await
        .context("admin server task")?
        .context("admin server")?;
    tracing::info!("gateway stopped");
    Ok(())
}

/// Gives a Socket.IO request its own copy of the URI and of the few headers
/// anything reads from it: engine.io's handshake (`Content-Type`, the
/// websocket ones, which engine.io drops once the upgrade is done) and the
/// connect middleware (`Authorization`).
///
/// hyper parses the URI and headers as slices of the connection's read
/// buffer (8-16 KB), and Socket.IO keeps every socket's request parts for
/// its lifetime, so without copies each idle socket would pin that whole
/// buffer (measured with heaptrack: ~16 KB of a 28 KB socket). Cookies,
/// proxy headers and the like are left out: a header map costs ~650 bytes
/// per socket as soon as it holds one header.
async fn detach_from_read_buffer(request: axum::extract::Request) -> axum::extract::Request {
    use http::header::{
        AUTHORIZATION, CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY,
        SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
    };
    const KEPT: [http::HeaderName; 8] = [
        AUTHORIZATION,
        CONTENT_TYPE,
        CONNECTION,
        UPGRADE,
        SEC_WEBSOCKET_KEY,
        SEC_WEBSOCKET_VERSION,
        SEC_WEBSOCKET_EXTENSIONS,
        SEC_WEBSOCKET_PROTOCOL,
    ];
    if !request.uri().path().starts_with("/socket.io") {
        return request;
    }
    let (mut parts, body) = request.into_parts();
    if let Ok(uri) = parts.uri.to_string().parse() {
        parts.uri = uri;
    }
    parts.headers = parts
        .headers
        .iter()
        .filter(|(name, _)| KEPT.contains(name))
        .filter_map(|(name, value)| {
            let mut copy = http::HeaderValue::from_bytes(value.as_bytes()).ok()?;
            copy.set_sensitive(value.is_sensitive());
            Some((name.clone(), copy))
        })
        .collect();
    axum::extract::Request::from_parts(parts, body)
}

/// The fan-out consumer: emitting is fast (no downstream calls), so what
/// arrives together is handled together and acked with one frame, with a
/// deeper prefetch so batches form under load.
fn fanout_spec(queue: &str) -> ConsumerSpec {
    let mut spec = ConsumerSpec::new(queue, realtime::FANOUT_EVENTS);
    spec.prefetch = 256;
    spec.concurrency = 64;
    spec.ack_in_batches = true;
    spec
}

/// Socket.IO over the Redis adapter (RESP3), its channels under this
/// deployment's key prefix, with the namespace ready.
async fn socket_io(
    config: &Config,
    state: realtime::RealtimeState,
) -> anyhow::Result<(
    socketioxide::layer::SocketIoLayer<realtime::GatewayAdapter>,
    SocketIo<realtime::GatewayAdapter>,
)> {
    let redis =
        redis::Client::open(resp3(config.redis.url.expose_secret())).context("REDIS_URL")?;
    let driver = adapter_driver::ReconnectingDriver::new(redis, config.redis.timeout)
        .await
        .context("connecting the Socket.IO Redis adapter")?;
    let adapter = RedisAdapterCtr::new_with_driver(
        driver,
        RedisAdapterConfig::new().with_prefix(format!("{}socket.io", config.redis.key_prefix)),
    );
    // socketioxide's builder has no setter for it: it reads the default.
    engineioxide::config::set_default_ws_write_interval(config.socket_write_interval);
    // Small per-socket buffers: most sockets sit idle between short JSON
    // events (the defaults size for bulk transfers).
    let (layer, io) = SocketIo::builder()
        .max_buffer_size(32)
        .ws_read_buffer_size(1024)
        .ping_interval(config.socket_ping_interval)
        .ping_timeout(config.socket_ping_timeout)
        .with_state(state)
        .with_adapter::<realtime::GatewayAdapter>(adapter)
        .build_layer();
    realtime::namespace(&io)
        .await
        .map_err(|error| anyhow::anyhow!("Socket.IO namespace: {error}"))?;
    Ok((layer, io))
}

/// The adapter's driver speaks RESP3: ask for it in the URL.
fn resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}
