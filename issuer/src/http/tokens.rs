//! A sign-in's outcome as an HTTP answer: tokens (JSON, the refresh cookie,
//! `no-store`), or the ticket for a second factor or an enrolment.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use crate::service::grant::{Delivery, SignIn, Tokens, REFRESH_COOKIE};

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    /// Absent for a browser (it holds the refresh token in the `HttpOnly`
    /// cookie, where no script can read it).
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    session_id: String,
    /// After an enrolment that completed the sign-in: shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    recovery_codes: Option<Vec<String>>,
}

/// The refresh cookie for `token`, living `max_age` seconds.
pub fn refresh_cookie(token: &str, max_age: i64) -> String {
    format!(
        "{REFRESH_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    )
}

/// Tokens as the JSON answer, with recovery codes when an enrolment
/// completed the sign-in.
pub fn tokens_answer(tokens: Tokens, recovery_codes: Option<Vec<String>>) -> Response {
    let cookie = tokens
        .refresh
        .as_ref()
        .map(|r| refresh_cookie(&r.token, r.max_age));
    let body = TokenResponse {
        access_token: tokens.access_token,
        token_type: "Bearer",
        expires_in: tokens.expires_in,
        refresh_token: tokens
            .refresh
            .filter(|r| r.delivery == Delivery::CookieAndBody)
            .map(|r| r.token),
        session_id: tokens.session_id,
        recovery_codes,
    };
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(v) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::SET_COOKIE, v);
    }
    response
}

impl IntoResponse for Tokens {
    fn into_response(self) -> Response {
        tokens_answer(self, None)
    }
}

impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            SignIn::Tokens(tokens) => return tokens.into_response(),
            SignIn::SecondFactor {
                ticket,
                methods,
                expires_in,
            } => (
                StatusCode::UNAUTHORIZED,
                json!({
                    "error": "mfa_required",
                    "message": "a second factor is required: POST it with this ticket to /auth/mfa/verify",
                    "mfa_ticket": ticket,
                    "methods": methods,
                    "expires_in": expires_in,
                }),
            ),
            SignIn::Enrol { ticket, expires_in } => (
                StatusCode::FORBIDDEN,
                json!({
                    "error": "mfa_enrollment_required",
                    "message": "your role needs a second factor: set one up with this ticket at /auth/mfa/enrol",
                    "mfa_ticket": ticket,
                    "expires_in": expires_in,
                }),
            ),
        };
        no_store((status, Json(body)).into_response())
    }
}

/// An answer carrying a secret (a ticket, a TOTP secret, codes): never cached.
pub fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// No content, and the refresh cookie cleared (the session ended).
pub fn clear_cookie_response() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "__Host-refresh_token=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}
