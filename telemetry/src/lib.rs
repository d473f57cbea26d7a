//! OpenTelemetry tracing for the issuer and the sidecar: W3C trace context
//! read from incoming requests (Envoy's headers, or the gRPC metadata of an
//! ext_authz call), spans exported over OTLP/gRPC.
//!
//! Each server owns its [`Tracing`] (no global provider): tests run several
//! servers in one process, each exporting as itself. Finished spans go
//! through a channel to a tokio task that exports them in batches, so the
//! request path never waits on the collector, and a slow or absent collector
//! costs dropped spans (bounded queue), never latency.

#![forbid(unsafe_code)]

pub mod cli;

use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    Sampler, SdkTracer, SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use tokio::sync::mpsc;

pub use opentelemetry::trace::{Span as SpanApi, Status};
pub use opentelemetry::KeyValue as Attribute;

/// Spans waiting for export at most; beyond, new ones are dropped.
const QUEUE: usize = 4096;
const BATCH: usize = 512;
const EXPORT_EVERY: Duration = Duration::from_millis(200);

pub struct Tracing {
    tracer: SdkTracer,
    _provider: SdkTracerProvider,
}

/// A span being recorded; ended (and queued for export) on drop.
pub type ActiveSpan = opentelemetry_sdk::trace::Span;

impl Tracing {
    /// Exports to `endpoint` (an OTLP/gRPC collector, `http://host:4317`),
    /// sampling `ratio` of new traces and following the caller's decision
    /// for continued ones (parent-based). Needs a tokio runtime.
    pub fn new(endpoint: &str, ratio: f64, service: &'static str) -> anyhow::Result<Tracing> {
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| anyhow::anyhow!("OTLP exporter for {endpoint}: {e}"))?;
        let resource = Resource::builder().with_service_name(service).build();
        // The exporter tags every batch with the resource (our processor
        // hands it spans only).
        exporter.set_resource(&resource);
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(export_loop(exporter, rx));
        let provider = SdkTracerProvider::builder()
            .with_span_processor(ChannelProcessor { tx })
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                ratio.clamp(0.0, 1.0),
            ))))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer(service);
        Ok(Tracing {
            tracer,
            _provider: provider,
        })
    }

    /// Starts a server span continuing the trace in `parent` (from
    /// [`extract`]), or a new trace.
    pub fn server_span(
        &self,
        name: impl Into<std::borrow::Cow<'static, str>>,
        parent: &Context,
        attributes: Vec<KeyValue>,
    ) -> ActiveSpan {
        self.tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, parent)
    }
}

/// The trace id of a span, as 32 hex digits (for logs and audit events);
/// `None` when the span is not sampled.
pub fn trace_id(span: &ActiveSpan) -> Option<String> {
    use opentelemetry::trace::Span as _;
    let cx = span.span_context();
    (cx.is_valid() && cx.is_sampled()).then(|| cx.trace_id().to_string())
}

/// `tracestate` longer than this is ignored: it would ride on every span a
/// client can force to be sampled.
const MAX_TRACESTATE: usize = 512;

/// The W3C trace context from a request's `traceparent` and `tracestate`.
pub fn extract(traceparent: Option<&str>, tracestate: Option<&str>) -> Context {
    let tracestate = tracestate.filter(|t| t.len() <= MAX_TRACESTATE);
    struct Pair<'a>(Option<&'a str>, Option<&'a str>);
    impl Extractor for Pair<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            match key {
                "traceparent" => self.0,
                "tracestate" => self.1,
                _ => None,
            }
        }
        fn keys(&self) -> Vec<&str> {
            vec!["traceparent", "tracestate"]
        }
    }
    TraceContextPropagator::new().extract(&Pair(traceparent, tracestate))
}

/// Whether a context carries a remote parent (for tests and logs).
pub fn has_parent(cx: &Context) -> bool {
    cx.span().span_context().is_valid()
}

#[derive(Debug)]
struct ChannelProcessor {
    tx: mpsc::Sender<SpanData>,
}

impl SpanProcessor for ChannelProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        // Full queue (collector down or slow): drop rather than wait.
        let _ = self.tx.try_send(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

async fn export_loop(exporter: opentelemetry_otlp::SpanExporter, mut rx: mpsc::Receiver<SpanData>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::time::timeout(EXPORT_EVERY, rx.recv()).await;
        match first {
            Ok(Some(span)) => batch.push(span),
            Ok(None) => break,
            Err(_) => {}
        }
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(span) => batch.push(span),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        if let Err(e) = exporter.export(std::mem::take(&mut batch)).await {
            tracing::debug!(error = %e, "span export failed; spans dropped");
        }
    }
}
