//! The client registry (admin API, CLI) and client authentication at the
//! token endpoint.

use serde::{Deserialize, Serialize};

use super::assertion;
use crate::domain::oauth::{
    registrable_redirect, valid_resource, valid_scope_name, KNOWN_SCOPES, TOKEN_EXCHANGE,
};
use crate::domain::tokens::{random_b64, refresh_token_hash};
use crate::service::admin::Admin;
use crate::service::context::Client;
use crate::service::error::{Error, Kind, Result};
use crate::store::{AuditEvent, OAuthClient, Rotated};
use crate::AppState;

/// How long a rotated-out secret keeps working.
pub const SECRET_OVERLAP_SECS: i64 = 24 * 3600;
const MAX_URIS: usize = 16;
const MAX_SCOPES: usize = 32;

/// A client to register, as an admin describes it.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    /// Lower-case letters, digits and `-`, 3 to 64 characters.
    pub client_id: String,
    pub name: String,
    /// `confidential` (gets a secret) or `public` (native and browser
    /// apps: PKCE alone).
    #[serde(rename = "type")]
    pub kind: String,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Scopes it may ask for: `openid`, `profile`, `email`,
    /// `offline_access`, and route scopes such as `notes:read`.
    pub scopes: Vec<String>,
    /// Trusted (the platform's own apps): users are not asked to consent.
    #[serde(default)]
    pub first_party: bool,
    /// How a confidential client authenticates: `client_secret_basic` (the
    /// default; `client_secret_post` is accepted too) or `private_key_jwt`
    /// (RFC 7523; no secret exists, `jwks` holds its public keys).
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    /// For `private_key_jwt`: a JWK Set of 1 to 8 public keys, each with a
    /// `kid`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    /// OpenID Connect Back-Channel Logout: logout tokens are posted here
    /// when a session of this client ends (https, or http on loopback).
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    /// Resources (RFC 8707) it may ask tokens for with `resource`: absolute
    /// URIs, at most 8. A token for one carries it as its `aud` and is
    /// taken only by edge rules naming that audience.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// The grants it may use: `authorization_code` (people sign in through
    /// it; needs redirect URIs), `refresh_token` (with it), and
    /// `client_credentials` (a confidential client acting as itself, a
    /// service), and `urn:ietf:params:oauth:grant-type:token-exchange` (a
    /// confidential client acting for the users who call it, towards its
    /// `audiences`: RFC 8693); the first two when left out of a registration, as they
    /// were when left out of an update. Without `refresh_token` it is never
    /// given a refresh token.
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    /// Its access tokens' lifetime in seconds (60 to 86400), never longer
    /// than the issuer's `--access-token-ttl`; `null`: the issuer's. Left
    /// out: the issuer's at a registration, as it was at an update.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub access_token_ttl: Option<Option<i64>>,
    /// Its sessions' absolute lifetime in seconds (300 to 31536000), after
    /// which its refresh token stops working, never longer than the
    /// issuer's `--session-max-lifetime`; `null` and left out as above.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub refresh_token_ttl: Option<Option<i64>>,
    /// For an update: the `version` the change was made from; if another
    /// change came first, 409 `client_changed` (left out: the last wins).
    #[serde(default)]
    pub version: Option<i64>,
}

/// A field that is there, even as `null` (`Some(None)`), against one left
/// out (`None`): an update keeps what is left out. Their defaults are the
/// widest (both grants, the issuer's lifetimes), so leaving them out must
/// never widen a client.
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

/// What a client may use when its registration names no grant types.
pub const DEFAULT_GRANT_TYPES: [&str; 2] = ["authorization_code", "refresh_token"];
/// `client_credentials`: a confidential client acting as itself (a
/// service); token exchange: one acting for users (RFC 8693).
const KNOWN_GRANT_TYPES: [&str; 4] = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    TOKEN_EXCHANGE,
];
const ACCESS_TTL_RANGE: std::ops::RangeInclusive<i64> = 60..=86_400;
const REFRESH_TTL_RANGE: std::ops::RangeInclusive<i64> = 300..=31_536_000;

