//! gRPC on both sides.
//!
//! Server: [`incoming`] (nodelay, large backlog), [`reflection`] and
//! [`health`] for every service, and [`RpcTelemetryLayer`] which gives each
//! call a span (child of the caller's trace) and records its duration and
//! status code.
//!
//! Client: [`Downstream`] wraps a lazily connected channel with a deadline
//! per call, retries with jittered backoff for idempotent calls only, and a
//! [`CircuitBreaker`] that fails fast with `UNAVAILABLE` while a downstream
//! is down, probing it again after a cool-down.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rand::Rng as _;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint};
use tracing::Instrument as _;

use crate::ApiError;
use crate::telemetry;

/// Why a service's gRPC server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves a service's API on `listener` until `shutdown`, beside
/// `grpc.health.v1` (reporting `service_name`) and reflection, every call
/// going through the RPC telemetry layer.
pub async fn serve(
    service_name: &str,
    api: tonic::service::Routes,
    metrics: RpcMetrics,
    listener: TcpListener,
    shutdown: &crate::Shutdown,
) -> Result<(), ServeError> {
    let (_health_reporter, health) = health(service_name).await;
    let routes = api.add_service(health).add_service(reflection()?);
    tracing::info!(addr = ?listener.local_addr().ok(), service = service_name, "serving gRPC");
    tonic::transport::Server::builder()
        .layer(RpcTelemetryLayer::new(metrics))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming(listener), shutdown.cancelled())
        .await?;
    Ok(())
}

/// Accepted connections for `serve_with_incoming_shutdown`, with `TCP_NODELAY`.
pub fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Server reflection over the platform's contracts and `grpc.health.v1`.
pub fn reflection() -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::Error,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
}

