//! Request-level limits that must hold for every route:
//! - bodies are read in full (up to the limit) before any handler runs, so a
//!   request refused early (401, 415, …) never leaves unread bytes behind,
//!   and an oversized one is drained before its 413 so a client on a
//!   keep-alive pool reads the answer instead of a connection reset;
//! - a body must arrive within `--client-timeout-secs` (slow-body clients);
//! - every error response is JSON, whichever layer produced it (axum's own
//!   query/path rejections included), and 5xx bodies carry no internals.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::http::error::ApiError;
use crate::AppState;

/// How much of an oversized body is read and discarded so the client can
/// finish sending and read the 413; past this the connection is closed.
const DRAIN_LIMIT: usize = 1024 * 1024;

pub async fn buffer_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let buffer = match read_bounded(&state, body).await {
        Ok(bytes) => bytes,
        Err(refused) => return refused,
    };
    let form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if holds_nul(&buffer, form) {
        return ApiError::bad_request("invalid_request", "the request body holds a NUL character")
            .into_response();
    }
    next.run(Request::from_parts(parts, Body::from(buffer)))
        .await
}

/// A body read in full, up to `--max-body-bytes` and within
/// `--client-timeout-secs`; else the answer for it (413 after draining,
/// 408, 400), which closes the connection where bytes were left unread.
pub async fn read_bounded(state: &AppState, body: Body) -> Result<Bytes, Response> {
    let limit = usize::try_from(state.settings.max_body_bytes).unwrap_or(16 * 1024);
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(state.settings.client_timeout_secs);
    let mut stream = body.into_data_stream();
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(None) => break,
            Ok(Some(Ok(chunk))) => {
                if buffer.len() + chunk.len() > limit {
                    let mut seen = buffer.len() + chunk.len();
                    let drained = loop {
                        match tokio::time::timeout_at(deadline, stream.next()).await {
                            Ok(None) => break true,
                            Ok(Some(Ok(more))) => {
                                seen += more.len();
                                if seen > DRAIN_LIMIT {
                                    break false;
                                }
                            }
                            _ => break false,
                        }
                    };
                    let refused = ApiError::new(
                        crate::service::error::Kind::TooLarge,
                        "payload_too_large",
                        format!("request body is larger than {limit} bytes"),
                    );
                    return Err(closing(refused.into_response(), !drained));
                }
                buffer.extend_from_slice(&chunk);
            }
            Ok(Some(Err(_))) => {
                let bad =
                    ApiError::bad_request("invalid_request", "request body could not be read");
                return Err(closing(bad.into_response(), true));
            }
            Err(_) => {
                let slow = ApiError::new(
                    crate::service::error::Kind::Timeout,
                    "request_timeout",
                    "request body did not arrive in time",
                );
                return Err(closing(slow.into_response(), true));
            }
        }
    }
    Ok(Bytes::from(buffer))
}

/// A NUL in a body, raw, as JSON's `\u0000` or (in a form) `%00`. No field
/// here may hold one, and PostgreSQL refuses it in text (found by fuzzing:
/// a NUL in a sign-in email or a name was a 500 on PostgreSQL only).
pub fn holds_nul(body: &[u8], form: bool) -> bool {
    let mut backslashes = 0usize;
    for (i, &b) in body.iter().enumerate() {
        match b {
            0 => return true,
            b'%' if form && body[i + 1..].starts_with(b"00") => return true,
            // An escape only when the backslash itself is not escaped.
            b'u' if backslashes % 2 == 1 && body[i + 1..].starts_with(b"0000") => return true,
            _ => {}
        }
        backslashes = if b == b'\\' { backslashes + 1 } else { 0 };
    }
    false
}

