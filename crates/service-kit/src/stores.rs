//! Connections to the stores, with timeouts, and their readiness checks.
//!
//! Pools connect lazily where the driver allows, so a service starts (and
//! reports not ready) while a store is still coming up, then recovers by
//! itself when it appears.

use std::time::Duration;

use secrecy::ExposeSecret as _;

use crate::config::{MongoArgs, PostgresArgs, RedisArgs};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("MongoDB: {0}")]
    Mongo(#[from] mongodb::error::Error),
}

/// A PostgreSQL pool; connections open on first use.
pub fn postgres(args: &PostgresArgs) -> Result<sqlx::PgPool, StoreError> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(args.max_connections)
        .acquire_timeout(args.acquire_timeout)
        .idle_timeout(Some(Duration::from_secs(600)))
        .connect_lazy(args.url.expose_secret())?;
    Ok(pool)
}

pub async fn postgres_check(pool: sqlx::PgPool) -> Result<(), String> {
    sqlx::query("SELECT 1")
        .execute(&pool)
        .await
        .map(|_| ())
        .map_err(|error| error.to_string())
}

/// A multiplexed Redis connection that reconnects by itself.
pub async fn redis(args: &RedisArgs) -> Result<redis::aio::ConnectionManager, StoreError> {
    let client = redis::Client::open(args.url.expose_secret())?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(args.timeout))
        .set_response_timeout(Some(args.timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    Ok(redis::aio::ConnectionManager::new_with_config(client, config).await?)
}

pub async fn redis_check(mut redis: redis::aio::ConnectionManager) -> Result<(), String> {
    redis::cmd("PING")
        .query_async::<String>(&mut redis)
        .await
        .map(|_| ())
        .map_err(|error| error.to_string())
}

/// A MongoDB database handle; the driver connects in the background.
pub async fn mongo(args: &MongoArgs, app_name: &str) -> Result<mongodb::Database, StoreError> {
    let mut options = mongodb::options::ClientOptions::parse(args.url.expose_secret()).await?;
    options.app_name = Some(app_name.to_owned());
    options.connect_timeout = Some(args.timeout);
    options.server_selection_timeout = Some(args.timeout);
    let client = mongodb::Client::with_options(options)?;
    Ok(client.database(&args.database))
}

pub async fn mongo_check(database: mongodb::Database) -> Result<(), String> {
    database
        .run_command(mongodb::bson::doc! { "ping": 1 })
        .await
        .map(|_| ())
        .map_err(|error| error.to_string())
}