/// A registered client as the admin API shows it (never its secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClientView {
    pub client_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub first_party: bool,
    pub created_at: i64,
    /// `client_secret_basic`, `private_key_jwt` or `none`.
    pub token_endpoint_auth_method: &'static str,
    /// The public keys of a `private_key_jwt` client.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backchannel_logout_uri: Option<String>,
    pub audiences: Vec<String>,
    pub grant_types: Vec<String>,
    /// Seconds; absent: the issuer's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token_ttl: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token_ttl: Option<i64>,
    /// Raised by every change (name it in an update to refuse a lost one).
    pub version: i64,
}

impl From<&OAuthClient> for ClientView {
    fn from(c: &OAuthClient) -> Self {
        ClientView {
            client_id: c.id.clone(),
            name: c.name.clone(),
            kind: if c.confidential() {
                "confidential"
            } else {
                "public"
            },
            redirect_uris: c.redirect_uris.clone(),
            post_logout_redirect_uris: c.post_logout_uris.clone(),
            scopes: c.scopes.clone(),
            first_party: c.first_party,
            created_at: c.created_at,
            token_endpoint_auth_method: auth_method(c),
            jwks: c.jwks.as_deref().and_then(|j| serde_json::from_str(j).ok()),
            backchannel_logout_uri: c.backchannel_logout_uri.clone(),
            audiences: c.audiences.clone(),
            grant_types: c.grant_types.clone(),
            access_token_ttl: c.access_token_ttl,
            refresh_token_ttl: c.refresh_token_ttl,
            version: c.version,
        }
    }
}

/// A registered client, with its secret shown this once (confidential).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Registered {
    #[serde(flatten)]
    pub client: ClientView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

fn auth_method(c: &OAuthClient) -> &'static str {
    if c.jwks.is_some() {
        "private_key_jwt"
    } else if c.secret_hash.is_some() {
        "client_secret_basic"
    } else {
        "none"
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(Kind::Unprocessable, "invalid_client_metadata", message)
}

