//! `/admin/users`: account changes by operators holding the `admin` role.
//! Anything that changes what a token says about a user (roles) or whether
//! the user may hold one (disable) revokes the user's live tokens at once.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::auth::UserView;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, Authenticated, Client};
use crate::service::admin::Admin;
use crate::service::roles::check_roles;
use crate::store::AuditEvent;
use crate::store::{Changed, DeleteUser, ProfileChange, UserChange};
use crate::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeUserRequest {
    #[serde(default)]
    #[schema(max_items = 64)]
    pub(crate) roles: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) disabled: Option<bool>,
    /// Replaces the admin-only metadata object.
    #[serde(default)]
    pub(crate) admin_metadata: Option<serde_json::Value>,
}

/// Roles travel space-separated in the database and comma-separated in the
/// identity header, and are matched literally by the sidecar's policy.
fn self_refused(what: &str) -> ApiError {
    ApiError::new(
        crate::service::error::Kind::Conflict,
        "self_change_refused",
        format!("an admin cannot {what} here; ask another admin"),
    )
}

#[utoipa::path(
    get,
    path = "/admin/users/{id}",
    operation_id = "users_get",
    tag = "admin",
    summary = "A user",
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user", body = crate::http::openapi::AnyObject),
    ),
    security(("admin" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let _auth = admin.auth();
    let user = state
        .store
        .user_by_id(&id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    let now = state.now();
    let store = &state.store;
    let (mfa, identities, teams, sessions) = tokio::try_join!(
        store.mfa_status(&id),
        store.identities_of(&id),
        store.teams_of(&id),
        store.live_sessions(&id, now.secs()),
    )
    .map_err(ApiError::internal)?;
    // The profile, and what an operator needs to help the user.
    let mut detail = view(&user);
    detail["has_password"] = json!(user.has_password());
    detail["mfa"] = json!({
        "totp": mfa.totp,
        "passkeys": mfa.passkeys,
        "recovery_codes_left": mfa.recovery_codes_left,
    });
    detail["identities"] = identities
        .iter()
        .map(|i| json!({"provider": i.provider, "login": i.login, "last_used_at": i.last_used_at}))
        .collect();
    detail["teams"] = teams
        .iter()
        .map(|(slug, role)| json!({"team": slug, "role": role}))
        .collect();
    detail["live_sessions"] = json!(sessions.len());
    Ok(Json(detail))
}

#[utoipa::path(
    patch,
    path = "/admin/users/{id}",
    operation_id = "users_change",
    tag = "admin",
    summary = "Change roles, disable, metadata",
    request_body = ChangeUserRequest,
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user, changed", body = crate::http::openapi::AnyObject),
    ),
    security(("admin" = [])),
)]
pub async fn change(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ChangeUserRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    super::admin::require_recent_admin(&state, &auth).await?;
    if req.roles.is_none() && req.disabled.is_none() && req.admin_metadata.is_none() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "give roles, disabled and/or admin_metadata",
        ));
    }
    let admin_metadata = req
        .admin_metadata
        .as_ref()
        .map(crate::service::profile::checked_metadata)
        .transpose()?;
    if let Some(roles) = &req.roles {
        check_roles(roles)?;
    }
    // An admin cannot lock themselves out (and possibly everyone: they may
    // be the last admin); another admin can.
    let demotes_self = req
        .roles
        .as_ref()
        .is_some_and(|r| !r.iter().any(|r| r == "admin"));
    if id == auth.user.id && (req.disabled == Some(true) || demotes_self) {
        return Err(self_refused(
            "disable your own account or remove your own admin role",
        ));
    }
    let change = UserChange {
        roles: req.roles.map(|mut r| {
            r.sort();
            r.dedup();
            r
        }),
        disabled: req.disabled,
        second_factor_roles: state.settings.mfa_required_roles.clone(),
    };
    let now = state.now();
    let mut user = if change.roles.is_some() || change.disabled.is_some() {
        let changed = state
            .store
            .change_user(&id, &change, now.ms, state.revocation_expiry(now))
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found("no such user"))?;
        let (user, records) = match changed {
            Changed::Done(user, records) => (*user, records),
            Changed::LastAdmin => {
                return Err(ApiError::new(
                    crate::service::error::Kind::Conflict,
                    "last_admin",
                    "no enabled admin would be left",
                ))
            }
        };
        state.published(records).await;
        user
    } else {
        state
            .store
            .user_by_id(&id)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found("no such user"))?
    };
    if let Some(m) = &admin_metadata {
        let profile = ProfileChange {
            admin_metadata: Some(m.clone()),
            ..Default::default()
        };
        user = state
            .store
            .update_profile(&id, &profile)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found("no such user"))?;
    }
    let detail = json!({"user": user.id, "roles": change.roles, "disabled": change.disabled,
        "admin_metadata": admin_metadata.is_some()});
    state
        .audit(
            AuditEvent::new(now.ms, "user_changed")
                .by(&auth)
                .target(&id)
                .client(&client)
                .meta(detail),
        )
        .await;
    Ok(Json(view(&user)))
}

fn view(user: &crate::store::User) -> serde_json::Value {
    json!({
        "user": UserView::from(user),
        "disabled": user.disabled_at.is_some(),
        "profile": crate::service::profile::view(user),
    })
}

const MAX_PAGE: i64 = 200;
const MAX_QUERY_CHARS: usize = 100;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Substring of the email, name or a linked login.
    #[serde(default)]
    pub(crate) q: Option<String>,
    /// The `next` of the previous page.
    #[serde(default)]
    pub(crate) after: Option<String>,
    #[serde(default)]
    pub(crate) limit: Option<i64>,
}

