//! Well-known documents and operational endpoints.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::http::error::ApiError;
use crate::AppState;

#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    operation_id = "ops_jwks",
    tag = "discovery",
    summary = "JSON Web Key Set",
    responses(
        (status = 200, description = "The public signing keys (RFC 7517)", content_type = "application/jwk-set+json", body = crate::http::openapi::AnyObject),
    ),
)]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let keys = state.keys.snapshot();
    let mut response = keys.jwks_json.clone().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    // Short, so a rotation is seen soon even through caches.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    response
}

/// Only what the API really offers. There is no OAuth authorization or
/// token endpoint (sign-in is `/auth/login`, refresh is `/auth/refresh`, both
/// JSON APIs of their own), no ID token and no RFC 7009 revocation endpoint,
/// so none is advertised: a client that trusted the document would fail.
#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    operation_id = "ops_openid_configuration",
    tag = "discovery",
    summary = "OpenID discovery",
    responses(
        (status = 200, description = "Discovery metadata", body = crate::http::openapi::AnyObject),
    ),
)]
pub async fn openid_configuration(State(state): State<AppState>) -> Json<serde_json::Value> {
    let base = &state.settings.issuer_url;
    Json(json!({
        "issuer": base,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "subject_types_supported": ["public"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "client_id", "roles", "permissions", "amr", "email", "user_gen"],
    }))
}

#[utoipa::path(
    get,
    path = "/health",
    operation_id = "ops_health",
    tag = "ops",
    summary = "Liveness",
    responses(
        (status = 200, description = "The process answers", body = crate::http::openapi::AnyObject),
    ),
)]
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(
    get,
    path = "/ready",
    operation_id = "ops_ready",
    tag = "ops",
    summary = "Readiness",
    responses(
        (status = 200, description = "Ready to serve", body = crate::http::openapi::AnyObject),
    ),
)]
pub async fn ready(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    state.ready().await?;
    Ok(Json(json!({"status": "ready"})))
}

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "ops_metrics",
    tag = "ops",
    summary = "Prometheus metrics",
    responses(
        (status = 200, description = "Prometheus text format, or OpenMetrics when asked for", content(
            (String = "text/plain"),
            (String = "application/openmetrics-text"),
        )),
    ),
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let now_secs = state.now().secs();
    let snapshot = state.keys.snapshot();
    state
        .metrics
        .signing_key_age_seconds
        .set((now_secs - snapshot.signing_created_at) as f64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        crate::service::error::Kind::MethodNotAllowed,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}
