//! `/auth/*`: registration, login, refresh, logout, sessions, password change.

use auth_types::{AccessClaims, Audience};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::extract::{ApiJson, Authenticated, Client};
use crate::clock::Now;
use crate::error::{ApiError, ApiResult};
use crate::password;
use crate::store::{AuditEntry, CreateUserError, NewSession, Session, User};
use crate::tokens::{mint_access_token, new_id, new_refresh_token, refresh_token_hash};
use crate::AppState;

pub const REFRESH_COOKIE: &str = "__Host-refresh_token";
const MAX_EMAIL_LEN: usize = 254;
const MAX_NAME_CHARS: usize = 200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    email: String,
    password: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Serialize)]
pub struct UserView {
    id: String,
    email: String,
    name: Option<String>,
    roles: Vec<String>,
    created_at: i64,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
            roles: u.roles.clone(),
            created_at: u.created_at,
        }
    }
}

pub fn normalize_email(raw: &str) -> Result<String, ApiError> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= MAX_EMAIL_LEN
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email)
    } else {
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_email",
            "email address is not valid",
        ))
    }
}

pub async fn register(
    State(state): State<AppState>,
    client: Client,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> ApiResult<Response> {
    let email = normalize_email(&req.email)?;
    if let Some(reason) = password::weakness(&req.password, &email) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "weak_password",
            reason,
        ));
    }
    let name = req
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    if name
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NAME_CHARS)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
            format!("name must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    let password_hash = state
        .hasher
        .hash(req.password)
        .await
        .map_err(ApiError::from)?;
    let now = state.now().secs();
    let user = User {
        id: new_id(),
        email,
        name,
        password_hash,
        roles: Vec::new(),
        created_at: now,
        password_changed_at: now,
        disabled_at: None,
        token_generation: 0,
    };
    match state.store.create_user(&user).await {
        Ok(()) => {}
        Err(CreateUserError::EmailTaken) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "email_taken",
                "an account with this email already exists",
            ))
        }
        Err(CreateUserError::Db(e)) => return Err(ApiError::internal(e)),
    }
    state
        .audit(now, "register", Some(&user), &client, None)
        .await;
    Ok((StatusCode::CREATED, Json(UserView::from(&user))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Serialize)]
pub struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    refresh_token: String,
    session_id: String,
}

pub async fn login(
    State(state): State<AppState>,
    client: Client,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let email = req.email.trim().to_lowercase();
    if req.password.chars().count() > password::MAX_PASSWORD_CHARS {
        return Err(invalid_credentials());
    }
    let user = state
        .store
        .user_by_email(&email)
        .await
        .map_err(ApiError::internal)?;
    let verified = state
        .hasher
        .verify(
            req.password.clone(),
            user.as_ref().map(|u| u.password_hash.clone()),
        )
        .await
        .map_err(ApiError::from)?;
    let now = state.now();
    let Some(user) = user.filter(|_| verified.ok) else {
        state.metrics.login("failure");
        state
            .store
            .audit(&AuditEntry {
                at: now.secs(),
                event: "login_failure",
                user_id: None,
                email: Some(&email),
                ip: client.ip.as_deref(),
                detail: None,
            })
            .await
            .map_err(ApiError::internal)?;
        return Err(invalid_credentials());
    };
    if user.disabled_at.is_some() {
        state.metrics.login("disabled");
        state
            .audit(now.secs(), "login_disabled", Some(&user), &client, None)
            .await;
        return Err(ApiError::forbidden("account is disabled"));
    }
    if verified.needs_rehash {
        upgrade_hash_later(&state, &user, req.password);
    }

    let session_id = new_id();
    let refresh_token = new_refresh_token().map_err(ApiError::internal)?;
    let settings = &state.settings;
    let absolute_expires_at = now.secs() + settings.session_max_lifetime;
    state
        .store
        .create_session(&NewSession {
            id: &session_id,
            user_id: &user.id,
            now: now.secs(),
            idle_expires_at: (now.secs() + settings.session_idle_timeout).min(absolute_expires_at),
            absolute_expires_at,
            ip: client.ip.as_deref(),
            user_agent: client.user_agent.as_deref(),
            amr: "pwd",
            refresh_hash: &refresh_token_hash(&refresh_token),
        })
        .await
        .map_err(ApiError::internal)?;
    state.metrics.login("success");
    state
        .audit(
            now.secs(),
            "login_success",
            Some(&user),
            &client,
            Some(&session_id),
        )
        .await;
    token_response(&state, &user, &session_id, "pwd", refresh_token, now)
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("invalid_credentials", "email or password is incorrect")
}

/// Rehashes a legacy or weaker hash without making the login wait for it.
fn upgrade_hash_later(state: &AppState, user: &User, password: String) {
    let state = state.clone();
    let user_id = user.id.clone();
    let old_hash = user.password_hash.clone();
    tokio::spawn(async move {
        let result = match state.hasher.hash(password).await {
            Ok(new_hash) => state
                .store
                .upgrade_password_hash(&user_id, &old_hash, &new_hash)
                .await
                .map_err(anyhow::Error::from),
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(true) => tracing::info!(user_id, "upgraded password hash to argon2id"),
            Ok(false) => {}
            Err(e) => tracing::warn!(user_id, error = %e, "password hash upgrade failed"),
        }
    });
}

