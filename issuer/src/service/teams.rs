//! Teams and their members. Admins create and delete teams; a team's owners
//! (and admins) manage its members; members see each other. A membership
//! change revokes the member's live tokens at once, so the next refresh
//! carries it, and the edge sees the change within the revocation lag.

use serde_json::json;

use crate::service::admin::{require_admin, Admin};
use crate::service::context::{Authenticated, Client};
use crate::service::error::{Error as ApiError, Kind, Result as ApiResult};
use crate::store::{
    AuditEvent, CreateTeam, Membership, MembershipChange, Outcome, Team, TEAM_ROLES,
};
use crate::AppState;

/// A team slug: lower-case letters, digits and inner dashes, 1 to 63.
/// Slugs name teams in paths and policies: lower-case letters, digits and
/// inner hyphens, at most 63.
pub fn valid_slug(slug: &str) -> bool {
    let b = slug.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first() != Some(&b'-')
        && b.last() != Some(&b'-')
}

/// A membership change's outcome as the API (and the CLI) answers it.
pub fn membership_result(change: MembershipChange) -> ApiResult<Vec<auth_types::RevocationRecord>> {
    match change {
        MembershipChange::Done(records) => Ok(records),
        MembershipChange::NoSuchTeam => Err(ApiError::not_found("no such team")),
        MembershipChange::NoSuchUser => Err(ApiError::not_found("no such user")),
        MembershipChange::NotAMember => Err(ApiError::not_found("not a member of this team")),
        MembershipChange::LastOwner => Err(ApiError::new(
            Kind::Conflict,
            "last_owner",
            "a team keeps at least one owner; make another owner first",
        )),
    }
}

const MAX_TEAM_NAME_CHARS: usize = 200;
/// An invitation is good for this long.
const INVITATION_TTL_SECS: i64 = 14 * 86_400;

fn is_admin(auth: &Authenticated) -> bool {
    auth.user.roles.iter().any(|r| r == "admin")
}

/// An admin, recently authenticated: as every admin change.
async fn recent_admin(state: &AppState, auth: &Authenticated) -> ApiResult<()> {
    require_admin(auth.clone())?.recent(state).await?;
    Ok(())
}

/// Creates a team (a recent admin only), with `owner` as its first owner;
/// the team's slug and trimmed name.
pub async fn create(
    state: &AppState,
    client: &Client,
    auth: &Authenticated,
    slug: &str,
    name: &str,
    owner: Option<&str>,
) -> ApiResult<(String, String)> {
    recent_admin(state, auth).await?;
    let unprocessable = |m: &str| ApiError::new(Kind::Unprocessable, "invalid_team", m.to_string());
    if !valid_slug(slug) {
        return Err(unprocessable("slug: 1 to 63 of a-z 0-9 and inner hyphens"));
    }
    let name = name.trim();
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
        .create_team(slug, name, owner, now.ms, state.revocation_expiry(now))
        .await?
    {
        CreateTeam::Created(records) => state.published(records).await,
        CreateTeam::SlugTaken => {
            return Err(ApiError::new(
                Kind::Conflict,
                "team_exists",
                "a team with this slug exists",
            ))
        }
        CreateTeam::NoSuchOwner => return Err(ApiError::not_found("no such user (owner)")),
    }
    let detail = json!({"team": slug, "name": name, "owner": owner});
    state
        .audit(
            AuditEvent::new(now.ms, "team_created")
                .by(auth)
                .target(slug)
                .client(client)
                .meta(detail),
        )
        .await;
    Ok((slug.to_string(), name.to_string()))
}

/// Every team.
pub async fn list(state: &AppState, _admin: &Admin) -> ApiResult<Vec<Team>> {
    Ok(state.store.teams().await?)
}

/// Deletes a team (a recent admin only); its members' tokens are revoked.
pub async fn delete(
    state: &AppState,
    client: &Client,
    auth: &Authenticated,
    slug: &str,
) -> ApiResult<()> {
    recent_admin(state, auth).await?;
    let now = state.now();
    let records = state
        .store
        .delete_team(slug, now.ms, state.revocation_expiry(now))
        .await?
        .ok_or_else(|| ApiError::not_found("no such team"))?;
    let event = AuditEvent::new(now.ms, "team_deleted")
        .by(auth)
        .target(slug)
        .client(client)
        .meta(json!({"team": slug, "members": records.len()}));
    state.sessions_ended(records, event).await;
    Ok(())
}

/// The caller's (team slug, role) pairs.
pub async fn mine(state: &AppState, auth: &Authenticated) -> ApiResult<Vec<(String, String)>> {
    Ok(state.store.teams_of(&auth.user.id).await?)
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
            recent_admin(state, auth).await?;
        }
        return Ok(());
    }
    let role = state.store.team_role(slug, &auth.user.id).await?;
    match role.as_deref() {
        None => Err(ApiError::not_found("no such team")),
        Some("owner") => Ok(()),
        Some(_) if !manage => Ok(()),
        Some(_) => Err(ApiError::forbidden(
            "only the team's owners manage its members",
        )),
    }
}

/// A team's members, for its members and admins.
pub async fn members(
    state: &AppState,
    auth: &Authenticated,
    slug: &str,
) -> ApiResult<Vec<Membership>> {
    check_access(state, auth, slug, false).await?;
    if !state.store.team_exists(slug).await? {
        return Err(ApiError::not_found("no such team"));
    }
    Ok(state.store.team_members(slug).await?)
}

