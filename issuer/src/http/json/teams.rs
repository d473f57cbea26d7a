//! Teams and their members. Admins create and delete teams; a team's owners
//! (and admins) manage its members; members see each other. A membership
//! change revokes the member's live tokens at once, so the next refresh
//! carries it, and the edge sees the change within the revocation lag.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, Authenticated, Client};
use crate::service::admin::Admin;
use crate::service::teams::{membership_result, valid_slug};
use crate::store::{AuditEvent, Outcome};
use crate::store::{CreateTeam, TEAM_ROLES};
use crate::AppState;

const MAX_TEAM_NAME_CHARS: usize = 200;

fn is_admin(auth: &Authenticated) -> bool {
    auth.user.roles.iter().any(|r| r == "admin")
}

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
    super::admin::require_recent_admin(&state, &auth).await?;
    let unprocessable = |m: &str| {
        ApiError::new(
            crate::service::error::Kind::Unprocessable,
            "invalid_team",
            m.to_string(),
        )
    };
    if !valid_slug(&req.slug) {
        return Err(unprocessable("slug: 1 to 63 of a-z 0-9 and inner hyphens"));
    }
    let name = req.name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_TEAM_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(unprocessable(
            "name: 1 to 200 characters, no control characters",
        ));
    }
    let now = state.now();
    match state
        .store
        .create_team(
            &req.slug,
            name,
            req.owner.as_deref(),
            now.ms,
            state.revocation_expiry(now),
        )
        .await
        .map_err(ApiError::internal)?
    {
        CreateTeam::Created(records) => state.published(records).await,
        CreateTeam::SlugTaken => {
            return Err(ApiError::new(
                crate::service::error::Kind::Conflict,
                "team_exists",
                "a team with this slug exists",
            ))
        }
        CreateTeam::NoSuchOwner => return Err(ApiError::not_found("no such user (owner)")),
    }
    let detail = json!({"team": req.slug, "name": name, "owner": req.owner});
    state
        .audit(
            AuditEvent::new(now.ms, "team_created")
                .by(&auth)
                .target(&req.slug)
                .client(&client)
                .meta(detail),
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(json!({"slug": req.slug, "name": name})),
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
    let _auth = admin.auth();
    let teams = state.store.teams().await.map_err(ApiError::internal)?;
    let teams: Vec<_> = teams
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
    super::admin::require_recent_admin(&state, &auth).await?;
    let now = state.now();
    let records = state
        .store
        .delete_team(&slug, now.ms, state.revocation_expiry(now))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("no such team"))?;
    let members = records.len();
    state.published(records).await;
    let detail = json!({"team": slug, "members": members});
    state
        .audit(
            AuditEvent::new(now.ms, "team_deleted")
                .by(&auth)
                .target(&slug)
                .client(&client)
                .meta(detail),
        )
        .await;
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
    let teams = state
        .store
        .teams_of(&auth.user.id)
        .await
        .map_err(ApiError::internal)?;
    let teams: Vec<_> = teams
        .into_iter()
        .map(|(slug, role)| json!({"slug": slug, "role": role}))
        .collect();
    Ok(Json(json!({ "teams": teams })))
}

/// Whether the caller may see (`manage == false`) or change the team's
/// members. Outsiders learn nothing: a team they cannot see is a 404.
async fn check_access(
    state: &AppState,
    auth: &Authenticated,
    slug: &str,
    manage: bool,
) -> ApiResult<()> {
    if is_admin(auth) {
        // An admin managing a team not theirs: as every admin change.
        if manage {
            super::admin::require_recent_admin(state, auth).await?;
        }
        return Ok(());
    }
    let role = state
        .store
        .team_role(slug, &auth.user.id)
        .await
        .map_err(ApiError::internal)?;
    match role.as_deref() {
        None => Err(ApiError::not_found("no such team")),
        Some("owner") => Ok(()),
        Some(_) if !manage => Ok(()),
        Some(_) => Err(ApiError::forbidden(
            "only the team's owners manage its members",
        )),
    }
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
    check_access(&state, &auth, &slug, false).await?;
    if !state
        .store
        .team_exists(&slug)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::not_found("no such team"));
    }
    let members = state
        .store
        .team_members(&slug)
        .await
        .map_err(ApiError::internal)?;
    let members: Vec<_> = members
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
    if !TEAM_ROLES.contains(&req.role.as_str()) {
        return Err(ApiError::new(
            crate::service::error::Kind::Unprocessable,
            "invalid_role",
            "role: owner, maintainer or member",
        ));
    }
    check_access(&state, &auth, &slug, true).await?;
    let now = state.now();
    // An owner who is not an admin adds people only with their consent:
    // someone not yet a member gets an invitation to accept.
    let member = state
        .store
        .team_role(&slug, &user_id)
        .await
        .map_err(ApiError::internal)?
        .is_some();
    if !is_admin(&auth) && !member {
        let invited = state
            .store
            .invite(&slug, &user_id, &req.role, &auth.user.id, now.secs())
            .await
            .map_err(ApiError::internal)?;
        membership_result(invited)?;
        let detail = json!({"team": slug, "user": user_id, "role": req.role});
        state
            .audit(
                AuditEvent::new(now.ms, "team_member_invited")
                    .by(&auth)
                    .target(&user_id)
                    .client(&client)
                    .meta(detail),
            )
            .await;
        let body = json!({"team": slug, "user_id": user_id, "role": req.role, "invited": true});
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    apply(&state, &slug, &user_id, Some(&req.role), now).await?;
    let detail = json!({"team": slug, "user": user_id, "role": req.role});
    state
        .audit(
            AuditEvent::new(now.ms, "team_member_set")
                .by(&auth)
                .target(&user_id)
                .client(&client)
                .meta(detail),
        )
        .await;
    Ok(Json(json!({"team": slug, "user_id": user_id, "role": req.role})).into_response())
}

