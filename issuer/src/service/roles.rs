//! Global roles and the permissions they grant; role and permission names,
//! and the roles a user may hold. The map is never put in tokens: sidecars
//! fetch it when the feed says its version moved, so a change here reaches
//! every sidecar without reissuing any token.

use serde_json::json;

use crate::service::admin::Admin;
use crate::service::context::Client;
use crate::service::error::{Error as ApiError, Kind, Result as ApiResult};
use crate::store::AuditEvent;
use crate::AppState;

/// The longest role or permission name.
pub const MAX_NAME_LEN: usize = 128;
/// How many roles a user may hold.
pub const MAX_ROLES: usize = 64;

/// A role or permission name: 1 to 128 of A-Z a-z 0-9 - _ . :
/// Role and permission names: matched literally by sidecar policies.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

pub fn check_roles(roles: &[String]) -> ApiResult<()> {
    let unprocessable = |m: String| ApiError::new(Kind::Unprocessable, "invalid_roles", m);
    if roles.len() > MAX_ROLES {
        return Err(unprocessable(format!("at most {MAX_ROLES} roles")));
    }
    for role in roles {
        // At least one letter or digit: `.` or `::` names nothing.
        let ok = role.bytes().any(|b| b.is_ascii_alphanumeric())
            && role.len() <= MAX_NAME_LEN
            && role
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if !ok {
            return Err(unprocessable(format!(
                "role {role:?}: 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 - _ . : with a letter or digit"
            )));
        }
    }
    Ok(())
}

const MAX_PERMISSIONS: usize = 256;
const MAX_DESCRIPTION_CHARS: usize = 500;

fn invalid(message: String) -> ApiError {
    ApiError::new(Kind::Unprocessable, "invalid_role", message)
}

/// The role → permission map and its version.
pub async fn map(state: &AppState, _admin: &Admin) -> ApiResult<auth_types::PermissionMap> {
    Ok(state.store.permission_map().await?)
}

/// The map for the sidecars (a feed follower asked): a database failure
/// is "unavailable", for them to retry.
pub async fn map_for_followers(state: &AppState) -> ApiResult<auth_types::PermissionMap> {
    state
        .store
        .permission_map()
        .await
        .map_err(ApiError::unavailable)
}

/// A role as defined.
pub struct Defined {
    pub permissions: Vec<String>,
    pub version: i64,
}

/// Defines (or redefines) a role; every sidecar fetches the new map when
/// the feed says its version moved.
pub async fn set(
    state: &AppState,
    client: &Client,
    admin: &Admin,
    role: &str,
    permissions: Vec<String>,
    description: Option<String>,
) -> ApiResult<Defined> {
    let auth = admin.recent(state).await?;
    if !valid_name(role) {
        return Err(invalid(format!(
            "role {role:?}: 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 - _ . :"
        )));
    }
    if permissions.len() > MAX_PERMISSIONS {
        return Err(invalid(format!("at most {MAX_PERMISSIONS} permissions")));
    }
    if let Some(p) = permissions.iter().find(|p| !valid_name(p)) {
        return Err(invalid(format!(
            "permission {p:?}: 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 - _ . :"
        )));
    }
    let description = description
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
    let mut permissions = permissions;
    permissions.sort();
    permissions.dedup();
    let now = state.now();
    let version = state
        .store
        .set_role(role, description.as_deref(), &permissions, now.secs())
        .await?;
    state.feed.permissions_changed().await;
    let detail = json!({"role": role, "permissions": permissions, "version": version});
    state
        .audit(
            AuditEvent::new(now.ms, "role_set")
                .by(auth)
                .target(role)
                .client(client)
                .meta(detail),
        )
        .await;
    Ok(Defined {
        permissions,
        version,
    })
}

/// Removes a role's definition.
pub async fn delete(state: &AppState, client: &Client, admin: &Admin, role: &str) -> ApiResult<()> {
    let auth = admin.recent(state).await?;
    let now = state.now();
    let version = state
        .store
        .delete_role(role)
        .await?
        .ok_or_else(|| ApiError::not_found("no such role"))?;
    state.feed.permissions_changed().await;
    let detail = json!({"role": role, "version": version});
    state
        .audit(
            AuditEvent::new(now.ms, "role_deleted")
                .by(auth)
                .target(role)
                .client(client)
                .meta(detail),
        )
        .await;
    Ok(())
}
