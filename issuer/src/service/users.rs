//! Accounts as operators see them: search, detail, changes (roles, disable,
//! admin metadata), deletion, ending sessions, clearing the sign-in delay.
//! Anything that changes what a token says about a user (roles) or whether
//! the user may hold one (disable) revokes the user's live tokens at once.

use serde_json::json;

use crate::service::admin::Admin;
use crate::service::context::Client;
use crate::service::error::{Error, Kind, Result};
use crate::store::{
    AuditEvent, Changed, DeleteUser, Identity, MfaStatus, ProfileChange, User, UserChange,
};
use crate::AppState;

const MAX_PAGE: i64 = 200;
const MAX_QUERY_CHARS: usize = 100;

fn self_refused(what: &str) -> Error {
    Error::new(
        Kind::Conflict,
        "self_change_refused",
        format!("an admin cannot {what} here; ask another admin"),
    )
}

fn last_admin() -> Error {
    Error::new(
        Kind::Conflict,
        "last_admin",
        "no enabled admin would be left",
    )
}

async fn user(state: &AppState, id: &str) -> Result<User> {
    state
        .store
        .user_by_id(id)
        .await?
        .ok_or_else(|| Error::not_found("no such user"))
}

/// One page of a search, by email; `next` continues it.
pub struct Page {
    pub users: Vec<User>,
    pub next: Option<String>,
}

/// Search by a substring of the email, name or a linked login, with an
/// opaque cursor (the last email seen).
pub async fn search(
    state: &AppState,
    _admin: &Admin,
    q: Option<&str>,
    after: Option<&str>,
    limit: Option<i64>,
) -> Result<Page> {
    let limit = limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::bad_request(
            "invalid_request",
            format!("limit: 1 to {MAX_PAGE}"),
        ));
    }
    let query = q.map(str::trim).filter(|s| !s.is_empty());
    if query.is_some_and(|s| s.chars().count() > MAX_QUERY_CHARS || s.chars().any(char::is_control))
    {
        return Err(Error::bad_request(
            "invalid_request",
            format!("q: at most {MAX_QUERY_CHARS} characters"),
        ));
    }
    let after = crate::service::cursor::after(after)?;
    let mut users = state
        .store
        .search_users(query, after.as_deref(), limit + 1)
        .await?;
    let more = users.len() as i64 > limit;
    users.truncate(limit as usize);
    let next = more
        .then(|| users.last())
        .flatten()
        .map(|u| crate::service::cursor::next(&u.email));
    Ok(Page { users, next })
}

/// A user and what an operator needs to help them.
pub struct Detail {
    pub user: User,
    pub mfa: MfaStatus,
    pub identities: Vec<Identity>,
    /// (team slug, role)
    pub teams: Vec<(String, String)>,
    pub live_sessions: usize,
}

pub async fn detail(state: &AppState, _admin: &Admin, id: &str) -> Result<Detail> {
    let user = user(state, id).await?;
    let store = &state.store;
    let (mfa, identities, teams, sessions) = tokio::try_join!(
        store.mfa_status(id),
        store.identities_of(id),
        store.teams_of(id),
        store.live_sessions(id, state.now().secs()),
    )?;
    Ok(Detail {
        user,
        mfa,
        identities,
        teams,
        live_sessions: sessions.len(),
    })
}

/// What an admin changes; at least one part.
#[derive(Default)]
pub struct Change {
    pub roles: Option<Vec<String>>,
    pub disabled: Option<bool>,
    /// Replaces the admin-only metadata object.
    pub admin_metadata: Option<serde_json::Value>,
}

