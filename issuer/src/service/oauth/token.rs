//! The token endpoint's grants (authorization code with PKCE, refresh
//! token), the ID token, and `userinfo`.

use serde::{Deserialize, Serialize};

use crate::domain::clock::Now;
use crate::domain::oauth::{
    at_hash, mint_id_token, pkce_matches, redirect_matches, DEVICE_CODE, JWT_BEARER,
    PERSONAL_SCOPES, TOKEN_EXCHANGE,
};
use crate::domain::tokens::{new_id, refresh_token_hash};
use crate::service::context::{Authenticated, Client};
use crate::service::error::{Error, Result};
use crate::service::grant::{self, ClientGrant, Delivery, Tokens};
use crate::service::oauth::client_auth::{self, Credentials};
use crate::service::oauth::exchange::{ExchangeRequest, ACCESS_TOKEN_TYPE};
use crate::store::{AuditEvent, OAuthClient, Outcome, Redeemed, User};
use crate::AppState;

/// The token endpoint's form.
#[derive(Debug, Default, Deserialize)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
    /// RFC 8707.
    pub resource: Option<String>,
    /// Token exchange (RFC 8693).
    pub subject_token: Option<String>,
    pub subject_token_type: Option<String>,
    pub actor_token: Option<String>,
    pub audience: Option<String>,
    pub requested_token_type: Option<String>,
    /// The device authorization grant (RFC 8628).
    pub device_code: Option<String>,
    /// The JWT bearer grant (RFC 7523): a workload's cluster token.
    pub assertion: Option<String>,
}

/// RFC 6749 §5.1, with OIDC's `id_token`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OAuthTokenResponse)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// Token exchange (RFC 8693 §2.2.1): what `access_token` holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
}

fn invalid_grant(message: &str) -> Error {
    Error::bad_request("invalid_grant", message)
}

fn invalid_target(message: &str) -> Error {
    Error::bad_request("invalid_target", message)
}

/// Answers a token request.
pub async fn token(
    state: &AppState,
    client: &Client,
    creds: Credentials,
    req: TokenRequest,
) -> Result<TokenResponse> {
    let grant_type = req
        .grant_type
        .as_deref()
        .ok_or_else(|| Error::bad_request("invalid_request", "grant_type is missing"))?;
    if !matches!(
        grant_type,
        "authorization_code"
            | "refresh_token"
            | "client_credentials"
            | TOKEN_EXCHANGE
            | DEVICE_CODE
            | JWT_BEARER
    ) {
        return Err(Error::bad_request(
            "unsupported_grant_type",
            "grant_type: authorization_code, refresh_token, client_credentials, \
             urn:ietf:params:oauth:grant-type:token-exchange, \
             urn:ietf:params:oauth:grant-type:device_code or \
             urn:ietf:params:oauth:grant-type:jwt-bearer",
        ));
    }
    if grant_type == JWT_BEARER {
        // The assertion names the client; credentials, if any, must agree.
        return workload_token(state, client, &creds, &req).await;
    }
    let oauth_client = client_auth::authenticate(state, &creds).await?;
    if !oauth_client.may_use(grant_type) {
        // RFC 6749 §5.2; a refresh token it holds stays as it was.
        return Err(Error::bad_request(
            "unauthorized_client",
            "this client is not registered for this grant_type",
        ));
    }
    if oauth_client.scopes.iter().any(|s| s == "openid") {
        // Before a code is spent: the first ID token may need its key made.
        crate::service::keys::id_token_key(state).await?;
    }
    match grant_type {
        "authorization_code" => exchange_code(state, client, &oauth_client, &req).await,
        "client_credentials" => service_token(state, client, &oauth_client, &req, None).await,
        TOKEN_EXCHANGE => on_behalf(state, client, &oauth_client, &req).await,
        DEVICE_CODE => device_token(state, client, &oauth_client, &req).await,
        _ => refresh(state, client, &oauth_client, &req).await,
    }
}

