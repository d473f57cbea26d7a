//! `/auth/profile`: the user's own display name, avatar and metadata. The
//! metadata is a size-bounded JSON object the user may edit; a second object
//! (`admin_metadata`) is set only by admins (`PATCH /admin/users/{id}`) and
//! shown to the user read-only.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use crate::http::error::ApiResult;
use crate::http::extract::{ApiJson, Authenticated, Client};
use crate::service::profile::{self, view};
use crate::AppState;

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
    let profile = profile::update(
        &state,
        &client,
        &auth,
        req.name,
        req.avatar_url,
        req.metadata,
    )
    .await?;
    Ok(Json(profile))
}