/// `grpc.health.v1` with `service` and the overall ("") status serving.
pub async fn health(
    service: &str,
) -> (
    tonic_health::server::HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    let (reporter, server) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(service, tonic_health::ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    (reporter, server)
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: String,
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~8 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Per-method call counts (by status code) and latency.
#[derive(Debug, Clone)]
pub struct RpcMetrics {
    calls: Family<RpcLabels, Counter>,
    duration: HistogramFamily<MethodLabels>,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        Self {
            calls: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl RpcMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "rpc_server_calls",
            "gRPC calls served, by method and status code",
            self.calls.clone(),
        );
        registry.register(
            "rpc_server_duration_seconds",
            "gRPC call latency, by method",
            self.duration.clone(),
        );
    }

    pub fn observe(&self, method: &str, code: &str, elapsed: Duration) {
        self.calls
            .get_or_create(&RpcLabels {
                method: method.to_owned(),
                code: code.to_owned(),
            })
            .inc();
        self.duration
            .get_or_create(&MethodLabels {
                method: method.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn calls(&self, method: &str, code: &str) -> u64 {
        self.calls
            .get_or_create(&RpcLabels {
                method: method.to_owned(),
                code: code.to_owned(),
            })
            .get()
    }
}

/// A tower layer for tonic servers: one span per call, parented on the
/// caller's trace context, plus [`RpcMetrics`].
#[derive(Debug, Clone, Default)]
pub struct RpcTelemetryLayer {
    metrics: RpcMetrics,
}

impl RpcTelemetryLayer {
    pub fn new(metrics: RpcMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for RpcTelemetryLayer {
    type Service = RpcTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcTelemetry {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RpcTelemetry<S> {
    inner: S,
    metrics: RpcMetrics,
}

impl<S, B, RB> tower::Service<http::Request<B>> for RpcTelemetry<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let span = tracing::info_span!(
            "rpc",
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        telemetry::set_remote_parent(&span, telemetry::extract_http(request.headers()));
        let started = Instant::now();
        let metrics = self.metrics.clone();
        let future = self.inner.call(request).instrument(span.clone());
        Box::pin(async move {
            let result = future.await;
            // Errors come back "trailers-only": the status is in the headers.
            // A response without one streams its status in trailers: OK for
            // the unary calls this platform serves.
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<i32>().ok())
                    .map(tonic::Code::from_i32)
                    .unwrap_or(tonic::Code::Ok),
                Err(_) => tonic::Code::Internal,
            };
            span.record("rpc.grpc.status_code", code as i32);
            metrics.observe(&method, code_name(code), started.elapsed());
            result
        })
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The state a [`CircuitBreaker`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls flow; consecutive failures are counted.
    Closed,
    /// Calls fail fast until the cool-down ends.
    Open,
    /// One probe call is let through; its outcome closes or re-opens.
    HalfOpen,
}

#[derive(Debug, Clone, Copy)]
enum BreakerState {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_started: Instant },
}

/// Consecutive-failure circuit breaker (as in Hystrix / Envoy outlier
/// detection, reduced to what one downstream needs).
#[derive(Debug)]
pub struct CircuitBreaker {
    failure_threshold: u32,
    open_for: Duration,
    state: Mutex<BreakerState>,
}

impl CircuitBreaker {
    pub fn new(failure_threshold: u32, open_for: Duration) -> Self {
        Self {
            failure_threshold: failure_threshold.max(1),
            open_for,
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
        }
    }

    pub fn state(&self) -> CircuitState {
        match self.lock().map(|state| *state) {
            Some(BreakerState::Open { until }) if Instant::now() < until => CircuitState::Open,
            Some(BreakerState::Open { .. } | BreakerState::HalfOpen { .. }) => {
                CircuitState::HalfOpen
            }
            Some(BreakerState::Closed { .. }) | None => CircuitState::Closed,
        }
    }

    fn lock(&self) -> Option<std::sync::MutexGuard<'_, BreakerState>> {
        // A poisoned lock only means a panic elsewhere; the state is still valid.
        Some(
            self.state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// May a call go out now? `Err` carries how long until the next probe.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        let Some(mut state) = self.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        match *state {
            BreakerState::Closed { .. } => Ok(()),
            BreakerState::Open { until } if now < until => Err(until - now),
            BreakerState::Open { .. } => {
                *state = BreakerState::HalfOpen { probe_started: now };
                Ok(())
            }
            // A probe whose caller vanished must not wedge the breaker: after
            // one cool-down another probe may go.
            BreakerState::HalfOpen { probe_started } if now - probe_started >= self.open_for => {
                *state = BreakerState::HalfOpen { probe_started: now };
                Ok(())
            }
            BreakerState::HalfOpen { probe_started } => Err(self.open_for - (now - probe_started)),
        }
    }

    pub fn record_success(&self) {
        if let Some(mut state) = self.lock() {
            *state = BreakerState::Closed { failures: 0 };
        }
    }

    pub fn record_failure(&self) {
        let Some(mut state) = self.lock() else { return };
        let open = BreakerState::Open {
            until: Instant::now() + self.open_for,
        };
        *state = match *state {
            BreakerState::Closed { failures } if failures + 1 < self.failure_threshold => {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            BreakerState::Closed { .. } | BreakerState::HalfOpen { .. } => open,
            current @ BreakerState::Open { .. } => current,
        };
    }
}

/// Whether a call may safely be sent twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// Reads, and writes made idempotent by a client key: retried.
    Idempotent,
    /// Everything else: sent once.
    Once,
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub connect_timeout: Duration,
    /// Deadline of each attempt (sent to the server as `grpc-timeout`).
    pub request_timeout: Duration,
    /// Extra attempts for idempotent calls.
    pub retries: u32,
    /// First retry delay; doubles per attempt, with full jitter.
    pub retry_backoff: Duration,
    /// Consecutive failures that open the breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before a probe.
    pub breaker_open_for: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            retries: 2,
            retry_backoff: Duration::from_millis(50),
            breaker_failures: 5,
            breaker_open_for: Duration::from_secs(5),
        }
    }
}

/// Failures that say the downstream (not the request) is in trouble.
/// `Cancelled` is one: our calls are never cancelled by us (deadlines come
/// back as `DeadlineExceeded`), so it means the connection was dropped.
fn is_availability_failure(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
    )
}

/// A downstream gRPC service, as seen by one caller.
#[derive(Debug, Clone)]
pub struct Downstream {
    name: &'static str,
    channel: Channel,
    breaker: Arc<CircuitBreaker>,
    config: ClientConfig,
}

impl Downstream {
    /// Does not connect until the first call, so a service starts (and
    /// reports not ready) while a downstream is still down.
    pub fn connect_lazy(
        name: &'static str,
        url: &str,
        config: ClientConfig,
    ) -> Result<Self, ApiError> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|error| {
                ApiError::invalid("url", format!("{name}: bad gRPC URL `{url}`: {error}"))
            })?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        Ok(Self {
            name,
            channel: endpoint.connect_lazy(),
            breaker: Arc::new(CircuitBreaker::new(
                config.breaker_failures,
                config.breaker_open_for,
            )),
            config,
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// [`call`](Self::call) on a service's own behalf: the request carries
    /// the shared service credential (`x-service-token`) instead of a
    /// user's token.
    pub async fn call_as_service<M, T, F, Fut>(
        &self,
        kind: CallKind,
        credential: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
        message: M,
        send: F,
    ) -> Result<T, tonic::Status>
    where
        M: Clone,
        F: Fn(Channel, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call(kind, None, message, |channel, mut request| {
            request
                .metadata_mut()
                .insert(crate::token::SERVICE_TOKEN_HEADER, credential.clone());
            send(channel, request)
        })
        .await
    }

    /// Sends `message` through `send` with a deadline, the caller's bearer
    /// token and trace context; retries idempotent calls on availability
    /// failures; fails fast while the breaker is open.
    pub async fn call<M, T, F, Fut>(
        &self,
        kind: CallKind,
        bearer: Option<&str>,
        message: M,
        send: F,
    ) -> Result<T, tonic::Status>
    where
        M: Clone,
        F: Fn(Channel, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let attempts = match kind {
            CallKind::Idempotent => self.config.retries + 1,
            CallKind::Once => 1,
        };
        let mut last_error = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                let ceiling = self.config.retry_backoff * 2u32.saturating_pow(attempt - 1);
                let delay = rand::rng().random_range(Duration::ZERO..=ceiling);
                tokio::time::sleep(delay).await;
            }
            if let Err(wait) = self.breaker.try_acquire() {
                return Err(ApiError::unavailable(format!(
                    "{} is unavailable (circuit open); try again shortly",
                    self.name
                ))
                .with_retry_after(wait)
                .into());
            }
            let mut request = tonic::Request::new(message.clone());
            request.set_timeout(self.config.request_timeout);
            telemetry::inject_grpc(request.metadata_mut());
            if let Some(token) = bearer {
                match format!("Bearer {token}").parse() {
                    Ok(value) => {
                        request.metadata_mut().insert("authorization", value);
                    }
                    Err(_) => {
                        return Err(ApiError::unauthenticated("malformed bearer token").into());
                    }
                }
            }
            let outcome = tokio::time::timeout(
                self.config.request_timeout,
                send(self.channel.clone(), request),
            )
            .await
            .unwrap_or_else(|_| {
                Err(tonic::Status::deadline_exceeded(format!(
                    "{} did not answer within {:?}",
                    self.name, self.config.request_timeout
                )))
            });
            match outcome {
                Ok(response) => {
                    self.breaker.record_success();
                    return Ok(response.into_inner());
                }
                Err(status) if is_availability_failure(&status) => {
                    self.breaker.record_failure();
                    tracing::debug!(downstream = self.name, attempt, code = ?status.code(), "downstream call failed");
                    last_error = Some(status);
                }
                Err(status) => {
                    // The downstream answered: it is up, the request was refused.
                    self.breaker.record_success();
                    return Err(status);
                }
            }
        }
        Err(last_error
            .unwrap_or_else(|| tonic::Status::unavailable(format!("{} is unavailable", self.name))))
    }

    /// Readiness: is the downstream answering `grpc.health.v1` as serving?
    pub async fn health_check(&self) -> Result<(), String> {
        use tonic_health::pb::health_check_response::ServingStatus;
        let mut client = tonic_health::pb::health_client::HealthClient::new(self.channel.clone());
        let mut request = tonic::Request::new(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        });
        request.set_timeout(self.config.connect_timeout);
        match tokio::time::timeout(self.config.connect_timeout, client.check(request)).await {
            Ok(Ok(response)) if response.get_ref().status == ServingStatus::Serving as i32 => {
                Ok(())
            }
            Ok(Ok(_)) => Err(format!("{} reports not serving", self.name)),
            Ok(Err(status)) => Err(format!("{}: {}", self.name, status.message())),
            Err(_) => Err(format!("{} did not answer the health check", self.name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_after_consecutive_failures_then_half_opens() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(5));
        for _ in 0..2 {
            assert!(breaker.try_acquire().is_ok());
            breaker.record_failure();
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
        breaker.record_failure();
        assert_eq!(breaker.state(), CircuitState::Open);
        let wait = breaker.try_acquire().unwrap_err();
        assert!(wait <= Duration::from_secs(5) && wait > Duration::from_secs(4));

        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        assert!(breaker.try_acquire().is_ok(), "one probe goes through");
        assert!(
            breaker.try_acquire().is_err(),
            "a second concurrent probe does not"
        );

        breaker.record_failure();
        assert_eq!(breaker.state(), CircuitState::Open, "failed probe re-opens");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(breaker.try_acquire().is_ok());
        breaker.record_success();
        assert_eq!(
            breaker.state(),
            CircuitState::Closed,
            "successful probe closes"
        );
        assert!(breaker.try_acquire().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_does_not_wedge_the_breaker() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(2));
        breaker.record_failure();
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(breaker.try_acquire().is_ok()); // probe whose caller never reports
        assert!(breaker.try_acquire().is_err());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(breaker.try_acquire().is_ok());
    }

    #[test]
    fn successes_reset_the_failure_count() {
        let breaker = CircuitBreaker::new(2, Duration::from_secs(1));
        breaker.record_failure();
        breaker.record_success();
        breaker.record_failure();
        assert_eq!(breaker.state(), CircuitState::Closed);
    }
}