/// Token exchange (RFC 8693): the answer to `exchange.rs`'s grant.
async fn on_behalf(
    state: &AppState,
    client: &Client,
    actor: &OAuthClient,
    req: &TokenRequest,
) -> Result<TokenResponse> {
    let asked = ExchangeRequest {
        subject_token: req.subject_token.as_deref(),
        subject_token_type: req.subject_token_type.as_deref(),
        actor_token: req.actor_token.as_deref(),
        requested_token_type: req.requested_token_type.as_deref(),
        resource: req.resource.as_deref(),
        audience: req.audience.as_deref(),
        scope: req.scope.as_deref(),
    };
    let (tokens, scope) = super::exchange::exchange(state, client, actor, asked).await?;
    Ok(TokenResponse {
        access_token: tokens.access_token,
        token_type: "Bearer",
        expires_in: tokens.expires_in,
        refresh_token: None,
        scope,
        id_token: None,
        issued_token_type: Some(ACCESS_TOKEN_TYPE),
    })
}

/// Workload identity: a cluster's service-account token (RFC 7523 JWT
/// bearer) for the client its account is mapped to, which then gets what
/// `client_credentials` gives it.
async fn workload_token(
    state: &AppState,
    client: &Client,
    creds: &Credentials,
    req: &TokenRequest,
) -> Result<TokenResponse> {
    let assertion = req
        .assertion
        .as_deref()
        .ok_or_else(|| Error::bad_request("invalid_request", "assertion is missing"))?;
    let now = state.now();
    let workload = state
        .workload
        .verify(assertion, &state.settings.issuer_url, now.secs())
        .await?;
    let oauth_client = state
        .store
        .client(&workload.client_id)
        .await?
        .filter(|c| c.may_use(JWT_BEARER))
        .ok_or_else(|| {
            invalid_grant("the service account's client is not registered for this grant")
        })?;
    let presented = creds.basic.is_some()
        || creds.client_id.is_some()
        || creds.client_secret.is_some()
        || creds.assertion.is_some();
    if presented && client_auth::authenticate(state, creds).await?.id != oauth_client.id {
        return Err(Error::invalid_client(
            "the client authenticated is not the one the assertion's service account maps to",
        ));
    }
    let via = serde_json::json!({
        "cluster": workload.cluster,
        "namespace": workload.namespace,
        "service_account": workload.service_account,
        "pod": workload.pod,
    });
    service_token(state, client, &oauth_client, req, Some(via)).await
}

/// `client_credentials` (RFC 6749 §4.4): the scopes asked for (by default
/// every route scope the client has) and at most one resource. `via`: how
/// the client proved itself, when not by its own credentials (audited).
async fn service_token(
    state: &AppState,
    client: &Client,
    oauth_client: &OAuthClient,
    req: &TokenRequest,
    via: Option<serde_json::Value>,
) -> Result<TokenResponse> {
    let granted: Vec<&str> = oauth_client
        .scopes
        .iter()
        .map(String::as_str)
        .filter(|s| !PERSONAL_SCOPES.contains(s))
        .collect();
    let scope = match req.scope.as_deref() {
        None => granted.join(" "),
        Some(asked) => {
            let mut scope: Vec<&str> = Vec::new();
            for s in asked.split(' ').filter(|s| !s.is_empty()) {
                if !granted.contains(&s) {
                    return Err(Error::bad_request(
                        "invalid_scope",
                        format!("{s}: not a scope this client may ask for as itself"),
                    ));
                }
                if !scope.contains(&s) {
                    scope.push(s);
                }
            }
            scope.join(" ")
        }
    };
    if let Some(r) = req.resource.as_deref() {
        if !oauth_client.audiences.iter().any(|a| a == r) {
            return Err(invalid_target(
                "resource: not a resource this client may ask for",
            ));
        }
    }
    let tokens = grant::client_credentials(
        state,
        client,
        oauth_client,
        &scope,
        req.resource.as_deref(),
        via,
        state.now(),
    )
    .await?;
    Ok(TokenResponse {
        access_token: tokens.access_token,
        token_type: "Bearer",
        expires_in: tokens.expires_in,
        refresh_token: None,
        scope,
        id_token: None,
        issued_token_type: None,
    })
}

