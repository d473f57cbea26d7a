//! A fake GitHub for tests and the demo: just the OAuth app flow and the REST
//! calls the issuer makes, with GitHub's own quirks kept (the token endpoint
//! answers HTTP 200 with an `error` field; codes are single use and expire;
//! PKCE S256 is checked; lists are paginated with `Link` headers; private org
//! memberships are visible only with `read:org`).
//!
//! Web and API are served on one address, so the issuer's `--github-web-url`
//! and `--github-api-url` both point at it. Tests steer it through
//! [`FakeGitHub`]; the binary through `PUT /_fake/behaviour`.
#![forbid(unsafe_code)]

pub mod browser;
pub mod kube;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post, put};
use axum::{Form, Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use serde_json::json;

const CODE_TTL: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FakeEmail {
    pub email: String,
    pub primary: bool,
    pub verified: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FakeUser {
    pub id: u64,
    pub login: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub emails: Vec<FakeEmail>,
    /// Organisation logins the user is a (private) member of.
    #[serde(default)]
    pub orgs: Vec<String>,
    /// `org/team-slug`.
    #[serde(default)]
    pub teams: Vec<String>,
}

impl FakeUser {
    /// A user with one primary, verified email.
    pub fn new(id: u64, login: &str, email: &str) -> Self {
        FakeUser {
            id,
            login: login.into(),
            name: Some(format!("{login} (fake)")),
            emails: vec![FakeEmail {
                email: email.into(),
                primary: true,
                verified: true,
            }],
            orgs: Vec::new(),
            teams: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub client_id: String,
    pub client_secret: String,
    /// The registered callback; authorize refuses any other.
    pub redirect_uri: String,
    #[serde(default)]
    pub users: Vec<FakeUser>,
}

/// How the fake behaves right now.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behaviour {
    /// The login "signed in at GitHub": authorize approves as this user
    /// without asking. Unset: authorize shows a page to pick a user.
    pub signed_in: Option<String>,
    /// The user refuses consent (`error=access_denied`).
    pub deny: bool,
    /// Token and API answers wait this long first.
    pub delay_ms: u64,
    /// Token and API answer 503.
    pub down: bool,
}

struct Grant {
    user_id: u64,
    challenge: String,
    redirect_uri: String,
    scopes: Vec<String>,
    expires: Instant,
}

struct Inner {
    config: Config,
    behaviour: Behaviour,
    codes: HashMap<String, Grant>,
    tokens: HashMap<String, (u64, Vec<String>)>,
    /// Calls per endpoint, for tests that check what the issuer asked for.
    calls: HashMap<&'static str, u64>,
}

/// The fake's state, shared by its handlers.
#[derive(Clone)]
pub struct Shared(Arc<Mutex<Inner>>);

impl Shared {
    pub fn set(&self, behaviour: Behaviour) {
        self.lock().behaviour = behaviour;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not wedge the fake for the rest of a test.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fake; dropping the handle does not stop it (it ends with the
/// runtime), so tests can pass URLs around freely.
pub struct FakeGitHub {
    pub addr: SocketAddr,
    shared: Shared,
}

impl FakeGitHub {
    pub async fn start(config: Config) -> anyhow::Result<FakeGitHub> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (router, shared) = router(config);
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(FakeGitHub { addr, shared })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, behaviour: Behaviour) {
        self.shared.set(behaviour);
    }

    pub fn sign_in_as(&self, login: &str) {
        self.shared.lock().behaviour.signed_in = Some(login.to_string());
    }

    pub fn add_user(&self, user: FakeUser) {
        let mut inner = self.shared.lock();
        inner.config.users.retain(|u| u.id != user.id);
        inner.config.users.push(user);
    }

    pub fn calls(&self, endpoint: &str) -> u64 {
        self.shared.lock().calls.get(endpoint).copied().unwrap_or(0)
    }
}

/// The fake's routes, for embedding (the binary serves them).
pub fn router(config: Config) -> (Router, Shared) {
    let shared = Shared(Arc::new(Mutex::new(Inner {
        config,
        behaviour: Behaviour::default(),
        codes: HashMap::new(),
        tokens: HashMap::new(),
        calls: HashMap::new(),
    })));
    let router = Router::new()
        .route("/login/oauth/authorize", get(authorize))
        .route("/login/oauth/access_token", post(access_token))
        .route("/user", get(user))
        .route("/user/emails", get(emails))
        .route("/user/orgs", get(orgs))
        .route("/user/teams", get(teams))
        .route("/_fake/behaviour", put(set_behaviour))
        .with_state(shared.clone());
    (router, shared)
}

fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 20];
    // The system RNG does not fail on the platforms this runs on; a fixed
    // value would still be unique enough for a fake only if it did.
    let _ = SystemRandom::new().fill(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

#[derive(Deserialize)]
struct AuthorizeParams {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    /// Set by the account picker page.
    #[serde(rename = "_fake_as")]
    fake_as: Option<String>,
    #[serde(rename = "_fake_deny")]
    fake_deny: Option<String>,
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = base.to_string();
    url.push(if base.contains('?') { '&' } else { '?' });
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    url.push_str(&encoded.join("&"));
    url
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn authorize(State(shared): State<Shared>, Query(p): Query<AuthorizeParams>) -> Response {
    let mut inner = shared.lock();
    *inner.calls.entry("authorize").or_default() += 1;
    if p.client_id.as_deref() != Some(inner.config.client_id.as_str()) {
        return (StatusCode::NOT_FOUND, "unknown client_id").into_response();
    }
    // GitHub shows an error page (no redirect) for a foreign redirect_uri.
    let redirect_uri = inner.config.redirect_uri.clone();
    if p.redirect_uri.as_deref().is_some_and(|r| r != redirect_uri) {
        return (
            StatusCode::BAD_REQUEST,
            "The redirect_uri MUST match the registered callback URL for this application.",
        )
            .into_response();
    }
    let state = p.state.clone().unwrap_or_default();
    if inner.behaviour.deny || p.fake_deny.is_some() {
        return Redirect::to(&with_query(
            &redirect_uri,
            &[
                ("error", "access_denied"),
                (
                    "error_description",
                    "The user has denied your application access.",
                ),
                ("state", &state),
            ],
        ))
        .into_response();
    }
    let login = p.fake_as.clone().or(inner.behaviour.signed_in.clone());
    let Some(login) = login else {
        return account_picker(&inner.config.users, &p);
    };
    let Some(user) = inner.config.users.iter().find(|u| u.login == login) else {
        return (StatusCode::NOT_FOUND, "no such fake user").into_response();
    };
    // Like GitHub, a missing method means "plain"; this fake only does S256
    // and treats anything else as no PKCE at all.
    let challenge = match p.code_challenge_method.as_deref() {
        Some("S256") => p.code_challenge.clone().unwrap_or_default(),
        _ => String::new(),
    };
    let code = random_token("");
    let grant = Grant {
        user_id: user.id,
        challenge,
        redirect_uri: redirect_uri.clone(),
        scopes: p
            .scope
            .as_deref()
            .unwrap_or("")
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        expires: Instant::now() + CODE_TTL,
    };
    inner.codes.insert(code.clone(), grant);
    Redirect::to(&with_query(
        &redirect_uri,
        &[("code", &code), ("state", &state)],
    ))
    .into_response()
}

fn account_picker(users: &[FakeUser], p: &AuthorizeParams) -> Response {
    let keep = |extra: (&str, &str)| {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for (k, v) in [
            ("client_id", &p.client_id),
            ("redirect_uri", &p.redirect_uri),
            ("scope", &p.scope),
            ("state", &p.state),
            ("code_challenge", &p.code_challenge),
            ("code_challenge_method", &p.code_challenge_method),
        ] {
            if let Some(v) = v {
                pairs.push((k, v));
            }
        }
        pairs.push(extra);
        escape_html(&with_query("/login/oauth/authorize", &pairs))
    };
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Fake GitHub: authorize</title></head><body>\
         <p><strong>This is a fake GitHub</strong> for tests and the demo.</p>\
         <h1>Authorize DevMentor Auth</h1><ul>",
    );
    for u in users {
        html.push_str(&format!(
            "<li><a href=\"{}\">Sign in as {}</a></li>",
            keep(("_fake_as", &u.login)),
            escape_html(&u.login)
        ));
    }
    html.push_str(&format!(
        "</ul><p><a href=\"{}\">Cancel (deny)</a></p></body></html>",
        keep(("_fake_deny", "1"))
    ));
    Html(html).into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    client_id: Option<String>,
    client_secret: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
}

fn oauth_error(code: &str, description: &str) -> Response {
    // GitHub's quirk: errors from the token endpoint are HTTP 200.
    Json(json!({
        "error": code,
        "error_description": description,
        "error_uri": "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors",
    }))
    .into_response()
}

/// Waits or fails as the behaviour says; `Some` is the answer to give instead.
async fn misbehave(shared: &Shared, endpoint: &'static str) -> Option<Response> {
    let (delay, down) = {
        let mut inner = shared.lock();
        *inner.calls.entry(endpoint).or_default() += 1;
        (inner.behaviour.delay_ms, inner.behaviour.down)
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    down.then(|| (StatusCode::SERVICE_UNAVAILABLE, "unicorn").into_response())
}

async fn access_token(State(shared): State<Shared>, Form(f): Form<TokenForm>) -> Response {
    if let Some(r) = misbehave(&shared, "access_token").await {
        return r;
    }
    let mut inner = shared.lock();
    if f.client_id.as_deref() != Some(inner.config.client_id.as_str())
        || f.client_secret.as_deref() != Some(inner.config.client_secret.as_str())
    {
        return oauth_error(
            "incorrect_client_credentials",
            "The client_id and/or client_secret passed are incorrect.",
        );
    }
    // Single use: the code is gone whatever happens next.
    let Some(grant) = f.code.as_deref().and_then(|c| inner.codes.remove(c)) else {
        return oauth_error(
            "bad_verification_code",
            "The code passed is incorrect or expired.",
        );
    };
    if grant.expires < Instant::now() {
        return oauth_error(
            "bad_verification_code",
            "The code passed is incorrect or expired.",
        );
    }
    if f.redirect_uri
        .as_deref()
        .is_some_and(|r| r != grant.redirect_uri)
    {
        return oauth_error(
            "redirect_uri_mismatch",
            "The redirect_uri MUST match the registered callback URL for this application.",
        );
    }
    if !grant.challenge.is_empty() {
        let verifier = f.code_verifier.unwrap_or_default();
        let computed = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()));
        if computed != grant.challenge {
            return oauth_error(
                "bad_verification_code",
                "The code_verifier does not match the code_challenge.",
            );
        }
    }
    let token = random_token("gho_");
    let scope = grant.scopes.join(",");
    inner
        .tokens
        .insert(token.clone(), (grant.user_id, grant.scopes));
    Json(json!({"access_token": token, "token_type": "bearer", "scope": scope})).into_response()
}

fn bad_credentials() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})),
    )
        .into_response()
}

