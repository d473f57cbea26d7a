//! `/admin/keys`: key rotation for operators holding the `admin` role.

use auth_types::SigningAlg;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::domain::rotation::{self, RotationError};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Authenticated, Client};
use crate::service::admin::Admin;
use crate::service::keyring::created_kid;
use crate::store::AuditEvent;
use crate::store::StoredKey;
use crate::AppState;

/// Public facts about a key; the private half never leaves the database.
#[derive(Serialize)]
pub struct KeyView {
    kid: String,
    alg: String,
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
            state: k.state.clone(),
            created_at: k.created_at,
            activates_at: k.activates_at,
            retires_at: k.retires_at,
            removes_at: k.removes_at,
        }
    }
}

pub fn require_admin(auth: &Authenticated) -> ApiResult<()> {
    if auth.user.roles.iter().any(|r| r == "admin") {
        Ok(())
    } else {
        Err(ApiError::forbidden("the admin role is required"))
    }
}

/// An admin who authenticated recently, with their second factor when they
/// have one (RFC 9470 challenge otherwise): a stolen or forgotten admin
/// token alone must not disable users, reset factors, grant roles or touch
/// keys. Reads stay on `require_admin`.
pub async fn require_recent_admin(state: &AppState, auth: &Authenticated) -> ApiResult<()> {
    require_admin(auth)?;
    crate::service::mfa::require_recent_for(state, auth, state.now(), "an admin action").await
}

fn rotation_error(e: RotationError) -> ApiError {
    match e {
        RotationError::AlreadyPending { .. } => ApiError::new(
            crate::service::error::Kind::Conflict,
            "rotation_pending",
            e.to_string(),
        ),
        RotationError::UnknownKey(_) => ApiError::not_found(e.to_string()),
        RotationError::Other(e) => ApiError::internal(e),
    }
}

async fn list_views(state: &AppState) -> ApiResult<Json<serde_json::Value>> {
    let keys = state.store.keys().await.map_err(ApiError::internal)?;
    let views: Vec<KeyView> = keys.iter().map(KeyView::from).collect();
    Ok(Json(json!({ "keys": views })))
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
    let _auth = admin.auth();
    list_views(&state).await
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
    let auth = admin.recent(&state).await?;
    let req: RotateRequest = if body.is_empty() {
        RotateRequest::default()
    } else {
        crate::http::extract::object_from_slice(&body)?
    };
    let alg = match req.alg.as_deref() {
        None => state.settings.keys.signing_alg,
        Some(a) => SigningAlg::parse(a).ok_or_else(|| {
            ApiError::new(
                crate::service::error::Kind::Unprocessable,
                "invalid_alg",
                "alg must be ES256, EdDSA or RS256",
            )
        })?,
    };
    let now = state.now().secs();
    let life = state.settings.keys.lifecycle();
    let changes = state
        .store
        .change_keys(|keys| {
            let mut make = |st: &str, at: i64| state.keys.make_key(alg, st, now, at);
            rotation::plan_rotate(keys, now, &life, req.now, &mut make)
        })
        .await
        .map_err(rotation_error)?;
    state.keys_changed().await.map_err(ApiError::internal)?;
    let new_kid = created_kid(&changes);
    state
        .audit(
            AuditEvent::new(now * 1000, "key_rotated")
                .by(auth)
                .target(new_kid.as_deref().unwrap_or_default())
                .client(&client)
                .meta(serde_json::json!({"kid": new_kid})),
        )
        .await;
    list_views(&state).await
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
    let auth = admin.recent(&state).await?;
    let now = state.now().secs();
    let alg = state.settings.keys.signing_alg;
    state
        .store
        .change_keys(|keys| {
            let mut make = |st: &str, at: i64| state.keys.make_key(alg, st, now, at);
            rotation::plan_revoke(keys, &kid, now, &mut make)
        })
        .await
        .map_err(rotation_error)?;
    state.keys_changed().await.map_err(ApiError::internal)?;
    tracing::warn!(kid, "signing key revoked");
    state
        .audit(
            AuditEvent::new(now * 1000, "key_revoked")
                .by(auth)
                .target(&kid)
                .client(&client),
        )
        .await;
    list_views(&state).await
}
