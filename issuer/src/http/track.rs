//! Every request, by route template: its span and its metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::service::metrics::{RequestLabels, RouteLabels};
use crate::AppState;

/// The trace id of the request's span, when it is sampled.
#[derive(Debug, Clone)]
pub struct TraceId(pub String);

/// Records every request by its route template (not the raw path, which
/// would let clients create unbounded label values).
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    // Labels never take raw client input: a client inventing methods must
    // not be able to grow the metric set without bound.
    let method = match request.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m,
        _ => "other",
    }
    .to_string();
    let started = Instant::now();
    // One span per request, continuing the caller's trace (Envoy's); its id
    // rides in the request for the audit trail.
    let mut request = request;
    let mut span = state.tracing.as_ref().map(|t| {
        let h = request.headers();
        let value = |k: &str| h.get(k).and_then(|v| v.to_str().ok());
        t.server_span(
            format!("{method} {route}"),
            &telemetry::extract(value("traceparent"), value("tracestate")),
            vec![
                telemetry::Attribute::new("http.request.method", method.clone()),
                telemetry::Attribute::new("http.route", route.clone()),
            ],
        )
    });
    let trace_id = span.as_ref().and_then(telemetry::trace_id);
    if let Some(id) = &trace_id {
        request.extensions_mut().insert(TraceId(id.clone()));
    }
    // Log lines written while handling the request carry its trace id (the
    // JSON format shows the current span's fields).
    let response = match trace_id {
        Some(id) => {
            use tracing::Instrument;
            next.run(request)
                .instrument(tracing::info_span!("request", trace_id = %id))
                .await
        }
        None => next.run(request).await,
    };
    if let Some(span) = span.as_mut() {
        use telemetry::SpanApi;
        span.set_attribute(telemetry::Attribute::new(
            "http.response.status_code",
            i64::from(response.status().as_u16()),
        ));
    }
    let metrics = &state.metrics;
    metrics
        .latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
