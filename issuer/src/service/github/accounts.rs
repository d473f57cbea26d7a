//! Which account a GitHub identity signs in (its linked one, or a new one)
//! and linking GitHub to a signed-in account.

use crate::domain::clock::Now;
use crate::domain::tokens::new_id;
use crate::service::context::Client;
use crate::service::error::{Error as ApiError, Kind};
use crate::service::github::client::Profile;
use crate::store::{AuditEvent, Identity, LinkError, User};
use crate::AppState;

use super::{Failure, PendingLink, PROVIDER};

fn identity_for(user_id: &str, profile: &Profile, now: Now) -> Identity {
    Identity {
        provider: PROVIDER.into(),
        subject: profile.id.to_string(),
        user_id: user_id.to_string(),
        login: profile.login.clone(),
        email: profile.verified_email.clone(),
        linked_at: now.secs(),
        last_used_at: now.secs(),
    }
}

/// The account a GitHub identity signs in: its linked account, or a new one
/// when its verified email is nobody's. An email that belongs to an existing
/// account is never linked here (that would hand the account to whoever
/// controls the GitHub side): the owner links explicitly.
pub(super) async fn resolve(
    state: &AppState,
    client: &Client,
    profile: &Profile,
    now: Now,
) -> Result<User, Failure> {
    let db = |e: sqlx::Error| Failure::new("github_error", ApiError::internal(e));
    let subject = profile.id.to_string();
    // Twice at most: a concurrent first sign-in may create the account
    // between our lookup and our insert.
    for round in 0..2 {
        if let Some((user, _)) = state
            .store
            .user_by_identity(PROVIDER, &subject)
            .await
            .map_err(db)?
        {
            state
                .store
                .touch_identity(
                    PROVIDER,
                    &subject,
                    &profile.login,
                    profile.verified_email.as_deref(),
                    now.secs(),
                )
                .await
                .map_err(db)?;
            return Ok(user);
        }
        // Normalised as registration does, so the same address is the same
        // account whichever way it arrived.
        // Only ASCII: lower-casing Unicode can fold a different address onto
        // this one (K, U+212A, becomes `k`), which GitHub never verified.
        let email = profile
            .verified_email
            .as_deref()
            .filter(|e| e.is_ascii())
            .and_then(|e| crate::service::accounts::normalize_email(e).ok());
        let Some(email) = email else {
            return Err(Failure::new(
                "github_no_verified_email",
                ApiError::new(
                    Kind::Forbidden,
                    "no_verified_email",
                    "your GitHub account has no verified primary email address",
                ),
            )
            .about(profile));
        };
        if state
            .store
            .user_by_email(&email)
            .await
            .map_err(db)?
            .is_some()
        {
            // The account may be this identity's, made a moment ago by a
            // concurrent first sign-in: look once more before refusing.
            if round == 0 {
                continue;
            }
            return Err(link_required(profile));
        }
        let user = User {
            id: new_id(),
            email,
            name: profile.name.clone().filter(|n| !n.trim().is_empty()),
            password_hash: String::new(),
            roles: Vec::new(),
            created_at: now.secs(),
            password_changed_at: now.secs(),
            disabled_at: None,
            token_generation: 0,
            email_verified_at: Some(now.secs()),
            avatar_url: profile.avatar_url.clone(),
            metadata: "{}".into(),
            admin_metadata: "{}".into(),
        };
        match state
            .store
            .create_user_with_identity(&user, &identity_for(&user.id, profile, now))
            .await
        {
            Ok(()) => {
                state
                    .audit(AuditEvent::new(now.ms, "github_account_created").user(&user).client(client).meta(serde_json::json!({"provider": "github", "github_id": profile.id, "login": profile.login})))
                    .await;
                return Ok(user);
            }
            // Maybe a concurrent first sign-in of this same identity: the
            // next round finds it, or answers link_required.
            Err(LinkError::EmailTaken) => continue,
            Err(LinkError::IdentityTaken) => continue,
            Err(LinkError::ProviderTaken) => continue,
            Err(LinkError::Db(e)) => return Err(db(e)),
        }
    }
    Err(link_required(profile))
}

/// An account already has this verified address: its owner must sign in
/// and link GitHub, so no one takes over an account by its email.
fn link_required(profile: &Profile) -> Failure {
    Failure::new(
        "github_link_required",
        ApiError::new(
            Kind::Conflict,
            "link_required",
            "an account with this email exists: sign in to it and link GitHub \
             (POST /auth/github/link)",
        ),
    )
    .about(profile)
}

pub(super) async fn link_to(
    state: &AppState,
    client: &Client,
    link: &PendingLink,
    profile: &Profile,
    now: Now,
) -> Result<(), Failure> {
    let db = |e: sqlx::Error| Failure::new("github_error", ApiError::internal(e));
    let refused = || {
        Failure::new(
            "github_link_refused",
            ApiError::forbidden(
                "the session that started this link has ended or the password changed; start again",
            ),
        )
        .about(profile)
    };
    let user_id = link.user_id.as_str();
    let user = state
        .store
        .user_by_id(user_id)
        .await
        .map_err(db)?
        .filter(|u| u.disabled_at.is_none() && u.password_changed_at == link.password_changed_at)
        .ok_or_else(refused)?;
    let session_live = state
        .store
        .session(&link.session_id)
        .await
        .map_err(db)?
        .is_some_and(|s| s.user_id == user_id && s.is_live(now.secs()));
    if !session_live {
        return Err(refused());
    }
    match state
        .store
        .link_identity(&identity_for(user_id, profile, now))
        .await
    {
        Ok(()) => {
            if user.avatar_url.is_none() && profile.avatar_url.is_some() {
                let avatar = crate::store::ProfileChange {
                    avatar_url: Some(profile.avatar_url.clone()),
                    ..Default::default()
                };
                // Cosmetic: a failure here must not undo the link.
                if let Err(e) = state.store.update_profile(user_id, &avatar).await {
                    tracing::warn!(error = %e, "could not take the avatar from GitHub");
                }
            }
            state
                .audit(AuditEvent::new(now.ms, "github_linked").user(&user).client(client).meta(serde_json::json!({"provider": "github", "github_id": profile.id, "login": profile.login})))
                .await;
            Ok(())
        }
        Err(LinkError::IdentityTaken) => Err(Failure::new(
            "github_link_refused",
            ApiError::new(
                Kind::Conflict,
                "identity_in_use",
                "this GitHub account is already linked to an account",
            ),
        )
        .about(profile)),
        Err(LinkError::ProviderTaken) => Err(Failure::new(
            "github_link_refused",
            ApiError::new(
                Kind::Conflict,
                "already_linked",
                "this account already has a GitHub account linked; unlink it first",
            ),
        )
        .about(profile)),
        Err(LinkError::EmailTaken) => Err(Failure::new(
            "github_error",
            ApiError::internal("email conflict while linking"),
        )),
        Err(LinkError::Db(e)) => Err(db(e)),
    }
}
