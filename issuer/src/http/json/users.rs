//! `/admin/users`: account changes by operators holding the `admin` role,
//! over `service::users` (the rules live there).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::auth::UserView;
use crate::http::error::ApiResult;
use crate::http::extract::{ApiJson, Authenticated, Client};
use crate::service::admin::{require_admin, Admin};
use crate::service::users;
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
    let d = users::detail(&state, &admin, &id).await?;
    // The profile, and what an operator needs to help the user.
    let mut detail = view(&d.user);
    detail["has_password"] = json!(d.user.has_password());
    detail["mfa"] = json!({
        "totp": d.mfa.totp,
        "passkeys": d.mfa.passkeys,
        "recovery_codes_left": d.mfa.recovery_codes_left,
    });
    detail["identities"] = d
        .identities
        .iter()
        .map(|i| json!({"provider": i.provider, "login": i.login, "last_used_at": i.last_used_at}))
        .collect();
    detail["teams"] = d
        .teams
        .iter()
        .map(|(slug, role)| json!({"team": slug, "role": role}))
        .collect();
    detail["live_sessions"] = json!(d.live_sessions);
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
    let admin = require_admin(auth)?;
    let change = users::Change {
        roles: req.roles,
        disabled: req.disabled,
        admin_metadata: req.admin_metadata,
    };
    let user = users::change(&state, &client, &admin, &id, change).await?;
    Ok(Json(view(&user)))
}

fn view(user: &crate::store::User) -> serde_json::Value {
    json!({
        "user": UserView::from(user),
        "disabled": user.disabled_at.is_some(),
        "profile": crate::service::profile::view(user),
    })
}

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
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let page = users::search(&state, &admin, q.q.as_deref(), q.after.as_deref(), q.limit).await?;
    let views: Vec<_> = page
        .users
        .iter()
        .map(|u| json!({"user": UserView::from(u), "disabled": u.disabled_at.is_some()}))
        .collect();
    Ok(Json(json!({"users": views, "next": page.next})))
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
    users::delete(&state, &client, &require_admin(auth)?, &id).await?;
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
    let ended = users::end_sessions(&state, &client, &require_admin(auth)?, &id).await?;
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
    let cleared = users::clear_login_delay(&state, &client, &require_admin(auth)?, &id).await?;
    Ok(Json(json!({ "cleared": cleared })))
}
