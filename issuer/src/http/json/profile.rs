//! `/auth/profile`: the user's own display name, avatar and metadata. The
//! metadata is a size-bounded JSON object the user may edit; a second object
//! (`admin_metadata`) is set only by admins (`PATCH /admin/users/{id}`) and
//! shown to the user read-only.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, Authenticated, Client};
use crate::store::AuditEvent;
use crate::store::{ProfileChange, User};
use crate::AppState;

/// Serialized size of a metadata object at most.
pub const MAX_METADATA_BYTES: usize = 4096;
const MAX_NAME_CHARS: usize = 200;
const MAX_AVATAR_URL: usize = 2048;

fn unprocessable(code: &'static str, message: String) -> ApiError {
    ApiError::new(crate::service::error::Kind::Unprocessable, code, message)
}

/// A JSON object of bounded size, stored compact.
pub fn checked_metadata(value: &Value) -> ApiResult<String> {
    if !value.is_object() {
        return Err(unprocessable(
            "invalid_metadata",
            "metadata must be a JSON object".into(),
        ));
    }
    let text = value.to_string();
    if text.len() > MAX_METADATA_BYTES {
        return Err(unprocessable(
            "invalid_metadata",
            format!("metadata is at most {MAX_METADATA_BYTES} bytes as JSON"),
        ));
    }
    Ok(text)
}

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| json!({}))
}

pub fn view(user: &User) -> Value {
    json!({
        "id": user.id,
        "email": user.email,
        "email_verified": user.email_verified_at.is_some(),
        "name": user.name,
        "avatar_url": user.avatar_url,
        "metadata": parsed(&user.metadata),
        "admin_metadata": parsed(&user.admin_metadata),
    })
}

#[utoipa::path(
    get,
    path = "/auth/profile",
    operation_id = "profile_get",
    tag = "profile",
    summary = "Profile",
    responses(
        (status = 200, description = "The caller's profile", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn get(auth: Authenticated) -> Json<Value> {
    Json(view(&auth.user))
}

/// Absent fields stay; `null` clears name and avatar.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileRequest {
    #[serde(default, deserialize_with = "present")]
    pub(crate) name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) avatar_url: Option<Option<String>>,
    #[serde(default)]
    pub(crate) metadata: Option<Value>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[utoipa::path(
    patch,
    path = "/auth/profile",
    operation_id = "profile_update",
    tag = "profile",
    summary = "Change the profile",
    request_body = ProfileRequest,
    responses(
        (status = 200, description = "The profile, changed", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn update(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    ApiJson(req): ApiJson<ProfileRequest>,
) -> ApiResult<Json<Value>> {
    let name = req
        .name
        .map(|n| n.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()));
    if let Some(Some(n)) = &name {
        if n.chars().count() > MAX_NAME_CHARS || n.chars().any(char::is_control) {
            return Err(unprocessable(
                "invalid_name",
                format!("name: at most {MAX_NAME_CHARS} characters, no control characters"),
            ));
        }
    }
    if let Some(Some(url)) = &req.avatar_url {
        let ok = url.len() <= MAX_AVATAR_URL
            && oauth2::url::Url::parse(url)
                .is_ok_and(|u| u.scheme() == "https" && u.host().is_some());
        if !ok {
            return Err(unprocessable(
                "invalid_avatar_url",
                format!("avatar_url: an https URL of at most {MAX_AVATAR_URL} bytes"),
            ));
        }
    }
    let metadata = req.metadata.as_ref().map(checked_metadata).transpose()?;
    let changed: Vec<&str> = [
        ("name", name.is_some()),
        ("avatar_url", req.avatar_url.is_some()),
        ("metadata", metadata.is_some()),
    ]
    .iter()
    .filter(|(_, c)| *c)
    .map(|(f, _)| *f)
    .collect();
    let change = ProfileChange {
        name,
        avatar_url: req.avatar_url,
        metadata,
        admin_metadata: None,
    };
    let user = state
        .store
        .update_profile(&auth.user.id, &change)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    state
        .audit(
            AuditEvent::new(state.now().ms, "profile_updated")
                .user(&user)
                .client(&client)
                .meta(serde_json::json!({"changed": changed})),
        )
        .await;
    Ok(Json(view(&user)))
}
