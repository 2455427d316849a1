//! Readiness follows dependencies; shutdown drains in-flight requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use secrecy::SecretString;
use service_kit::admin::{self, AdminState, Readiness};
use service_kit::config::{PostgresArgs, RedisArgs};
use service_kit::{Shutdown, stores};
use test_kit::{SpawnedService, TcpProxy, TestPostgres};

async fn status_of(client: &reqwest::Client, url: &str) -> u16 {
    client
        .get(url)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Polls until `/readyz` answers `want`, for at most 10 s.
async fn wait_for_status(client: &reqwest::Client, url: &str, want: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = status_of(client, url).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} stayed {got}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn readiness_flips_when_a_dependency_goes_down_and_back() {
    test_kit::init_tracing();
    let db = TestPostgres::new().await.unwrap();
    let redis_proxy = TcpProxy::start(socket_addr(&test_kit::redis_url()))
        .await
        .unwrap();
    let postgres_proxy = TcpProxy::start(socket_addr(&test_kit::postgres_url()))
        .await
        .unwrap();

    let redis = stores::redis(&RedisArgs {
        url: SecretString::from(format!("redis://{}", redis_proxy.addr())),
        key_prefix: String::new(),
        timeout: Duration::from_millis(300),
    })
    .await
    .unwrap();
    let pool = stores::postgres(&PostgresArgs {
        url: SecretString::from(format!(
            "postgres://postgres@{}/{}",
            postgres_proxy.addr(),
            db.name
        )),
        max_connections: 2,
        acquire_timeout: Duration::from_millis(500),
    })
    .unwrap();

    let readiness = Readiness::new(Duration::from_millis(800));
    let check_redis = redis.clone();
    readiness.add("redis", move || stores::redis_check(check_redis.clone()));
    let check_pool = pool.clone();
    readiness.add("postgres", move || {
        stores::postgres_check(check_pool.clone())
    });
    let mut registry = prometheus_client::registry::Registry::default();
    readiness.register_metrics(&mut registry);
    let state = AdminState {
        readiness,
        registry: Arc::new(registry),
    };
    let service = SpawnedService::spawn(|listener, shutdown| async move {
        admin::serve(listener, state, shutdown.cancelled()).await?;
        Ok(())
    })
    .await
    .unwrap();
    let client = test_kit::http();
    let readyz = format!("{}/readyz", service.http_url());

    wait_for_status(&client, &readyz, 200).await;
    assert_eq!(
        status_of(&client, &format!("{}/healthz", service.http_url())).await,
        200
    );

    redis_proxy.cut();
    wait_for_status(&client, &readyz, 503).await;
    let body: serde_json::Value = client
        .get(&readyz)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(body["checks"]["redis"], "ok", "{body}");
    assert_eq!(body["checks"]["postgres"], "ok", "{body}");
    assert_eq!(
        status_of(&client, &format!("{}/healthz", service.http_url())).await,
        200,
        "liveness is not readiness"
    );
    redis_proxy.restore();
    wait_for_status(&client, &readyz, 200).await;

    postgres_proxy.cut();
    wait_for_status(&client, &readyz, 503).await;
    let body: serde_json::Value = client
        .get(&readyz)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(body["checks"]["postgres"], "ok", "{body}");
    postgres_proxy.restore();
    wait_for_status(&client, &readyz, 200).await;

    let metrics = client
        .get(format!("{}/metrics", service.http_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"dependency_up{dependency="redis"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"dependency_up{dependency="postgres"} 1"#),
        "{metrics}"
    );
    service.stop().await.unwrap();
}

fn socket_addr(url: &str) -> SocketAddr {
    let authority = url.split("://").nth(1).unwrap();
    let authority = authority.split('/').next().unwrap();
    let host_port = authority.rsplit('@').next().unwrap();
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    std::net::ToSocketAddrs::to_socket_addrs(&host_port)
        .unwrap()
        .next()
        .unwrap()
}

#[tokio::test]
async fn shutdown_drains_an_in_flight_request_and_stops_accepting() {
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let entered_tx = Arc::new(std::sync::Mutex::new(Some(entered_tx)));
    let app = Router::new().route(
        "/slow",
        get(move || {
            let entered_tx = entered_tx.clone();
            async move {
                if let Some(tx) = entered_tx.lock().unwrap().take() {
                    let _ = tx.send(());
                }
                tokio::time::sleep(Duration::from_millis(700)).await;
                "finished"
            }
        }),
    );
    let shutdown = Shutdown::new();
    let listener = service_kit::net::bind_loopback().unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled())
                .await
        }
    });

    let client = test_kit::http();
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .get(format!("http://{addr}/slow"))
                .send()
                .await?
                .text()
                .await
        }
    });
    entered_rx.await.unwrap();
    shutdown.trigger();

    let body = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(body, "finished");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections after shutdown"
    );
}
