//! The users service: profiles, search, contacts, blocks and privacy
//! (PostgreSQL), presence (Redis), profiles created from `user.registered`,
//! `presence.changed` published on real transitions.

pub mod config;
pub mod consumer;
pub mod domain;
pub mod error;
pub mod presence;
pub mod profiles;
pub mod service;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use prometheus_client::registry::Registry;
use proto::users::v1::users_service_server::UsersServiceServer;
use service_kit::admin::{self, AdminState, Readiness};
use service_kit::amqp::{Broker, ConsumerSpec, EventPublisher, Exchange, run_consumer};
use service_kit::grpc::RpcMetrics;
use service_kit::pg_outbox::OutboxRelay;
use service_kit::{Shutdown, jwks, net, stores};
use tokio::net::TcpListener;

pub use config::Config;
use presence::PresenceStore;
use service::{UsersApi, UsersState, publish_presence};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let grpc =
        net::bind(config.grpc_addr).with_context(|| format!("binding {}", config.grpc_addr))?;
    let admin = net::bind(config.admin.admin_addr)
        .with_context(|| format!("binding {}", config.admin.admin_addr))?;
    serve(config, grpc, admin, shutdown).await
}

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

/// Publishes offline transitions of devices whose heartbeats stopped.
async fn sweep_presence(
    presence: PresenceStore,
    publisher: Arc<EventPublisher>,
    every: Duration,
    shutdown: Shutdown,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
        match presence.sweep(500).await {
            Ok(transitions) => {
                for transition in transitions {
                    publish_presence(&publisher, transition).await;
                }
            }
            Err(error) => tracing::warn!(%error, "presence sweep failed"),
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
    let broker = Broker::new(config.amqp.url.clone(), "users");
    let exchange = Exchange::new(&config.amqp.exchange);
    let publisher = Arc::new(EventPublisher::new(broker.clone(), exchange.clone()));
    let relay = OutboxRelay::new(pool.clone(), publisher.clone());
    let verifier = jwks::verifier(&config.token, &shutdown).await?;
    let presence = PresenceStore::new(
        redis.clone(),
        config.redis.key_prefix.clone(),
        config.presence_ttl,
    );

    let mut registry = Registry::with_prefix("users");
    let rpc_metrics = RpcMetrics::default();
    rpc_metrics.register(&mut registry);
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

    shutdown.spawn(relay.clone().run(shutdown.clone()));
    shutdown.spawn(sweep_presence(
        presence.clone(),
        publisher.clone(),
        config.presence_sweep_interval,
        shutdown.clone(),
    ));
    shutdown.spawn(run_consumer(
        broker.clone(),
        exchange,
        ConsumerSpec::new(config.queue.clone(), &["user.registered"]),
        Arc::new(consumer::RegistrationHandler { pool: pool.clone() }),
        shutdown.clone(),
    ));

    let api = UsersApi::new(UsersState {
        pool: pool.clone(),
        presence,
        verifier,
        publisher,
        relay,
        service_token: config.service_token.clone(),
    });
    let admin_task = admin::spawn(
        admin_listener,
        AdminState {
            readiness,
            registry: Arc::new(registry),
        },
        &shutdown,
    );

    service_kit::grpc::serve(
        proto::service_names::USERS,
        tonic::service::Routes::new(UsersServiceServer::new(api)),
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
    tracing::info!("users stopped");
    Ok(())
}
