//! `/admin/users`: account changes by operators holding the `admin` role.
//! Anything that changes what a token says about a user (roles) or whether
//! the user may hold one (disable) revokes the user's live tokens at once.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::admin::require_admin;
use super::auth::UserView;
use super::extract::{ApiJson, Authenticated, Client};
use crate::error::{ApiError, ApiResult};
use crate::store::UserChange;
use crate::AppState;

const MAX_ROLES: usize = 64;
const MAX_ROLE_LEN: usize = 128;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeUserRequest {
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    disabled: Option<bool>,
}

/// Roles travel space-separated in the database and comma-separated in the
/// identity header, and are matched literally by the sidecar's policy.
fn check_roles(roles: &[String]) -> ApiResult<()> {
    let unprocessable =
        |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_roles", m);
    if roles.len() > MAX_ROLES {
        return Err(unprocessable(format!("at most {MAX_ROLES} roles")));
    }
    for role in roles {
        let ok = !role.is_empty()
            && role.len() <= MAX_ROLE_LEN
            && role
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if !ok {
            return Err(unprocessable(format!(
                "role {role:?}: 1 to {MAX_ROLE_LEN} of A-Z a-z 0-9 - _ . :"
            )));
        }
    }
    Ok(())
}

pub async fn get(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    require_admin(&auth)?;
    let user = state
        .store
        .user_by_id(&id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    Ok(Json(view(&user)))
}

pub async fn change(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ChangeUserRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    require_admin(&auth)?;
    if req.roles.is_none() && req.disabled.is_none() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "give roles and/or disabled",
        ));
    }
    if let Some(roles) = &req.roles {
        check_roles(roles)?;
    }
    let change = UserChange {
        roles: req.roles.map(|mut r| {
            r.sort();
            r.dedup();
            r
        }),
        disabled: req.disabled,
    };
    let now = state.now();
    let (user, records) = state
        .store
        .change_user(&id, &change, now.ms, state.revocation_expiry(now))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    state.published(records).await;
    let detail = json!({"user": user.id, "roles": change.roles, "disabled": change.disabled});
    state
        .audit(
            now.secs(),
            "user_changed",
            Some(&auth.user),
            &client,
            Some(&detail.to_string()),
        )
        .await;
    Ok(Json(view(&user)))
}

fn view(user: &crate::store::User) -> serde_json::Value {
    json!({"user": UserView::from(user), "disabled": user.disabled_at.is_some()})
}