fn valid_client_id(id: &str) -> bool {
    (3..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Checks a description and makes the client (and its secret).
pub fn check(new: &NewClient, now: i64) -> Result<(OAuthClient, Option<String>)> {
    if !valid_client_id(&new.client_id) {
        return Err(invalid(
            "client_id: 3 to 64 lower-case letters, digits and '-'",
        ));
    }
    let confidential = match new.kind.as_str() {
        "confidential" => true,
        "public" => false,
        _ => return Err(invalid("type: confidential or public")),
    };
    let mut client = OAuthClient {
        id: new.client_id.clone(),
        name: String::new(),
        secret_hash: None,
        previous_secret_hash: None,
        previous_expires_at: None,
        redirect_uris: Vec::new(),
        post_logout_uris: Vec::new(),
        scopes: Vec::new(),
        first_party: false,
        created_at: now,
        jwks: None,
        backchannel_logout_uri: None,
        audiences: Vec::new(),
        grant_types: Vec::new(),
        access_token_ttl: None,
        refresh_token_ttl: None,
        version: 1,
    };
    let method = new.token_endpoint_auth_method.as_deref();
    let keys = match (confidential, method) {
        (true, None | Some("client_secret_basic" | "client_secret_post")) => None,
        (true, Some("private_key_jwt")) => Some(
            new.jwks
                .as_ref()
                .ok_or_else(|| invalid("private_key_jwt needs jwks"))?,
        ),
        (false, None | Some("none")) => None,
        (true, Some(m)) => {
            return Err(invalid(format!(
                "token_endpoint_auth_method {m:?}: client_secret_basic, client_secret_post \
                 or private_key_jwt"
            )))
        }
        (false, Some(m)) => {
            return Err(invalid(format!(
                "token_endpoint_auth_method {m:?}: a public client authenticates with none"
            )))
        }
    };
    if keys.is_none() && new.jwks.is_some() {
        return Err(invalid("jwks is for private_key_jwt clients"));
    }
    let jwks = keys.map(assertion::check_jwks).transpose()?;
    let secret = if confidential && jwks.is_none() {
        Some(format!("cs_{}", random_b64(32)?))
    } else {
        None
    };
    client.secret_hash = secret.as_deref().map(refresh_token_hash);
    client.jwks = jwks;
    // After the credentials: what it may do depends on whether it has any.
    describe(&mut client, new)?;
    Ok((client, secret))
}

/// Checks what an admin may change about a client (everything but its id,
/// kind and credentials), the same at registration and at an update, and
/// writes it into `client`.
fn describe(client: &mut OAuthClient, new: &NewClient) -> Result<()> {
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(invalid("name: 1 to 100 characters"));
    }
    if new.redirect_uris.len() > MAX_URIS {
        return Err(invalid(format!("redirect_uris: at most {MAX_URIS}")));
    }
    if new.post_logout_redirect_uris.len() > MAX_URIS {
        return Err(invalid(format!(
            "post_logout_redirect_uris: at most {MAX_URIS}"
        )));
    }
    for uri in new
        .redirect_uris
        .iter()
        .chain(&new.post_logout_redirect_uris)
    {
        if !registrable_redirect(uri) {
            return Err(invalid(format!(
                "{uri:?}: an absolute https URI without fragment or userinfo \
                 (http only on 127.0.0.1 or [::1]; native apps may use a reverse-domain scheme)"
            )));
        }
    }
    if let Some(uri) = &new.backchannel_logout_uri {
        let web = uri.starts_with("https://") || uri.starts_with("http://");
        if !(web && registrable_redirect(uri)) {
            return Err(invalid(format!(
                "backchannel_logout_uri {uri:?}: an absolute https URI without fragment or \
                 userinfo (http only on 127.0.0.1 or [::1])"
            )));
        }
    }
    if new.audiences.len() > 8 {
        return Err(invalid("audiences: at most 8"));
    }
    let mut audiences: Vec<String> = Vec::new();
    for a in &new.audiences {
        if !valid_resource(a) {
            return Err(invalid(format!(
                "audiences: {a:?} is not an absolute URI without fragment or query"
            )));
        }
        if !audiences.contains(a) {
            audiences.push(a.clone());
        }
    }
    if new.scopes.len() > MAX_SCOPES {
        return Err(invalid(format!("scopes: at most {MAX_SCOPES}")));
    }
    let mut scopes: Vec<String> = Vec::new();
    for s in &new.scopes {
        if !(KNOWN_SCOPES.contains(&s.as_str()) || valid_scope_name(s)) {
            return Err(invalid(format!("{s:?}: not a scope name")));
        }
        if !scopes.contains(s) {
            scopes.push(s.clone());
        }
    }
    // Left out of an update, the grants and lifetimes stay as they were
    // (a registration starts from none: the defaults).
    let kept = (!client.grant_types.is_empty()).then(|| client.grant_types.clone());
    let grant_types = check_grant_types(new.grant_types.as_deref().or(kept.as_deref()), &scopes)?;
    let access_token_ttl = new.access_token_ttl.unwrap_or(client.access_token_ttl);
    let refresh_token_ttl = new.refresh_token_ttl.unwrap_or(client.refresh_token_ttl);
    for (name, value, range) in [
        ("access_token_ttl", access_token_ttl, ACCESS_TTL_RANGE),
        ("refresh_token_ttl", refresh_token_ttl, REFRESH_TTL_RANGE),
    ] {
        if value.is_some_and(|v| !range.contains(&v)) {
            return Err(invalid(format!(
                "{name}: {} to {} seconds",
                range.start(),
                range.end()
            )));
        }
    }
    let has = |g: &str| grant_types.iter().any(|x| x == g);
    if has("authorization_code") && new.redirect_uris.is_empty() {
        return Err(invalid(format!(
            "redirect_uris: 1 to {MAX_URIS} for the authorization_code grant"
        )));
    }
    // A service has no secret to keep from its users: only a client that
    // authenticates may act as itself.
    if has("client_credentials") && !client.confidential() {
        return Err(invalid(
            "grant_types: client_credentials is for confidential clients",
        ));
    }
    if has(TOKEN_EXCHANGE) && !client.confidential() {
        return Err(invalid(
            "grant_types: token exchange is for confidential clients",
        ));
    }
    // The audiences are where it may act for users (RFC 8693's may_act):
    // without any, the grant could give nothing.
    if has(TOKEN_EXCHANGE) && audiences.is_empty() {
        return Err(invalid(
            "audiences: token exchange needs at least one (the services it may call for users)",
        ));
    }
    client.name = name.to_string();
    client.redirect_uris = new.redirect_uris.clone();
    client.post_logout_uris = new.post_logout_redirect_uris.clone();
    client.scopes = scopes;
    client.first_party = new.first_party;
    client.backchannel_logout_uri = new.backchannel_logout_uri.clone();
    client.audiences = audiences;
    client.grant_types = grant_types;
    client.access_token_ttl = access_token_ttl;
    client.refresh_token_ttl = refresh_token_ttl;
    Ok(())
}

/// The grants a client registers for: the code grant always (the way its
/// sessions begin), the refresh grant if it is to stay signed in.
fn check_grant_types(asked: Option<&[String]>, scopes: &[String]) -> Result<Vec<String>> {
    let Some(asked) = asked else {
        return Ok(DEFAULT_GRANT_TYPES.map(str::to_string).to_vec());
    };
    let mut grants: Vec<String> = Vec::new();
    for g in asked {
        if !KNOWN_GRANT_TYPES.contains(&g.as_str()) {
            return Err(invalid(format!(
                "grant_types: {g:?} is not one of authorization_code, refresh_token, \
                 client_credentials, {TOKEN_EXCHANGE}"
            )));
        }
        if !grants.contains(g) {
            grants.push(g.clone());
        }
    }
    let has = |g: &str| grants.iter().any(|x| x == g);
    if !has("authorization_code") && !has("client_credentials") && !has(TOKEN_EXCHANGE) {
        return Err(invalid(
            "grant_types: authorization_code, client_credentials or token exchange, at least one",
        ));
    }
    if has("refresh_token") && !has("authorization_code") {
        return Err(invalid(
            "grant_types: refresh_token needs authorization_code (a service asks again)",
        ));
    }
    if !has("refresh_token") && scopes.iter().any(|s| s == "offline_access") {
        return Err(invalid(
            "scopes: offline_access needs the refresh_token grant",
        ));
    }
    Ok(grants)
}

/// Registers a client; the secret of a confidential one is answered once.
pub async fn register(
    state: &AppState,
    admin: &Admin,
    client: &Client,
    new: &NewClient,
) -> Result<Registered> {
    let auth = admin.recent(state).await?;
    let now = state.now();
    let (record, secret) = check(new, now.secs())?;
    crate::service::keys::id_token_key(state).await?;
    if !state.store.create_client(&record, &auth.user.id).await? {
        return Err(Error::new(
            Kind::Conflict,
            "client_exists",
            "a client with this client_id exists",
        ));
    }
    state
        .audit(
            AuditEvent::new(now.ms, "oauth_client_created")
                .by(auth)
                .client(client)
                .meta(serde_json::json!({
                    "client_id": record.id,
                    "type": ClientView::from(&record).kind,
                    "redirect_uris": record.redirect_uris,
                    "scopes": record.scopes,
                    "first_party": record.first_party,
                    "grant_types": record.grant_types,
                    "access_token_ttl": record.access_token_ttl,
                    "refresh_token_ttl": record.refresh_token_ttl,
                })),
        )
        .await;
    Ok(Registered {
        client: ClientView::from(&record),
        client_secret: secret,
    })
}

pub async fn list(state: &AppState, _admin: &Admin) -> Result<Vec<ClientView>> {
    Ok(state
        .store
        .clients()
        .await?
        .iter()
        .map(ClientView::from)
        .collect())
}

pub async fn get(state: &AppState, _admin: &Admin, client_id: &str) -> Result<ClientView> {
    state
        .store
        .client(client_id)
        .await?
        .map(|c| ClientView::from(&c))
        .ok_or_else(|| Error::not_found("no such client"))
}

/// A new secret, answered once; the old one works for
/// [`SECRET_OVERLAP_SECS`] more, so deployments can roll over, or stops at
/// once when `immediate` (a leaked secret).
pub async fn rotate_secret(
    state: &AppState,
    admin: &Admin,
    client: &Client,
    client_id: &str,
    immediate: bool,
) -> Result<String> {
    let auth = admin.recent(state).await?;
    let now = state.now();
    let secret = format!("cs_{}", random_b64(32)?);
    let rotated = state
        .store
        .rotate_client_secret(
            client_id,
            &refresh_token_hash(&secret),
            if immediate {
                now.secs()
            } else {
                now.secs() + SECRET_OVERLAP_SECS
            },
            now.secs(),
        )
        .await?;
    match rotated {
        Rotated::Done => {}
        Rotated::NoSuchClient => return Err(Error::not_found("no such confidential client")),
        Rotated::InOverlap(until) => return Err(in_overlap(until)),
    }
    let event = AuditEvent::new(now.ms, "oauth_client_secret_rotated")
        .by(auth)
        .client(client)
        .meta(serde_json::json!({"client_id": client_id, "immediate": immediate}));
    if immediate {
        // A leaked secret: what it obtained as the client itself ends too.
        let record = state
            .store
            .revoke_own_tokens(client_id, now.ms, state.revocation_expiry(now))
            .await?;
        state.sessions_ended(vec![record], event).await;
    } else {
        state.audit(event).await;
    }
    Ok(secret)
}

/// A client as changed, and how many of its sessions ended with the change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Updated {
    #[serde(flatten)]
    pub client: ClientView,
    /// Sessions that held a scope or resource the client may no longer ask
    /// for: ended, at the edge too.
    pub sessions_ended: usize,
}

