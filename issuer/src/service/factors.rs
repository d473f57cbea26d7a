//! The bookkeeping around second factors that every factor shares: how
//! recent an authentication must be to change them, what a first factor or a
//! removed one does to sessions, the attempt delay's answer, and the notice.

use crate::domain::clock::Now;
use crate::domain::mfa as core;
use crate::service::context::{Authenticated, Client};
use crate::service::error::{Error as ApiError, Kind, Result as ApiResult};
use crate::store::{AuditEvent, User};
use crate::AppState;

/// The user's first second factor: every other session was one-factor and
/// ends; the current one (which just proved the factor) counts as
/// two-factor from now on (its next refresh or step-up shows it).
/// `by_passkey`: the passkey that is the factor, if one is (removing it
/// then ends the session).
pub async fn first_factor_added(
    state: &AppState,
    user: &User,
    session: Option<&crate::store::Session>,
    word: &str,
    by_passkey: Option<&str>,
    now: Now,
) -> ApiResult<()> {
    let records = match session {
        Some(s) => {
            state
                .store
                .step_up_session(
                    &s.id,
                    &core::with_second_factor(&s.amr, word),
                    now.secs(),
                    by_passkey,
                )
                .await?;
            state
                .store
                .revoke_other_sessions(
                    &user.id,
                    &s.id,
                    "mfa_enabled",
                    now.ms,
                    state.revocation_expiry(now),
                )
                .await
        }
        None => {
            state
                .store
                .revoke_all_sessions(
                    &user.id,
                    "mfa_enabled",
                    now.ms,
                    state.revocation_expiry(now),
                )
                .await
        }
    }?;
    state.published(records).await;
    Ok(())
}

/// Changes to the factors need an authentication at most this old.
/// Changing factors needs a recent authentication, and for a user who
/// has a second factor, a recent one *with* it: a password (or a stolen
/// token) alone must not add, replace or remove factors.
pub async fn require_recent(state: &AppState, auth: &Authenticated, now: Now) -> ApiResult<()> {
    require_recent_for(state, auth, now, "changing second factors").await
}

/// The same rule before `what` (admin actions use it too).
pub async fn require_recent_for(
    state: &AppState,
    auth: &Authenticated,
    now: Now,
    what: &str,
) -> ApiResult<()> {
    let max_age = state.settings.mfa_recent_auth_secs;
    // How recent, from the token presented: a step-up mints a new token,
    // and must not also freshen one that leaked earlier.
    let auth_time = auth.claims.auth_time.unwrap_or(i64::MIN / 2);
    let recent = now.secs() - auth_time <= max_age;
    let has_factor = state.store.mfa_status(&auth.user.id).await?.any();
    // The factor, from the session: a step-up down to the password alone
    // weakens every token of it; a first factor just added strengthens it.
    let with_mfa = auth.session.amr.split_whitespace().any(|w| w == "mfa");
    if recent && (with_mfa || !has_factor) {
        return Ok(());
    }
    let mut e = ApiError::unauthorized(
        "recent_authentication_required",
        if has_factor {
            format!("step up with a second factor (POST /auth/mfa/step-up) within {max_age} s before {what}")
        } else {
            format!("authenticate again (POST /auth/mfa/step-up) within {max_age} s before {what}")
        },
    );
    let acr = if has_factor {
        format!(", acr_values=\"{}\"", core::ACR_TWO_FACTORS)
    } else {
        String::new()
    };
    e.challenge = Some(format!(
        "Bearer error=\"insufficient_user_authentication\", error_description=\"recent authentication required\"{acr}, max_age={max_age}"
    ));
    Err(e)
}

/// A removed factor's sessions (`which` names them) end with it.
pub async fn end_sessions_of_factor(
    state: &AppState,
    user_id: &str,
    which: crate::store::Which<'_>,
    now: Now,
) -> ApiResult<()> {
    let ended = state
        .store
        .revoke_sessions(
            user_id,
            which,
            "factor_removed",
            now.ms,
            state.revocation_expiry(now),
        )
        .await?;
    state.published(ended).await;
    Ok(())
}

/// A delay's refusal (429 with `Retry-After`), or the lock's.
pub fn wait_error(code: &'static str, until: i64, now: Now) -> ApiError {
    let secs = (until - now.ms + 999) / 1000;
    let locked = until >= i64::MAX / 4;
    let mut e = ApiError::new(
        Kind::TooMany,
        code,
        if locked {
            "too many wrong codes: second factors are locked for this account; an administrator can clear it".to_string()
        } else {
            format!("too many failed attempts for this account; retry in {secs} s")
        },
    );
    e.retry_after = Some(if locked {
        86_400
    } else {
        u64::try_from(secs).unwrap_or(1).max(1)
    });
    e
}

/// A change to the caller's own factors: audited in their session, and
/// told to the account's address.
pub async fn factor_changed(
    state: &AppState,
    auth: &Authenticated,
    client: &Client,
    event: AuditEvent,
    notice: &str,
) {
    state
        .audit(
            event
                .user(&auth.user)
                .session(&auth.session.id)
                .client(client),
        )
        .await;
    notify(state, &auth.user, notice).await;
}

pub async fn notify(state: &AppState, user: &User, what: &str) {
    let mail = crate::service::mail::templates::mfa_changed(&user.email, what);
    if let Err(e) = crate::service::mail::send(state, mail).await {
        tracing::error!(error = %e, "MFA notice not queued");
    }
}