async fn exchange_code(
    state: &AppState,
    client: &Client,
    oauth_client: &OAuthClient,
    req: &TokenRequest,
) -> Result<TokenResponse> {
    let missing = |name: &str| Error::bad_request("invalid_request", format!("{name} is missing"));
    let code = req.code.as_deref().ok_or_else(|| missing("code"))?;
    let redirect_uri = req
        .redirect_uri
        .as_deref()
        .ok_or_else(|| missing("redirect_uri"))?;
    let verifier = req
        .code_verifier
        .as_deref()
        .ok_or_else(|| missing("code_verifier"))?;
    let now = state.now();
    let code_hash = refresh_token_hash(code);
    let session_id = new_id();
    let redeemed = state
        .store
        .redeem_code(
            &code_hash,
            &session_id,
            now.ms,
            state.revocation_expiry(now),
        )
        .await?;
    let found = match redeemed {
        Redeemed::Fresh(found) => found,
        Redeemed::Invalid => return Err(invalid_grant("the code is invalid or has expired")),
        Redeemed::Replayed {
            client_id,
            user_id,
            records,
        } => {
            // RFC 9700 §4.2.4: a code seen twice was stolen; what it
            // issued is ended, at the edge too.
            tracing::warn!(client_id = %client_id, user_id = %user_id, "authorization code replayed");
            let event = AuditEvent::new(now.ms, "oauth_code_replayed")
                .actor(&user_id)
                .client(client)
                .outcome(Outcome::Denied, "code_replayed")
                .meta(serde_json::json!({"client_id": client_id, "sessions_ended": records.len()}));
            state.sessions_ended(records, event).await;
            return Err(invalid_grant("the code was already used"));
        }
    };
    // Spent whatever follows: a code stolen and tried with the wrong
    // verifier is gone for the thief and the client alike.
    if found.client_id != oauth_client.id {
        return Err(invalid_grant("the code was issued to another client"));
    }
    if found.redirect_uri != redirect_uri {
        return Err(invalid_grant(
            "redirect_uri differs from the authorization request's",
        ));
    }
    if !oauth_client
        .redirect_uris
        .iter()
        .any(|r| redirect_matches(r, &found.redirect_uri))
    {
        return Err(invalid_grant(
            "the code's redirect_uri is no longer registered for this client",
        ));
    }
    if !pkce_matches(verifier, &found.code_challenge) {
        return Err(invalid_grant(
            "code_verifier does not match the code_challenge",
        ));
    }
    let resource = match (req.resource.as_deref(), found.resource.as_deref()) {
        (Some(asked), Some(granted)) if asked != granted => {
            return Err(invalid_target(
                "resource differs from the authorization request's",
            ))
        }
        (Some(asked), None) if !oauth_client.audiences.iter().any(|a| a == asked) => {
            return Err(invalid_target(
                "resource: not a resource this client may ask for",
            ))
        }
        (asked, granted) => granted.or(asked),
    };
    // A code issued before an admin narrowed the client grants no more
    // than the client may now ask for.
    if super::clients::exceeds(oauth_client, Some(&found.scope), resource) {
        return Err(invalid_grant(
            "this client may no longer ask for what the code grants",
        ));
    }
    let user = state
        .store
        .user_by_id(&found.user_id)
        .await?
        .ok_or_else(|| invalid_grant("the code is invalid or has expired"))?;
    let tokens = open_session(
        state,
        client,
        &user,
        ClientGrant {
            session_id: &session_id,
            client_id: &oauth_client.id,
            scope: &found.scope,
            amr: &found.amr,
            auth_time: found.auth_time,
            resource,
            access_ttl: oauth_client.access_token_ttl,
            session_ttl: oauth_client.refresh_token_ttl,
        },
        now,
    )
    .await?;
    // A replay that raced this exchange found no session to end yet.
    if state.store.code_replayed(&code_hash).await? {
        let record = state
            .store
            .revoke_session(
                &session_id,
                "code_replayed",
                now.ms,
                state.revocation_expiry(now),
            )
            .await?;
        let event = AuditEvent::new(now.ms, "oauth_code_replayed")
            .user(&user)
            .client(client)
            .session(&session_id)
            .outcome(Outcome::Denied, "code_replayed");
        state
            .sessions_ended(record.into_iter().collect(), event)
            .await;
        return Err(invalid_grant("the code was already used"));
    }
    let scope = found.scope.clone();
    let session = Issued {
        session_id: &session_id,
        amr: &found.amr,
        auth_time: found.auth_time,
        nonce: found.nonce.as_deref(),
    };
    respond(state, oauth_client, &user, session, &scope, tokens, now).await
}