/// `GET /admin/users?q=&after=&limit=`: search and cursor pagination, by email.
#[utoipa::path(
    get,
    path = "/admin/users",
    operation_id = "users_list",
    tag = "admin",
    summary = "Search users",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of users", body = crate::http::openapi::AnyObject),
    ),
    security(("admin" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let _auth = admin.auth();
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("limit: 1 to {MAX_PAGE}"),
        ));
    }
    let query = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if query.is_some_and(|s| s.chars().count() > MAX_QUERY_CHARS || s.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("q: at most {MAX_QUERY_CHARS} characters"),
        ));
    }
    // The cursor is the last email seen, opaque to clients.
    let after = match q.after.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::bad_request("invalid_request", "after: not a cursor"))?,
        ),
    };
    let mut users = state
        .store
        .search_users(query, after.as_deref(), limit + 1)
        .await
        .map_err(ApiError::internal)?;
    let more = users.len() as i64 > limit;
    users.truncate(limit as usize);
    let next = more.then(|| users.last()).flatten().map(|u| {
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &u.email)
    });
    let views: Vec<_> = users
        .iter()
        .map(|u| json!({"user": UserView::from(u), "disabled": u.disabled_at.is_some()}))
        .collect();
    Ok(Json(json!({"users": views, "next": next})))
}

/// Deletes the account and everything it had; its tokens die at the edge.
#[utoipa::path(
    delete,
    path = "/admin/users/{id}",
    operation_id = "users_delete",
    tag = "admin",
    summary = "Delete a user",
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 204, description = "Deleted"),
    ),
    security(("admin" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<axum::response::Response> {
    super::admin::require_recent_admin(&state, &auth).await?;
    if id == auth.user.id {
        return Err(self_refused("delete your own account"));
    }
    let now = state.now();
    let records = match state
        .store
        .delete_user(&id, now.ms, state.revocation_expiry(now))
        .await
        .map_err(ApiError::internal)?
    {
        DeleteUser::Done(records) => records,
        DeleteUser::NoSuchUser => return Err(ApiError::not_found("no such user")),
        DeleteUser::LastAdmin => {
            return Err(ApiError::new(
                crate::service::error::Kind::Conflict,
                "last_admin",
                "no enabled admin would be left",
            ))
        }
        DeleteUser::SoleOwner(teams) => {
            return Err(ApiError::new(
                crate::service::error::Kind::Conflict,
                "sole_team_owner",
                format!(
                    "the user is the only owner of {}; make another owner first",
                    teams.join(", ")
                ),
            ))
        }
    };
    state.published(records).await;
    let detail = json!({"user": id});
    state
        .audit(
            AuditEvent::new(now.ms, "user_deleted")
                .by(&auth)
                .target(&id)
                .client(&client)
                .meta(detail),
        )
        .await;
    Ok(axum::response::IntoResponse::into_response(
        StatusCode::NO_CONTENT,
    ))
}

/// Ends every session of the user (at the edge too).
#[utoipa::path(
    post,
    path = "/admin/users/{id}/logout-all",
    operation_id = "users_logout_all",
    tag = "admin",
    summary = "End a user's sessions",
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "Every session of the user ended", body = crate::http::openapi::AnyObject),
    ),
    security(("admin" = [])),
)]
pub async fn logout_all(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    super::admin::require_recent_admin(&state, &auth).await?;
    let now = state.now();
    if state
        .store
        .user_by_id(&id)
        .await
        .map_err(ApiError::internal)?
        .is_none()
    {
        return Err(ApiError::not_found("no such user"));
    }
    let records = state
        .store
        .revoke_all_sessions(&id, "ended_by_admin", now.ms, state.revocation_expiry(now))
        .await
        .map_err(ApiError::internal)?;
    let ended = records.len();
    state.published(records).await;
    let detail = json!({"user": id, "sessions_ended": ended});
    state
        .audit(
            AuditEvent::new(now.ms, "user_sessions_ended")
                .by(&auth)
                .target(&id)
                .client(&client)
                .meta(detail),
        )
        .await;
    Ok(Json(json!({"sessions_ended": ended})))
}

/// Clears the account's failed sign-in count, and with it any delay.
#[utoipa::path(
    delete,
    path = "/admin/users/{id}/login-delay",
    operation_id = "users_clear_login_delay",
    tag = "admin",
    summary = "Clear a user's sign-in delay",
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user's failure counts cleared", body = crate::http::openapi::AnyObject),
    ),
    security(("admin" = [])),
)]
pub async fn clear_login_delay(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    // It lifts the throttles on guessing: as every admin change.
    super::admin::require_recent_admin(&state, &auth).await?;
    let user = state
        .store
        .user_by_id(&id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    let cleared = state
        .store
        .clear_login_failures(&user.email)
        .await
        .map_err(ApiError::internal)?;
    // Second-factor attempts are counted apart (and may be locked).
    let cleared_mfa = state
        .store
        .clear_login_failures(&format!("mfa:{}", user.id))
        .await
        .map_err(ApiError::internal)?;
    let cleared = cleared || cleared_mfa;
    let detail = json!({"user": id, "cleared": cleared});
    state
        .audit(
            AuditEvent::new(state.now().ms, "login_delay_cleared")
                .by(&auth)
                .target(&id)
                .client(&client)
                .meta(detail),
        )
        .await;
    Ok(Json(json!({ "cleared": cleared })))
}
