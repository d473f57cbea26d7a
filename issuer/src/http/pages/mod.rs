//! Hosted pages: sign-in (password, then a second factor), the account page
//! (sessions, sign-out, TOTP enrolment) and the admin's user list. Server-
//! rendered HTML (maud, escaped by default), forms; the one script is what
//! WebAuthn needs (passkeys), and everything else works without it.
//!
//! Each page action calls the service that the JSON handler for the same
//! thing calls, so a sign-in here ends in the one session-issuing path, and
//! every rule (MFA, disabled users, recent authentication, audit) is the
//! service's. Pages never call a JSON handler or read its answer. The browser
//! holds the refresh cookie and the access token in `__Secure-page_token`
//! (HttpOnly, Secure, SameSite=Strict, Path=/auth/ui); forms are protected by
//! SameSite and by `browser::csrf`, which requires every unsafe request here
//! to come from the pages themselves (Sec-Fetch-Site, or Origin), with or
//! without cookies, so a foreign page cannot sign a browser in (login CSRF).

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Deserialize;
use serde_json::Value;

use crate::http::error::ApiError;
use crate::http::extract::cookie_value;
use crate::http::extract::{ApiJson, Authenticated, Client};
use crate::service::grant::REFRESH_COOKIE;
use crate::service::grant::{SignIn, Tokens};
use crate::AppState;

mod account;
mod admin;
mod clients;
mod device;
mod github;
mod mfa;
mod oauth;
mod passkeys;
mod signin;
mod tokens;

pub use account::*;
pub use admin::*;
pub use clients::*;
pub use device::*;
pub use github::*;
pub use mfa::*;
pub use oauth::*;
pub use passkeys::*;
pub use signin::*;
pub use tokens::*;

/// `__Secure-` with `Path=/auth/ui`, not `__Host-` (which forces `Path=/`):
/// behind one proxy the applications share the pages' origin, and this
/// credential must not travel to them with every request.
pub const PAGE_COOKIE: &str = "__Secure-page_token";
const PAGE_COOKIE_PATH: &str = "/auth/ui";

/// Pages may load their stylesheet and their one script (passkeys), call
/// their own origin and post forms to themselves; nothing inline, no frames,
/// no other origin.
const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
base-uri 'none'";

const STYLE: &str = "\
:root{color-scheme:light dark;font-family:system-ui,sans-serif;line-height:1.5}\
body{margin:0 auto;max-width:40rem;padding:1rem}\
label{display:block;margin:.75rem 0 .25rem}\
input,textarea{font:inherit;padding:.5rem;width:100%;box-sizing:border-box}\
button{font:inherit;padding:.5rem 1rem;margin:.5rem .5rem .5rem 0;cursor:pointer}\
:focus-visible{outline:3px solid #2563eb;outline-offset:2px}\
.error{color:#b91c1c;border-left:4px solid #b91c1c;padding-left:.5rem}\
@media (prefers-color-scheme:dark){.error{color:#fca5a5;border-color:#fca5a5}}\
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.25rem;border-bottom:1px solid #8884}\
.qr svg{width:12rem;height:12rem;background:#fff}\
code{word-break:break-all}nav a{margin-right:1rem}\
.visually-hidden{position:absolute;left:-9999px}form.inline{display:inline}\
input.short{width:auto;max-width:14rem}select{font:inherit;padding:.4rem}\
dt{font-weight:600}dd{margin:0 0 .5rem 1rem}";

pub(crate) fn page(title: &str, body: Markup) -> Response {
    layout(title, None, body)
}

/// `YYYY-MM-DD` (UTC) of a time in Unix seconds.
fn utc_date(secs: i64) -> String {
    crate::domain::clock::civil_date(secs.div_euclid(86_400))
}

/// A page that moves on to `to` by itself (and says so, with a link). Where
/// a cross-site redirect chain lands (GitHub's callback), this navigation
/// starts from our own page, so the SameSite=Strict cookies it has just
/// set come with it.
fn landing(title: &str, message: &str, to: &str) -> Response {
    layout(
        title,
        Some(to),
        html! { p { (message) " " a href=(to) { "Continue" } } },
    )
}

