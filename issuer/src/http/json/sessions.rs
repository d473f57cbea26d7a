//! Sessions after sign-in: refresh (rotation, the grace window, reuse
//! detection), logout, and the user's own session list.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::UserView;
use crate::domain::clock::Now;
use crate::domain::tokens::{new_refresh_token, refresh_token_hash};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Authenticated, Client};
use crate::service::grant::{self, Delivery, REFRESH_COOKIE};
use crate::store::AuditEvent;
use crate::store::{Outcome, RefreshLookup, Rotation, Session, User};
use crate::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

/// Refresh token from the JSON body, or else from the cookie; the next one
/// goes back the same way (a cookie's never in a body a script can read).
fn presented_refresh_token(headers: &HeaderMap, body: &Bytes) -> ApiResult<(String, Delivery)> {
    if !body.is_empty() {
        let req: RefreshRequest = crate::http::extract::object_from_slice(body)?;
        return Ok((req.refresh_token, Delivery::CookieAndBody));
    }
    let from_cookie = cookie_value(headers, REFRESH_COOKIE).map(|t| (t, Delivery::CookieOnly));
    from_cookie.ok_or_else(|| {
        ApiError::bad_request(
            "invalid_request",
            "missing field `refresh_token` (in the body or the cookie)",
        )
    })
}

pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

#[utoipa::path(
    post,
    path = "/auth/refresh",
    operation_id = "sessions_refresh",
    tag = "sessions",
    summary = "Rotate the refresh token",
    request_body = Option<crate::http::openapi::RefreshRequest>,
    responses(
        (status = 200, description = "A new access token and the next refresh token", body = crate::service::grant::TokenResponse),
    ),
    security(("refresh_cookie" = []), ()),
)]
pub async fn refresh(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let (presented, delivery) = presented_refresh_token(&headers, &body)?;
    let now = state.now();
    let hash = refresh_token_hash(&presented);
    let Some(found) = state
        .store
        .find_refresh(&hash)
        .await
        .map_err(ApiError::internal)?
    else {
        state.metrics.refresh("invalid");
        return Err(invalid_grant());
    };
    if found.rotated_at.is_some() {
        return replayed(&state, &client, &hash, found, delivery, now).await;
    }
    let session = &found.session;
    if !session.is_live(now.secs()) {
        state.metrics.refresh("session_ended");
        return Err(ApiError::unauthorized(
            "invalid_grant",
            "session has expired or was revoked",
        ));
    }
    let user = session_user(&state, session).await?;
    let new_token = new_refresh_token().map_err(ApiError::internal)?;
    let sealed = if state.settings.refresh_grace_secs > 0 {
        Some(
            state
                .keys
                .seal(&successor_aad(&hash), new_token.as_bytes())
                .map_err(ApiError::internal)?,
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
        .await
        .map_err(ApiError::internal)?;
    if !won {
        // Another request rotated it between our read and our write: read
        // what it decided, so both get the same answer.
        let found = state
            .store
            .find_refresh(&hash)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(invalid_grant)?;
        return replayed(&state, &client, &hash, found, delivery, now).await;
    }
    grant::continue_session(
        &state, &client, &user, session, new_token, "success", delivery, now,
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
        .await
        .map_err(ApiError::internal)?
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
) -> ApiResult<Response> {
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
    let successor = state
        .keys
        .open_sealed(&successor_aad(hash), sealed)
        .map_err(ApiError::internal)?;
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

pub(super) fn clear_cookie_response() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "__Host-refresh_token=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}

#[utoipa::path(
    post,
    path = "/auth/logout",
    operation_id = "sessions_logout",
    tag = "sessions",
    summary = "End this session",
    responses(
        (status = 204, description = "This session ended; the refresh cookie cleared"),
    ),
    security(("bearer" = [])),
)]
pub async fn logout(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
) -> ApiResult<Response> {
    let now = state.now();
    let record = state
        .store
        .revoke_session(
            &auth.session.id,
            "logout",
            now.ms,
            state.revocation_expiry(now),
        )
        .await
        .map_err(ApiError::internal)?;
    state.published(record.into_iter().collect()).await;
    state
        .audit(
            AuditEvent::new(now.ms, "logout")
                .user(&auth.user)
                .client(&client)
                .session(&auth.session.id),
        )
        .await;
    Ok(clear_cookie_response())
}

#[utoipa::path(
    post,
    path = "/auth/logout-all",
    operation_id = "sessions_logout_all",
    tag = "sessions",
    summary = "End every session",
    responses(
        (status = 204, description = "Every session of the user ended"),
    ),
    security(("bearer" = [])),
)]
pub async fn logout_all(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
) -> ApiResult<Response> {
    let now = state.now();
    let records = state
        .store
        .revoke_all_sessions(
            &auth.user.id,
            "logout_all",
            now.ms,
            state.revocation_expiry(now),
        )
        .await
        .map_err(ApiError::internal)?;
    let ended = records.len();
    state.published(records).await;
    state
        .audit(
            AuditEvent::new(now.ms, "logout_all")
                .user(&auth.user)
                .client(&client)
                .session(&auth.session.id)
                .meta(serde_json::json!({"sessions_ended": ended})),
        )
        .await;
    Ok(clear_cookie_response())
}

#[utoipa::path(
    get,
    path = "/auth/me",
    operation_id = "sessions_me",
    tag = "sessions",
    summary = "The caller's identity",
    responses(
        (status = 200, description = "Who the token is", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn me(auth: Authenticated) -> Json<serde_json::Value> {
    Json(json!({
        "user": UserView::from(&auth.user),
        "session_id": auth.session.id,
        "amr": auth.claims.amr,
    }))
}

#[derive(Serialize)]
struct SessionView {
    id: String,
    created_at: i64,
    last_used_at: i64,
    expires_at: i64,
    ip: Option<String>,
    user_agent: Option<String>,
    current: bool,
}

#[utoipa::path(
    get,
    path = "/auth/sessions",
    operation_id = "sessions_sessions",
    tag = "sessions",
    summary = "Active sessions",
    responses(
        (status = 200, description = "The caller's active sessions", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn sessions(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<Json<serde_json::Value>> {
    let now = state.now().secs();
    let sessions = state
        .store
        .live_sessions(&auth.user.id, now)
        .await
        .map_err(ApiError::internal)?;
    let views: Vec<SessionView> = sessions
        .into_iter()
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
    Ok(Json(json!({ "sessions": views })))
}

#[utoipa::path(
    delete,
    path = "/auth/sessions/{id}",
    operation_id = "sessions_delete_session",
    tag = "sessions",
    summary = "End one of the caller's sessions",
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 204, description = "Ended"),
    ),
    security(("bearer" = [])),
)]
pub async fn delete_session(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let now = state.now();
    // Someone else's session is indistinguishable from a missing one.
    let not_found = || ApiError::not_found("no such session");
    let session = state
        .store
        .session(&id)
        .await
        .map_err(ApiError::internal)?
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
        .await
        .map_err(ApiError::internal)?;
    state.published(record.into_iter().collect()).await;
    state
        .audit(
            AuditEvent::new(now.ms, "session_deleted")
                .user(&auth.user)
                .client(&client)
                .session(&session.id),
        )
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