/// A client's session, through the one grant path; an admin who narrowed
/// the client while it was being opened (the update's scan may have
/// missed it) ends it before any token leaves, under the update's lock.
async fn open_session(
    state: &AppState,
    client: &Client,
    user: &User,
    g: ClientGrant<'_>,
    now: Now,
) -> Result<Tokens> {
    let tokens = grant::start_client_session(state, client, user, g, now).await?;
    if let Some(record) = state
        .store
        .end_if_client_narrowed(
            g.session_id,
            super::clients::exceeds,
            now.ms,
            state.revocation_expiry(now),
        )
        .await?
    {
        let event = AuditEvent::new(now.ms, "oauth_client_narrowed")
            .user(user)
            .client(client)
            .session(g.session_id)
            .outcome(Outcome::Denied, "client_narrowed");
        state.sessions_ended(vec![record], event).await;
        return Err(invalid_grant(
            "this client may no longer ask for what was granted",
        ));
    }
    Ok(tokens)
}

/// The device authorization grant (RFC 8628 §3.4): the device's poll; once
/// its user approved, a session of the client's, as an authorization
/// code's exchange opens one.
async fn device_token(
    state: &AppState,
    client: &Client,
    oauth_client: &OAuthClient,
    req: &TokenRequest,
) -> Result<TokenResponse> {
    let approved = super::device::poll(state, &oauth_client.id, req.device_code.as_deref()).await?;
    if super::clients::exceeds(
        oauth_client,
        Some(&approved.scope),
        approved.resource.as_deref(),
    ) {
        return Err(invalid_grant(
            "this client may no longer ask for what was granted",
        ));
    }
    let user = state
        .store
        .user_by_id(&approved.user_id)
        .await?
        .ok_or_else(|| invalid_grant("the device code is invalid or was already used"))?;
    let now = state.now();
    let session_id = new_id();
    let tokens = open_session(
        state,
        client,
        &user,
        ClientGrant {
            session_id: &session_id,
            client_id: &oauth_client.id,
            scope: &approved.scope,
            amr: &approved.amr,
            auth_time: approved.auth_time,
            resource: approved.resource.as_deref(),
            access_ttl: oauth_client.access_token_ttl,
            session_ttl: oauth_client.refresh_token_ttl,
        },
        now,
    )
    .await?;
    let session = Issued {
        session_id: &session_id,
        amr: &approved.amr,
        auth_time: approved.auth_time,
        nonce: None,
    };
    respond(
        state,
        oauth_client,
        &user,
        session,
        &approved.scope,
        tokens,
        now,
    )
    .await
}

async fn refresh(
    state: &AppState,
    client: &Client,
    oauth_client: &OAuthClient,
    req: &TokenRequest,
) -> Result<TokenResponse> {
    let presented = req
        .refresh_token
        .as_deref()
        .ok_or_else(|| Error::bad_request("invalid_request", "refresh_token is missing"))?;
    let session = state
        .store
        .find_refresh(&refresh_token_hash(presented))
        .await?
        .map(|f| f.session);
    // A grant never outlives a permission its client lost (the update
    // ends such sessions; this holds in the race with it too).
    if let Some(s) = session
        .as_ref()
        .filter(|s| s.client_id.as_deref() == Some(oauth_client.id.as_str()))
    {
        if super::clients::exceeds(oauth_client, s.scope.as_deref(), s.resource.as_deref()) {
            return Err(invalid_grant(
                "this client may no longer ask for what this grant holds",
            ));
        }
    }
    // RFC 8707: a refresh may name the session's resource, no other
    // (checked before the token rotates).
    if let (Some(asked), Some(s)) = (req.resource.as_deref(), &session) {
        if s.resource.as_deref() != Some(asked) {
            return Err(invalid_target(
                "resource differs from the one this grant is for",
            ));
        }
    }
    let tokens = crate::service::sessions::refresh(
        state,
        client,
        presented,
        Delivery::Body,
        Some(&oauth_client.id),
    )
    .await
    .map_err(|e| match e.code {
        // RFC 6749 §5.2: a refused refresh token is invalid_grant, 400.
        "invalid_grant" => invalid_grant(&e.message),
        _ => e,
    })?;
    let Some(session) = session else {
        return Err(invalid_grant("refresh token is invalid"));
    };
    let scope = session.scope.clone().unwrap_or_default();
    // A narrower scope may be asked for; never a wider one. The tokens
    // keep the session's scope (narrowing per request is not offered).
    if let Some(asked) = req.scope.as_deref() {
        if !asked
            .split(' ')
            .filter(|s| !s.is_empty())
            .all(|s| scope.split(' ').any(|g| g == s))
        {
            return Err(Error::bad_request("invalid_scope", "more than was granted"));
        }
    }
    let user = state
        .store
        .user_by_id(&session.user_id)
        .await?
        .ok_or_else(|| invalid_grant("refresh token is invalid"))?;
    let issued = Issued {
        session_id: &session.id,
        amr: &session.amr,
        auth_time: session.auth_time,
        nonce: None,
    };
    respond(
        state,
        oauth_client,
        &user,
        issued,
        &scope,
        tokens,
        state.now(),
    )
    .await
}

