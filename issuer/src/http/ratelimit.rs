//! The rate-limit layer: every `/auth/*` request counts against its route
//! class's budget for the client's IP (`--rate-limit-*`). Over budget: 429
//! with `Retry-After`; every limited answer carries the IETF `RateLimit`
//! and `RateLimit-Policy` headers.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::extract::Client;
use crate::config::ServeArgs;
use crate::domain::ratelimit::{Rate, Verdict};
use crate::http::error::ApiError;
use crate::service::metrics::ClassLabels;
use crate::AppState;

/// The class of a request and its rate, if it is limited at all.
pub fn classify(settings: &ServeArgs, method: &Method, path: &str) -> Option<(&'static str, Rate)> {
    // Preflights carry no credentials and must not eat the budget.
    if method == Method::OPTIONS || !path.starts_with("/auth/") {
        return None;
    }
    let (class, setting) = match path {
        // The hosted pages' forms count in the class of what they do.
        "/auth/login" | "/auth/ui/login" => ("login", settings.rate_limit_login),
        p if p.starts_with("/auth/github/") || p.starts_with("/auth/ui/github") => {
            ("login", settings.rate_limit_login)
        }
        "/auth/register" | "/auth/ui/register" => ("register", settings.rate_limit_register),
        "/auth/refresh"
        | "/auth/ui/resume"
        | "/auth/ui/logout"
        | "/auth/oauth2/token"
        | "/auth/oauth2/device_authorization"
        | "/auth/oauth2/revoke"
        | "/auth/oauth2/introspect" => ("refresh", settings.rate_limit_refresh),
        "/auth/password"
        | "/auth/password/forgot"
        | "/auth/password/reset"
        | "/auth/ui/password" => ("password", settings.rate_limit_password),
        "/auth/mfa/verify"
        | "/auth/mfa/step-up"
        | "/auth/mfa/enrol"
        | "/auth/mfa/enrol/confirm"
        | "/auth/ui/mfa"
        | "/auth/ui/mfa/enrol"
        | "/auth/ui/mfa/totp/confirm"
        // A user code is short: entering one is held back like a factor.
        | "/auth/ui/device"
        | "/auth/ui/device/answer"
        | "/auth/ui/passkeys/login/finish" => ("mfa", settings.rate_limit_mfa),
        p if p.starts_with("/auth/passkeys/login/") => ("mfa", settings.rate_limit_mfa),
        _ => ("other", settings.rate_limit_other),
    };
    setting.0.map(|rate| (class, rate))
}

fn headers(response: &mut Response, rate: Rate, verdict: Verdict) {
    let secs = |ms: i64| (ms.max(0) + 999) / 1000;
    let policy = format!("{};w={}", rate.limit, rate.period_ms / 1000);
    let state = format!(
        "limit={}, remaining={}, reset={}",
        rate.limit,
        verdict.remaining,
        secs(verdict.reset_ms)
    );
    let h = response.headers_mut();
    for (name, value) in [("ratelimit-policy", policy), ("ratelimit", state)] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
}

/// A device's poll (RFC 8628): the token endpoint with the device code
/// grant. Its pace is the device code's own (`slow_down`, per code, in the
/// store), and a whole login's polls would exceed the token endpoint's
/// budget, so it counts in a class of its own (`--rate-limit-device`).
fn device_poll(path: &str, body: &[u8]) -> bool {
    path == "/auth/oauth2/token"
        && oauth2::url::form_urlencoded::parse(body)
            .any(|(k, v)| k == "grant_type" && v == crate::domain::oauth::DEVICE_CODE)
}

pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some((class, rate)) = classify(&state.settings, request.method(), request.uri().path())
    else {
        return next.run(request).await;
    };
    // At the token endpoint only, the form is read (bounded, with the
    // client's deadline) to tell a device's polls apart; every other route
    // is limited before its body is read.
    let (parts, body) = request.into_parts();
    if parts.uri.path() != "/auth/oauth2/token" {
        return limited(state, Request::from_parts(parts, body), next, class, rate).await;
    }
    // Read as the body buffer reads it (same bound, deadline and answers);
    // the buffer then finds it whole.
    let bytes = match super::limits::read_bounded(&state, body).await {
        Ok(bytes) => bytes,
        Err(refused) => return refused,
    };
    let (class, rate) = match state.settings.rate_limit_device.0 {
        Some(device) if device_poll(parts.uri.path(), &bytes) => ("device", device),
        _ => (class, rate),
    };
    let request = Request::from_parts(parts, axum::body::Body::from(bytes));
    limited(state, request, next, class, rate).await
}

