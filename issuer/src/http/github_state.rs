//! The GitHub sign-in's state cookie: the sealed state that
//! `service::github` made, carried by the browser to GitHub and back. Both
//! the JSON API and the pages start sign-ins, so both set it.

use axum::http::HeaderValue;

use crate::http::error::{ApiError, ApiResult};

pub const GITHUB_COOKIE: &str = "__Host-github_oauth";

/// The cookie carrying `value` for `max_age` seconds (0 clears it).
pub fn state_cookie(value: &str, max_age: i64) -> ApiResult<HeaderValue> {
    // Lax, not Strict: the callback is a top-level navigation from GitHub,
    // and a Strict cookie would not come with it.
    HeaderValue::from_str(&format!(
        "{GITHUB_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}"
    ))
    .map_err(ApiError::internal)
}
