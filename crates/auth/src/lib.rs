//! The auth service: accounts (PostgreSQL), sessions and rotating refresh
//! tokens (Redis), EdDSA access tokens that every service verifies locally,
//! and `user.registered` events through a transactional outbox.
//!
//! `main.rs` only parses [`Config`] and calls [`run`]; tests call [`serve`]
//! with port-0 listeners.

pub mod accounts;
pub mod config;
pub mod domain;
pub mod error;
pub mod passwords;
pub mod service;
pub mod sessions;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use prometheus_client::registry::Registry;
use proto::auth::v1::auth_service_server::AuthServiceServer;
use secrecy::ExposeSecret as _;
use service_kit::admin::{self, AdminState, Readiness};
use service_kit::amqp::{Broker, EventPublisher, Exchange};
use service_kit::grpc::RpcMetrics;
use service_kit::pg_outbox::OutboxRelay;
use service_kit::token::{KeySet, PublicJwk, SigningKey, TokenSigner, TokenVerifier};
use service_kit::{Shutdown, net, stores};
use tokio::net::TcpListener;

pub use config::Config;
use passwords::PasswordHasher;
use service::{AuthApi, AuthMetrics, AuthState};
use sessions::SessionStore;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Binds the configured addresses and serves until `shutdown`.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let grpc =
        net::bind(config.grpc_addr).with_context(|| format!("binding {}", config.grpc_addr))?;
    let admin = net::bind(config.admin.admin_addr)
        .with_context(|| format!("binding {}", config.admin.admin_addr))?;
    serve(config, grpc, admin, shutdown).await
}

/// The signing key from config, or a random one for development.
fn signing_key(config: &Config) -> anyhow::Result<SigningKey> {
    match &config.signing_key {
        Some(pem) => SigningKey::from_pkcs8_pem(&config.signing_key_id, pem.expose_secret())
            .context("AUTH_SIGNING_KEY is not an Ed25519 PKCS#8 PEM key"),
        None => {
            tracing::warn!(
                "AUTH_SIGNING_KEY is unset: using a random key; tokens will not survive a restart"
            );
            Ok(SigningKey::generate(&config.signing_key_id)?)
        }
    }
}

fn key_set(config: &Config, current: &SigningKey) -> anyhow::Result<KeySet> {
    let mut jwks = vec![current.public_jwk().clone()];
    if let Some(previous) = &config.previous_jwks {
        let retired: Vec<PublicJwk> = serde_json::from_str(previous)
            .context("AUTH_PREVIOUS_JWKS must be a JSON array of JWKs")?;
        jwks.extend(retired.into_iter().filter(|jwk| jwk.kid != current.kid()));
    }
    Ok(KeySet::from_jwks(&jwks)?)
}

/// Migrations at start-up, retried while PostgreSQL comes up.
async fn migrate(pool: &sqlx::PgPool, shutdown: &Shutdown) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(200);
    loop {
        match MIGRATOR.run(pool).await {
            Ok(()) => return Ok(()),
            Err(error) if delay < Duration::from_secs(10) && !shutdown.is_triggered() => {
                tracing::warn!(%error, ?delay, "migrations failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(error) => return Err(error).context("running migrations"),
        }
    }
}

pub async fn serve(
    config: Config,
    grpc_listener: TcpListener,
    admin_listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let pool = stores::postgres(&config.postgres)?;
    migrate(&pool, &shutdown).await?;
    let redis = stores::redis(&config.redis)
        .await
        .context("connecting to Redis")?;
    let broker = Broker::new(config.amqp.url.clone(), "auth");
    let publisher = Arc::new(EventPublisher::new(
        broker.clone(),
        Exchange::new(&config.amqp.exchange),
    ));
    let relay = OutboxRelay::new(pool.clone(), publisher);

    let key = signing_key(&config)?;
    let keys = key_set(&config, &key)?;
    let verifier = TokenVerifier::from_args(keys.clone(), &config.token);
    let signer = TokenSigner::new(
        key,
        &config.token.issuer,
        &config.token.audience,
        config.access_token_ttl,
    );
    let parallelism = config
        .bcrypt_parallelism
        .unwrap_or_else(PasswordHasher::default_parallelism);
    let hasher = PasswordHasher::new(config.bcrypt_cost, parallelism).await?;

    let mut registry = Registry::with_prefix("auth");
    let rpc_metrics = RpcMetrics::default();
    rpc_metrics.register(&mut registry);
    let metrics = AuthMetrics::default();
    metrics.register(&mut registry);
    let readiness = Readiness::default();
    readiness.register_metrics(&mut registry);
    {
        let pool = pool.clone();
        readiness.add("postgres", move || stores::postgres_check(pool.clone()));
        let redis = redis.clone();
        readiness.add("redis", move || stores::redis_check(redis.clone()));
        let broker = broker.clone();
        readiness.add("rabbitmq", move || {
            let broker = broker.clone();
            async move { broker.check().await }
        });
    }

    let api = AuthApi::new(AuthState {
        pool: pool.clone(),
        sessions: SessionStore::new(
            redis,
            config.redis.key_prefix.clone(),
            config.refresh_token_ttl,
        ),
        hasher,
        signer,
        verifier,
        keys,
        relay: relay.clone(),
        issuer: config.token.issuer.clone(),
        audience: config.token.audience.clone(),
        service_token: config.service_token.clone(),
        metrics,
    });

    shutdown.spawn(relay.run(shutdown.clone()));
    let admin_task = admin::spawn(
        admin_listener,
        AdminState {
            readiness,
            registry: Arc::new(registry),
        },
        &shutdown,
    );

    service_kit::grpc::serve(
        proto::service_names::AUTH,
        tonic::service::Routes::new(AuthServiceServer::new(api)),
        rpc_metrics,
        grpc_listener,
        &shutdown,
    )
    .await?;

    shutdown.drain(config.admin.shutdown_grace).await;
    broker.close().await;
    pool.close().await;
    admin_task
        .await
        .context("admin server task")?
        .context("admin server")?;
    tracing::info!("auth stopped");
    Ok(())
}