fn layout(title: &str, refresh_to: Option<&str>, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — DevMentor" }
                link rel="stylesheet" href="/auth/ui/style.css";
                // No favicon request.
                link rel="icon" href="data:,";
                @if let Some(to) = refresh_to {
                    meta http-equiv="refresh" content={ "0;url=" (to) };
                }
                script src="/auth/ui/passkeys.js" defer {}
            }
            body {
                main { h1 { (title) } (body) }
            }
        }
    };
    let mut response = (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    // Forms then carry `Origin` (the CSRF check's fallback to fetch metadata).
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// The rate limiter's refusal, as a page (with `Retry-After`).
pub(crate) fn too_many(message: &str, retry_after: u64) -> Response {
    let mut response = with_status(
        page(
            "Too many attempts",
            html! {
                (error_box(Some(&format!("Too many attempts from your address: {message}."))))
                p { a href="/auth/ui/login" { "Back to sign-in" } }
            },
        ),
        StatusCode::TOO_MANY_REQUESTS,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

fn with_status(mut response: Response, status: StatusCode) -> Response {
    *response.status_mut() = status;
    response
}

fn error_box(message: Option<&str>) -> Markup {
    html! {
        @if let Some(m) = message {
            p.error role="alert" { (m) }
        }
    }
}

/// The access token of the page session, as a bearer credential for the
/// API's own `Authenticated` check.
///
/// It counts only beside the refresh cookie of its own session: a sibling
/// subdomain can plant a `__Secure-` cookie (`Domain=`, a longer `Path`)
/// to make the pages act on the planter's account, but never a `__Host-`
/// one.
async fn page_auth(state: &AppState, headers: &HeaderMap) -> Result<Authenticated, ApiError> {
    // `authenticate` is the same check the API's bearer extractor makes.
    let signed_out = || ApiError::unauthorized("missing_token", "not signed in");
    let token = cookie_value(headers, PAGE_COOKIE).ok_or_else(signed_out)?;
    let refresh = cookie_value(headers, REFRESH_COOKIE).ok_or_else(signed_out)?;
    crate::service::context::authenticate_with_refresh(state, &token, &refresh)
        .await?
        .ok_or_else(signed_out)
}

/// A refusal's HTTP status.
fn status_of(e: &ApiError) -> StatusCode {
    crate::http::error::status_of(e.kind)
}

/// A page naming what the service refused, with its status.
async fn error_page(title: &str, e: ApiError) -> Response {
    with_retry_after(
        with_status(page(title, error_box(Some(&e.message))), status_of(&e)),
        e.retry_after,
    )
}

/// A refusal's `Retry-After`, kept on the page that tells of it.
fn with_retry_after(mut response: Response, secs: Option<u64>) -> Response {
    if let Some(secs) = secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// A form's outcome: back to `to` when the handler did it, else the error.
async fn back_or_error<T>(result: Result<T, ApiError>, title: &str, to: &str) -> Response {
    match result {
        Ok(_) => Redirect::to(to).into_response(),
        Err(e) => error_page(title, e).await,
    }
}

fn to_login() -> Response {
    Redirect::to("/auth/ui/login").into_response()
}

const ACCOUNT: &str = "/auth/ui/account";

/// Where a finished sign-in goes: `return_to` when it is on an allowed
/// origin (`--allowed-return-origins`, the check GitHub's `return_to` has),
/// else the account page.
fn destination(state: &AppState, return_to: Option<&str>) -> Result<String, ApiError> {
    match return_to {
        None => Ok(ACCOUNT.to_string()),
        Some(r) => crate::service::redirects::allowed_page_return_to(state, r),
    }
}

/// Signed in: the refresh cookie, the page cookie, then on to `to`.
/// Our own pages by redirect; anywhere else by a page that goes on by
/// itself, because the pages' CSP (`form-action 'self'`) also holds a
/// form's redirects to our own origin.
fn signed_in(state: &AppState, tokens: &Tokens, to: &str) -> Response {
    // The authorization endpoint answers with a redirect to the client's
    // origin, which `form-action 'self'` would block at the end of this
    // form's redirect chain: a page goes on to it instead.
    let next = if to.starts_with("/auth/ui/")
        && !to.starts_with(crate::service::oauth::authorize::AUTHORIZE_PATH)
    {
        Redirect::to(to).into_response()
    } else {
        landing("Signed in", "Signed in.", to)
    };
    let refresh: Vec<String> = tokens
        .refresh
        .iter()
        .map(|r| crate::http::tokens::refresh_cookie(&r.token, r.max_age))
        .collect();
    let mut response = with_cookies(next, &refresh);
    let h = response.headers_mut();
    let token = &tokens.access_token;
    let cookie = format!(
        "{PAGE_COOKIE}={token}; Path={PAGE_COOKIE_PATH}; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        state.settings.keys.access_token_ttl
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        h.append(header::SET_COOKIE, v);
    }
    response
}

/// The session of the browser's refresh cookie, through one rotation (the
/// next refresh token goes in the cookie only); `None` without a cookie or
/// when the refresh is refused.
async fn refresh_cookie_session(
    state: &AppState,
    client: &Client,
    headers: &HeaderMap,
) -> Option<Tokens> {
    let presented = cookie_value(headers, REFRESH_COOKIE)?;
    let delivery = crate::service::grant::Delivery::CookieOnly;
    crate::service::sessions::refresh(state, client, &presented, delivery, None)
        .await
        .ok()
}

/// A query-string or path component, percent-encoded (all but unreserved).
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `response` setting `cookies` (as another answer of ours set them).
fn with_cookies(mut response: Response, cookies: &[String]) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// `response` with the cookies `from` sets (a page answering what another
/// answer of ours decided about the session).
fn with_cookies_of(mut response: Response, from: &Response) -> Response {
    for c in from.headers().get_all(header::SET_COOKIE) {
        response.headers_mut().append(header::SET_COOKIE, c.clone());
    }
    response
}

fn signed_out() -> Response {
    let mut response = Redirect::to("/auth/ui/login").into_response();
    for (name, path) in [(PAGE_COOKIE, PAGE_COOKIE_PATH), (REFRESH_COOKIE, "/")] {
        let cookie = format!("{name}=; Path={path}; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

#[utoipa::path(get, path = "/auth/ui/style.css", operation_id = "pages_style", tag = "pages",
    summary = "The pages' stylesheet",
    responses((status = 200, description = "CSS", content_type = "text/css", body = String)))]
pub async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

/// A JSON answer for the script, with the handler's status.
fn json_answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}
