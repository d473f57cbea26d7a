//! The client registry (admin API, CLI) and client authentication at the
//! token endpoint.

use serde::{Deserialize, Serialize};

use super::assertion;
use crate::domain::oauth::{registrable_redirect, valid_resource, valid_scope_name, KNOWN_SCOPES};
use crate::domain::tokens::{random_b64, refresh_token_hash};
use crate::service::admin::Admin;
use crate::service::context::Client;
use crate::service::error::{Error, Kind, Result};
use crate::store::{AuditEvent, OAuthClient};
use crate::AppState;

/// How long a rotated-out secret keeps working.
pub const SECRET_OVERLAP_SECS: i64 = 24 * 3600;
const MAX_URIS: usize = 16;
const MAX_SCOPES: usize = 32;

/// A client to register, as an admin describes it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
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
}

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
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(invalid("name: 1 to 100 characters"));
    }
    let confidential = match new.kind.as_str() {
        "confidential" => true,
        "public" => false,
        _ => return Err(invalid("type: confidential or public")),
    };
    if new.redirect_uris.is_empty() || new.redirect_uris.len() > MAX_URIS {
        return Err(invalid(format!("redirect_uris: 1 to {MAX_URIS}")));
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
    let client = OAuthClient {
        id: new.client_id.clone(),
        name: name.to_string(),
        secret_hash: secret.as_deref().map(refresh_token_hash),
        previous_secret_hash: None,
        previous_expires_at: None,
        redirect_uris: new.redirect_uris.clone(),
        post_logout_uris: new.post_logout_redirect_uris.clone(),
        scopes,
        first_party: new.first_party,
        created_at: now,
        jwks,
        backchannel_logout_uri: new.backchannel_logout_uri.clone(),
        audiences,
    };
    Ok((client, secret))
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
        )
        .await?;
    if !rotated {
        return Err(Error::not_found("no such confidential client"));
    }
    state
        .audit(
            AuditEvent::new(now.ms, "oauth_client_secret_rotated")
                .by(auth)
                .client(client)
                .meta(serde_json::json!({"client_id": client_id, "immediate": immediate})),
        )
        .await;
    Ok(secret)
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

/// How a client authenticated at the token endpoint.
#[derive(Clone, Default)]
pub struct Credentials {
    /// From `Authorization: Basic` (`client_secret_basic`).
    pub basic: Option<(String, String)>,
    /// `client_id` in the body.
    pub client_id: Option<String>,
    /// `client_secret` in the body (`client_secret_post`).
    pub client_secret: Option<String>,
    /// `client_assertion_type` and `client_assertion` (`private_key_jwt`).
    pub assertion_type: Option<String>,
    pub assertion: Option<String>,
}

/// Secrets and assertions are never shown, not even in a debug dump.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("basic", &self.basic.as_ref().map(|(id, _)| id))
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<hidden>"),
            )
            .field("assertion_type", &self.assertion_type)
            .field("assertion", &self.assertion.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// `invalid_client` (401): the adapter adds `WWW-Authenticate: Basic`.
pub fn invalid_client(message: &str) -> Error {
    let mut e = Error::unauthorized("invalid_client", message);
    e.challenge = Some("Basic realm=\"token\"".into());
    e
}

/// The client the credentials prove: a confidential client by its secret
/// (basic or post, not both), a public one by its id alone. A public
/// client presenting a secret, or a confidential one presenting none, is
/// refused: either is a client that is not what was registered.
pub async fn authenticate(state: &AppState, creds: &Credentials) -> Result<OAuthClient> {
    if creds.assertion_type.is_some() || creds.assertion.is_some() {
        return authenticate_by_assertion(state, creds).await;
    }
    let (id, secret) = match (&creds.basic, &creds.client_secret) {
        (Some(_), Some(_)) => {
            return Err(Error::bad_request(
                "invalid_request",
                "use one client authentication method, not two",
            ))
        }
        (Some((id, secret)), None) => {
            if creds.client_id.as_deref().is_some_and(|b| b != id) {
                return Err(Error::bad_request(
                    "invalid_request",
                    "client_id differs from the authenticated client",
                ));
            }
            (id.clone(), Some(secret.as_str()))
        }
        (None, secret) => match &creds.client_id {
            Some(id) => (id.clone(), secret.as_deref()),
            None => return Err(invalid_client("client authentication is required")),
        },
    };
    let now = state.now().secs();
    let Some(found) = state.store.client(&id).await? else {
        return Err(invalid_client("unknown client"));
    };
    if found.jwks.is_some() {
        return Err(invalid_client(
            "this client authenticates with private_key_jwt",
        ));
    }
    match (&found.secret_hash, secret) {
        (None, None) => Ok(found),
        (None, Some(_)) => Err(invalid_client(
            "a public client authenticates with no secret",
        )),
        (Some(_), None) => Err(invalid_client("this client must authenticate")),
        (Some(current), Some(presented)) => {
            let hash = refresh_token_hash(presented);
            let previous_live = found.previous_expires_at.is_some_and(|t| now < t);
            let ok = same(current, &hash)
                || (previous_live
                    && found
                        .previous_secret_hash
                        .as_deref()
                        .is_some_and(|p| same(p, &hash)));
            if ok {
                Ok(found)
            } else {
                Err(invalid_client("client authentication failed"))
            }
        }
    }
}

/// `private_key_jwt`: the assertion alone (no secret besides it); the
/// client is the one `client_id` names, or else the assertion's `sub`.
async fn authenticate_by_assertion(state: &AppState, creds: &Credentials) -> Result<OAuthClient> {
    if creds.basic.is_some() || creds.client_secret.is_some() {
        return Err(Error::bad_request(
            "invalid_request",
            "use one client authentication method, not two",
        ));
    }
    let (Some(kind), Some(assertion)) = (&creds.assertion_type, &creds.assertion) else {
        return Err(Error::bad_request(
            "invalid_request",
            "client_assertion_type and client_assertion go together",
        ));
    };
    if kind != assertion::ASSERTION_TYPE {
        return Err(Error::bad_request(
            "invalid_request",
            format!(
                "client_assertion_type must be {}",
                assertion::ASSERTION_TYPE
            ),
        ));
    }
    let claimed = assertion::claimed_client(assertion)
        .ok_or_else(|| invalid_client("client assertion: malformed"))?;
    if creds.client_id.as_deref().is_some_and(|id| id != claimed) {
        return Err(invalid_client(
            "client assertion: sub differs from client_id",
        ));
    }
    let Some(found) = state.store.client(&claimed).await? else {
        return Err(invalid_client("unknown client"));
    };
    assertion::verify(state, &found, assertion).await?;
    Ok(found)
}

/// Compares two hashes without an early exit.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
