//! `/admin/roles`: global roles and the permissions they grant. The map is
//! never put in tokens; sidecars fetch it (`/internal/permissions`) when the
//! feed says its version moved, so a change here reaches every sidecar
//! without reissuing any token.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, Authenticated, Client};
use crate::service::admin::Admin;
use crate::service::roles::{valid_name, MAX_NAME_LEN};
use crate::store::AuditEvent;
use crate::AppState;

const MAX_PERMISSIONS: usize = 256;
const MAX_DESCRIPTION_CHARS: usize = 500;

fn invalid(message: String) -> ApiError {
    ApiError::new(
        crate::service::error::Kind::Unprocessable,
        "invalid_role",
        message,
    )
}

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
    let _auth = admin.auth();
    let map = state
        .store
        .permission_map()
        .await
        .map_err(ApiError::internal)?;
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
    super::admin::require_recent_admin(&state, &auth).await?;
    if !valid_name(&role) {
        return Err(invalid(format!(
            "role {role:?}: 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 - _ . :"
        )));
    }
    if req.permissions.len() > MAX_PERMISSIONS {
        return Err(invalid(format!("at most {MAX_PERMISSIONS} permissions")));
    }
    if let Some(p) = req.permissions.iter().find(|p| !valid_name(p)) {
        return Err(invalid(format!(
            "permission {p:?}: 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 - _ . :"
        )));
    }
    let description = req
        .description
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty());
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS)
    {
        return Err(invalid(format!(
            "description: at most {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    let mut permissions = req.permissions;
    permissions.sort();
    permissions.dedup();
    let now = state.now();
    let version = state
        .store
        .set_role(&role, description.as_deref(), &permissions, now.secs())
        .await
        .map_err(ApiError::internal)?;
    state.feed.permissions_changed().await;
    let detail = json!({"role": role, "permissions": permissions, "version": version});
    state
        .audit(
            AuditEvent::new(now.ms, "role_set")
                .by(&auth)
                .target(&role)
                .client(&client)
                .meta(detail),
        )
        .await;
    Ok(Json(
        json!({"role": role, "permissions": permissions, "version": version}),
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
    super::admin::require_recent_admin(&state, &auth).await?;
    let now = state.now();
    let version = state
        .store
        .delete_role(&role)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("no such role"))?;
    state.feed.permissions_changed().await;
    let detail = json!({"role": role, "version": version});
    state
        .audit(
            AuditEvent::new(now.ms, "role_deleted")
                .by(&auth)
                .target(&role)
                .client(&client)
                .meta(detail),
        )
        .await;
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
    let map = state
        .store
        .permission_map()
        .await
        .map_err(ApiError::unavailable)?;
    Ok(Json(map))
}