/// Applies the change (a recent admin only); the user's live tokens die
/// with a role change or a disable.
pub async fn change(
    state: &AppState,
    client: &Client,
    admin: &Admin,
    id: &str,
    req: Change,
) -> Result<User> {
    let auth = admin.recent(state).await?;
    if req.roles.is_none() && req.disabled.is_none() && req.admin_metadata.is_none() {
        return Err(Error::bad_request(
            "invalid_request",
            "give roles, disabled and/or admin_metadata",
        ));
    }
    let admin_metadata = req
        .admin_metadata
        .as_ref()
        .map(crate::service::profile::checked_metadata)
        .transpose()?;
    if let Some(roles) = &req.roles {
        crate::service::roles::check_roles(roles)?;
    }
    // An admin cannot lock themselves out (and possibly everyone: they may
    // be the last admin); another admin can.
    let demotes_self = req
        .roles
        .as_ref()
        .is_some_and(|r| !r.iter().any(|r| r == "admin"));
    if id == auth.user.id && (req.disabled == Some(true) || demotes_self) {
        return Err(self_refused(
            "disable your own account or remove your own admin role",
        ));
    }
    let change = UserChange {
        roles: req.roles.map(|mut r| {
            r.sort();
            r.dedup();
            r
        }),
        disabled: req.disabled,
        second_factor_roles: state.settings.mfa_required_roles.clone(),
    };
    let now = state.now();
    let mut user = if change.roles.is_some() || change.disabled.is_some() {
        let changed = state
            .store
            .change_user(id, &change, now.ms, state.revocation_expiry(now))
            .await?
            .ok_or_else(|| Error::not_found("no such user"))?;
        match changed {
            Changed::Done(user, records) => {
                state.published(records).await;
                *user
            }
            Changed::LastAdmin => return Err(last_admin()),
        }
    } else {
        user(state, id).await?
    };
    if let Some(m) = &admin_metadata {
        let profile = ProfileChange {
            admin_metadata: Some(m.clone()),
            ..Default::default()
        };
        user = state
            .store
            .update_profile(id, &profile)
            .await?
            .ok_or_else(|| Error::not_found("no such user"))?;
    }
    let detail = json!({"user": user.id, "roles": change.roles, "disabled": change.disabled,
        "admin_metadata": admin_metadata.is_some()});
    state
        .audit(
            AuditEvent::new(now.ms, "user_changed")
                .by(auth)
                .target(id)
                .client(client)
                .meta(detail),
        )
        .await;
    Ok(user)
}

/// Deletes the account and everything it had; its tokens die at the edge.
pub async fn delete(state: &AppState, client: &Client, admin: &Admin, id: &str) -> Result<()> {
    let auth = admin.recent(state).await?;
    if id == auth.user.id {
        return Err(self_refused("delete your own account"));
    }
    let now = state.now();
    let records = match state
        .store
        .delete_user(id, now.ms, state.revocation_expiry(now))
        .await?
    {
        DeleteUser::Done(records) => records,
        DeleteUser::NoSuchUser => return Err(Error::not_found("no such user")),
        DeleteUser::LastAdmin => return Err(last_admin()),
        DeleteUser::SoleOwner(teams) => {
            return Err(Error::new(
                Kind::Conflict,
                "sole_team_owner",
                format!(
                    "the user is the only owner of {}; make another owner first",
                    teams.join(", ")
                ),
            ))
        }
    };
    let event = AuditEvent::new(now.ms, "user_deleted")
        .by(auth)
        .target(id)
        .client(client)
        .meta(json!({"user": id}));
    state.sessions_ended(records, event).await;
    Ok(())
}

/// Ends every session of the user (at the edge too); how many ended.
pub async fn end_sessions(
    state: &AppState,
    client: &Client,
    admin: &Admin,
    id: &str,
) -> Result<usize> {
    let auth = admin.recent(state).await?;
    let now = state.now();
    user(state, id).await?;
    let records = state
        .store
        .revoke_all_sessions(id, "ended_by_admin", now.ms, state.revocation_expiry(now))
        .await?;
    let ended = records.len();
    let event = AuditEvent::new(now.ms, "user_sessions_ended")
        .by(auth)
        .target(id)
        .client(client)
        .meta(json!({"user": id, "sessions_ended": ended}));
    state.sessions_ended(records, event).await;
    Ok(ended)
}

/// Clears the account's failed sign-in counts, and with them any delay;
/// whether there was one. It lifts the throttles on guessing: a recent
/// admin only, as every admin change.
pub async fn clear_login_delay(
    state: &AppState,
    client: &Client,
    admin: &Admin,
    id: &str,
) -> Result<bool> {
    let auth = admin.recent(state).await?;
    let user = user(state, id).await?;
    let cleared = state.store.clear_login_failures(&user.email).await?;
    // Second-factor attempts are counted apart (and may be locked).
    let cleared_mfa = state
        .store
        .clear_login_failures(&format!("mfa:{}", user.id))
        .await?;
    let cleared = cleared || cleared_mfa;
    state
        .audit(
            AuditEvent::new(state.now().ms, "login_delay_cleared")
                .by(auth)
                .target(id)
                .client(client)
                .meta(json!({"user": id, "cleared": cleared})),
        )
        .await;
    Ok(cleared)
}
