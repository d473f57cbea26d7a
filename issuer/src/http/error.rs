//! The one place service errors become HTTP responses.
//!
//! Every error body is `{"error": code, "message": text}`. A 5xx body never
//! carries internals: the service logged the cause and kept it out.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

pub use crate::service::error::{Error as ApiError, Kind, Result as ApiResult};

/// The HTTP status of a kind of error.
pub fn status_of(kind: Kind) -> StatusCode {
    match kind {
        Kind::BadRequest => StatusCode::BAD_REQUEST,
        Kind::Unauthorized => StatusCode::UNAUTHORIZED,
        Kind::Forbidden => StatusCode::FORBIDDEN,
        Kind::NotFound => StatusCode::NOT_FOUND,
        Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Kind::Timeout => StatusCode::REQUEST_TIMEOUT,
        Kind::Conflict => StatusCode::CONFLICT,
        Kind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Kind::UnsupportedMedia => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Kind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        Kind::TooMany => StatusCode::TOO_MANY_REQUESTS,
        Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Kind::BadGateway => StatusCode::BAD_GATEWAY,
        Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.kind);
        let body = Json(json!({"error": self.code, "message": self.message}));
        let mut response = (status, body).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: tell bearer clients why their token was refused.
            let value = self.challenge.clone().unwrap_or_else(|| {
                format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    self.code
                )
            });
            if let Ok(v) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        response
    }
}

/// An OAuth endpoint's error (RFC 6749 §5.2): `{"error", "error_description"}`,
/// never cached; `invalid_client` carries the `Basic` challenge.
pub fn oauth_error(e: ApiError) -> Response {
    let status = status_of(e.kind);
    let body = Json(json!({"error": e.code, "error_description": e.message}));
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if status == StatusCode::UNAUTHORIZED {
        let value = e
            .challenge
            .clone()
            .unwrap_or_else(|| format!("Bearer error=\"{}\"", e.code));
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
    }
    if status == StatusCode::FORBIDDEN && e.code == "insufficient_scope" {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"insufficient_scope\", scope=\"openid\""),
        );
    }
    response
}
