//! Token revocation (RFC 7009) and introspection (RFC 7662), for clients
//! and for resource servers that cannot verify JWTs themselves.

use serde::Serialize;

use crate::domain::tokens::refresh_token_hash;
use crate::service::context::{verify_token_any_audience, Client};
use crate::service::error::{Error, Result};
use crate::service::oauth::client_auth::{self, Credentials};
use auth_types::{AccessClaims, RevocationKind};

use crate::domain::oauth::{client_subject, JWT_BEARER, TOKEN_EXCHANGE};
use crate::service::state::REVOCATION_LEEWAY_SECS;
use crate::store::{AuditEvent, NewRevocation, Session};
use crate::AppState;

/// The token a request names, as the issuer knows it.
enum Found {
    /// A refresh token of this session.
    Refresh(Box<Session>),
    /// A live access token of this session (one a service got for the
    /// user included: `act`).
    Access(Box<crate::service::context::Authenticated>),
    /// A live token a service got as itself (`client_credentials`).
    Service(Box<AccessClaims>),
    None,
}

/// A service's own token: live while it verifies, its client still may
/// act as itself, and no revocation of the client's tokens (or of this
/// one) came after it.
async fn service_token(state: &AppState, token: &str) -> Result<Option<AccessClaims>> {
    let now = state.now().secs();
    let keys = state.keys.snapshot();
    let Ok(verified) = auth_types::jws::verify(token, &keys.verifying_access) else {
        return Ok(None);
    };
    let claims = verified.claims;
    if claims
        .validate_except_audience(&state.expectations(), now)
        .is_err()
        || claims.sub != client_subject(&claims.client_id)
    {
        return Ok(None);
    }
    let allowed = state
        .store
        .client(&claims.client_id)
        .await?
        .is_some_and(|c| c.may_use("client_credentials") || c.may_use(JWT_BEARER));
    let cut = state.store.revoked_before(&claims.sub, now).await?;
    if !allowed
        || cut.is_some_and(|c| claims.iat < c)
        || state.store.token_revoked(&claims.jti, now).await?
    {
        return Ok(None);
    }
    Ok(Some(claims))
}

/// What a session's liveness does not tell of an access token: that it
/// was not revoked alone, and for a delegated one, that its actor still
/// may act for users and had its tokens cut no later.
async fn access_live(state: &AppState, claims: &AccessClaims) -> Result<bool> {
    let now = state.now().secs();
    if state.store.token_revoked(&claims.jti, now).await? {
        return Ok(false);
    }
    let Some(act) = &claims.act else {
        return Ok(true);
    };
    let allowed = state
        .store
        .client(&act.client_id)
        .await?
        .is_some_and(|c| c.may_use(TOKEN_EXCHANGE));
    let cut = state.store.revoked_before(&act.sub, now).await?;
    Ok(allowed && cut.is_none_or(|c| claims.iat >= c))
}

/// RFC 7009 for a token without a session of its own (a service's, as
/// itself or for a user): it alone ends, by `jti`, at the edge too.
async fn revoke_one(
    state: &AppState,
    client: &Client,
    oauth_client: &crate::store::OAuthClient,
    claims: &AccessClaims,
) -> Result<()> {
    let now = state.now();
    let record = state
        .store
        .record_revocation(&NewRevocation {
            kind: RevocationKind::Token,
            subject: &claims.jti,
            issued_before: claims.exp,
            created_at_ms: now.ms,
            expires_at: claims.exp + REVOCATION_LEEWAY_SECS,
        })
        .await?;
    let event = AuditEvent::new(now.ms, "oauth_token_revoked")
        .client(client)
        .meta(serde_json::json!({
            "client_id": oauth_client.id,
            "service": claims.act.is_none(),
            "for_user": claims.act.as_ref().map(|_| &claims.sub),
        }));
    state.sessions_ended(vec![record], event).await;
    Ok(())
}

async fn find(state: &AppState, token: &str, hint: Option<&str>) -> Result<Found> {
    let by_refresh = || async {
        Ok::<_, Error>(
            state
                .store
                .find_refresh(&refresh_token_hash(token))
                .await?
                .filter(|f| f.rotated_at.is_none())
                .map(|f| f.session),
        )
    };
    // The hint only orders the look-ups (RFC 7009 §2.1).
    if hint != Some("access_token") {
        if let Some(s) = by_refresh().await? {
            return Ok(Found::Refresh(Box::new(s)));
        }
    }
    if let Ok(auth) = verify_token_any_audience(state, token, state.now()).await {
        if access_live(state, &auth.claims).await? {
            return Ok(Found::Access(Box::new(auth)));
        }
        return Ok(Found::None);
    }
    if let Some(claims) = service_token(state, token).await? {
        return Ok(Found::Service(Box::new(claims)));
    }
    if hint == Some("access_token") {
        if let Some(s) = by_refresh().await? {
            return Ok(Found::Refresh(Box::new(s)));
        }
    }
    Ok(Found::None)
}

