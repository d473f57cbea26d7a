//! Administration: OAuth clients. The registry's rules are the admin API's
//! (`service::oauth::clients`): the same checks, a recent sign-in, the
//! audit; a new or rotated secret is shown on the answering page once.

use super::admin::encode_segment;
use super::*;
use crate::domain::oauth::{DEVICE_CODE, JWT_BEARER, TOKEN_EXCHANGE};
use crate::service::oauth::clients::{self as registry, ClientView, NewClient};

const TITLE: &str = "Applications";
const LIST: &str = "/auth/ui/admin/clients";

/// The signed-in admin, or the page anyone else gets (the sign-in page, or
/// the refusal).
async fn admin_caller(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<crate::service::admin::Admin, Response> {
    let Ok(auth) = page_auth(state, headers).await else {
        return Err(to_login());
    };
    match crate::service::admin::require_admin(auth) {
        Ok(admin) => Ok(admin),
        Err(e) => Err(error_page(TITLE, e).await),
    }
}

#[utoipa::path(get, path = "/auth/ui/admin/clients", operation_id = "pages_admin_clients",
    tag = "pages", summary = "Administration: OAuth clients",
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: to the sign-in page"),
    ))]
pub async fn admin_clients(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let admin = match admin_caller(&state, &headers).await {
        Ok(admin) => admin,
        Err(page) => return page,
    };
    let clients = match registry::list(&state, &admin).await {
        Ok(clients) => clients,
        Err(e) => return error_page(TITLE, e).await,
    };
    page(
        TITLE,
        html! {
            nav { a href="/auth/ui/admin" { "Users" } a href="/auth/ui/admin/teams" { "Teams" } }
            p { "Applications that sign users in through this issuer (OAuth 2.1 / OpenID Connect). "
                "Discovery: " code { (state.settings.issuer_url) "/.well-known/openid-configuration" } }
            table id="clients" {
                thead { tr { th { "Client" } th { "Kind" } th { "Redirect URIs" } th { "Scopes" } th { "Tokens" } th { span.visually-hidden { "Actions" } } } }
                tbody { @for c in &clients { (client_row(c)) } }
            }
            h2 { "Register an application" }
            (client_form(None, &state.settings.client_id))
        },
    )
}

fn lifetime(secs: Option<i64>) -> String {
    secs.map_or_else(|| "the issuer's".to_string(), |s| format!("{s} s"))
}

fn client_row(c: &ClientView) -> Markup {
    let seg = encode_segment(&c.client_id);
    html! {
        tr data-client=(c.client_id) {
            td { a href={ (LIST) "/" (seg) } { strong { (c.name) } } br; code { (c.client_id) } }
            td {
                (c.kind) br; (c.token_endpoint_auth_method)
                @if c.first_party { br; "first-party (no consent)" }
            }
            td { @for u in &c.redirect_uris { code { (u) } br; } }
            td { (c.scopes.join(" ")) }
            td {
                (c.grant_types.join(", ")) br;
                "access " (lifetime(c.access_token_ttl)) ", session " (lifetime(c.refresh_token_ttl))
            }
            td {
                @if c.token_endpoint_auth_method == "client_secret_basic" {
                    form.inline method="post" action={ "/auth/ui/admin/clients/" (seg) "/rotate-secret" } {
                        button type="submit" aria-label={ "New secret for " (c.client_id) } { "New secret" }
                        button type="submit" name="immediate" value="on" aria-label={ "New secret for " (c.client_id) ", the old one stops now" } { "New secret, old stops now" }
                    }
                }
                form.inline method="post" action={ "/auth/ui/admin/clients/" (seg) "/delete" } {
                    button type="submit" aria-label={ "Delete " (c.client_id) } { "Delete" }
                }
            }
        }
    }
}

