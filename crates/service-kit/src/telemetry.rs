//! Logs, traces, and W3C trace-context propagation across HTTP, gRPC and
//! RabbitMQ.
//!
//! Every span carries an OpenTelemetry trace id (so logs correlate across
//! services) whether or not an OTLP endpoint is configured; spans are exported
//! only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, TelemetryArgs};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter `{filter}`: {source}")]
    Filter {
        filter: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot build the OTLP exporter for {endpoint}: {source}")]
    Exporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Flushes and stops span export when dropped (at the end of `main`).
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("telemetry shutdown: {error}");
        }
    }
}

/// Builds the tracer provider: exporting over OTLP/gRPC when an endpoint is
/// given, otherwise only minting ids for log correlation and propagation.
pub fn tracer_provider(
    service_name: &'static str,
    otlp_endpoint: Option<&str>,
) -> Result<SdkTracerProvider, TelemetryError> {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name)
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = otlp_endpoint {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|source| TelemetryError::Exporter {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

/// Installs the process-wide subscriber: an env filter, JSON or pretty log
/// lines, and the OpenTelemetry layer.
pub fn init(
    service_name: &'static str,
    args: &TelemetryArgs,
) -> Result<TelemetryGuard, TelemetryError> {
    let filter = EnvFilter::try_new(&args.log_filter).map_err(|source| TelemetryError::Filter {
        filter: args.log_filter.clone(),
        source,
    })?;
    let provider = tracer_provider(service_name, args.otlp_endpoint.as_deref())?;
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer(service_name));
    let fmt = match args.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().compact().boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(TelemetryGuard { provider })
}

// Propagation uses W3C trace context directly rather than the global
// propagator, so it works the same in tests that never call `init`.
fn propagator() -> TraceContextPropagator {
    TraceContextPropagator::new()
}

fn current_context() -> Context {
    tracing::Span::current().context()
}

/// Makes `span` a child of the remote context (no-op when it is empty).
pub fn set_remote_parent(span: &tracing::Span, parent: Context) {
    // Fails only when the span is disabled; nothing to link then.
    let _ = span.set_parent(parent);
}

/// The current span's trace context as a string map (event envelopes).
pub fn current_trace_map() -> HashMap<String, String> {
    let mut map = HashMap::new();
    propagator().inject_context(&current_context(), &mut map);
    map
}

pub fn context_from_map(map: &HashMap<String, String>) -> Context {
    propagator().extract(map)
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes the current span's context into HTTP (and gRPC, which rides on
/// HTTP/2) headers.
pub fn inject_http(headers: &mut http::HeaderMap) {
    propagator().inject_context(&current_context(), &mut HeaderInjector(headers));
}

pub fn extract_http(headers: &http::HeaderMap) -> Context {
    propagator().extract(&HeaderExtractor(headers))
}

/// Writes the current span's context into outgoing gRPC metadata.
pub fn inject_grpc(metadata: &mut tonic::metadata::MetadataMap) {
    let mut map = HashMap::new();
    propagator().inject_context(&current_context(), &mut map);
    for (key, value) in map {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            metadata.insert(key, value);
        }
    }
}

pub fn extract_grpc(metadata: &tonic::metadata::MetadataMap) -> Context {
    let map: HashMap<String, String> = ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|key| {
            let value = metadata.get(key)?.to_str().ok()?;
            Some((key.to_owned(), value.to_owned()))
        })
        .collect();
    context_from_map(&map)
}

/// A tonic client interceptor that propagates the current trace.
pub fn propagate_trace(
    mut request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    inject_grpc(request.metadata_mut());
    Ok(request)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;

    /// Runs `f` under a subscriber with the OpenTelemetry layer, as `init` would.
    pub(crate) fn with_otel<R>(f: impl FnOnce() -> R) -> R {
        let provider = tracer_provider("test", None).unwrap();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f)
    }

    fn trace_id_of(span: &tracing::Span) -> String {
        span.context().span().span_context().trace_id().to_string()
    }

    #[test]
    fn trace_crosses_http_grpc_and_maps_with_the_same_trace_id() {
        with_otel(|| {
            let root = tracing::info_span!("request");
            let trace_id = trace_id_of(&root);
            assert_ne!(trace_id, "00000000000000000000000000000000");
            let _entered = root.enter();

            let mut headers = http::HeaderMap::new();
            inject_http(&mut headers);
            assert!(
                headers
                    .get("traceparent")
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .contains(&trace_id)
            );

            let mut metadata = tonic::metadata::MetadataMap::new();
            inject_grpc(&mut metadata);
            let map = current_trace_map();

            for remote in [
                extract_http(&headers),
                extract_grpc(&metadata),
                context_from_map(&map),
            ] {
                let child = tracing::info_span!("downstream");
                set_remote_parent(&child, remote);
                assert_eq!(trace_id_of(&child), trace_id);
            }
        });
    }

    #[test]
    fn missing_or_garbage_context_starts_a_new_trace() {
        with_otel(|| {
            let mut headers = http::HeaderMap::new();
            headers.insert("traceparent", http::HeaderValue::from_static("garbage"));
            let span = tracing::info_span!("request");
            set_remote_parent(&span, extract_http(&headers));
            assert_ne!(trace_id_of(&span), "00000000000000000000000000000000");
        });
    }
}
