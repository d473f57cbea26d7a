//! /health, /ready and /metrics on the admin port.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::authz::{now_ms, Authorizer};

pub fn router(authz: Arc<Authorizer>) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        // Every method: the proxy may forward the original one.
        .route("/authz", axum::routing::any(crate::forward::check))
        .with_state(authz)
}

async fn ready(State(authz): State<Arc<Authorizer>>) -> impl IntoResponse {
    if authz.is_ready(now_ms()) {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"error": "not_ready", "message": "no keys, no revocation snapshot, or state too stale"}),
            ),
        )
    }
}

async fn metrics(State(authz): State<Arc<Authorizer>>) -> impl IntoResponse {
    authz.update_age_metrics(now_ms());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        authz.metrics.render(),
    )
}
