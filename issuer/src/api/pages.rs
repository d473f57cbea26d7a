//! Hosted pages: sign-in (password, then a second factor), the account page
//! (sessions, sign-out, TOTP enrolment) and the admin's user list. Server-
//! rendered HTML (maud, escaped by default), forms; the one script is what
//! WebAuthn needs (passkeys), and everything else works without it.
//!
//! Each page action calls the JSON handler that does the same thing, so a
//! sign-in here ends in the one session-issuing path, and every rule (MFA,
//! disabled users, recent authentication, audit) is the API's. The browser
//! holds the refresh cookie and the access token in `__Secure-page_token`
//! (HttpOnly, Secure, SameSite=Strict, Path=/auth/ui); forms are protected by
//! SameSite and by `browser::csrf`, which requires every unsafe request here
//! to come from the pages themselves (Sec-Fetch-Site, or Origin), with or
//! without cookies, so a foreign page cannot sign a browser in (login CSRF).

use axum::body::to_bytes;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Deserialize;
use serde_json::Value;

use super::extract::{ApiJson, Authenticated, Client};
use super::grant::REFRESH_COOKIE;
use super::sessions::cookie_value;
use crate::error::ApiError;
use crate::AppState;

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
input{font:inherit;padding:.5rem;width:100%;box-sizing:border-box}\
button{font:inherit;padding:.5rem 1rem;margin:.5rem .5rem .5rem 0;cursor:pointer}\
:focus-visible{outline:3px solid #2563eb;outline-offset:2px}\
.error{color:#b91c1c;border-left:4px solid #b91c1c;padding-left:.5rem}\
@media (prefers-color-scheme:dark){.error{color:#fca5a5;border-color:#fca5a5}}\
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.25rem;border-bottom:1px solid #8884}\
.qr svg{width:12rem;height:12rem;background:#fff}\
code{word-break:break-all}nav a{margin-right:1rem}\
.visually-hidden{position:absolute;left:-9999px}form.inline{display:inline}";

fn page(title: &str, body: Markup) -> Response {
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
async fn page_auth(state: &AppState, headers: &HeaderMap) -> Result<Authenticated, ApiError> {
    let token = cookie_value(headers, PAGE_COOKIE)
        .ok_or_else(|| ApiError::unauthorized("missing_token", "not signed in"))?;
    let mut builder = Request::builder().header(header::AUTHORIZATION, format!("Bearer {token}"));
    for name in [
        header::USER_AGENT,
        header::HeaderName::from_static("traceparent"),
    ] {
        if let Some(v) = headers.get(&name) {
            builder = builder.header(name, v.clone());
        }
    }
    let (mut parts, ()) = builder.body(()).map_err(ApiError::internal)?.into_parts();
    Authenticated::from_request_parts(&mut parts, state).await
}

async fn json_of(response: Response) -> (StatusCode, Vec<String>, Value) {
    let status = response.status();
    let cookies = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let body = to_bytes(response.into_body(), 1 << 20)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    (status, cookies, body)
}

/// A page naming what the handler refused, with its status.
async fn error_page(title: &str, e: ApiError) -> Response {
    let (status, _, body) = json_of(e.into_response()).await;
    with_status(page(title, error_box(Some(&message_of(&body)))), status)
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

fn message_of(body: &Value) -> String {
    body["message"]
        .as_str()
        .unwrap_or("something went wrong")
        .to_string()
}

/// Signed in: the API's refresh cookie, the page cookie, then the account.
fn signed_in(state: &AppState, cookies: Vec<String>, body: &Value) -> Response {
    let mut response = Redirect::to("/auth/ui/account").into_response();
    let h = response.headers_mut();
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    let token = body["access_token"].as_str().unwrap_or_default();
    let cookie = format!(
        "{PAGE_COOKIE}={token}; Path={PAGE_COOKIE_PATH}; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        state.settings.keys.access_token_ttl
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        h.append(header::SET_COOKIE, v);
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

fn login_form(error: Option<&str>, email: &str, resume: bool, github: bool) -> Markup {
    html! {
        (error_box(error))
        @if resume {
            form method="post" action="/auth/ui/resume" {
                button type="submit" { "Continue where you left off" }
            }
        }
        form method="post" action="/auth/ui/login" {
            label for="email" { "Email" }
            input id="email" name="email" type="email" autocomplete="username" required value=(email);
            label for="password" { "Password" }
            input id="password" name="password" type="password" autocomplete="current-password" required;
            button type="submit" { "Sign in" }
        }
        @if github {
            p { a href="/auth/github/login" { "Sign in with GitHub" } }
        }
        p { button type="button" data-passkey="sign-in" hidden { "Sign in with a passkey" } }
        p.error id="passkey-error" role="alert" hidden {}
        p { a href="/auth/ui/forgot" { "Forgot your password?" } " · " a href="/auth/ui/register" { "Create an account" } }
    }
}

#[utoipa::path(get, path = "/auth/ui/login", operation_id = "pages_login_page", tag = "pages",
    summary = "Sign-in page",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let resume = cookie_value(&headers, REFRESH_COOKIE).is_some();
    page(
        "Sign in",
        login_form(None, "", resume, state.github.is_some()),
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginForm {
    email: String,
    password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct MfaForm {
    mfa_ticket: String,
    code: String,
}

fn mfa_form(ticket: &str, error: Option<&str>) -> Markup {
    html! {
        (error_box(error))
        p { "Enter the 6-digit code from your authenticator app, or a recovery code." }
        form method="post" action="/auth/ui/mfa" {
            input type="hidden" name="mfa_ticket" value=(ticket);
            label for="code" { "Code" }
            input id="code" name="code" autocomplete="one-time-code" required autofocus;
            button type="submit" { "Verify" }
        }
    }
}

#[utoipa::path(post, path = "/auth/ui/login", operation_id = "pages_login", tag = "pages",
    summary = "Sign in from the page",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed in: to the account page"),
        (status = 200, description = "The second-factor page", content_type = "text/html", body = String),
    ))]
pub async fn login(
    State(state): State<AppState>,
    client: Client,
    Form(form): Form<LoginForm>,
) -> Response {
    let request = super::auth::LoginRequest {
        email: form.email.clone(),
        password: form.password,
    };
    let response = super::auth::login(State(state.clone()), client, ApiJson(request))
        .await
        .unwrap_or_else(IntoResponse::into_response);
    let (status, cookies, body) = json_of(response).await;
    if status.is_success() {
        return signed_in(&state, cookies, &body);
    }
    if body["error"] == "mfa_required" {
        let ticket = body["mfa_ticket"].as_str().unwrap_or_default();
        return page("Second factor", mfa_form(ticket, None));
    }
    if body["error"] == "mfa_enrollment_required" {
        let ticket = body["mfa_ticket"].as_str().unwrap_or_default();
        return required_enrolment(&state, ticket).await;
    }
    with_status(
        page(
            "Sign in",
            login_form(
                Some(&message_of(&body)),
                &form.email,
                false,
                state.github.is_some(),
            ),
        ),
        status,
    )
}

#[utoipa::path(post, path = "/auth/ui/mfa", operation_id = "pages_mfa", tag = "pages",
    summary = "Complete a sign-in with a code",
    request_body(content = MfaForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed in: to the account page"),
    ))]
pub async fn mfa(
    State(state): State<AppState>,
    client: Client,
    Form(form): Form<MfaForm>,
) -> Response {
    let code = form.code.trim().to_string();
    // A recovery code is long and dashed; a TOTP code is six digits.
    let recovery = code.len() > 8;
    let request = super::mfa::VerifyRequest {
        mfa_ticket: form.mfa_ticket.clone(),
        code: (!recovery).then(|| code.clone()),
        recovery_code: recovery.then_some(code),
    };
    let response = super::mfa::verify(State(state.clone()), client, ApiJson(request))
        .await
        .unwrap_or_else(IntoResponse::into_response);
    let (status, cookies, body) = json_of(response).await;
    if status.is_success() {
        return signed_in(&state, cookies, &body);
    }
    with_status(
        page(
            "Second factor",
            mfa_form(&form.mfa_ticket, Some(&message_of(&body))),
        ),
        status,
    )
}

#[utoipa::path(post, path = "/auth/ui/resume", operation_id = "pages_resume", tag = "pages",
    summary = "Continue the session of the refresh cookie",
    responses((status = 303, description = "To the account page, or to sign-in")))]
pub async fn resume(State(state): State<AppState>, client: Client, headers: HeaderMap) -> Response {
    let response = super::sessions::refresh(
        State(state.clone()),
        client,
        headers,
        axum::body::Bytes::new(),
    )
    .await
    .unwrap_or_else(IntoResponse::into_response);
    let (status, cookies, body) = json_of(response).await;
    if status.is_success() {
        signed_in(&state, cookies, &body)
    } else {
        signed_out()
    }
}

#[utoipa::path(get, path = "/auth/ui/account", operation_id = "pages_account", tag = "pages",
    summary = "Account page: sessions, second factors",
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: to the sign-in page"),
    ))]
pub async fn account(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    let email = auth.user.email.clone();
    let admin = auth.user.roles.iter().any(|r| r == "admin");
    let current = auth.session.id.clone();
    let (_, _, sessions) = match super::sessions::sessions(State(state.clone()), auth.clone()).await
    {
        Ok(j) => (StatusCode::OK, Vec::new(), j.0),
        Err(e) => json_of(e.into_response()).await,
    };
    let totp = super::mfa::status(State(state.clone()), auth.clone())
        .await
        .map(|j| j.0["totp"] == true)
        .unwrap_or(false);
    let passkeys = super::passkeys::list(State(state.clone()), auth)
        .await
        .map(|j| j.0["passkeys"].as_array().cloned().unwrap_or_default())
        .unwrap_or_default();
    let empty = Vec::new();
    let list = sessions["sessions"].as_array().unwrap_or(&empty);
    page(
        "Your account",
        html! {
            @if admin { nav { a href="/auth/ui/admin" { "Administration" } } }
            p { "Signed in as " strong { (email) } "." }
            form method="post" action="/auth/ui/logout" {
                button type="submit" { "Sign out" }
            }
            h2 { "Active sessions" }
            table {
                thead { tr { th { "Device" } th { "IP" } th { "Last seen" } th { span.visually-hidden { "Action" } } } }
                tbody {
                    @for s in list {
                        @let id = s["id"].as_str().unwrap_or_default();
                        tr data-session=(id) {
                            td { (s["user_agent"].as_str().unwrap_or("unknown device")) }
                            td { (s["ip"].as_str().unwrap_or("")) }
                            @let seen = crate::store::rfc3339_ms(s["last_used_at"].as_i64().unwrap_or(0) * 1000);
                            td { time datetime=(seen) { (seen.get(..16).unwrap_or(&seen).replace('T', " ")) " UTC" } }
                            td {
                                @if id == current {
                                    "this session"
                                } @else {
                                    form method="post" action={ "/auth/ui/sessions/" (id) "/end" } {
                                        button type="submit" aria-label={ "End the session of " (s["user_agent"].as_str().unwrap_or("an unknown device")) " at " (s["ip"].as_str().unwrap_or("an unknown address")) } { "End" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Passkeys" }
            ul id="passkeys" {
                @for k in passkeys.iter() {
                    li {
                        (k["name"].as_str().unwrap_or("passkey")) " "
                        form.inline method="post" action={ "/auth/ui/passkeys/" (k["id"].as_str().unwrap_or_default()) "/delete" } {
                            button type="submit" aria-label={ "Remove passkey " (k["name"].as_str().unwrap_or("passkey")) } { "Remove" }
                        }
                    }
                }
            }
            p { button type="button" data-passkey="add" hidden { "Add a passkey" } }
            p.error id="passkey-error" role="alert" hidden {}
            h2 { "Password" }
            form method="post" action="/auth/ui/password" {
                label for="current_password" { "Current password" }
                input id="current_password" name="current_password" type="password" autocomplete="current-password" required;
                label for="new_password" { "New password" }
                input id="new_password" name="new_password" type="password" autocomplete="new-password" minlength="8" required;
                button type="submit" { "Change password" }
            }
            h2 { "Two-factor authentication" }
            @if totp {
                p id="totp-status" { "An authenticator app is set up." }
            } @else {
                p id="totp-status" { "No authenticator app yet." }
                form method="post" action="/auth/ui/mfa/totp" {
                    button type="submit" { "Set up an authenticator app" }
                }
            }
        },
    )
}

#[utoipa::path(post, path = "/auth/ui/logout", operation_id = "pages_logout", tag = "pages",
    summary = "Sign out", responses((status = 303, description = "To the sign-in page")))]
pub async fn logout(State(state): State<AppState>, client: Client, headers: HeaderMap) -> Response {
    let auth = match page_auth(&state, &headers).await {
        Ok(auth) => Some(auth),
        // The page token has expired: the refresh cookie still names the
        // session, which must end too (a shared computer).
        Err(_) => refreshed_auth(&state, &client, &headers).await,
    };
    if let Some(auth) = auth {
        let _ = super::sessions::logout(State(state.clone()), client, auth).await;
    }
    signed_out()
}

/// The session of the refresh cookie, through one rotation.
async fn refreshed_auth(
    state: &AppState,
    client: &Client,
    headers: &HeaderMap,
) -> Option<Authenticated> {
    cookie_value(headers, REFRESH_COOKIE)?;
    let response = super::sessions::refresh(
        State(state.clone()),
        client.clone(),
        headers.clone(),
        axum::body::Bytes::new(),
    )
    .await
    .ok()?;
    let (status, _, body) = json_of(response).await;
    let token = body["access_token"]
        .as_str()
        .filter(|_| status.is_success())?;
    let mut with_token = HeaderMap::new();
    let cookie = format!("{PAGE_COOKIE}={token}");
    with_token.insert(header::COOKIE, HeaderValue::from_str(&cookie).ok()?);
    page_auth(state, &with_token).await.ok()
}

#[utoipa::path(post, path = "/auth/ui/sessions/{id}/end", operation_id = "pages_end_session",
    tag = "pages", summary = "End one of your sessions",
    params(("id" = String, Path, description = "The session's id")),
    responses((status = 303, description = "Back to the account page")))]
pub async fn end_session(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    back_or_error(
        super::sessions::delete_session(State(state.clone()), client, auth, Path(id)).await,
        "Your account",
        "/auth/ui/account",
    )
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CodeForm {
    code: String,
}

#[utoipa::path(post, path = "/auth/ui/mfa/totp", operation_id = "pages_totp", tag = "pages",
    summary = "Start setting up an authenticator app",
    responses((status = 200, description = "The QR code and the secret", content_type = "text/html", body = String)))]
pub async fn totp(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    let response = super::mfa::enrol_totp(State(state.clone()), auth)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    let (status, _, body) = json_of(response).await;
    if !status.is_success() {
        return with_status(
            page("Authenticator app", error_box(Some(&message_of(&body)))),
            status,
        );
    }
    page(
        "Authenticator app",
        totp_offer(&body, "/auth/ui/mfa/totp/confirm", None),
    )
}

/// The secret as QR code and text, and the form that confirms it (with the
/// enrolment ticket when there is no session yet).
fn totp_offer(body: &Value, action: &str, ticket: Option<&str>) -> Markup {
    let secret = body["secret"].as_str().unwrap_or_default();
    // Our own SVG, from the qrcode crate: markup we made, not input.
    let qr = body["qr_svg"].as_str().unwrap_or_default();
    html! {
        p { "Scan the code with your authenticator app, or type the secret." }
        div.qr role="img" aria-label="QR code of the secret" { (PreEscaped(qr)) }
        p { "Secret: " code id="secret" { (secret) } }
        form method="post" action=(action) {
            @if let Some(t) = ticket { input type="hidden" name="mfa_ticket" value=(t); }
            label for="code" { "Code from the app" }
            input id="code" name="code" autocomplete="one-time-code" required;
            button type="submit" { "Turn on" }
        }
    }
}

/// A role that requires a second factor, and none yet: enrol with the
/// sign-in's ticket, then the sign-in completes.
async fn required_enrolment(state: &AppState, ticket: &str) -> Response {
    let request = super::mfa::TicketRequest {
        mfa_ticket: ticket.to_string(),
        code: None,
    };
    let response = super::mfa::enrol_with_ticket(State(state.clone()), ApiJson(request))
        .await
        .unwrap_or_else(IntoResponse::into_response);
    let (status, _, body) = json_of(response).await;
    if !status.is_success() {
        return with_status(
            page("Authenticator app", error_box(Some(&message_of(&body)))),
            status,
        );
    }
    page(
        "Set up an authenticator app",
        html! {
            p { "Your role needs a second factor before you can sign in." }
            (totp_offer(&body, "/auth/ui/mfa/enrol", Some(ticket)))
        },
    )
}

#[utoipa::path(post, path = "/auth/ui/mfa/enrol", operation_id = "pages_mfa_enrol", tag = "pages",
    summary = "Finish the enrolment a role requires, and the sign-in",
    request_body(content = MfaForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Signed in; the recovery codes, shown once", content_type = "text/html", body = String)))]
pub async fn mfa_enrol(
    State(state): State<AppState>,
    client: Client,
    Form(form): Form<MfaForm>,
) -> Response {
    let request = super::mfa::TicketRequest {
        mfa_ticket: form.mfa_ticket.clone(),
        code: Some(form.code.trim().to_string()),
    };
    let response = super::mfa::confirm_with_ticket(State(state.clone()), client, ApiJson(request))
        .await
        .unwrap_or_else(IntoResponse::into_response);
    let (status, cookies, body) = json_of(response).await;
    if !status.is_success() {
        return with_status(
            page(
                "Authenticator app",
                html! {
                    (error_box(Some(&message_of(&body))))
                    p { a href="/auth/ui/login" { "Sign in again" } }
                },
            ),
            status,
        );
    }
    // Signed in: the cookies, and the codes on this page (shown once).
    with_cookies_of(
        recovery_codes_page(&body),
        &signed_in(&state, cookies, &body),
    )
}

fn recovery_codes_page(body: &Value) -> Response {
    let empty = Vec::new();
    let codes = body["recovery_codes"].as_array().unwrap_or(&empty);
    page(
        "Authenticator app is on",
        html! {
            p { "Keep these recovery codes somewhere safe. Each works once; they are not shown again." }
            ul id="recovery-codes" { @for c in codes { li { code { (c.as_str().unwrap_or_default()) } } } }
            p { a href="/auth/ui/account" { "Continue to your account" } }
        },
    )
}

#[utoipa::path(post, path = "/auth/ui/mfa/totp/confirm", operation_id = "pages_totp_confirm",
    tag = "pages", summary = "Turn the authenticator app on",
    request_body(content = CodeForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The recovery codes, shown once", content_type = "text/html", body = String)))]
pub async fn totp_confirm(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    let request = super::mfa::ConfirmRequest { code: form.code };
    let response = super::mfa::confirm_totp(State(state.clone()), client, auth, ApiJson(request))
        .await
        .unwrap_or_else(IntoResponse::into_response);
    let (status, _, body) = json_of(response).await;
    if !status.is_success() {
        return with_status(
            page(
                "Authenticator app",
                html! {
                    (error_box(Some(&message_of(&body))))
                    form method="post" action="/auth/ui/mfa/totp" {
                        button type="submit" { "Start again" }
                    }
                },
            ),
            status,
        );
    }
    recovery_codes_page(&body)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    q: Option<String>,
}

#[utoipa::path(get, path = "/auth/ui/admin", operation_id = "pages_admin", tag = "pages",
    summary = "Administration: users", params(SearchQuery),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: to the sign-in page"),
    ))]
pub async fn admin(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<SearchQuery>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    let me = auth.user.id.clone();
    let q = query.q.unwrap_or_default();
    let list = super::users::ListQuery {
        q: (!q.is_empty()).then(|| q.clone()),
        after: None,
        limit: Some(100),
    };
    let body = match super::users::list(State(state.clone()), auth.clone(), Query(list)).await {
        Ok(j) => j.0,
        Err(e) => return error_page("Administration", e).await,
    };
    let empty = Vec::new();
    let users = body["users"].as_array().unwrap_or(&empty);
    let daily = super::audit::daily(
        State(state.clone()),
        auth.clone(),
        Query(super::audit::SummaryQuery { days: Some(14) }),
    )
    .await
    .map(|j| j.0)
    .unwrap_or(Value::Null);
    let events = super::audit::list(
        State(state.clone()),
        auth,
        Query(super::audit::AuditQuery {
            limit: Some(15),
            ..Default::default()
        }),
    )
    .await
    .map(|j| j.0["events"].clone())
    .unwrap_or(Value::Null);
    page(
        "Administration",
        html! {
            nav { a href="/auth/ui/account" { "Your account" } }
            h2 { "Sign-ins, last 14 days" }
            (daily_chart(&daily))
            h2 { "Recent security events" }
            table id="events" {
                thead { tr { th { "Time (UTC)" } th { "Event" } th { "Outcome" } th { "Who" } th { "IP" } } }
                tbody {
                    @for e in events.as_array().unwrap_or(&empty) {
                        tr {
                            td { (e["time"].as_str().unwrap_or_default().get(..19).unwrap_or_default().replace('T', " ")) }
                            td { (e["action"].as_str().unwrap_or_default()) }
                            td { (e["outcome"].as_str().unwrap_or_default()) }
                            td { (e["email"].as_str().or(e["target_id"].as_str()).unwrap_or_default()) }
                            td { (e["ip"].as_str().unwrap_or_default()) }
                        }
                    }
                }
            }
            h2 { "Users" }
            form method="get" action="/auth/ui/admin" role="search" {
                label for="q" { "Find users" }
                input id="q" name="q" type="search" value=(q);
                button type="submit" { "Search" }
            }
            table {
                thead { tr { th { "Email" } th { "Roles" } th { "State" } th { "Action" } } }
                tbody {
                    @for u in users {
                        @let id = u["user"]["id"].as_str().unwrap_or_default();
                        @let email = u["user"]["email"].as_str().unwrap_or_default();
                        @let disabled = u["disabled"] == true;
                        tr data-user=(email) {
                            td { (email) }
                            td { (u["user"]["roles"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                            td { @if disabled { "disabled" } @else { "active" } }
                            td {
                                @if id != me {
                                    form method="post" action={ "/auth/ui/admin/users/" (id) (if disabled { "/enable" } else { "/disable" }) } {
                                        button type="submit" aria-label={ (if disabled { "Enable " } else { "Disable " }) (email) } {
                                            @if disabled { "Enable" } @else { "Disable" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// Sign-ins and failures per day as bars (server-drawn SVG, no script),
/// with the same numbers in a table for screen readers and text browsers.
fn daily_chart(daily: &Value) -> Markup {
    let empty = Vec::new();
    let mut days: Vec<&Value> = daily["days"].as_array().unwrap_or(&empty).iter().collect();
    days.reverse(); // oldest first, left to right
    let n = |d: &Value, k: &str| d[k].as_i64().unwrap_or(0);
    let top = days
        .iter()
        .map(|d| n(d, "sign_ins").max(n(d, "sign_in_failures")))
        .max()
        .unwrap_or(0)
        .max(1);
    let (width, height, bar) = (14 * 24, 80i64, 10);
    let h = |v: i64| v * height / top;
    html! {
        svg id="daily-chart" viewBox={ "0 0 " (width) " " (height + 14) } width="100%" role="img"
            aria-labelledby="daily-caption" {
            @for (i, d) in days.iter().enumerate() {
                @let x = i as i64 * 24;
                rect x=(x) y=(height - h(n(d, "sign_ins"))) width=(bar) height=(h(n(d, "sign_ins"))) fill="#2563eb" {
                    title { (d["date"].as_str().unwrap_or_default()) ": " (n(d, "sign_ins")) " sign-ins" }
                }
                rect x=(x + bar) y=(height - h(n(d, "sign_in_failures"))) width=(bar) height=(h(n(d, "sign_in_failures"))) fill="#b91c1c" {
                    title { (d["date"].as_str().unwrap_or_default()) ": " (n(d, "sign_in_failures")) " failed" }
                }
            }
        }
        table {
            caption id="daily-caption" { "Sign-ins (blue) and failed sign-ins (red) per day" }
            thead { tr { th { "Day" } th { "Sign-ins" } th { "Failed" } th { "Rate-limited" } th { "Active users" } } }
            tbody {
                @for d in days.iter().rev() {
                    tr {
                        td { (d["date"].as_str().unwrap_or_default()) }
                        td { (n(d, "sign_ins")) }
                        td { (n(d, "sign_in_failures")) }
                        td { (n(d, "rate_limited")) }
                        td { (n(d, "active_users")) }
                    }
                }
            }
        }
    }
}

#[utoipa::path(post, path = "/auth/ui/admin/users/{id}/{action}", operation_id = "pages_admin_user",
    tag = "pages", summary = "Disable or enable a user",
    params(("id" = String, Path, description = "The user's id"),
           ("action" = String, Path, description = "`disable` or `enable`")),
    responses((status = 303, description = "Back to the administration page")))]
pub async fn admin_user(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    let disabled = match action.as_str() {
        "disable" => true,
        "enable" => false,
        _ => return ApiError::not_found("no such action").into_response(),
    };
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    let request = super::users::ChangeUserRequest {
        roles: None,
        disabled: Some(disabled),
        admin_metadata: None,
    };
    let result = super::users::change(
        State(state.clone()),
        client,
        auth,
        Path(id),
        ApiJson(request),
    )
    .await;
    back_or_error(result, "Administration", "/auth/ui/admin").await
}

/// The one script: passkey ceremonies (WebAuthn has no form equivalent).
const SCRIPT: &str = r#"'use strict';
(() => {
  const b64u = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)))
    .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  const bytes = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
  const post = async (path, body) => {
    const r = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body ?? {}), credentials: 'same-origin' });
    const json = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(json.message || ('HTTP ' + r.status));
    return json;
  };
  const fail = (e) => {
    const p = document.getElementById('passkey-error');
    if (p) { p.textContent = e.message || String(e); p.hidden = false; }
  };
  const signIn = async () => {
    const { ceremony_id, options } = await post('/auth/passkeys/login/start');
    const pk = options.publicKey;
    pk.challenge = bytes(pk.challenge);
    (pk.allowCredentials || []).forEach((c) => { c.id = bytes(c.id); });
    const c = await navigator.credentials.get({ publicKey: pk });
    const credential = { id: c.id, rawId: b64u(c.rawId), type: c.type, extensions: {},
      response: { authenticatorData: b64u(c.response.authenticatorData),
        clientDataJSON: b64u(c.response.clientDataJSON), signature: b64u(c.response.signature),
        userHandle: c.response.userHandle ? b64u(c.response.userHandle) : null } };
    const done = await post('/auth/ui/passkeys/login/finish', { ceremony_id, credential });
    location.assign(done.redirect);
  };
  const add = async () => {
    const { ceremony_id, options } = await post('/auth/ui/passkeys/register/start');
    const pk = options.publicKey;
    pk.challenge = bytes(pk.challenge);
    pk.user.id = bytes(pk.user.id);
    (pk.excludeCredentials || []).forEach((c) => { c.id = bytes(c.id); });
    const c = await navigator.credentials.create({ publicKey: pk });
    const credential = { id: c.id, rawId: b64u(c.rawId), type: c.type, extensions: {},
      response: { attestationObject: b64u(c.response.attestationObject),
        clientDataJSON: b64u(c.response.clientDataJSON) } };
    await post('/auth/ui/passkeys/register/finish', { ceremony_id, credential });
    location.reload();
  };
  if (!window.PublicKeyCredential) return;
  for (const button of document.querySelectorAll('button[data-passkey]')) {
    button.hidden = false;
    button.addEventListener('click', () => {
      (button.dataset.passkey === 'add' ? add() : signIn()).catch(fail);
    });
  }
})();
"#;

#[utoipa::path(get, path = "/auth/ui/passkeys.js", operation_id = "pages_script", tag = "pages",
    summary = "The pages' one script (passkeys)",
    responses((status = 200, description = "JavaScript", content_type = "text/javascript", body = String)))]
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// A JSON answer for the script, with the handler's status.
fn json_answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

#[utoipa::path(post, path = "/auth/ui/passkeys/register/start", operation_id = "pages_passkey_register_start",
    tag = "pages", summary = "Start adding a passkey (page session)",
    responses((status = 200, description = "Creation options", body = crate::api::openapi::AnyObject)))]
pub async fn passkey_register_start(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match page_auth(&state, &headers).await {
        Ok(auth) => super::passkeys::register_start(State(state.clone()), auth)
            .await
            .map(IntoResponse::into_response)
            .unwrap_or_else(IntoResponse::into_response),
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(post, path = "/auth/ui/passkeys/register/finish", operation_id = "pages_passkey_register_finish",
    tag = "pages", summary = "Finish adding a passkey (page session)",
    request_body = super::passkeys::RegisterFinish,
    responses((status = 201, description = "Added", body = crate::api::openapi::AnyObject)))]
pub async fn passkey_register_finish(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    body: ApiJson<super::passkeys::RegisterFinish>,
) -> Response {
    match page_auth(&state, &headers).await {
        Ok(auth) => super::passkeys::register_finish(State(state.clone()), client, auth, body)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(post, path = "/auth/ui/passkeys/login/finish", operation_id = "pages_passkey_login",
    tag = "pages", summary = "Sign in with a passkey (sets the page session)",
    request_body = super::passkeys::LoginFinish,
    responses((status = 200, description = "Signed in: where to go", body = crate::api::openapi::AnyObject)))]
pub async fn passkey_login(
    State(state): State<AppState>,
    client: Client,
    body: ApiJson<super::passkeys::LoginFinish>,
) -> Response {
    let response = super::passkeys::login_finish(State(state.clone()), client, body)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    let (status, cookies, body) = json_of(response).await;
    if !status.is_success() {
        return json_answer(status, body);
    }
    with_cookies_of(
        json_answer(
            StatusCode::OK,
            serde_json::json!({"redirect": "/auth/ui/account"}),
        ),
        &signed_in(&state, cookies, &body),
    )
}

#[utoipa::path(post, path = "/auth/ui/passkeys/{id}/delete", operation_id = "pages_passkey_delete",
    tag = "pages", summary = "Remove a passkey",
    params(("id" = String, Path, description = "The passkey's id")),
    responses((status = 303, description = "Back to the account page")))]
pub async fn passkey_delete(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    back_or_error(
        super::passkeys::delete(State(state.clone()), client, auth, Path(id)).await,
        "Your account",
        "/auth/ui/account",
    )
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PasswordForm {
    current_password: String,
    new_password: String,
}

#[utoipa::path(post, path = "/auth/ui/password", operation_id = "pages_password", tag = "pages",
    summary = "Change the password (ends every session)",
    request_body(content = PasswordForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Changed: sign in again", content_type = "text/html", body = String)))]
pub async fn password(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    let request = super::auth::PasswordChangeRequest {
        current_password: form.current_password,
        new_password: form.new_password,
    };
    let response =
        super::auth::change_password(State(state.clone()), client, auth, ApiJson(request))
            .await
            .unwrap_or_else(IntoResponse::into_response);
    let (status, _, body) = json_of(response).await;
    if !status.is_success() {
        return with_status(
            page(
                "Password not changed",
                html! {
                    (error_box(Some(&message_of(&body))))
                    p { a href="/auth/ui/account" { "Back to your account" } }
                },
            ),
            status,
        );
    }
    // Every session ended, this one too: sign in with the new password.
    let changed = page(
        "Password changed",
        html! { p { "Every session was signed out. " a href="/auth/ui/login" { "Sign in" } " with the new password." } },
    );
    with_cookies_of(changed, &signed_out())
}

#[utoipa::path(get, path = "/auth/ui/forgot", operation_id = "pages_forgot", tag = "pages",
    summary = "Forgot-password page",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub async fn forgot() -> Response {
    page(
        "Forgot your password?",
        html! {
            p { "We will mail a link to reset it, if the address has an account." }
            // The API itself answers forms with a page.
            form method="post" action="/auth/password/forgot" {
                label for="email" { "Email" }
                input id="email" name="email" type="email" autocomplete="username" required;
                button type="submit" { "Send the link" }
            }
            p { a href="/auth/ui/login" { "Back to sign-in" } }
        },
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RegisterForm {
    email: String,
    password: String,
    name: Option<String>,
}

fn register_form(error: Option<&str>, email: &str) -> Markup {
    html! {
        (error_box(error))
        form method="post" action="/auth/ui/register" {
            label for="name" { "Name (optional)" }
            input id="name" name="name" autocomplete="name";
            label for="email" { "Email" }
            input id="email" name="email" type="email" autocomplete="username" required value=(email);
            label for="password" { "Password (at least 8 characters)" }
            input id="password" name="password" type="password" autocomplete="new-password" minlength="8" required;
            button type="submit" { "Create account" }
        }
        p { a href="/auth/ui/login" { "I have an account" } }
    }
}

#[utoipa::path(get, path = "/auth/ui/register", operation_id = "pages_register_page", tag = "pages",
    summary = "Registration page",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub async fn register_page() -> Response {
    page("Create an account", register_form(None, ""))
}

#[utoipa::path(post, path = "/auth/ui/register", operation_id = "pages_register", tag = "pages",
    summary = "Create an account and sign in",
    request_body(content = RegisterForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Signed in: to the account page")))]
pub async fn register(
    State(state): State<AppState>,
    client: Client,
    Form(form): Form<RegisterForm>,
) -> Response {
    let request = super::auth::RegisterRequest {
        email: form.email.clone(),
        password: form.password.clone(),
        name: form.name.filter(|n| !n.trim().is_empty()),
    };
    let response = super::auth::register(State(state.clone()), client.clone(), ApiJson(request))
        .await
        .unwrap_or_else(IntoResponse::into_response);
    let (status, _, body) = json_of(response).await;
    if !status.is_success() {
        return with_status(
            page(
                "Create an account",
                register_form(Some(&message_of(&body)), &form.email),
            ),
            status,
        );
    }
    login(
        State(state),
        client,
        Form(LoginForm {
            email: form.email,
            password: form.password,
        }),
    )
    .await
}