/// An invitation is good for this long.
const INVITATION_TTL_SECS: i64 = 14 * 86_400;

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
    let pending = state
        .store
        .invitations_of(&auth.user.id)
        .await
        .map_err(ApiError::internal)?;
    let now = state.now().secs();
    let pending: Vec<_> = pending
        .into_iter()
        .filter(|(_, _, _, at)| now - at <= INVITATION_TTL_SECS)
        .map(|(slug, role, by, at)| json!({"team": slug, "role": role, "invited_by": by, "invited_at": at}))
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
    let now = state.now();
    let (role, invited_by, invited_at) = state
        .store
        .take_invitation(&slug, &auth.user.id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("no such invitation"))?;
    // Worth only as much as its author still is (an owner of the team),
    // and only for a while.
    let still_owner = state
        .store
        .team_role(&slug, &invited_by)
        .await
        .map_err(ApiError::internal)?
        .is_some_and(|r| r == "owner");
    let fresh = now.secs() - invited_at <= INVITATION_TTL_SECS;
    if !still_owner || !fresh {
        state
            .audit(
                AuditEvent::new(now.ms, "team_invitation_refused")
                    .by(&auth)
                    .target(&auth.user.id)
                    .client(&client)
                    .outcome(
                        Outcome::Denied,
                        if fresh {
                            "inviter_not_owner"
                        } else {
                            "expired"
                        },
                    )
                    .meta(json!({"team": slug, "invited_by": invited_by})),
            )
            .await;
        return Err(ApiError::not_found(
            "no such invitation (it expired, or whoever invited you no longer owns the team)",
        ));
    }
    apply(&state, &slug, &auth.user.id, Some(&role), now).await?;
    state
        .audit(
            AuditEvent::new(now.ms, "team_invitation_accepted")
                .by(&auth)
                .target(&auth.user.id)
                .client(&client)
                .meta(json!({"team": slug, "role": role})),
        )
        .await;
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
    let (role, invited_by, _) = state
        .store
        .take_invitation(&slug, &auth.user.id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("no such invitation"))?;
    let now = state.now();
    state
        .audit(
            AuditEvent::new(now.ms, "team_invitation_declined")
                .by(&auth)
                .target(&auth.user.id)
                .client(&client)
                .meta(json!({"team": slug, "role": role, "invited_by": invited_by})),
        )
        .await;
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
    if user_id != auth.user.id {
        check_access(&state, &auth, &slug, true).await?;
    } else if !is_admin(&auth)
        && state
            .store
            .team_role(&slug, &user_id)
            .await
            .map_err(ApiError::internal)?
            .is_none()
    {
        // Leaving a team one is not in: the same answer whether or not the
        // team exists, so outsiders cannot probe for slugs.
        return Err(ApiError::not_found("no such team"));
    }
    let now = state.now();
    apply(&state, &slug, &user_id, None, now).await?;
    let detail = json!({"team": slug, "user": user_id});
    state
        .audit(
            AuditEvent::new(now.ms, "team_member_removed")
                .by(&auth)
                .target(&user_id)
                .client(&client)
                .meta(detail),
        )
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn apply(
    state: &AppState,
    slug: &str,
    user_id: &str,
    role: Option<&str>,
    now: crate::domain::clock::Now,
) -> ApiResult<()> {
    let change = state
        .store
        .set_membership(
            slug,
            user_id,
            role,
            now.secs(),
            now.ms,
            state.revocation_expiry(now),
        )
        .await
        .map_err(ApiError::internal)?;
    let records = membership_result(change)?;
    state.published(records).await;
    Ok(())
}
