//! Sessions after sign-in: refresh (rotation, the grace window, reuse
//! detection), ending them (by the user, one or all), and listing them.
//! Ending a session is always revoke, then publish to the edge, then audit.

use serde::Serialize;

use crate::domain::clock::Now;
use crate::domain::tokens::{new_refresh_token, refresh_token_hash};
use crate::service::context::{Authenticated, Client};
use crate::service::error::{Error as ApiError, Result as ApiResult};
use crate::service::grant::{self, Delivery, Tokens};
use crate::store::AuditEvent;
use crate::store::{Outcome, RefreshLookup, Rotation, Session, User};
use crate::AppState;

/// Rotates the refresh token `presented`: the session goes on with the
/// next one (delivered as `delivery` says). `for_client` is the OAuth
/// client presenting it (`None`: the issuer's own API and pages): a token
/// is refreshed only by the client its session was opened for, so a
/// confidential client's token cannot be refreshed without its secret
/// through the issuer's own endpoint.
pub async fn refresh(
    state: &AppState,
    client: &Client,
    presented: &str,
    delivery: Delivery,
    for_client: Option<&str>,
) -> ApiResult<Tokens> {
    let now = state.now();
    let hash = refresh_token_hash(presented);
    let Some(found) = state
        .store
        .find_refresh(&hash)
        .await?
        .filter(|f| f.session.client_id.as_deref() == for_client)
    else {
        state.metrics.refresh("invalid");
        return Err(invalid_grant());
    };
    if found.rotated_at.is_some() {
        return replayed(state, client, &hash, found, delivery, now).await;
    }
    let session = &found.session;
    if !session.is_live(now.secs()) {
        state.metrics.refresh("session_ended");
        return Err(ApiError::unauthorized(
            "invalid_grant",
            "session has expired or was revoked",
        ));
    }
    let user = session_user(state, session).await?;
    let new_token = new_refresh_token()?;
    let sealed = if state.settings.refresh_grace_secs > 0 {
        Some(
            state
                .keys
                .seal(&successor_aad(&hash), new_token.as_bytes())?,
        )
    } else {
        None
    };
    let won = state
        .store
        .rotate_refresh(&Rotation {
            session_id: &session.id,
            old_hash: &hash,
            new_hash: &refresh_token_hash(&new_token),
            new_sealed: sealed.as_deref(),
            now_ms: now.ms,
            idle_expires_at: (now.secs() + state.settings.session_idle_timeout)
                .min(session.absolute_expires_at),
        })
        .await?;
    if !won {
        // Another request rotated it between our read and our write: read
        // what it decided, so both get the same answer.
        let found = state
            .store
            .find_refresh(&hash)
            .await?
            .ok_or_else(invalid_grant)?;
        return replayed(state, client, &hash, found, delivery, now).await;
    }
    grant::continue_session(
        state, client, &user, session, new_token, "success", delivery, now,
    )
    .await
}

fn invalid_grant() -> ApiError {
    ApiError::unauthorized("invalid_grant", "refresh token is invalid")
}

async fn session_user(state: &AppState, session: &Session) -> ApiResult<User> {
    state
        .store
        .user_by_id(&session.user_id)
        .await?
        .ok_or_else(invalid_grant)
}

/// Associated data of a sealed successor: bound to the token it succeeds.
fn successor_aad(old_hash: &str) -> String {
    format!("refresh-successor:{old_hash}")
}

/// A refresh token that was already rotated came back. Within the grace
/// window, and only if it is the newest rotation of a live session, this is
/// a race or a retry: answer with the same successor. Anything else is reuse.
async fn replayed(
    state: &AppState,
    client: &Client,
    hash: &str,
    found: RefreshLookup,
    delivery: Delivery,
    now: Now,
) -> ApiResult<Tokens> {
    let grace_ms = state.settings.refresh_grace_secs.saturating_mul(1000);
    let session = &found.session;
    let sealed = found
        .successor
        .as_ref()
        .filter(|s| {
            grace_ms > 0
                // Either side of the rotation: racers on two replicas may
                // read clocks a few milliseconds apart.
                && now.ms.saturating_sub(s.rotated_at_ms).saturating_abs() <= grace_ms
                && !s.successor_rotated
                && session.is_live(now.secs())
        })
        .and_then(|s| s.sealed.as_deref());
    let Some(sealed) = sealed else {
        return Err(refresh_reuse(state, session, client, now).await);
    };
    let successor = state.keys.open_sealed(&successor_aad(hash), sealed)?;
    let successor = String::from_utf8(successor).map_err(ApiError::internal)?;
    let user = session_user(state, session).await?;
    // Recorded, so a replay by someone else within the window leaves a trace.
    state
        .audit(
            AuditEvent::new(now.ms, "refresh_grace_replay")
                .user(&user)
                .client(client)
                .session(&session.id),
        )
        .await;
    grant::continue_session(
        state, client, &user, session, successor, "grace", delivery, now,
    )
    .await
}

