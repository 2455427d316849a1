//! gRPC over a real connection: error details survive the wire, per-call
//! telemetry, idempotent-only retries, and the circuit breaker against a
//! downstream that is down and comes back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use proto::bots::v1::bots_service_client::BotsServiceClient;
use proto::bots::v1::bots_service_server::{BotsService, BotsServiceServer};
use proto::bots::v1::{
    Bot, DefinitionsStatus, GetBotRequest, GetDefinitionsStatusRequest, ListBotsRequest,
    ListBotsResponse, PreviewRequest, PreviewResponse,
};
use service_kit::grpc::{
    CallKind, CircuitState, ClientConfig, Downstream, RpcMetrics, RpcTelemetryLayer,
};
use service_kit::{ApiError, ErrorCode, Shutdown};
use tonic::{Request, Response, Status};

/// `GetBot` answers by name: "" is bad input, "flaky" fails with
/// UNAVAILABLE on the first call of each pair, anything else is found.
#[derive(Default)]
struct TestBots {
    calls: Arc<AtomicU32>,
}

#[tonic::async_trait]
impl BotsService for TestBots {
    async fn list_bots(
        &self,
        _: Request<ListBotsRequest>,
    ) -> Result<Response<ListBotsResponse>, Status> {
        Ok(Response::new(ListBotsResponse::default()))
    }

    async fn get_bot(&self, request: Request<GetBotRequest>) -> Result<Response<Bot>, Status> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let name = request.into_inner().name;
        match name.as_str() {
            "" => Err(ApiError::invalid("name", "bot name must not be empty").into()),
            "flaky" if call % 2 == 1 => Err(Status::unavailable("warming up")),
            _ => Ok(Response::new(Bot {
                name,
                ..Default::default()
            })),
        }
    }

    async fn get_definitions_status(
        &self,
        _: Request<GetDefinitionsStatusRequest>,
    ) -> Result<Response<DefinitionsStatus>, Status> {
        Ok(Response::new(DefinitionsStatus::default()))
    }

    async fn preview(
        &self,
        _: Request<PreviewRequest>,
    ) -> Result<Response<PreviewResponse>, Status> {
        Ok(Response::new(PreviewResponse::default()))
    }
}

struct Running {
    calls: Arc<AtomicU32>,
    metrics: RpcMetrics,
    shutdown: Shutdown,
}

async fn serve_on(listener: tokio::net::TcpListener) -> Running {
    let bots = TestBots::default();
    let calls = bots.calls.clone();
    let metrics = RpcMetrics::default();
    let shutdown = Shutdown::new();
    let (_reporter, health) = service_kit::grpc::health(proto::service_names::BOTS).await;
    let router = tonic::transport::Server::builder()
        .layer(RpcTelemetryLayer::new(metrics.clone()))
        .add_service(health)
        .add_service(service_kit::grpc::reflection().unwrap())
        .add_service(BotsServiceServer::new(bots));
    let stop = shutdown.cancelled();
    tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(service_kit::grpc::incoming(listener), stop)
            .await
    });
    Running {
        calls,
        metrics,
        shutdown,
    }
}

fn get_bot(
    downstream: &Downstream,
    kind: CallKind,
    name: &str,
) -> impl std::future::Future<Output = Result<Bot, Status>> {
    let downstream = downstream.clone();
    let name = name.to_owned();
    async move {
        downstream
            .call(kind, Some("token-abc"), GetBotRequest { name }, |channel, request| async move {
                BotsServiceClient::new(channel).get_bot(request).await
            })
            .await
    }
}

fn config() -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_secs(2),
        retries: 2,
        retry_backoff: Duration::from_millis(10),
        breaker_failures: 3,
        breaker_open_for: Duration::from_millis(500),
    }
}

#[tokio::test]
async fn errors_keep_code_and_field_across_the_wire_and_calls_are_measured() {
    let listener = service_kit::net::bind_loopback().unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = serve_on(listener).await;
    let downstream = Downstream::connect_lazy("bots", &url, config()).unwrap();

    let error = ApiError::from(
        get_bot(&downstream, CallKind::Idempotent, "")
            .await
            .unwrap_err(),
    );
    assert_eq!(error.code, ErrorCode::InvalidArgument);
    assert_eq!(error.field.as_deref(), Some("name"));
    assert_eq!(error.message, "bot name must not be empty");
    assert_eq!(
        server.calls.load(Ordering::SeqCst),
        1,
        "bad input is never retried"
    );
    assert_eq!(
        downstream.breaker().state(),
        CircuitState::Closed,
        "bad input is not an outage"
    );

    assert_eq!(
        get_bot(&downstream, CallKind::Once, "echo")
            .await
            .unwrap()
            .name,
        "echo"
    );
    assert_eq!(
        server
            .metrics
            .calls("/platform.bots.v1.BotsService/GetBot", "INVALID_ARGUMENT"),
        1
    );
    assert_eq!(
        server
            .metrics
            .calls("/platform.bots.v1.BotsService/GetBot", "OK"),
        1
    );
    assert!(downstream.health_check().await.is_ok());
    server.shutdown.trigger();
}

#[tokio::test]
async fn only_idempotent_calls_are_retried() {
    let listener = service_kit::net::bind_loopback().unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = serve_on(listener).await;
    let downstream = Downstream::connect_lazy("bots", &url, config()).unwrap();

    assert_eq!(
        get_bot(&downstream, CallKind::Idempotent, "flaky")
            .await
            .unwrap()
            .name,
        "flaky"
    );
    assert_eq!(
        server.calls.load(Ordering::SeqCst),
        2,
        "one failure, one retry"
    );

    let status = get_bot(&downstream, CallKind::Once, "flaky")
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(
        server.calls.load(Ordering::SeqCst),
        3,
        "a non-idempotent call is sent once"
    );
    server.shutdown.trigger();
}

#[tokio::test]
async fn breaker_opens_while_the_downstream_is_down_and_closes_after_it_returns() {
    // Reserve a port, then leave it closed: the downstream is "down".
    let reserved = service_kit::net::bind_loopback().unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let downstream = Downstream::connect_lazy("bots", &format!("http://{addr}"), config()).unwrap();

    let first = get_bot(&downstream, CallKind::Idempotent, "echo")
        .await
        .unwrap_err();
    assert_eq!(first.code(), tonic::Code::Unavailable);
    assert_eq!(
        downstream.breaker().state(),
        CircuitState::Open,
        "3 failed attempts open it"
    );
    assert!(downstream.health_check().await.is_err());

    let started = std::time::Instant::now();
    let fast = ApiError::from(
        get_bot(&downstream, CallKind::Idempotent, "echo")
            .await
            .unwrap_err(),
    );
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "open breaker fails fast"
    );
    assert_eq!(fast.code, ErrorCode::Unavailable);
    assert!(fast.message.contains("circuit open"), "{}", fast.message);
    assert!(fast.retry_after.is_some());

    // The downstream comes back; after the cool-down one probe closes the breaker.
    let listener = service_kit::net::bind(addr).unwrap();
    let server = serve_on(listener).await;
    tokio::time::sleep(Duration::from_millis(550)).await;
    assert_eq!(downstream.breaker().state(), CircuitState::HalfOpen);
    assert_eq!(
        get_bot(&downstream, CallKind::Idempotent, "echo")
            .await
            .unwrap()
            .name,
        "echo"
    );
    assert_eq!(downstream.breaker().state(), CircuitState::Closed);
    server.shutdown.trigger();
}
