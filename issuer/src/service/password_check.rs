//! The one throttled password check. Sign-in, step-up, changing the
//! password and linking GitHub (and the pages' forms, which go through
//! those) all ask here, so each guess counts against the same per-account
//! delay. The attempt is reserved before the hash is computed: concurrent
//! guesses cannot all slip through one open moment of the delay.

use crate::domain::clock::Now;
use crate::domain::password::Verified;
use crate::service::error::{Error as ApiError, Result as ApiResult};
use crate::AppState;

/// Checks `password` against `stored` (`None`: the dummy hash, same work,
/// always wrong) for the account named `email`. `Err` (429
/// `login_delayed`) while the account's delay runs, before any hashing.
/// A wrong password stays counted; a right one is not a failure.
pub async fn check(
    state: &AppState,
    email: &str,
    stored: Option<String>,
    password: String,
    now: Now,
) -> ApiResult<Verified> {
    let key = email.trim().to_lowercase();
    let reserved = state.store.reserve_password_attempt(&key, now.ms).await?;
    if let Err(until) = reserved {
        state.metrics.login("delayed");
        return Err(crate::service::factors::wait_error(
            "login_delayed",
            until,
            now,
        ));
    }
    let verified = state
        .hasher
        .verify(password, stored)
        .await
        .map_err(ApiError::from)?;
    if verified.ok {
        state.store.release_attempt(&key, now.ms).await?;
    }
    Ok(verified)
}
