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

/// Only what the issuer really offers (a client that trusted more would
/// fail): the authorization code flow with PKCE S256, the token endpoint
/// with client secrets, `private_key_jwt` or none, ID tokens signed with RS256 (OIDC Core
/// §15.1; a key of their own while access tokens use another algorithm),
/// and `userinfo`.
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
        "authorization_endpoint": format!("{base}/auth/ui/authorize"),
        "token_endpoint": format!("{base}/auth/oauth2/token"),
        "userinfo_endpoint": format!("{base}/auth/oauth2/userinfo"),
        "revocation_endpoint": format!("{base}/auth/oauth2/revoke"),
        "introspection_endpoint": format!("{base}/auth/oauth2/introspect"),
        "device_authorization_endpoint": format!("{base}/auth/oauth2/device_authorization"),
        "end_session_endpoint": format!("{base}/auth/ui/logout/end"),
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "revocation_endpoint_auth_signing_alg_values_supported": ["ES256", "EdDSA", "RS256"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "introspection_endpoint_auth_signing_alg_values_supported": ["ES256", "EdDSA", "RS256"],
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            crate::domain::oauth::TOKEN_EXCHANGE,
            crate::domain::oauth::DEVICE_CODE,
            crate::domain::oauth::JWT_BEARER
        ],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "EdDSA", "RS256"],
        "dpop_signing_alg_values_supported": auth_types::dpop::ALGS,
        "scopes_supported": crate::domain::oauth::KNOWN_SCOPES,
        "prompt_values_supported": ["none", "login", "consent"],
        "acr_values_supported": [crate::domain::mfa::ACR_ONE_FACTOR, crate::domain::mfa::ACR_TWO_FACTORS],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "claims_parameter_supported": false,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid", "at_hash", "email", "email_verified", "name", "picture"],
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
