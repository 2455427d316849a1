//! Test isolation on the real servers, and services spawned on port 0.
//!
//! Every helper gives one test its own slice of a shared server and removes
//! it when dropped (also when the test panics), so tests run in parallel and
//! leave nothing behind:
//! - [`TestPostgres`]: a fresh database, dropped with `WITH (FORCE)`;
//! - [`TestRedis`]: a unique key prefix, whose keys are deleted;
//! - [`TestAmqp`]: a uniquely named exchange and queues, deleted;
//! - [`TestMongo`]: a fresh database, dropped.
//!
//! Server addresses come from `POSTGRES_URL`, `REDIS_URL`, `AMQP_URL` and
//! `MONGODB_URL` (what `scripts/deps.sh env` prints), defaulting to the
//! standard local ports.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use service_kit::Shutdown;
use service_kit::amqp::{Broker, ConsumerSpec, Exchange};
use tokio::net::TcpListener;

pub mod clients;
pub mod process;
mod proxy;
mod spans;
pub use clients::{authed, http, next_event, wait_ready};
pub use proxy::TcpProxy;
pub use spans::{RecordedSpan, spans_of_trace};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Admin URL of the PostgreSQL server (a database that always exists).
pub fn postgres_url() -> String {
    env_or(
        "POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    )
}

pub fn redis_url() -> String {
    env_or("REDIS_URL", "redis://127.0.0.1:6379")
}

pub fn amqp_url() -> String {
    env_or("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
}

pub fn mongodb_url() -> String {
    env_or("MONGODB_URL", "mongodb://127.0.0.1:27017")
}

/// A short random name part, safe in database, key and queue names.
pub fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
}

/// Installs the test subscriber once: log lines filtered by `RUST_LOG`
/// (default `warn`), and every INFO span recorded through OpenTelemetry
/// into memory, so tests can check what one trace crossed
/// ([`spans_of_trace`]).
pub fn init_tracing() {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(spans::MemoryExporter)
        .build();
    let logs = tracing_subscriber::fmt::layer()
        .with_test_writer()
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        );
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("tests"))
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init();
}

/// Runs async cleanup from `Drop`, on its own thread and runtime, so it works
/// whatever runtime (if any) the test is on, and also after a panic.
fn cleanup_blocking<F, Fut>(what: &str, cleanup: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let what = what.to_owned();
    let joined = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // A server that never answers must not hang the whole test run.
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), cleanup())
                .await
                .map_err(|_| anyhow::anyhow!("no answer within 30 s"))?
        })
    })
    .join();
    match joined {
        Ok(Ok(())) => {}
        Ok(Err(error)) => eprintln!("test-kit: cleaning up {what} failed: {error:#}"),
        Err(_) => eprintln!("test-kit: cleaning up {what} panicked"),
    }
}

/// A fresh PostgreSQL database for one test.
#[derive(Debug)]
pub struct TestPostgres {
    pub pool: sqlx::PgPool,
    pub name: String,
    url: String,
}

impl TestPostgres {
    pub async fn new() -> anyhow::Result<Self> {
        let admin_url = postgres_url();
        let name = format!("test_{}", unique_suffix());
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .execute(&mut admin)
            .await?;
        let url = with_database(&admin_url, &name);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect(&url)
            .await?;
        Ok(Self { pool, name, url })
    }

    /// URL of this test's database (for a service under test).
    pub fn url(&self) -> SecretString {
        SecretString::from(self.url.clone())
    }

    /// Whether a database of this name exists on the server.
    pub async fn exists(name: &str) -> anyhow::Result<bool> {
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&postgres_url()).await?;
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&mut admin)
            .await?;
        Ok(found.is_some())
    }
}

/// `url` with its path replaced by `/database` (query string kept).
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{database}?{query}"),
        None => format!("{root}/{database}"),
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let name = self.name.clone();
        // The pool's connections live on the test's runtime, which is blocked
        // here; FORCE terminates them server-side instead of closing the pool.
        cleanup_blocking(&format!("database {name}"), move || async move {
            let mut admin =
                <sqlx::PgConnection as sqlx::Connection>::connect(&postgres_url()).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
            )))
            .execute(&mut admin)
            .await?;
            Ok(())
        });
    }
}

/// A unique Redis key prefix for one test.
pub struct TestRedis {
    pub redis: redis::aio::ConnectionManager,
    pub prefix: String,
}

impl std::fmt::Debug for TestRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRedis")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl TestRedis {
    pub async fn new() -> anyhow::Result<Self> {
        let client = redis::Client::open(redis_url())?;
        let redis = redis::aio::ConnectionManager::new(client).await?;
        Ok(Self {
            redis,
            prefix: format!("test:{}:", unique_suffix()),
        })
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Keys under `prefix` on the server.
    pub async fn keys_with_prefix(prefix: &str) -> anyhow::Result<Vec<String>> {
        let client = redis::Client::open(redis_url())?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        cleanup_blocking(&format!("redis prefix {prefix}"), move || async move {
            let keys = Self::keys_with_prefix(&prefix).await?;
            if !keys.is_empty() {
                let client = redis::Client::open(redis_url())?;
                let mut connection = client.get_multiplexed_async_connection().await?;
                for chunk in keys.chunks(500) {
                    redis::cmd("DEL")
                        .arg(chunk)
                        .query_async::<i64>(&mut connection)
                        .await?;
                }
            }
            Ok(())
        });
    }
}

