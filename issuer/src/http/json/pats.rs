//! `/auth/tokens`: the caller's personal access tokens (created, listed,
//! revoked). Scripts exchange one at `/oauth/token` (docs/oauth.md).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::http::error::ApiResult;
use crate::http::extract::{ApiJson, Authenticated, Client};
use crate::service::pats::{self, NewPersonalToken};
use crate::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    name: String,
    /// Space-separated scopes, at least one (`notes:read`).
    scope: String,
    /// Up to the operator's maximum (`--pat-max-lifetime-days`); 30 if absent.
    #[serde(default)]
    expires_in_days: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/auth/tokens",
    operation_id = "tokens_list",
    tag = "tokens",
    summary = "Personal access tokens",
    responses(
        (status = 200, description = "The caller's live personal access tokens (never the secrets)", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<Json<serde_json::Value>> {
    let tokens = pats::list(&state, &auth).await?;
    Ok(Json(json!({ "tokens": tokens })))
}

#[utoipa::path(
    post,
    path = "/auth/tokens",
    operation_id = "tokens_create",
    tag = "tokens",
    summary = "Create a personal access token",
    description = "Needs a recent sign-in (with the second factor, if the user has one). The token is in this answer only; it is stored hashed.",
    request_body = CreateRequest,
    responses(
        (status = 201, description = "The token (shown once) and its entry", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    ApiJson(req): ApiJson<CreateRequest>,
) -> ApiResult<Response> {
    let asked = NewPersonalToken {
        name: req.name,
        scope: req.scope,
        expires_in_days: req.expires_in_days,
    };
    let (token, view) = pats::create(&state, &client, &auth, asked).await?;
    let body = json!({ "token": token, "personal_token": view });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[utoipa::path(
    delete,
    path = "/auth/tokens/{id}",
    operation_id = "tokens_revoke",
    tag = "tokens",
    summary = "Revoke a personal access token",
    params(("id" = String, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked: tokens exchanged for it are refused at the edge too"),
    ),
    security(("bearer" = [])),
)]
pub async fn revoke(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    pats::revoke(&state, &client, &auth, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