/// What the ID token tells of the session.
#[derive(Clone, Copy)]
struct Issued<'a> {
    session_id: &'a str,
    amr: &'a str,
    auth_time: i64,
    nonce: Option<&'a str>,
}

async fn respond(
    state: &AppState,
    oauth_client: &OAuthClient,
    user: &User,
    issued: Issued<'_>,
    scope: &str,
    tokens: Tokens,
    now: Now,
) -> Result<TokenResponse> {
    let id_token = if has_scope(scope, "openid") {
        Some(
            id_token(
                state,
                oauth_client,
                user,
                issued,
                scope,
                (&tokens.access_token, tokens.expires_in),
                now,
            )
            .await?,
        )
    } else {
        None
    };
    Ok(TokenResponse {
        access_token: tokens.access_token,
        token_type: "Bearer",
        expires_in: tokens.expires_in,
        // A third-party application stays signed in only if allowed to
        // (`offline_access`, which its consent page names), and a client
        // registered without the refresh grant never holds a refresh token.
        refresh_token: tokens
            .refresh
            .filter(|_| oauth_client.may_use("refresh_token"))
            .filter(|_| oauth_client.first_party || has_scope(scope, "offline_access"))
            .map(|r| r.token),
        scope: scope.to_string(),
        id_token,
        issued_token_type: None,
    })
}

fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split(' ').any(|s| s == wanted)
}

#[derive(Serialize)]
struct IdClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    acr: &'a str,
    amr: Vec<&'a str>,
    sid: &'a str,
    at_hash: String,
    #[serde(flatten)]
    profile: Profile<'a>,
}

/// The claims `profile` and `email` scopes release (ID token, userinfo).
#[derive(Serialize, Default)]
pub struct Profile<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    picture: Option<&'a str>,
}

fn profile<'a>(user: &'a User, scope: &str) -> Profile<'a> {
    let mut p = Profile::default();
    if has_scope(scope, "email") {
        p.email = Some(&user.email);
        p.email_verified = Some(user.email_verified_at.is_some());
    }
    if has_scope(scope, "profile") {
        p.name = user.name.as_deref();
        p.picture = user.avatar_url.as_deref();
    }
    p
}

async fn id_token(
    state: &AppState,
    oauth_client: &OAuthClient,
    user: &User,
    issued: Issued<'_>,
    scope: &str,
    (access_token, lifetime): (&str, i64),
    now: Now,
) -> Result<String> {
    let key = crate::service::keys::id_token_key(state).await?;
    let claims = IdClaims {
        iss: &state.settings.issuer_url,
        sub: &user.id,
        aud: &oauth_client.id,
        // No longer than the access token it comes with (the client's
        // lifetime, when it set a shorter one).
        exp: now.secs() + lifetime,
        iat: now.secs(),
        auth_time: issued.auth_time,
        nonce: issued.nonce,
        acr: crate::domain::mfa::acr_of(issued.amr),
        amr: issued.amr.split_whitespace().collect(),
        sid: issued.session_id,
        at_hash: at_hash(key.alg, access_token),
        profile: profile(user, scope),
    };
    Ok(mint_id_token(&key, &claims)?)
}

/// `userinfo` (OIDC Core §5.3): the subject and what the token's scope
/// releases. Needs `openid`.
pub fn userinfo(auth: &Authenticated) -> Result<serde_json::Value> {
    let scope = auth.session.scope.as_deref().unwrap_or("");
    if !has_scope(scope, "openid") {
        let mut e = Error::forbidden("the token's scope lacks openid");
        e.code = "insufficient_scope";
        return Err(e);
    }
    let mut body = serde_json::to_value(profile(&auth.user, scope)).map_err(Error::internal)?;
    if let Some(map) = body.as_object_mut() {
        map.insert("sub".into(), auth.user.id.clone().into());
    }
    Ok(body)
}
