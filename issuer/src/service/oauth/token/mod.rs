//! The token endpoint: which grant, then the grants that open a session
//! of a client (authorization code with PKCE, device code, refresh); the
//! services' grants in `machine.rs`, the ID token and `userinfo` in
//! `id_token.rs`.

use crate::domain::clock::Now;
use crate::domain::oauth::{
    pkce_matches, redirect_matches, DEVICE_CODE, JWT_BEARER, TOKEN_EXCHANGE,
};
use crate::domain::tokens::{new_id, refresh_token_hash};
use crate::service::context::Client;
use crate::service::error::{Error, Result};
use crate::service::grant::{self, ClientGrant, Delivery, Tokens};
use crate::service::oauth::client_auth::{self, Credentials};
use crate::store::{AuditEvent, OAuthClient, Outcome, Redeemed, User};
use crate::AppState;
use id_token::{respond, Issued};
use types::{invalid_grant, invalid_target};

mod id_token;
mod machine;
mod personal;
mod types;

pub use id_token::{userinfo, Profile};
pub use types::{TokenRequest, TokenResponse};

/// Answers a token request; with a DPoP proof, with tokens bound to its
/// key (RFC 9449).
pub async fn token(
    state: &AppState,
    client: &Client,
    creds: Credentials,
    req: TokenRequest,
) -> Result<TokenResponse> {
    let client = crate::service::oauth::dpop::prove(state, client, req.dpop.as_deref()).await?;
    let mut answer = grant_of(state, &client, creds, req).await?;
    if client.dpop_jkt.is_some() {
        answer.token_type = "DPoP";
    }
    Ok(answer)
}

async fn grant_of(
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
    if grant_type == TOKEN_EXCHANGE
        && req.subject_token_type.as_deref() == Some(crate::domain::pat::TOKEN_TYPE)
    {
        // The personal access token is the credential; no client.
        return personal::exchange(state, client, &creds, &req).await;
    }
    if grant_type == JWT_BEARER {
        // The assertion names the client; credentials, if any, must agree.
        return machine::workload_token(state, client, &creds, &req).await;
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
        "client_credentials" => {
            machine::service_token(state, client, &oauth_client, &req, None).await
        }
        TOKEN_EXCHANGE => machine::on_behalf(state, client, &oauth_client, &req).await,
        DEVICE_CODE => device_token(state, client, &oauth_client, &req).await,
        _ => refresh(state, client, &oauth_client, &req).await,
    }
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
    let grant = Granted {
        user_id: &found.user_id,
        scope: &found.scope,
        resource,
    };
    let user = grantee(
        state,
        oauth_client,
        grant,
        "the code is invalid or has expired",
    )
    .await?;
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

/// What a code or a device's approval grants, before its session opens.
#[derive(Clone, Copy)]
struct Granted<'a> {
    user_id: &'a str,
    scope: &'a str,
    resource: Option<&'a str>,
}

/// The user a grant is for, while the client may still ask for what it
/// grants: one issued before an admin narrowed the client grants no more
/// than the client may now ask for. `gone`: what a deleted user's grant is.
async fn grantee(
    state: &AppState,
    oauth_client: &OAuthClient,
    grant: Granted<'_>,
    gone: &str,
) -> Result<User> {
    if crate::service::oauth::clients::exceeds(oauth_client, Some(grant.scope), grant.resource) {
        return Err(invalid_grant(
            "this client may no longer ask for what was granted",
        ));
    }
    state
        .store
        .user_by_id(grant.user_id)
        .await?
        .ok_or_else(|| invalid_grant(gone))
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
            crate::service::oauth::clients::exceeds,
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
    let approved =
        crate::service::oauth::device::poll(state, &oauth_client.id, req.device_code.as_deref())
            .await?;
    let grant = Granted {
        user_id: &approved.user_id,
        scope: &approved.scope,
        resource: approved.resource.as_deref(),
    };
    let gone = "the device code is invalid or was already used";
    let user = grantee(state, oauth_client, grant, gone).await?;
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
        if crate::service::oauth::clients::exceeds(
            oauth_client,
            s.scope.as_deref(),
            s.resource.as_deref(),
        ) {
            return Err(invalid_grant(
                "this client may no longer ask for what this grant holds",
            ));
        }
    }
    // RFC 9449 §5: a session bound to a key refreshes only with a proof
    // signed by it (checked before the token rotates).
    if let Some(bound) = session.as_ref().and_then(|s| s.dpop_jkt.as_deref()) {
        if client.dpop_jkt.as_deref() != Some(bound) {
            return Err(crate::service::oauth::dpop::invalid_proof(
                "this refresh token is bound to a DPoP key: send a proof signed with it",
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