/// A uniquely named events exchange and the queues declared for one test.
#[derive(Debug)]
pub struct TestAmqp {
    pub broker: Arc<Broker>,
    pub exchange: Exchange,
    prefix: String,
    queues: Mutex<Vec<String>>,
}

impl TestAmqp {
    pub async fn new() -> anyhow::Result<Self> {
        let prefix = format!("test.{}", unique_suffix());
        let broker = Broker::new(SecretString::from(amqp_url()), format!("{prefix}-test"));
        broker.check().await.map_err(anyhow::Error::msg)?;
        Ok(Self {
            broker,
            exchange: Exchange::new(format!("{prefix}.events")),
            prefix,
            queues: Mutex::new(Vec::new()),
        })
    }

    /// A consumer spec whose queues (main, retry, dead-letter) are unique to
    /// this test and deleted afterwards.
    pub fn consumer_spec(&self, name: &str, bindings: &[&str]) -> ConsumerSpec {
        let spec = ConsumerSpec::new(format!("{}.{name}", self.prefix), bindings);
        if let Ok(mut queues) = self.queues.lock() {
            queues.extend([
                spec.queue.clone(),
                spec.retry_queue(),
                spec.dead_letter_queue(),
            ]);
        }
        spec
    }

    /// Registers another queue name for deletion.
    pub fn track_queue(&self, queue: impl Into<String>) {
        if let Ok(mut queues) = self.queues.lock() {
            queues.push(queue.into());
        }
    }

    /// Does the queue exist on the broker (passive declare)?
    pub async fn queue_exists(&self, queue: &str) -> anyhow::Result<bool> {
        queue_exists(queue).await
    }
}

pub async fn queue_exists(queue: &str) -> anyhow::Result<bool> {
    let connection =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    let declared = channel
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await;
    let _ = connection.close(200, "done".into()).await;
    Ok(declared.is_ok())
}

impl Drop for TestAmqp {
    fn drop(&mut self) {
        let queues = self.queues.lock().map(|q| q.clone()).unwrap_or_default();
        let exchange = self.exchange.name.clone();
        let broker = self.broker.clone();
        cleanup_blocking(&format!("exchange {exchange}"), move || async move {
            let connection =
                lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
                    .await?;
            let channel = connection.create_channel().await?;
            for queue in queues {
                channel
                    .queue_delete(
                        queue.as_str().into(),
                        lapin::options::QueueDeleteOptions::default(),
                    )
                    .await?;
            }
            channel
                .exchange_delete(
                    exchange.as_str().into(),
                    lapin::options::ExchangeDeleteOptions::default(),
                )
                .await?;
            let _ = connection.close(200, "done".into()).await;
            drop(broker);
            Ok(())
        });
    }
}

/// A fresh MongoDB database for one test.
#[derive(Debug)]
pub struct TestMongo {
    pub database: mongodb::Database,
    pub name: String,
}

impl TestMongo {
    pub async fn new() -> anyhow::Result<Self> {
        let client = mongo_client().await?;
        let name = format!("test_{}", unique_suffix());
        Ok(Self {
            database: client.database(&name),
            name,
        })
    }

    pub async fn database_names() -> anyhow::Result<Vec<String>> {
        Ok(mongo_client().await?.list_database_names().await?)
    }
}

async fn mongo_client() -> anyhow::Result<mongodb::Client> {
    let mut options = mongodb::options::ClientOptions::parse(mongodb_url()).await?;
    options.server_selection_timeout = Some(std::time::Duration::from_secs(5));
    Ok(mongodb::Client::with_options(options)?)
}

impl Drop for TestMongo {
    fn drop(&mut self) {
        let name = self.name.clone();
        cleanup_blocking(&format!("mongo database {name}"), move || async move {
            mongo_client().await?.database(&name).drop().await?;
            Ok(())
        });
    }
}

/// A service running inside the test process on a port-0 listener.
#[derive(Debug)]
pub struct SpawnedService {
    pub addr: SocketAddr,
    pub shutdown: Shutdown,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl SpawnedService {
    /// Binds 127.0.0.1:0 and runs `serve(listener, shutdown)` in a task.
    pub async fn spawn<F, Fut>(serve: F) -> anyhow::Result<Self>
    where
        F: FnOnce(TcpListener, Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = service_kit::net::bind_loopback()?;
        let addr = listener.local_addr()?;
        let shutdown = Shutdown::new();
        let handle = tokio::spawn(serve(listener, shutdown.clone()));
        Ok(Self {
            addr,
            shutdown,
            handle: Some(handle),
        })
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Triggers shutdown and waits for the service to return.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.trigger();
        match self.handle.take() {
            Some(handle) => handle.await?,
            None => Ok(()),
        }
    }
}

impl Drop for SpawnedService {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_is_swapped_in_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1/db?sslmode=disable", "t2"),
            "postgres://u:p@h:1/t2?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t3"), "postgres://h/t3");
    }
}
