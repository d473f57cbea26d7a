//! Teams and their members over `service::teams` (the rules live there).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::http::error::ApiResult;
use crate::http::extract::{ApiJson, Authenticated, Client};
use crate::service::admin::Admin;
use crate::service::teams::{self, MemberSet};
use crate::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeamRequest {
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "platform")]
    pub(crate) slug: String,
    #[schema(min_length = 1, max_length = 200)]
    pub(crate) name: String,
    /// A user to make the first owner.
    #[serde(default)]
    pub(crate) owner: Option<String>,
}

#[utoipa::path(
    post,
    path = "/admin/teams",
    operation_id = "teams_create",
    tag = "teams",
    summary = "Create a team",
    request_body = CreateTeamRequest,
    responses(
        (status = 201, description = "The team", body = crate::http::openapi::AnyObject),
    ),
    security(("admin" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    ApiJson(req): ApiJson<CreateTeamRequest>,
) -> ApiResult<Response> {
    let (slug, name) = teams::create(
        &state,
        &client,
        &auth,
        &req.slug,
        &req.name,
        req.owner.as_deref(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"slug": slug, "name": name})),
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/admin/teams",
    operation_id = "teams_list",
    tag = "teams",
    summary = "Teams",
    responses(
        (status = 200, description = "Every team", body = crate::http::openapi::AnyObject),
    ),
    security(("admin" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
) -> ApiResult<Json<serde_json::Value>> {
    let teams: Vec<_> = teams::list(&state, &admin)
        .await?
        .iter()
        .map(|t| json!({"slug": t.slug, "name": t.name, "created_at": t.created_at}))
        .collect();
    Ok(Json(json!({ "teams": teams })))
}

#[utoipa::path(
    delete,
    path = "/admin/teams/{slug}",
    operation_id = "teams_delete",
    tag = "teams",
    summary = "Delete a team",
    params(("slug" = String, Path, description = "The team's slug")),
    responses(
        (status = 204, description = "Deleted"),
    ),
    security(("admin" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    Path(slug): Path<String>,
) -> ApiResult<Response> {
    teams::delete(&state, &client, &auth, &slug).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The caller's teams and roles.
#[utoipa::path(
    get,
    path = "/auth/teams",
    operation_id = "teams_mine",
    tag = "teams",
    summary = "My teams",
    responses(
        (status = 200, description = "The caller's teams", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn mine(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<Json<serde_json::Value>> {
    let teams: Vec<_> = teams::mine(&state, &auth)
        .await?
        .into_iter()
        .map(|(slug, role)| json!({"slug": slug, "role": role}))
        .collect();
    Ok(Json(json!({ "teams": teams })))
}

#[utoipa::path(
    get,
    path = "/auth/teams/{slug}/members",
    operation_id = "teams_members",
    tag = "teams",
    summary = "A team's members",
    params(("slug" = String, Path, description = "The team's slug")),
    responses(
        (status = 200, description = "The team's members", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn members(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(slug): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let members: Vec<_> = teams::members(&state, &auth, &slug)
        .await?
        .iter()
        .map(|m| json!({"user_id": m.user_id, "email": m.email, "role": m.role, "added_at": m.added_at}))
        .collect();
    Ok(Json(json!({ "team": slug, "members": members })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRequest {
    #[schema(pattern = "^(owner|maintainer|member)$")]
    pub(crate) role: String,
}

#[utoipa::path(
    put,
    path = "/auth/teams/{slug}/members/{user_id}",
    operation_id = "teams_put_member",
    tag = "teams",
    summary = "Add a member or change their role",
    request_body = MemberRequest,
    params(("slug" = String, Path, description = "The team's slug"), ("user_id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The membership", body = crate::http::openapi::AnyObject),
        (status = 202, description = "Invited (an owner adding someone who is not a member): they join when they accept", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn put_member(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    Path((slug, user_id)): Path<(String, String)>,
    ApiJson(req): ApiJson<MemberRequest>,
) -> ApiResult<Response> {
    let body = json!({"team": slug, "user_id": user_id, "role": req.role});
    Ok(
        match teams::put_member(&state, &client, &auth, &slug, &user_id, &req.role).await? {
            MemberSet::Set => Json(body).into_response(),
            MemberSet::Invited => {
                let mut body = body;
                body["invited"] = json!(true);
                (StatusCode::ACCEPTED, Json(body)).into_response()
            }
        },
    )
}

/// The caller's pending invitations.
#[utoipa::path(
    get,
    path = "/auth/teams/invitations",
    operation_id = "teams_invitations",
    tag = "teams",
    summary = "My team invitations",
    responses(
        (status = 200, description = "The caller's pending invitations", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn invitations(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<Json<serde_json::Value>> {
    let pending: Vec<_> = teams::invitations(&state, &auth)
        .await?
        .into_iter()
        .map(|i| json!({"team": i.team, "role": i.role, "invited_by": i.invited_by, "invited_at": i.invited_at}))
        .collect();
    Ok(Json(json!({ "invitations": pending })))
}

/// Accepts an invitation: the caller joins with its role.
#[utoipa::path(
    post,
    path = "/auth/teams/{slug}/invitation",
    operation_id = "teams_accept_invitation",
    tag = "teams",
    summary = "Accept a team invitation",
    params(("slug" = String, Path, description = "The team's slug")),
    responses(
        (status = 200, description = "The membership", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn accept_invitation(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    Path(slug): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let role = teams::accept_invitation(&state, &client, &auth, &slug).await?;
    Ok(Json(
        json!({"team": slug, "user_id": auth.user.id, "role": role}),
    ))
}

/// Declines an invitation.
#[utoipa::path(
    delete,
    path = "/auth/teams/{slug}/invitation",
    operation_id = "teams_decline_invitation",
    tag = "teams",
    summary = "Decline a team invitation",
    params(("slug" = String, Path, description = "The team's slug")),
    responses(
        (status = 204, description = "Declined"),
    ),
    security(("bearer" = [])),
)]
pub async fn decline_invitation(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    Path(slug): Path<String>,
) -> ApiResult<Response> {
    teams::decline_invitation(&state, &client, &auth, &slug).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Owners and admins remove anyone; every member may leave.
#[utoipa::path(
    delete,
    path = "/auth/teams/{slug}/members/{user_id}",
    operation_id = "teams_delete_member",
    tag = "teams",
    summary = "Remove a member",
    params(("slug" = String, Path, description = "The team's slug"), ("user_id" = String, Path, description = "The user's id")),
    responses(
        (status = 204, description = "Removed"),
    ),
    security(("bearer" = [])),
)]
pub async fn delete_member(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    Path((slug, user_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    teams::remove_member(&state, &client, &auth, &slug, &user_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