/// RFC 7009: the client's own token (its session) ends, at the edge too.
/// Unknown tokens, and other clients' tokens, are answered the same way
/// (success, nothing done): the answer tells nothing about them.
pub async fn revoke(
    state: &AppState,
    client: &Client,
    creds: &Credentials,
    token: Option<&str>,
    hint: Option<&str>,
) -> Result<()> {
    let oauth_client = client_auth::authenticate(state, creds).await?;
    let token = token.ok_or_else(|| Error::bad_request("invalid_request", "token is missing"))?;
    let session = match find(state, token, hint).await? {
        Found::Refresh(s) => *s,
        // A delegated token is its actor's; the user's session is not.
        Found::Access(auth) if auth.claims.act.is_some() => {
            if auth.claims.client_id == oauth_client.id {
                revoke_one(state, client, &oauth_client, &auth.claims).await?;
            }
            return Ok(());
        }
        Found::Access(auth) => auth.session,
        Found::Service(claims) if claims.client_id == oauth_client.id => {
            return revoke_one(state, client, &oauth_client, &claims).await;
        }
        Found::Service(_) | Found::None => return Ok(()),
    };
    if session.client_id.as_deref() != Some(oauth_client.id.as_str()) {
        return Ok(());
    }
    let now = state.now();
    let record = state
        .store
        .revoke_session(
            &session.id,
            "revoked_by_client",
            now.ms,
            state.revocation_expiry(now),
        )
        .await?;
    let event = AuditEvent::new(now.ms, "oauth_token_revoked")
        .actor(&session.user_id)
        .session(&session.id)
        .client(client)
        .meta(serde_json::json!({"client_id": oauth_client.id}));
    state
        .sessions_ended(record.into_iter().collect(), event)
        .await;
    Ok(())
}

/// RFC 7662 §2.2.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub aud: Option<auth_types::Audience>,
    /// Who acts for `sub` (RFC 8693 §4.1), on a token a service got for a user.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub act: Option<auth_types::Actor>,
    /// The key a DPoP-bound token is bound to (RFC 9449 §6.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub cnf: Option<auth_types::Confirmation>,
}

/// RFC 7662: whether the token is live, and what it stands for. Only
/// confidential clients may ask (a public client's id is no credential),
/// and only of tokens that are theirs (by `client_id`: a delegated one is
/// its actor's) or for a resource they serve (§4); of any other, the
/// answer is the one for an unknown token.
pub async fn introspect(
    state: &AppState,
    creds: &Credentials,
    token: Option<&str>,
    hint: Option<&str>,
) -> Result<Introspection> {
    let caller = client_auth::authenticate(state, creds).await?;
    if !caller.confidential() {
        return Err(Error::invalid_client(
            "introspection is for confidential clients",
        ));
    }
    let token = token.ok_or_else(|| Error::bad_request("invalid_request", "token is missing"))?;
    let now = state.now().secs();
    let issuer = Some(state.settings.issuer_url.clone());
    let may_see = |claims: &AccessClaims| {
        claims.client_id == caller.id || caller.serves.iter().any(|r| claims.aud.contains(r))
    };
    Ok(match find(state, token, hint).await? {
        Found::Access(auth) if may_see(&auth.claims) => Introspection {
            active: true,
            scope: auth.claims.scope.clone(),
            client_id: Some(auth.claims.client_id.clone()),
            token_type: Some(token_type(&auth.claims)),
            exp: Some(auth.claims.exp),
            iat: Some(auth.claims.iat),
            sub: Some(auth.claims.sub.clone()),
            iss: issuer,
            sid: Some(auth.claims.sid.clone()),
            aud: Some(auth.claims.aud.clone()),
            act: auth.claims.act.clone(),
            cnf: auth.claims.cnf.clone(),
        },
        Found::Service(claims) if may_see(&claims) => Introspection {
            active: true,
            scope: claims.scope.clone(),
            client_id: Some(claims.client_id.clone()),
            token_type: Some(token_type(&claims)),
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            sub: Some(claims.sub.clone()),
            iss: issuer,
            sid: None,
            aud: Some(claims.aud.clone()),
            act: None,
            cnf: claims.cnf.clone(),
        },
        // A refresh token is its client's alone.
        Found::Refresh(s)
            if s.is_live(now) && s.client_id.as_deref() == Some(caller.id.as_str()) =>
        {
            Introspection {
                active: true,
                scope: s.scope.clone(),
                client_id: Some(
                    s.client_id
                        .clone()
                        .unwrap_or_else(|| state.settings.client_id.clone()),
                ),
                token_type: Some("refresh_token"),
                exp: Some(s.idle_expires_at.min(s.absolute_expires_at)),
                iat: None,
                sub: Some(s.user_id.clone()),
                iss: issuer,
                sid: Some(s.id.clone()),
                aud: None,
                act: None,
                cnf: s
                    .dpop_jkt
                    .clone()
                    .map(|jkt| auth_types::Confirmation { jkt }),
            }
        }
        _ => Introspection::default(),
    })
}

/// `DPoP` for a token bound to a key (RFC 9449 §6.2), else `Bearer`.
fn token_type(claims: &AccessClaims) -> &'static str {
    if claims.cnf.is_some() {
        "DPoP"
    } else {
        "Bearer"
    }
}