/// Whether a session's grant exceeds what its client may now ask for: a
/// grant never outlives a permission its client lost.
pub fn exceeds(client: &OAuthClient, scope: Option<&str>, resource: Option<&str>) -> bool {
    scope
        .unwrap_or_default()
        .split_whitespace()
        .any(|s| !client.scopes.iter().any(|k| k == s))
        || resource.is_some_and(|r| !client.audiences.iter().any(|a| a == r))
}

/// The stored client with `new`'s description: its id, kind and way of
/// authenticating stay (a secret or keys change by rotation).
pub fn check_update(found: &OAuthClient, new: &NewClient) -> Result<OAuthClient> {
    if new.client_id != found.id {
        return Err(invalid("client_id cannot change"));
    }
    let kind = ClientView::from(found).kind;
    if new.kind != kind {
        return Err(invalid(format!(
            "type cannot change (it is {kind}): register a new client"
        )));
    }
    let method = auth_method(found);
    if let Some(m) = new.token_endpoint_auth_method.as_deref() {
        let same = m == method || (method == "client_secret_basic" && m == "client_secret_post");
        if !same {
            return Err(invalid(format!(
                "token_endpoint_auth_method cannot change (it is {method})"
            )));
        }
    }
    if new.jwks.is_some() {
        return Err(invalid(
            "jwks: replace a client's keys with PUT /admin/clients/{client_id}/jwks",
        ));
    }
    if new.version.is_some_and(|v| v != found.version) {
        return Err(client_changed());
    }
    let mut client = found.clone();
    describe(&mut client, new)?;
    Ok(client)
}