/// What setting a member did.
#[derive(Debug, PartialEq, Eq)]
pub enum MemberSet {
    /// The membership is in place.
    Set,
    /// An owner (not an admin) asked for someone not yet a member: they
    /// join when they accept.
    Invited,
}

/// Adds a member or changes their role (owners and admins).
pub async fn put_member(
    state: &AppState,
    client: &Client,
    auth: &Authenticated,
    slug: &str,
    user_id: &str,
    role: &str,
) -> ApiResult<MemberSet> {
    if !TEAM_ROLES.contains(&role) {
        return Err(ApiError::new(
            Kind::Unprocessable,
            "invalid_role",
            "role: owner, maintainer or member",
        ));
    }
    check_access(state, auth, slug, true).await?;
    let now = state.now();
    // An owner who is not an admin adds people only with their consent:
    // someone not yet a member gets an invitation to accept.
    let member = state.store.team_role(slug, user_id).await?.is_some();
    let detail = json!({"team": slug, "user": user_id, "role": role});
    if !is_admin(auth) && !member {
        let invited = state
            .store
            .invite(slug, user_id, role, &auth.user.id, now.secs())
            .await?;
        membership_result(invited)?;
        state
            .audit(
                AuditEvent::new(now.ms, "team_member_invited")
                    .by(auth)
                    .target(user_id)
                    .client(client)
                    .meta(detail),
            )
            .await;
        return Ok(MemberSet::Invited);
    }
    apply(state, slug, user_id, Some(role), now).await?;
    state
        .audit(
            AuditEvent::new(now.ms, "team_member_set")
                .by(auth)
                .target(user_id)
                .client(client)
                .meta(detail),
        )
        .await;
    Ok(MemberSet::Set)
}

/// A pending invitation.
pub struct Invitation {
    pub team: String,
    pub role: String,
    pub invited_by: String,
    pub invited_at: i64,
}

/// The caller's pending invitations.
pub async fn invitations(state: &AppState, auth: &Authenticated) -> ApiResult<Vec<Invitation>> {
    let pending = state.store.invitations_of(&auth.user.id).await?;
    let now = state.now().secs();
    Ok(pending
        .into_iter()
        .filter(|(_, _, _, at)| now - at <= INVITATION_TTL_SECS)
        .map(|(team, role, invited_by, invited_at)| Invitation {
            team,
            role,
            invited_by,
            invited_at,
        })
        .collect())
}

/// Accepts an invitation: the caller joins with its role (returned).
pub async fn accept_invitation(
    state: &AppState,
    client: &Client,
    auth: &Authenticated,
    slug: &str,
) -> ApiResult<String> {
    let now = state.now();
    let (role, invited_by, invited_at) = state
        .store
        .take_invitation(slug, &auth.user.id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such invitation"))?;
    // Worth only as much as its author still is (an owner of the team),
    // and only for a while.
    let still_owner = state
        .store
        .team_role(slug, &invited_by)
        .await?
        .is_some_and(|r| r == "owner");
    let fresh = now.secs() - invited_at <= INVITATION_TTL_SECS;
    if !still_owner || !fresh {
        let why = if fresh {
            "inviter_not_owner"
        } else {
            "expired"
        };
        state
            .audit(
                AuditEvent::new(now.ms, "team_invitation_refused")
                    .by(auth)
                    .target(&auth.user.id)
                    .client(client)
                    .outcome(Outcome::Denied, why)
                    .meta(json!({"team": slug, "invited_by": invited_by})),
            )
            .await;
        return Err(ApiError::not_found(
            "no such invitation (it expired, or whoever invited you no longer owns the team)",
        ));
    }
    apply(state, slug, &auth.user.id, Some(&role), now).await?;
    state
        .audit(
            AuditEvent::new(now.ms, "team_invitation_accepted")
                .by(auth)
                .target(&auth.user.id)
                .client(client)
                .meta(json!({"team": slug, "role": role})),
        )
        .await;
    Ok(role)
}

/// Declines an invitation.
pub async fn decline_invitation(
    state: &AppState,
    client: &Client,
    auth: &Authenticated,
    slug: &str,
) -> ApiResult<()> {
    let (role, invited_by, _) = state
        .store
        .take_invitation(slug, &auth.user.id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such invitation"))?;
    state
        .audit(
            AuditEvent::new(state.now().ms, "team_invitation_declined")
                .by(auth)
                .target(&auth.user.id)
                .client(client)
                .meta(json!({"team": slug, "role": role, "invited_by": invited_by})),
        )
        .await;
    Ok(())
}

/// Owners and admins remove anyone; every member may leave.
pub async fn remove_member(
    state: &AppState,
    client: &Client,
    auth: &Authenticated,
    slug: &str,
    user_id: &str,
) -> ApiResult<()> {
    if user_id != auth.user.id {
        check_access(state, auth, slug, true).await?;
    } else if !is_admin(auth) && state.store.team_role(slug, user_id).await?.is_none() {
        // Leaving a team one is not in: the same answer whether or not the
        // team exists, so outsiders cannot probe for slugs.
        return Err(ApiError::not_found("no such team"));
    }
    let now = state.now();
    apply(state, slug, user_id, None, now).await?;
    state
        .audit(
            AuditEvent::new(now.ms, "team_member_removed")
                .by(auth)
                .target(user_id)
                .client(client)
                .meta(json!({"team": slug, "user": user_id})),
        )
        .await;
    Ok(())
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
        .await?;
    let records = membership_result(change)?;
    state.published(records).await;
    Ok(())
}