/// A rotated refresh token came back: someone holds a copy. End the whole
/// session (RFC 9700 §4.14.2), so the thief's and the victim's tokens both die.
async fn refresh_reuse(state: &AppState, session: &Session, client: &Client, now: Now) -> ApiError {
    state.metrics.refresh("reuse");
    tracing::warn!(session_id = %session.id, user_id = %session.user_id, "refresh token reuse; revoking session");
    match state
        .store
        .revoke_session(
            &session.id,
            "refresh_token_reuse",
            now.ms,
            state.revocation_expiry(now),
        )
        .await
    {
        Ok(record) => state.published(record.into_iter().collect()).await,
        Err(e) => return ApiError::internal(e),
    }
    if let Err(e) = state
        .store
        .record_audit(
            &AuditEvent::new(now.ms, "refresh_token_reuse")
                .actor(&session.user_id)
                .target(&session.user_id)
                .session(&session.id)
                .client(client)
                .outcome(Outcome::Denied, "refresh_token_reused"),
        )
        .await
    {
        return ApiError::internal(e);
    }
    ApiError::unauthorized(
        "invalid_grant",
        "refresh token was already used; the session has been revoked",
    )
}

/// Ends the caller's session.
pub async fn logout(state: &AppState, client: &Client, auth: &Authenticated) -> ApiResult<()> {
    let now = state.now();
    let record = state
        .store
        .revoke_session(
            &auth.session.id,
            "logout",
            now.ms,
            state.revocation_expiry(now),
        )
        .await?;
    let event = AuditEvent::new(now.ms, "logout")
        .user(&auth.user)
        .client(client)
        .session(&auth.session.id);
    state
        .sessions_ended(record.into_iter().collect(), event)
        .await;
    Ok(())
}

/// Ends every session of the caller.
pub async fn logout_all(state: &AppState, client: &Client, auth: &Authenticated) -> ApiResult<()> {
    let now = state.now();
    let records = state
        .store
        .revoke_all_sessions(
            &auth.user.id,
            "logout_all",
            now.ms,
            state.revocation_expiry(now),
        )
        .await?;
    let event = AuditEvent::new(now.ms, "logout_all")
        .user(&auth.user)
        .client(client)
        .session(&auth.session.id)
        .meta(serde_json::json!({"sessions_ended": records.len()}));
    state.sessions_ended(records, event).await;
    Ok(())
}

#[derive(Serialize)]
pub struct SessionView {
    pub id: String,
    pub created_at: i64,
    pub last_used_at: i64,
    pub expires_at: i64,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub current: bool,
}

/// The caller's live sessions.
pub async fn list(state: &AppState, auth: &Authenticated) -> ApiResult<Vec<SessionView>> {
    let now = state.now().secs();
    let sessions = state.store.live_sessions(&auth.user.id, now).await?;
    let views: Vec<SessionView> = sessions
        .into_iter()
        // Personal access tokens are listed as such (`pats::list`).
        .filter(|s| s.client_id.as_deref() != Some(crate::domain::pat::CLIENT_ID))
        .map(|s| SessionView {
            current: s.id == auth.session.id,
            expires_at: s.idle_expires_at.min(s.absolute_expires_at),
            id: s.id,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            ip: s.ip,
            user_agent: s.user_agent,
        })
        .collect();
    Ok(views)
}

/// Ends one of the caller's sessions (someone else's is "not found").
pub async fn delete(
    state: &AppState,
    client: &Client,
    auth: &Authenticated,
    id: &str,
) -> ApiResult<()> {
    let now = state.now();
    // Someone else's session is indistinguishable from a missing one.
    let not_found = || ApiError::not_found("no such session");
    let session = state
        .store
        .session(id)
        .await?
        .filter(|s| s.user_id == auth.user.id && s.is_live(now.secs()))
        .ok_or_else(not_found)?;
    let record = state
        .store
        .revoke_session(
            &session.id,
            "deleted_by_user",
            now.ms,
            state.revocation_expiry(now),
        )
        .await?;
    let event = AuditEvent::new(now.ms, "session_deleted")
        .user(&auth.user)
        .client(client)
        .session(&session.id);
    state
        .sessions_ended(record.into_iter().collect(), event)
        .await;
    Ok(())
}