/// Another change came first (or the client went): the caller's view of
/// it is stale.
pub fn client_changed() -> Error {
    Error::new(
        Kind::Conflict,
        "client_changed",
        "the client was changed (or deleted) since you read it: read it again",
    )
}

/// Changes a client's description; its sessions that hold a scope or a
/// resource it may no longer ask for end, at the edge too.
pub async fn update(
    state: &AppState,
    admin: &Admin,
    client: &Client,
    client_id: &str,
    new: &NewClient,
) -> Result<Updated> {
    let auth = admin.recent(state).await?;
    let found = state
        .store
        .client(client_id)
        .await?
        .ok_or_else(|| Error::not_found("no such client"))?;
    let changed = check_update(&found, new)?;
    let now = state.now();
    let records = state
        .store
        .update_client(&changed, exceeds, now.ms, state.revocation_expiry(now))
        .await?
        .ok_or_else(client_changed)?;
    let changed = OAuthClient {
        version: changed.version + 1,
        ..changed
    };
    let ended = records.len();
    let event = AuditEvent::new(now.ms, "oauth_client_updated")
        .by(auth)
        .client(client)
        .meta(serde_json::json!({
            "client_id": changed.id,
            "redirect_uris": changed.redirect_uris,
            "scopes": changed.scopes,
            "audiences": changed.audiences,
            "first_party": changed.first_party,
            "grant_types": changed.grant_types,
            "access_token_ttl": changed.access_token_ttl,
            "refresh_token_ttl": changed.refresh_token_ttl,
            "sessions_ended": ended,
        }));
    state.sessions_ended(records, event).await;
    Ok(Updated {
        client: ClientView::from(&changed),
        sessions_ended: ended,
    })
}