/// The registration form, or with `existing` the form that changes it
/// (its id, kind and credentials stay: they are shown, not asked).
fn client_form(existing: Option<&ClientView>, own_client: &str) -> Markup {
    let action = existing.map_or_else(
        || LIST.to_string(),
        |c| format!("{LIST}/{}", encode_segment(&c.client_id)),
    );
    let joined = |f: fn(&ClientView) -> &Vec<String>, sep: &str| {
        existing.map(|c| f(c).join(sep)).unwrap_or_default()
    };
    let scopes = existing.map_or_else(
        || "openid profile email".to_string(),
        |c| c.scopes.join(" "),
    );
    let first_party = existing.is_some_and(|c| c.first_party);
    let grant =
        |g: &str, default: bool| existing.map_or(default, |c| c.grant_types.iter().any(|x| x == g));
    let (code, refresh, service, on_behalf) = (
        grant("authorization_code", true),
        grant("refresh_token", true),
        grant("client_credentials", false),
        grant(TOKEN_EXCHANGE, false),
    );
    let (device, workload) = (grant(DEVICE_CODE, false), grant(JWT_BEARER, false));
    let ttl = |v: Option<i64>| v.map(|t| t.to_string()).unwrap_or_default();
    html! {
        form method="post" action=(action) {
            @if let Some(c) = existing {
                p { "Client id " code { (c.client_id) } ", " (c.kind) ", " (c.token_endpoint_auth_method) }
                input type="hidden" name="client_id" value=(c.client_id);
                input type="hidden" name="type" value=(c.kind);
                input type="hidden" name="version" value=(c.version);
            } @else {
                label for="client_id" { "Client id (a-z, 0-9, -; 3 to 64)" }
                input id="client_id" name="client_id" required maxlength="64" pattern="[a-z0-9\\-]{3,64}" autocapitalize="off";
            }
            label for="client_name" { "Name users see" }
            input id="client_name" name="name" required maxlength="100" value=[existing.map(|c| c.name.as_str())];
            @if existing.is_none() {
                label for="client_type" { "Kind" }
                select id="client_type" name="type" {
                    option value="confidential" { "Confidential: a server-side app with a secret (or keys)" }
                    option value="public" { "Public: a browser, mobile or CLI app (PKCE alone)" }
                }
            }
            label for="redirect_uris" { "Redirect URIs, one per line (exact; http only on loopback)" }
            textarea id="redirect_uris" name="redirect_uris" rows="2" { (joined(|c| &c.redirect_uris, "\n")) }
            label for="scopes" { "Scopes it may ask for, separated by spaces" }
            input id="scopes" name="scopes" value=(scopes);
            label { input type="checkbox" name="first_party" value="on" class="short" checked[first_party]; " First-party: users are not asked to consent" }
            label { input type="checkbox" name="code" value="on" class="short" checked[code]; " Signs people in (the authorization_code grant)" }
            label { input type="checkbox" name="refresh" value="on" class="short" checked[refresh]; " May stay signed in (the refresh_token grant)" }
            label { input type="checkbox" name="service" value="on" class="short" checked[service]; " Acts as itself, a service (the client_credentials grant; confidential only)" }
            label { input type="checkbox" name="on_behalf" value="on" class="short" checked[on_behalf]; " Calls the resources below for the users who call it (token exchange; confidential only)" }
            label { input type="checkbox" name="device" value="on" class="short" checked[device]; " Signs people in on another screen: a CLI or a TV (the device code)" }
            label { input type="checkbox" name="workload" value="on" class="short" checked[workload]; " Runs in a trusted cluster and proves itself with its service-account token (workload identity)" }
            details open[existing.is_some()] {
                summary { "More" }
                label for="post_logout_redirect_uris" { "Post-logout redirect URIs, one per line" }
                textarea id="post_logout_redirect_uris" name="post_logout_redirect_uris" rows="2" { (joined(|c| &c.post_logout_redirect_uris, "\n")) }
                label for="backchannel_logout_uri" { "Back-channel logout URI" }
                input id="backchannel_logout_uri" name="backchannel_logout_uri" type="url" value=[existing.and_then(|c| c.backchannel_logout_uri.as_deref())];
                label for="audiences" { "Resources (RFC 8707) it may ask tokens for, one per line" }
                textarea id="audiences" name="audiences" rows="2" { (joined(|c| &c.audiences, "\n")) }
                label for="subject_clients" { "Token exchange: the clients whose users' tokens it may trade, one per line (the issuer's own sign-in is " code { (own_client) } ")" }
                textarea id="subject_clients" name="subject_clients" rows="2" { (joined(|c| &c.subject_clients, "\n")) }
                label for="serves" { "Resources it serves, one per line: it may introspect their tokens" }
                textarea id="serves" name="serves" rows="2" { (joined(|c| &c.serves, "\n")) }
                label for="access_token_ttl" { "Access-token lifetime in seconds (empty: the issuer's)" }
                input.short id="access_token_ttl" name="access_token_ttl" inputmode="numeric" value=(ttl(existing.and_then(|c| c.access_token_ttl)));
                label for="refresh_token_ttl" { "Session lifetime in seconds (empty: the issuer's)" }
                input.short id="refresh_token_ttl" name="refresh_token_ttl" inputmode="numeric" value=(ttl(existing.and_then(|c| c.refresh_token_ttl)));
                @if existing.is_none() {
                    label for="jwks" { "Public keys for private_key_jwt (a JWK Set; no secret is made)" }
                    textarea id="jwks" name="jwks" rows="3" {}
                }
            }
            @if existing.is_some() {
                p { "Sessions holding a scope or resource it may no longer ask for end when you save." }
                button type="submit" { "Save" }
            } @else {
                button type="submit" { "Register" }
            }
        }
    }
}