/// Counts `request` against `class` for its client's address.
async fn limited(
    state: AppState,
    request: Request,
    next: Next,
    class: &'static str,
    rate: Rate,
) -> Response {
    // A person at a page gets a page; the pages' script and clients, JSON.
    let page = request.uri().path().starts_with("/auth/ui/")
        && request
            .headers()
            .get_all(axum::http::header::ACCEPT)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("text/html")));
    let (mut parts, body) = request.into_parts();
    let client = Client::from_request_parts(&mut parts, &state)
        .await
        .unwrap_or_default();
    // Without an address (a Unix socket, a proxy that sent none), all such
    // callers share one budget: stricter, never unlimited.
    let ip = crate::domain::ratelimit::client_key(
        client.ip.as_deref().unwrap_or("unknown"),
        state.settings.rate_limit_ipv6_prefix,
    );
    let verdict = state
        .limiter
        .check(&format!("{class}:{ip}"), rate, state.now().ms)
        .await;
    if verdict.local && state.settings.redis_url.is_some() {
        state.metrics.rate_limit_local.inc();
    }
    if !verdict.allowed {
        state.limiter.note_refusal(class, &ip);
        state
            .metrics
            .rate_limited
            .get_or_create(&ClassLabels { class })
            .inc();
        let retry_after = u64::try_from((verdict.reset_ms + 999) / 1000)
            .unwrap_or(1)
            .max(1);
        let message = format!("too many requests; retry in {retry_after} s");
        let mut response = if page {
            super::pages::too_many(&message, retry_after)
        } else {
            let mut refused = ApiError::new(
                crate::service::error::Kind::TooMany,
                "rate_limited",
                message,
            );
            refused.retry_after = Some(retry_after);
            refused.into_response()
        };
        headers(&mut response, rate, verdict);
        return response;
    }
    let mut response = next.run(Request::from_parts(parts, body)).await;
    headers(&mut response, rate, verdict);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_fall_into_their_classes() {
        let settings = ServeArgs::with_database("sqlite::memory:");
        let class = |m: Method, p: &str| classify(&settings, &m, p).map(|(c, _)| c);
        for (path, want) in [
            ("/auth/login", Some("login")),
            ("/auth/github/callback", Some("login")),
            ("/auth/register", Some("register")),
            ("/auth/refresh", Some("refresh")),
            ("/auth/password", Some("password")),
            ("/auth/password/forgot", Some("password")),
            ("/auth/password/reset", Some("password")),
            ("/auth/mfa/verify", Some("mfa")),
            ("/auth/mfa/step-up", Some("mfa")),
            ("/auth/mfa/enrol/confirm", Some("mfa")),
            ("/auth/passkeys/login/finish", Some("mfa")),
            ("/auth/passkeys/register/start", Some("other")),
            ("/auth/ui/login", Some("login")),
            ("/auth/ui/register", Some("register")),
            ("/auth/ui/github", Some("login")),
            ("/auth/ui/github/link", Some("login")),
            ("/auth/ui/resume", Some("refresh")),
            ("/auth/ui/password", Some("password")),
            ("/auth/ui/mfa", Some("mfa")),
            ("/auth/ui/mfa/totp/confirm", Some("mfa")),
            ("/auth/ui/passkeys/login/finish", Some("mfa")),
            ("/auth/ui/account", Some("other")),
            ("/auth/me", Some("other")),
            ("/admin/users", None),
            ("/.well-known/jwks.json", None),
        ] {
            assert_eq!(class(Method::POST, path), want, "{path}");
        }
        assert_eq!(
            class(Method::OPTIONS, "/auth/login"),
            None,
            "preflights are free"
        );
    }
}