/// A second rotation with an overlap while the first one's runs would stop
/// the secret deployments may still use: refused (409), naming the way out.
pub fn in_overlap(until: Option<i64>) -> Error {
    Error::new(
        Kind::Conflict,
        "rotation_in_progress",
        format!(
            "the secret before the last rotation works until {} (Unix time); rotate with \
             immediate to stop it now, or wait",
            until.unwrap_or_default()
        ),
    )
}

/// Replaces a `private_key_jwt` client's public keys.
pub async fn set_keys(
    state: &AppState,
    admin: &Admin,
    client: &Client,
    client_id: &str,
    jwks: &serde_json::Value,
) -> Result<ClientView> {
    let auth = admin.recent(state).await?;
    let stored = assertion::check_jwks(jwks)?;
    if !state.store.set_client_jwks(client_id, &stored).await? {
        return Err(Error::not_found("no such private_key_jwt client"));
    }
    let kids: Vec<String> = serde_json::from_str::<auth_types::JwkSet>(&stored)
        .map(|s| s.keys.into_iter().map(|k| k.kid).collect())
        .unwrap_or_default();
    state
        .audit(
            AuditEvent::new(state.now().ms, "oauth_client_keys_replaced")
                .by(auth)
                .client(client)
                .meta(serde_json::json!({"client_id": client_id, "kids": kids})),
        )
        .await;
    let found = state
        .store
        .client(client_id)
        .await?
        .ok_or_else(|| Error::not_found("no such client"))?;
    Ok(ClientView::from(&found))
}

/// Deletes a client; every session opened for it ends, at the edge too.
pub async fn delete(
    state: &AppState,
    admin: &Admin,
    client: &Client,
    client_id: &str,
) -> Result<usize> {
    let auth = admin.recent(state).await?;
    let now = state.now();
    let records = state
        .store
        .delete_client(client_id, now.ms, state.revocation_expiry(now))
        .await?
        .ok_or_else(|| Error::not_found("no such client"))?;
    let ended = records.len();
    let event = AuditEvent::new(now.ms, "oauth_client_deleted")
        .by(auth)
        .client(client)
        .meta(serde_json::json!({"client_id": client_id, "sessions_ended": ended}));
    state.sessions_ended(records, event).await;
    Ok(ended)
}
