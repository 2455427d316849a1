//! The chat service: conversations, members, messages, receipts and history
//! in MongoDB; domain events to RabbitMQ through a transactional outbox;
//! block and privacy checks asked of the users service.

pub mod config;
pub mod domain;
pub mod error;
pub mod receipts;
pub mod service;
pub mod store;
pub mod users_client;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use prometheus_client::registry::Registry;
use proto::chat::v1::chat_service_server::ChatServiceServer;
use service_kit::admin::{self, AdminState, Readiness};
use service_kit::amqp::{Broker, EventPublisher, Exchange};
use service_kit::grpc::{ClientConfig, Downstream, RpcMetrics};
use service_kit::mongo_outbox::MongoOutboxRelay;
use service_kit::{Shutdown, jwks, net, stores};
use tokio::net::TcpListener;

pub use config::Config;
use receipts::ReceiptCoalescer;
use service::{ChatApi, ChatState};
use store::ChatStore;
use users_client::UsersClient;

pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let grpc =
        net::bind(config.grpc_addr).with_context(|| format!("binding {}", config.grpc_addr))?;
    let admin = net::bind(config.admin.admin_addr)
        .with_context(|| format!("binding {}", config.admin.admin_addr))?;
    serve(config, grpc, admin, shutdown).await
}

/// Creates collections and indexes, retrying while MongoDB comes up.
async fn prepare_store(store: &ChatStore, shutdown: &Shutdown) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(200);
    loop {
        match store.ensure_indexes().await {
            Ok(()) => return Ok(()),
            Err(error) if delay < Duration::from_secs(10) && !shutdown.is_triggered() => {
                tracing::warn!(%error, ?delay, "creating MongoDB indexes failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(error) => return Err(error).context("creating MongoDB indexes"),
        }
    }
}

pub async fn serve(
    config: Config,
    grpc_listener: TcpListener,
    admin_listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let database = stores::mongo(&config.mongo, "chat")
        .await
        .context("MongoDB client")?;
    let store = ChatStore::new(database.clone());
    prepare_store(&store, &shutdown).await?;
    let broker = Broker::new(config.amqp.url.clone(), "chat");
    let publisher = Arc::new(EventPublisher::new(
        broker.clone(),
        Exchange::new(&config.amqp.exchange),
    ));
    let relay = MongoOutboxRelay::new(&database, publisher);
    let verifier = jwks::verifier(&config.token, &shutdown).await?;
    let users = Downstream::connect_lazy("users", &config.users_grpc_url, ClientConfig::default())?;

    let mut registry = Registry::with_prefix("chat");
    let rpc_metrics = RpcMetrics::default();
    rpc_metrics.register(&mut registry);
    let readiness = Readiness::default();
    readiness.register_metrics(&mut registry);
    {
        readiness.add("mongodb", move || stores::mongo_check(database.clone()));
        let broker = broker.clone();
        readiness.add("rabbitmq", move || {
            let broker = broker.clone();
            async move { broker.check().await }
        });
        let users = users.clone();
        readiness.add("users", move || {
            let users = users.clone();
            async move { users.health_check().await }
        });
    }

    shutdown.spawn(relay.clone().run(shutdown.clone()));
    let api = ChatApi::new(ChatState {
        store,
        users: UsersClient::new(users, config.users_cache_ttl),
        verifier,
        relay,
        receipts: Arc::new(ReceiptCoalescer::default()),
        max_group_members: config.max_group_members,
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
        proto::service_names::CHAT,
        tonic::service::Routes::new(ChatServiceServer::new(api)),
        rpc_metrics,
        grpc_listener,
        &shutdown,
    )
    .await?;

    shutdown.drain(config.admin.shutdown_grace).await;
    broker.close().await;
    admin_task
        .await
        .context("admin server task")?
        .context("admin server")?;
    tracing::info!("chat stopped");
    Ok(())
}
