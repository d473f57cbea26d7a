//! `/admin/keys`: key rotation for operators holding the `admin` role,
//! over `service::keys`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::http::error::ApiResult;
use crate::http::extract::Client;
use crate::service::admin::Admin;
use crate::service::keys;
use crate::store::StoredKey;
use crate::AppState;

/// Public facts about a key; the private half never leaves the database.
#[derive(Serialize)]
pub struct KeyView {
    kid: String,
    alg: String,
    /// `access` or `id_token`.
    #[serde(rename = "use")]
    key_use: &'static str,
    state: String,
    created_at: i64,
    activates_at: i64,
    retires_at: Option<i64>,
    removes_at: Option<i64>,
}

impl From<&StoredKey> for KeyView {
    fn from(k: &StoredKey) -> Self {
        KeyView {
            kid: k.kid.clone(),
            alg: k.alg.clone(),
            key_use: k.key_use.as_str(),
            state: k.state.clone(),
            created_at: k.created_at,
            activates_at: k.activates_at,
            retires_at: k.retires_at,
            removes_at: k.removes_at,
        }
    }
}

fn views(keys: &[StoredKey]) -> Json<serde_json::Value> {
    let views: Vec<KeyView> = keys.iter().map(KeyView::from).collect();
    Json(json!({ "keys": views }))
}

#[utoipa::path(
    get,
    path = "/admin/keys",
    operation_id = "admin_list",
    tag = "keys",
    summary = "Signing keys",
    responses(
        (status = 200, description = "Signing keys and their states", body = crate::http::openapi::AnyObject),
    ),
    security(("admin" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(views(&keys::list(&state, &admin).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    now: bool,
}

#[utoipa::path(
    post,
    path = "/admin/keys/rotate",
    operation_id = "admin_rotate",
    tag = "keys",
    summary = "Rotate the signing key",
    request_body = Option<crate::http::openapi::RotateBody>,
    responses(
        (status = 200, description = "The new key", body = crate::http::openapi::AnyObject),
    ),
    security(("admin" = [])),
)]
pub async fn rotate(
    State(state): State<AppState>,
    client: Client,
    admin: Admin,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    // A recent admin first, then the body: as it always answered.
    admin.recent(&state).await?;
    let req: RotateRequest = if body.is_empty() {
        RotateRequest::default()
    } else {
        crate::http::extract::object_from_slice(&body)?
    };
    let keys = keys::rotate(&state, &client, &admin, req.alg.as_deref(), req.now).await?;
    Ok(views(&keys))
}

#[utoipa::path(
    post,
    path = "/admin/keys/{kid}/revoke",
    operation_id = "admin_revoke",
    tag = "keys",
    summary = "Revoke a signing key",
    params(("kid" = String, Path, description = "The key id")),
    responses(
        (status = 200, description = "Revoked", body = crate::http::openapi::AnyObject),
    ),
    security(("admin" = [])),
)]
pub async fn revoke(
    State(state): State<AppState>,
    client: Client,
    admin: Admin,
    Path(kid): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(views(&keys::revoke(&state, &client, &admin, &kid).await?))
}