fn closing(mut response: Response, close: bool) -> Response {
    if close {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Refuses control characters, raw or percent-encoded, anywhere in the path
/// or query: no identifier here may hold one, and some would reach the
/// database as bytes it refuses (PostgreSQL and NUL), turning bad input
/// into a 5xx.
pub async fn no_control_characters(request: Request, next: Next) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("");
    if has_control(target) {
        return ApiError::bad_request(
            "invalid_request",
            "the path or query holds a control character",
        )
        .into_response();
    }
    if !canonical_path(request.uri().path()) {
        return ApiError::bad_request(
            "invalid_path",
            "the path is not canonical (encoded slash, dot or backslash, a dot segment, or an empty segment)",
        )
        .into_response();
    }
    next.run(request).await
}

/// A proxy in front (an ingress matching `/auth/` prefixes) may decode and
/// normalise a path before matching it and forward the raw one: then
/// `/admin/roles/..%2F..%2Fauth%2Fx` passes as `/auth/x` and lands here on
/// `/admin/roles/{role}`. No issuer path or identifier needs any of these,
/// so the router only ever sees paths every proxy reads the same way.
pub fn canonical_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    if ["%2f", "%2e", "%5c", "\\"]
        .iter()
        .any(|s| lower.contains(s))
    {
        return false;
    }
    path == "/"
        || path.strip_prefix('/').is_some_and(|rest| {
            rest.split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..")
        })
}

fn has_control(target: &str) -> bool {
    let bytes = target.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                i += 2;
                u8::from_str_radix(hex, 16).unwrap_or(b'%')
            }
            other => other,
        };
        if b < 0x20 || b == 0x7f {
            return true;
        }
        i += 1;
    }
    false
}

/// Rewrites any error response that is not already JSON into our format.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    // (HTML error pages are the issuer's own, for forms posted from its pages.)
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let code = match status {
        StatusCode::BAD_REQUEST => "invalid_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        s if s.is_server_error() => "internal_error",
        _ => "invalid_request",
    };
    let message = if status.is_server_error() || text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        String::from_utf8_lossy(&text).chars().take(300).collect()
    };
    let body = axum::Json(serde_json::json!({"error": code, "message": message}));
    let mut rewritten = (status, body).into_response();
    for name in [header::CONNECTION, header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            rewritten.headers_mut().insert(name, v.clone());
        }
    }
    rewritten
}

#[cfg(test)]
mod tests {

    #[test]
    fn nul_characters_are_found_in_every_encoding() {
        for bad in [
            &b"{\"email\":\"a\\u0000b\"}"[..],
            b"raw\0nul",
            b"{\"a\":\"\\\\\\u0000\"}",
        ] {
            assert!(holds_nul(bad, false), "{}", String::from_utf8_lossy(bad));
        }
        assert!(holds_nul(b"email=a%00b", true));
        assert!(
            !holds_nul(b"{\"password\":\"a%00b\"}", false),
            "text in JSON"
        );
        for ok in [
            &b"{\"email\":\"a@b.c\"}"[..],
            b"{\"a\":\"\\\\u0000\"}",
            b"{\"a\":\"\\u0041\"}",
            b"%41%30",
        ] {
            assert!(!holds_nul(ok, true), "{}", String::from_utf8_lossy(ok));
        }
    }

    #[test]
    fn only_canonical_paths_reach_the_router() {
        for ok in [
            "/",
            "/auth/login",
            "/admin/roles/team:x",
            "/admin/users/-abc",
            "/auth/x%20y",
        ] {
            assert!(canonical_path(ok), "{ok}");
        }
        for bad in [
            "/admin/roles/..%2F..%2Fauth%2Fx",
            "/admin/roles/%2e%2e",
            "/auth/../admin/keys",
            "/auth/./login",
            "/auth//login",
            "/auth/login/",
            "/auth\\login",
            "/auth/%5Clogin",
            "",
        ] {
            assert!(!canonical_path(bad), "{bad}");
        }
    }

    use super::{canonical_path, has_control, holds_nul};

    #[test]
    fn control_characters_are_found_raw_or_encoded() {
        for bad in [
            "/a%00b", "/a?x=%0A", "/a%1f", "/a%7F", "/a?q=%7f", "/a\u{1}",
        ] {
            assert!(has_control(bad), "{bad}");
        }
        for good in [
            "/a/b?x=1", "/a%20b", "/a%2Fb", "/a%", "/a%0", "/a%zz", "/%C3%A9",
        ] {
            assert!(!has_control(good), "{good}");
        }
    }
}