/// The registration form: lists one per line, scopes by spaces, empty
/// fields left out.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ClientForm {
    client_id: String,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    redirect_uris: String,
    #[serde(default)]
    post_logout_redirect_uris: String,
    #[serde(default)]
    scopes: String,
    #[serde(default)]
    first_party: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    refresh: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    on_behalf: Option<String>,
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    workload: Option<String>,
    #[serde(default)]
    backchannel_logout_uri: String,
    #[serde(default)]
    audiences: String,
    #[serde(default)]
    subject_clients: String,
    #[serde(default)]
    serves: String,
    #[serde(default)]
    access_token_ttl: String,
    #[serde(default)]
    refresh_token_ttl: String,
    #[serde(default)]
    jwks: String,
    /// The edit form's: the version it was filled from.
    #[serde(default)]
    version: Option<String>,
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn unprocessable(message: String) -> ApiError {
    ApiError::new(
        crate::http::error::Kind::Unprocessable,
        "invalid_client_metadata",
        message,
    )
}

fn seconds(name: &str, text: &str) -> Result<Option<i64>, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| unprocessable(format!("{name}: a whole number of seconds")))
}

impl ClientForm {
    fn to_new(&self) -> Result<NewClient, ApiError> {
        let jwks = match self.jwks.trim() {
            "" => None,
            text => Some(
                serde_json::from_str::<Value>(text)
                    .map_err(|_| unprocessable("jwks: not JSON".into()))?,
            ),
        };
        let grants = [
            (&self.code, "authorization_code"),
            (&self.refresh, "refresh_token"),
            (&self.service, "client_credentials"),
            (&self.on_behalf, TOKEN_EXCHANGE),
            (&self.device, DEVICE_CODE),
            (&self.workload, JWT_BEARER),
        ]
        .into_iter()
        .filter(|(on, _)| on.is_some())
        .map(|(_, g)| g.to_string())
        .collect();
        let backchannel = self.backchannel_logout_uri.trim();
        Ok(NewClient {
            client_id: self.client_id.trim().to_string(),
            name: self.name.clone(),
            kind: self.kind.clone(),
            redirect_uris: lines(&self.redirect_uris),
            post_logout_redirect_uris: lines(&self.post_logout_redirect_uris),
            scopes: self.scopes.split_whitespace().map(str::to_string).collect(),
            first_party: self.first_party.is_some(),
            token_endpoint_auth_method: jwks.as_ref().map(|_| "private_key_jwt".into()),
            jwks,
            backchannel_logout_uri: (!backchannel.is_empty()).then(|| backchannel.to_string()),
            audiences: lines(&self.audiences),
            subject_clients: lines(&self.subject_clients),
            serves: lines(&self.serves),
            grant_types: Some(grants),
            version: match self.version.as_deref().map(str::parse::<i64>) {
                None => None,
                Some(Ok(v)) => Some(v),
                Some(Err(_)) => return Err(unprocessable("version: a number".into())),
            },
            // The form shows every field: empty is the issuer's.
            access_token_ttl: Some(seconds("access_token_ttl", &self.access_token_ttl)?),
            refresh_token_ttl: Some(seconds("refresh_token_ttl", &self.refresh_token_ttl)?),
        })
    }
}

/// The one time a secret is shown.
fn secret_page(heading: &str, client_id: &str, secret: Option<&str>) -> Response {
    page(
        TITLE,
        html! {
            h2 { (heading) }
            p { "Client id: " code #client-id { (client_id) } }
            @if let Some(secret) = secret {
                p { "Client secret, shown this once (only its hash is kept): copy it into the application's settings now." }
                p { code #client-secret { (secret) } }
            }
            p { a href=(LIST) { "Back to the applications" } }
        },
    )
}

#[utoipa::path(post, path = "/auth/ui/admin/clients", operation_id = "pages_admin_client_create",
    tag = "pages", summary = "Register an OAuth client",
    request_body(content = ClientForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Registered: its secret, shown once", content_type = "text/html", body = String),
        (status = 422, description = "The description was refused (the page says why)", content_type = "text/html", body = String),
    ))]