fn token_response(
    state: &AppState,
    user: &User,
    session_id: &str,
    amr: &str,
    refresh_token: String,
    now: Now,
) -> ApiResult<Response> {
    let settings = &state.settings;
    let claims = AccessClaims {
        iss: settings.issuer_url.clone(),
        sub: user.id.clone(),
        aud: Audience::One(settings.audience.clone()),
        exp: now.secs() + settings.keys.access_token_ttl,
        iat: now.secs(),
        nbf: Some(now.secs()),
        user_gen: user.token_generation,
        jti: new_id(),
        sid: session_id.to_string(),
        client_id: settings.client_id.clone(),
        roles: user.roles.clone(),
        permissions: Vec::new(),
        amr: amr.split_whitespace().map(str::to_string).collect(),
        email: Some(user.email.clone()),
    };
    let keys = state.keys.snapshot();
    let access_token = mint_access_token(&keys.signing, &claims).map_err(ApiError::internal)?;
    let cookie = format!(
        "{REFRESH_COOKIE}={refresh_token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        settings.session_idle_timeout
    );
    let body = TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: settings.keys.access_token_ttl,
        refresh_token,
        session_id: session_id.to_string(),
    };
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(ApiError::internal)?,
    );
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

/// Refresh token from the JSON body, or else from the cookie.
fn presented_refresh_token(headers: &HeaderMap, body: &Bytes) -> ApiResult<String> {
    if !body.is_empty() {
        let req: RefreshRequest = serde_json::from_slice(body).map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                ApiError::bad_request("malformed_json", "request body is not valid JSON")
            } else {
                ApiError::bad_request("invalid_request", e.to_string())
            }
        })?;
        return Ok(req.refresh_token);
    }
    cookie_value(headers, REFRESH_COOKIE).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_request",
            "missing field `refresh_token` (in the body or the cookie)",
        )
    })
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

pub async fn refresh(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let presented = presented_refresh_token(&headers, &body)?;
    let now = state.now();
    let hash = refresh_token_hash(&presented);
    let invalid = || ApiError::unauthorized("invalid_grant", "refresh token is invalid");
    let Some(found) = state
        .store
        .find_refresh(&hash)
        .await
        .map_err(ApiError::internal)?
    else {
        state.metrics.refresh("invalid");
        return Err(invalid());
    };
    let session = found.session;
    if found.rotated_at.is_some() {
        return Err(refresh_reuse(&state, &session, &client, now).await);
    }
    if !session.is_live(now.secs()) {
        state.metrics.refresh("session_ended");
        return Err(ApiError::unauthorized(
            "invalid_grant",
            "session has expired or was revoked",
        ));
    }
    let user = state
        .store
        .user_by_id(&session.user_id)
        .await
        .map_err(ApiError::internal)?
        .filter(|u| u.disabled_at.is_none())
        .ok_or_else(invalid)?;
    let new_token = new_refresh_token().map_err(ApiError::internal)?;
    let idle_expires_at =
        (now.secs() + state.settings.session_idle_timeout).min(session.absolute_expires_at);
    let won = state
        .store
        .rotate_refresh(
            &session.id,
            &hash,
            &refresh_token_hash(&new_token),
            now.secs(),
            idle_expires_at,
        )
        .await
        .map_err(ApiError::internal)?;
    if !won {
        // Rotated by someone else between our read and our write: a replay.
        return Err(refresh_reuse(&state, &session, &client, now).await);
    }
    state.metrics.refresh("success");
    token_response(&state, &user, &session.id, &session.amr, new_token, now)
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
        .audit(&AuditEntry {
            at: now.secs(),
            event: "refresh_token_reuse",
            user_id: Some(&session.user_id),
            email: None,
            ip: client.ip.as_deref(),
            detail: Some(&session.id),
        })
        .await
    {
        return ApiError::internal(e);
    }
    ApiError::unauthorized(
        "invalid_grant",
        "refresh token was already used; the session has been revoked",
    )
}

fn clear_cookie_response() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "__Host-refresh_token=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}

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
            now.secs(),
            "logout",
            Some(&auth.user),
            &client,
            Some(&auth.session.id),
        )
        .await;
    Ok(clear_cookie_response())
}

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
    let ended = records.len().to_string();
    state.published(records).await;
    state
        .audit(
            now.secs(),
            "logout_all",
            Some(&auth.user),
            &client,
            Some(&ended),
        )
        .await;
    Ok(clear_cookie_response())
}

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
            now.secs(),
            "session_deleted",
            Some(&auth.user),
            &client,
            Some(&session.id),
        )
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChangeRequest {
    current_password: String,
    new_password: String,
}

/// Changing the password ends every session, this one included.
pub async fn change_password(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    ApiJson(req): ApiJson<PasswordChangeRequest>,
) -> ApiResult<Response> {
    let verified = state
        .hasher
        .verify(req.current_password, Some(auth.user.password_hash.clone()))
        .await
        .map_err(ApiError::from)?;
    if !verified.ok {
        return Err(ApiError::forbidden("current password is incorrect"));
    }
    if let Some(reason) = password::weakness(&req.new_password, &auth.user.email) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "weak_password",
            reason,
        ));
    }
    let new_hash = state
        .hasher
        .hash(req.new_password)
        .await
        .map_err(ApiError::from)?;
    let now = state.now();
    let records = state
        .store
        .change_password(
            &auth.user.id,
            &new_hash,
            now.ms,
            state.revocation_expiry(now),
        )
        .await
        .map_err(ApiError::internal)?;
    state.published(records).await;
    state
        .audit(
            now.secs(),
            "password_changed",
            Some(&auth.user),
            &client,
            None,
        )
        .await;
    Ok(clear_cookie_response())
}
