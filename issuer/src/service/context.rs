//! Who is asking: the caller's address and agent (`Client`), and a caller
//! proved by a live session (`Authenticated`). Adapters fill these from
//! their requests; the rules read them.

use auth_types::jws;

use crate::domain::clock::Now;
use crate::service::error::{Error, Result};
use crate::store::{Session, User};
use crate::AppState;

/// Who is calling, for sessions and the audit log.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The request's trace, for the audit trail.
    pub trace_id: Option<String>,
    /// A browser sent it: it carries `Origin` or fetch metadata (which no
    /// page can remove). A sign-in's refresh token then goes in the cookie
    /// only (see `grant::Delivery`).
    pub browser: bool,
    /// The hash of the refresh cookie the browser sent, if any: a new
    /// sign-in from it replaces (ends) that session. A hash, so no secret
    /// sits in a value that may be debug-printed.
    pub replaces: Option<String>,
    /// The DPoP key (RFC 9449 thumbprint) the request proved it holds, at
    /// the token endpoint: the tokens it gets are bound to it.
    pub dpop_jkt: Option<String>,
}

impl crate::store::AuditEvent {
    /// Where the request came from.
    pub fn client(self, client: &Client) -> Self {
        let mut event = self.from_ip(client.ip.as_deref(), client.user_agent.as_deref());
        event.trace_id = client.trace_id.clone();
        event
    }

    /// Done by the caller, in their session.
    pub fn by(self, auth: &Authenticated) -> Self {
        self.actor(&auth.user.id).session(&auth.session.id)
    }
}

/// A caller with a valid access token whose session is still live.
/// The issuer checks its own database, so a revoked session is refused here
/// at once, without waiting for any feed.
#[derive(Clone)]
pub struct Authenticated {
    pub claims: auth_types::AccessClaims,
    pub user: User,
    pub session: Session,
}

/// `token` as the caller's credential: valid, for a live session of an
/// enabled user, issued after the last password change and token-generation
/// bump. The issuer checks its own database, so a revoked session is
/// refused at once, without waiting for any feed.
///
/// Only the issuer's own sessions: an OAuth client's token (the scopes a
/// user allowed an app) does not act on the user's account through the
/// issuer's API.
pub async fn authenticate(state: &AppState, token: &str, now: Now) -> Result<Authenticated> {
    let auth = verify_token(state, token, now).await?;
    if auth.session.client_id.is_some() {
        return Err(Error::unauthorized(
            "invalid_token",
            "an application's token does not act on the account",
        ));
    }
    Ok(auth)
}

/// An OAuth client's access token (for `userinfo`), checked as
/// [`authenticate`] checks the issuer's own.
pub async fn authenticate_client_token(
    state: &AppState,
    token: &str,
    proven: Option<&str>,
    now: Now,
) -> Result<Authenticated> {
    let auth = verify_token_proven(state, token, proven, now).await?;
    if auth.session.client_id.is_none() {
        return Err(Error::unauthorized(
            "invalid_token",
            "not an application's token",
        ));
    }
    Ok(auth)
}

/// Any live token of this issuer for the mesh, an application's or its
/// own, in which the user acts (not a service for them: a delegated token
/// is for the service it was made for, never for the issuer's API).
pub async fn verify_token(state: &AppState, token: &str, now: Now) -> Result<Authenticated> {
    verify_token_proven(state, token, None, now).await
}

/// [`verify_token`], with the DPoP key the request proved it holds (RFC
/// 9449), if it sent a proof: a bound token needs its key's proof; an
/// unbound one is not taken under the DPoP scheme.
pub async fn verify_token_proven(
    state: &AppState,
    token: &str,
    proven: Option<&str>,
    now: Now,
) -> Result<Authenticated> {
    let auth = verify_token_any_audience(state, token, now).await?;
    if !auth.claims.aud.contains(&state.settings.audience) {
        return Err(Error::unauthorized("invalid_token", "wrong audience"));
    }
    if auth.claims.act.is_some() {
        return Err(Error::unauthorized(
            "invalid_token",
            "a token a service got for a user is for that service alone",
        ));
    }
    // A stolen copy must be useless without the key.
    if auth.claims.cnf.as_ref().map(|c| c.jkt.as_str()) != proven {
        return Err(Error::unauthorized(
            "invalid_token",
            "a DPoP-bound token goes with a proof by its key (and only it does)",
        ));
    }
    Ok(auth)
}

/// As [`verify_token`], for a token minted for any audience (a resource,
/// RFC 8707): introspection answers for every token the issuer made.
pub async fn verify_token_any_audience(
    state: &AppState,
    token: &str,
    now: Now,
) -> Result<Authenticated> {
    let keys = state.keys.snapshot();
    let verified = jws::verify(token, &keys.verifying_access)
        .map_err(|e| Error::unauthorized("invalid_token", e.to_string()))?;
    verified
        .claims
        .validate_except_audience(&state.expectations(), now.secs())
        .map_err(|e| Error::unauthorized("invalid_token", e.to_string()))?;
    let claims = verified.claims;
    let session = state
        .store
        .session(&claims.sid)
        .await?
        .filter(|s| s.user_id == claims.sub && s.is_live(now.secs()))
        .ok_or_else(|| Error::unauthorized("invalid_token", "session has ended"))?;
    let user = state
        .store
        .user_by_id(&claims.sub)
        .await?
        .filter(|u| {
            u.disabled_at.is_none()
                && claims.iat >= u.password_changed_at
                && claims.user_gen >= u.token_generation
        })
        .ok_or_else(|| Error::unauthorized("invalid_token", "token is no longer valid"))?;
    Ok(Authenticated {
        claims,
        user,
        session,
    })
}

/// `token` as the caller's credential (as [`authenticate`]), and only
/// beside `refresh`, the refresh token of its own session: `None` when the
/// two belong to different sessions. (The pages' cookies: a planted access
/// token alone does not make a caller.)
pub async fn authenticate_with_refresh(
    state: &AppState,
    token: &str,
    refresh: &str,
) -> Result<Option<Authenticated>> {
    let auth = authenticate(state, token, state.now()).await?;
    let session = state
        .store
        .find_refresh(&crate::domain::tokens::refresh_token_hash(refresh))
        .await?
        .map(|found| found.session.id);
    Ok((session.as_deref() == Some(auth.session.id.as_str())).then_some(auth))
}
