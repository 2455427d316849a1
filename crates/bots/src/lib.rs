//! The bots service: bot definitions from a hot-reloaded file; commands,
//! rules, multi-step dialogues (state in Redis), intent matching and webhook
//! bots; answers `message.created` events through the chat service, acting
//! as each bot's own platform account.

pub mod accounts;
pub mod config;
pub mod consumer;
pub mod dialogues;
pub mod engine;
pub mod reload;
pub mod service;
pub mod webhook;

pub use bot_definition::{definition, intent, template};

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use prometheus_client::registry::Registry;
use proto::bots::v1::bots_service_server::BotsServiceServer;
use service_kit::admin::{self, AdminState, Readiness};
use service_kit::amqp::{
    Broker, ConsumerSpec, EventPublisher, Exchange, IdempotencyStore, run_consumer,
};
use service_kit::cache::TtlCache;
use service_kit::grpc::{ClientConfig, Downstream, RpcMetrics};
use service_kit::{Shutdown, jwks, net, stores};
use tokio::net::TcpListener;

pub use config::Config;

use accounts::BotAccounts;
use consumer::BotRuntime;
use dialogues::DialogueStore;
use reload::Definitions;
use service::BotsApi;

/// Senders' display names are reused this long.
const SENDER_NAME_TTL: Duration = Duration::from_secs(60);

pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let grpc =
        net::bind(config.grpc_addr).with_context(|| format!("binding {}", config.grpc_addr))?;
    let admin = net::bind(config.admin.admin_addr)
        .with_context(|| format!("binding {}", config.admin.admin_addr))?;
    serve(config, grpc, admin, shutdown).await
}

/// Provisions bot accounts until all exist, again after each reload.
async fn provision_accounts(
    accounts: Arc<BotAccounts>,
    definitions: Arc<Definitions>,
    reloaded: Arc<tokio::sync::Notify>,
    shutdown: Shutdown,
) {
    loop {
        let missing = accounts.provision_missing(&definitions.current()).await;
        let wait = if missing == 0 {
            Duration::from_secs(3600)
        } else {
            Duration::from_secs(2)
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = reloaded.notified() => {}
            () = shutdown.cancelled() => return,
        }
    }
}

pub async fn serve(
    config: Config,
    grpc_listener: TcpListener,
    admin_listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    // reqwest's rustls takes the process-wide provider (ring, as everywhere here).
    service_kit::install_crypto_provider();
    let auth_url = config
        .token
        .auth_url
        .clone()
        .context("AUTH_GRPC_URL is required (bot accounts are provisioned there)")?;
    let redis = stores::redis(&config.redis).await.context("Redis")?;
    let broker = Broker::new(config.amqp.url.clone(), "bots");
    let exchange = Exchange::new(&config.amqp.exchange);
    let publisher = Arc::new(EventPublisher::new(broker.clone(), exchange.clone()));
    let verifier = jwks::verifier(&config.token, &shutdown).await?;
    let auth = Downstream::connect_lazy("auth", &auth_url, ClientConfig::default())?;
    let chat = Downstream::connect_lazy("chat", &config.chat_grpc_url, ClientConfig::default())?;
    let users = Downstream::connect_lazy("users", &config.users_grpc_url, ClientConfig::default())?;

    let definitions = Arc::new(Definitions::open(&config.definitions));
    let accounts = Arc::new(BotAccounts::new(
        auth.clone(),
        config.auth_service_token.clone(),
    ));

    let mut registry = Registry::with_prefix("bots");
    let rpc_metrics = RpcMetrics::default();
    rpc_metrics.register(&mut registry);
    definitions.register_metrics(&mut registry);
    let readiness = Readiness::default();
    readiness.register_metrics(&mut registry);
    {
        let redis = redis.clone();
        readiness.add("redis", move || stores::redis_check(redis.clone()));
        let broker = broker.clone();
        readiness.add("rabbitmq", move || {
            let broker = broker.clone();
            async move { broker.check().await }
        });
        for downstream in [&auth, &chat] {
            let downstream = downstream.clone();
            readiness.add(downstream.name(), move || {
                let downstream = downstream.clone();
                async move { downstream.health_check().await }
            });
        }
        // Unready until some definitions loaded; a later bad file keeps the
        // good version in force and shows as a note.
        let loaded = definitions.clone();
        readiness.add("definitions", move || {
            let status = loaded.status();
            async move {
                match (status.loaded_at, status.last_error) {
                    (Some(_), _) => Ok(()),
                    (None, error) => Err(error.unwrap_or_else(|| "not loaded".to_owned())),
                }
            }
        });
        let noted = definitions.clone();
        readiness.note("definitions", move || {
            noted
                .status()
                .last_error
                .map(|error| format!("rejected, previous version in force: {error}"))
        });
        let provisioned = (accounts.clone(), definitions.clone());
        readiness.add("bot_accounts", move || {
            let ready = provisioned.0.all_provisioned(&provisioned.1.current());
            async move {
                if ready {
                    Ok(())
                } else {
                    Err("some bot accounts are not provisioned yet".to_owned())
                }
            }
        });
    }

    let reloaded = Arc::new(tokio::sync::Notify::new());
    {
        let reloaded = reloaded.clone();
        shutdown.spawn(definitions.clone().watch(
            config.reload_interval,
            move |_| reloaded.notify_one(),
            shutdown.clone(),
        ));
    }
    shutdown.spawn(provision_accounts(
        accounts.clone(),
        definitions.clone(),
        reloaded,
        shutdown.clone(),
    ));

    let runtime = BotRuntime {
        definitions: definitions.clone(),
        accounts: accounts.clone(),
        dialogues: DialogueStore::new(redis.clone(), format!("{}bots:", config.redis.key_prefix)),
        idempotency: IdempotencyStore::new(redis, format!("{}bots:", config.redis.key_prefix)),
        chat,
        users,
        publisher,
        http: reqwest::Client::builder()
            .user_agent(concat!("chat-platform-bots/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("HTTP client for webhooks")?,
        sender_names: TtlCache::new(SENDER_NAME_TTL),
        replies: Default::default(),
    };
    runtime.register_metrics(&mut registry);
    let mut spec = ConsumerSpec::new(config.queue.clone(), &["message.created"]);
    spec.concurrency = config.concurrency.max(1);
    shutdown.spawn(run_consumer(
        broker.clone(),
        exchange,
        spec,
        Arc::new(runtime),
        shutdown.clone(),
    ));

    let api = BotsApi {
        definitions,
        accounts,
        verifier,
    };
    let admin_task = admin::spawn(
        admin_listener,
        AdminState {
            readiness,
            registry: Arc::new(registry),
        },
        &shutdown,
    );
    service_kit::grpc::serve(
        proto::service_names::BOTS,
        tonic::service::Routes::new(BotsServiceServer::new(api)),
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
    tracing::info!("bots stopped");
    Ok(())
}
