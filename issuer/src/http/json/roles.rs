//! `/admin/roles` and `/internal/permissions` over `service::roles`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::http::error::ApiResult;
use crate::http::extract::{ApiJson, Authenticated, Client};
use crate::service::admin::{require_admin, Admin};
use crate::service::roles;
use crate::AppState;

#[utoipa::path(
    get,
    path = "/admin/roles",
    operation_id = "roles_list",
    tag = "roles",
    summary = "Roles",
    responses(
        (status = 200, description = "Roles and the permissions they grant", body = crate::http::openapi::AnyObject),
    ),
    security(("admin" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
) -> ApiResult<Json<serde_json::Value>> {
    let map = roles::map(&state, &admin).await?;
    Ok(Json(json!({"version": map.version, "roles": map.roles})))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRoleRequest {
    #[schema(max_items = 256)]
    permissions: Vec<String>,
    #[serde(default)]
    description: Option<String>,
}

#[utoipa::path(
    put,
    path = "/admin/roles/{role}",
    operation_id = "roles_set",
    tag = "roles",
    summary = "Define a role",
    request_body = SetRoleRequest,
    params(("role" = String, Path, description = "The role")),
    responses(
        (status = 200, description = "The role", body = crate::http::openapi::AnyObject),
    ),
    security(("admin" = [])),
)]
pub async fn set(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    Path(role): Path<String>,
    ApiJson(req): ApiJson<SetRoleRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    let admin = require_admin(auth)?;
    let defined = roles::set(
        &state,
        &client,
        &admin,
        &role,
        req.permissions,
        req.description,
    )
    .await?;
    Ok(Json(
        json!({"role": role, "permissions": defined.permissions, "version": defined.version}),
    ))
}

#[utoipa::path(
    delete,
    path = "/admin/roles/{role}",
    operation_id = "roles_delete",
    tag = "roles",
    summary = "Remove a role",
    params(("role" = String, Path, description = "The role")),
    responses(
        (status = 204, description = "Removed"),
    ),
    security(("admin" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    Path(role): Path<String>,
) -> ApiResult<Response> {
    roles::delete(&state, &client, &require_admin(auth)?, &role).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /internal/permissions`: the map, for sidecars (feed token).
#[utoipa::path(
    get,
    path = "/internal/permissions",
    operation_id = "roles_internal_map",
    tag = "internal",
    summary = "Role → permission map (sidecars)",
    responses(
        (status = 200, description = "The role → permission map and its version", body = crate::http::openapi::AnyObject),
    ),
    security(("feed_token" = [])),
)]
pub async fn internal_map(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<auth_types::PermissionMap>> {
    super::feed::check_follower(&state, &headers)?;
    Ok(Json(roles::map_for_followers(&state).await?))
}