pub async fn admin_client_create(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Form(form): Form<ClientForm>,
) -> Response {
    let admin = match admin_caller(&state, &headers).await {
        Ok(admin) => admin,
        Err(page) => return page,
    };
    let new = match form.to_new() {
        Ok(new) => new,
        Err(e) => return error_page(TITLE, e).await,
    };
    match registry::register(&state, &admin, &client, &new).await {
        Ok(made) => secret_page(
            "Application registered",
            &made.client.client_id,
            made.client_secret.as_deref(),
        ),
        Err(e) => error_page(TITLE, e).await,
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RotateForm {
    /// Present: the old secret stops at once (it leaked); else in a day.
    #[serde(default)]
    immediate: Option<String>,
}

#[utoipa::path(post, path = "/auth/ui/admin/clients/{client_id}/rotate-secret",
    operation_id = "pages_admin_client_rotate", tag = "pages", summary = "A new client secret",
    params(("client_id" = String, Path, description = "The client")),
    request_body(content = RotateForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The new secret, shown once", content_type = "text/html", body = String)))]
pub async fn admin_client_rotate(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Path(client_id): Path<String>,
    Form(form): Form<RotateForm>,
) -> Response {
    let admin = match admin_caller(&state, &headers).await {
        Ok(admin) => admin,
        Err(page) => return page,
    };
    let immediate = form.immediate.is_some();
    match registry::rotate_secret(&state, &admin, &client, &client_id, immediate).await {
        Ok(secret) => secret_page(
            if immediate {
                "New secret: the old one no longer works"
            } else {
                "New secret: the old one works for one more day"
            },
            &client_id,
            Some(&secret),
        ),
        Err(e) => error_page(TITLE, e).await,
    }
}

#[utoipa::path(post, path = "/auth/ui/admin/clients/{client_id}/delete",
    operation_id = "pages_admin_client_delete", tag = "pages", summary = "Delete an OAuth client",
    params(("client_id" = String, Path, description = "The client")),
    responses((status = 303, description = "Back to the applications")))]
pub async fn admin_client_delete(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> Response {
    let admin = match admin_caller(&state, &headers).await {
        Ok(admin) => admin,
        Err(page) => return page,
    };
    let result = registry::delete(&state, &admin, &client, &client_id).await;
    back_or_error(result, TITLE, LIST).await
}

#[utoipa::path(get, path = "/auth/ui/admin/clients/{client_id}", operation_id = "pages_admin_client",
    tag = "pages", summary = "Administration: change an OAuth client",
    params(("client_id" = String, Path, description = "The client")),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: to the sign-in page"),
    ))]
pub async fn admin_client(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> Response {
    let admin = match admin_caller(&state, &headers).await {
        Ok(admin) => admin,
        Err(page) => return page,
    };
    match registry::get(&state, &admin, &client_id).await {
        Ok(c) => page(
            &format!("Application {}", c.client_id),
            html! {
                nav { a href=(LIST) { "Applications" } a href="/auth/ui/admin" { "Users" } }
                @if let Some(at) = c.last_used_at {
                    p #usage { "Last used a service grant " (crate::store::rfc3339_ms(at * 1000)) "; uses over its last 30 active days: "
                        (c.uses_by_day.iter().flatten().map(|d| d.uses).sum::<i64>()) "." }
                }
                (client_form(Some(&c), &state.settings.client_id))
            },
        ),
        Err(e) => error_page(TITLE, e).await,
    }
}

#[utoipa::path(post, path = "/auth/ui/admin/clients/{client_id}", operation_id = "pages_admin_client_update",
    tag = "pages", summary = "Change an OAuth client",
    params(("client_id" = String, Path, description = "The client")),
    request_body(content = ClientForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Saved: how many sessions ended", content_type = "text/html", body = String),
        (status = 422, description = "The description was refused (the page says why)", content_type = "text/html", body = String),
    ))]
pub async fn admin_client_update(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Path(client_id): Path<String>,
    Form(form): Form<ClientForm>,
) -> Response {
    let admin = match admin_caller(&state, &headers).await {
        Ok(admin) => admin,
        Err(page) => return page,
    };
    let new = match form.to_new() {
        Ok(new) => new,
        Err(e) => return error_page(TITLE, e).await,
    };
    match registry::update(&state, &admin, &client, &client_id, &new).await {
        Ok(updated) => page(
            TITLE,
            html! {
                h2 { "Application saved" }
                p #sessions-ended { (updated.sessions_ended) " session(s) that held a scope or resource it may no longer ask for ended." }
                p { a href=(LIST) { "Back to the applications" } }
            },
        ),
        Err(e) => error_page(TITLE, e).await,
    }
}