/// The user and scopes behind `Authorization: Bearer|token <t>`.
fn caller(inner: &Inner, headers: &HeaderMap) -> Option<(FakeUser, Vec<String>)> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("token "))
        })?;
    let (user_id, scopes) = inner.tokens.get(token)?;
    let user = inner.config.users.iter().find(|u| u.id == *user_id)?;
    Some((user.clone(), scopes.clone()))
}

async fn user(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = misbehave(&shared, "user").await {
        return r;
    }
    let inner = shared.lock();
    match caller(&inner, &headers) {
        Some((u, _)) => {
            let public_email = u.emails.iter().find(|e| e.primary).map(|e| e.email.clone());
            Json(json!({
                "id": u.id, "login": u.login, "name": u.name, "email": public_email,
                "type": "User", "node_id": format!("U_fake{}", u.id),
                "avatar_url": format!("https://avatars.example/u/{}", u.id),
            }))
            .into_response()
        }
        None => bad_credentials(),
    }
}

#[derive(Deserialize)]
struct Page {
    page: Option<usize>,
    per_page: Option<usize>,
}

/// One page of `items` with GitHub's `Link` header.
fn paginate<T: Serialize>(path: &str, items: &[T], page: &Page) -> Response {
    let per_page = page.per_page.unwrap_or(30).clamp(1, 100);
    let pages = items.len().div_ceil(per_page).max(1);
    let n = page.page.unwrap_or(1).max(1);
    let slice: Vec<&T> = items
        .iter()
        .skip((n - 1) * per_page)
        .take(per_page)
        .collect();
    let mut response = Json(slice).into_response();
    let mut links = Vec::new();
    if n < pages {
        links.push(format!(
            "<{path}?page={}&per_page={per_page}>; rel=\"next\"",
            n + 1
        ));
        links.push(format!(
            "<{path}?page={pages}&per_page={per_page}>; rel=\"last\""
        ));
    }
    if n > 1 {
        links.push(format!(
            "<{path}?page=1&per_page={per_page}>; rel=\"first\""
        ));
    }
    if let Ok(v) = links.join(", ").parse() {
        if !links.is_empty() {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    response
}

fn has_scope(scopes: &[String], wanted: &[&str]) -> bool {
    scopes.iter().any(|s| wanted.contains(&s.as_str()))
}

fn absolute(headers: &HeaderMap, path: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}{path}")
}

async fn emails(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Response {
    if let Some(r) = misbehave(&shared, "emails").await {
        return r;
    }
    let inner = shared.lock();
    match caller(&inner, &headers) {
        // Without the scope GitHub answers 404.
        Some((_, scopes)) if !has_scope(&scopes, &["user:email", "user"]) => {
            (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response()
        }
        Some((u, _)) => {
            let items: Vec<_> = u
                .emails
                .iter()
                .map(|e| json!({"email": e.email, "primary": e.primary, "verified": e.verified, "visibility": null}))
                .collect();
            paginate(&absolute(&headers, "/user/emails"), &items, &page)
        }
        None => bad_credentials(),
    }
}

async fn orgs(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Response {
    if let Some(r) = misbehave(&shared, "orgs").await {
        return r;
    }
    let inner = shared.lock();
    match caller(&inner, &headers) {
        Some((u, scopes)) => {
            // Memberships here are private: invisible without read:org.
            let items: Vec<_> = if has_scope(&scopes, &["read:org", "admin:org"]) {
                u.orgs.iter().map(|o| json!({"login": o})).collect()
            } else {
                Vec::new()
            };
            paginate(&absolute(&headers, "/user/orgs"), &items, &page)
        }
        None => bad_credentials(),
    }
}

async fn teams(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Response {
    if let Some(r) = misbehave(&shared, "teams").await {
        return r;
    }
    let inner = shared.lock();
    match caller(&inner, &headers) {
        Some((_, scopes)) if !has_scope(&scopes, &["read:org", "admin:org"]) => (
            StatusCode::FORBIDDEN,
            Json(json!({"message": "Resource not accessible by integration"})),
        )
            .into_response(),
        Some((u, _)) => {
            let items: Vec<_> = u
                .teams
                .iter()
                .filter_map(|t| t.split_once('/'))
                .map(|(org, slug)| json!({"slug": slug, "organization": {"login": org}}))
                .collect();
            paginate(&absolute(&headers, "/user/teams"), &items, &page)
        }
        None => bad_credentials(),
    }
}

async fn set_behaviour(State(shared): State<Shared>, Json(b): Json<Behaviour>) -> StatusCode {
    shared.lock().behaviour = b;
    StatusCode::NO_CONTENT
}
