//! What a client's registration may say: the checks the admin API, the
//! pages and the CLI share, at registration and at an update.

use serde::Deserialize;

use super::super::assertion;
use super::view::{auth_method, ClientView};
use crate::domain::oauth::{
    registrable_redirect, valid_resource, valid_scope_name, DEVICE_CODE, JWT_BEARER, KNOWN_SCOPES,
    TOKEN_EXCHANGE,
};
use crate::domain::tokens::{random_b64, refresh_token_hash};
use crate::service::error::{Error, Kind, Result};
use crate::store::OAuthClient;

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
    /// For token exchange: the clients whose users' tokens it may trade,
    /// by `client_id`, at most 16; it needs one at least. The issuer's own
    /// sign-in (password, GitHub, passkey; `devmentor-auth` unless
    /// `--client-id` says otherwise) gives tokens without a scope: from one
    /// it gets every scope it may ask for.
    #[serde(default)]
    pub subject_clients: Vec<String>,
    /// A resource server's: the resources it serves (absolute URIs, or the
    /// mesh's audience), at most 8. It may introspect tokens for them
    /// (RFC 7662 §4), besides its own.
    #[serde(default)]
    pub serves: Vec<String>,
    /// The grants it may use: `authorization_code` (people sign in through
    /// it; needs redirect URIs), `refresh_token` (with it), and
    /// `client_credentials` (a confidential client acting as itself, a
    /// service), and `urn:ietf:params:oauth:grant-type:token-exchange` (a
    /// confidential client acting for the users who call it, towards its
    /// `audiences`: RFC 8693), and `urn:ietf:params:oauth:grant-type:device_code`
    /// (people sign in on another screen: a CLI; RFC 8628), and
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer` (a workload proves itself
    /// with its cluster's token, `--workload-trust`; RFC 7523); the first two when left out of a registration, as they
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
const KNOWN_GRANT_TYPES: [&str; 6] = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    TOKEN_EXCHANGE,
    DEVICE_CODE,
    JWT_BEARER,
];
const ACCESS_TTL_RANGE: std::ops::RangeInclusive<i64> = 60..=86_400;
const REFRESH_TTL_RANGE: std::ops::RangeInclusive<i64> = 300..=31_536_000;

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
    // Personal access tokens' sessions carry this one: its holder could
    // introspect and revoke their tokens.
    if new.client_id == crate::domain::pat::CLIENT_ID {
        return Err(invalid(
            "client_id: reserved for personal access tokens; choose another",
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
        subject_clients: Vec::new(),
        serves: Vec::new(),
        last_used_at: None,
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
    let audiences = distinct(
        "audiences",
        &new.audiences,
        8,
        valid_resource,
        "an absolute URI without fragment or query",
    )?;
    let subject_clients = distinct(
        "subject_clients",
        &new.subject_clients,
        16,
        valid_client_id,
        "not a client id",
    )?;
    let serves = distinct(
        "serves",
        &new.serves,
        8,
        |a| valid_resource(a) || valid_audience_name(a),
        "an absolute URI without fragment or query, or an audience name",
    )?;
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
    // Which users' tokens it may trade is said, never assumed: a token a
    // user gave any app is not one the service may act with.
    match (has(TOKEN_EXCHANGE), subject_clients.is_empty()) {
        (true, true) => {
            return Err(invalid(
                "subject_clients: token exchange needs at least one (the clients whose users' \
                 tokens it may trade)",
            ))
        }
        (false, false) => {
            return Err(invalid(
                "subject_clients: only with the token exchange grant",
            ))
        }
        _ => {}
    }
    if !serves.is_empty() && !client.confidential() {
        return Err(invalid(
            "serves: only a confidential client introspects (a public client's id is no credential)",
        ));
    }
    client.name = name.to_string();
    client.redirect_uris = new.redirect_uris.clone();
    client.post_logout_uris = new.post_logout_redirect_uris.clone();
    client.scopes = scopes;
    client.first_party = new.first_party;
    client.backchannel_logout_uri = new.backchannel_logout_uri.clone();
    client.audiences = audiences;
    client.subject_clients = subject_clients;
    client.serves = serves;
    client.grant_types = grant_types;
    client.access_token_ttl = access_token_ttl;
    client.refresh_token_ttl = refresh_token_ttl;
    Ok(())
}

/// A list without repeats, each entry checked.
fn distinct(
    name: &str,
    list: &[String],
    max: usize,
    ok: impl Fn(&str) -> bool,
    what: &str,
) -> Result<Vec<String>> {
    if list.len() > max {
        return Err(invalid(format!("{name}: at most {max}")));
    }
    let mut out: Vec<String> = Vec::new();
    for x in list {
        if !ok(x) {
            return Err(invalid(format!("{name}: {x:?} is {what}")));
        }
        if !out.contains(x) {
            out.push(x.clone());
        }
    }
    Ok(out)
}

/// An audience that is not a URI (the mesh's, `devmentor` by default).
fn valid_audience_name(a: &str) -> bool {
    (1..=100).contains(&a.len())
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
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
                 client_credentials, {TOKEN_EXCHANGE}, {DEVICE_CODE}, {JWT_BEARER}"
            )));
        }
        if !grants.contains(g) {
            grants.push(g.clone());
        }
    }
    let has = |g: &str| grants.iter().any(|x| x == g);
    let signs_people_in = has("authorization_code") || has(DEVICE_CODE);
    let service = has("client_credentials") || has(TOKEN_EXCHANGE) || has(JWT_BEARER);
    if !signs_people_in && !service {
        return Err(invalid(
            "grant_types: authorization_code, the device code, client_credentials, token \
             exchange or the JWT bearer grant, at least one",
        ));
    }
    if has("refresh_token") && !signs_people_in {
        return Err(invalid(
            "grant_types: refresh_token needs authorization_code or the device code (a \
             service asks again)",
        ));
    }
    if !has("refresh_token") && scopes.iter().any(|s| s == "offline_access") {
        return Err(invalid(
            "scopes: offline_access needs the refresh_token grant",
        ));
    }
    Ok(grants)
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
