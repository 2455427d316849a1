//! Spans finished in this test process, kept in memory (the test
//! subscriber's OpenTelemetry exporter), to check what one trace crossed.

use std::sync::{Mutex, OnceLock};

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// One finished span: its name, kind and attributes.
#[derive(Debug, Clone)]
pub struct RecordedSpan {
    pub name: String,
    pub kind: String,
    pub attributes: Vec<(String, String)>,
}

fn recorded() -> &'static Mutex<Vec<(String, RecordedSpan)>> {
    static SPANS: OnceLock<Mutex<Vec<(String, RecordedSpan)>>> = OnceLock::new();
    SPANS.get_or_init(Mutex::default)
}

#[derive(Debug)]
pub(crate) struct MemoryExporter;

impl SpanExporter for MemoryExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut spans = recorded()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        spans.extend(batch.into_iter().map(|span| {
            (
                span.span_context.trace_id().to_string(),
                RecordedSpan {
                    name: span.name.into_owned(),
                    kind: format!("{:?}", span.span_kind),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                        .collect(),
                },
            )
        }));
        Ok(())
    }
}

/// Every finished span of the trace `trace_id` (32 hex digits), in the order
/// they finished.
pub fn spans_of_trace(trace_id: &str) -> Vec<RecordedSpan> {
    recorded()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter(|(id, _)| id == trace_id)
        .map(|(_, span)| span.clone())
        .collect()
}
