//! OpenID Connect Back-Channel Logout 1.0. Every way of ending sessions
//! publishes revocation records (`AppState::published`), which queues a
//! delivery for each ended session of a client that registered a
//! `backchannel_logout_uri`; the job posts a logout token there, retrying
//! with doubling waits until the client answers 2xx or the attempts run out
//! (then it is audited). Sessions that merely expire are not announced.

use std::time::Duration;

use serde::Serialize;

use crate::domain::keys::SigningKey;
use crate::domain::oauth::mint_logout_token;
use crate::domain::tokens::random_b64;
use crate::service::error::Result;
use crate::store::{AuditEvent, LogoutDelivery};
use crate::AppState;

/// Deliveries taken per pass, and tried at once: the claim covers one
/// attempt's timeout, so a slow relying party holds up at most this pass.
pub const BATCH: i64 = 8;
/// The longest wait between tries.
const MAX_WAIT_MS: i64 = 3_600_000;
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// A logout token is made for one delivery attempt.
const TOKEN_TTL_SECS: i64 = 120;

#[derive(Serialize)]
struct LogoutClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
    sub: &'a str,
    sid: &'a str,
    events: serde_json::Value,
}

/// The client the job posts with: no redirects (a logout URI that
/// redirects is not followed anywhere), bounded in time.
pub fn http_client(timeout_ms: u64) -> anyhow::Result<reqwest::Client> {
    let timeout = Duration::from_millis(timeout_ms);
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(concat!("devmentor-auth/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// Delivers what is due; how many deliveries were tried.
pub async fn deliver_due(state: &AppState, http: &reqwest::Client) -> Result<usize> {
    let settings = &state.settings.backchannel;
    let now = state.now().secs();
    // Held past one attempt's timeout, so no other replica takes it meanwhile.
    let lease_until = now + (settings.backchannel_timeout_ms / 1000) as i64 + 5;
    let due = state.store.claim_logouts(now, lease_until, BATCH).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let key = crate::service::keys::id_token_key(state).await?;
    let tries = due.iter().map(|d| deliver(state, http, &key, d));
    for outcome in futures_util::future::join_all(tries).await {
        outcome?;
    }
    Ok(due.len())
}

async fn deliver(
    state: &AppState,
    http: &reqwest::Client,
    key: &SigningKey,
    d: &LogoutDelivery,
) -> Result<()> {
    let now = state.now().secs();
    let claims = LogoutClaims {
        iss: &state.settings.issuer_url,
        aud: &d.client_id,
        iat: now,
        exp: now + TOKEN_TTL_SECS,
        jti: random_b64(16)?,
        sub: &d.user_id,
        sid: &d.session_id,
        events: serde_json::json!({ EVENT: {} }),
    };
    let token = mint_logout_token(key, &claims)?;
    let answer = http
        .post(&d.uri)
        .header(reqwest::header::CACHE_CONTROL, "no-store")
        .form(&[("logout_token", token.as_str())])
        .send()
        .await;
    let problem = match answer {
        Ok(r) if r.status().is_success() => None,
        Ok(r) => Some(format!("answered {}", r.status().as_u16())),
        // The error names the URI, never the token (it is in the body).
        Err(e) => Some(if e.is_timeout() {
            "timed out".to_string()
        } else {
            "could not connect".to_string()
        }),
    };
    let Some(problem) = problem else {
        state.store.logout_delivered(d, now).await?;
        state.metrics.backchannel_logout("delivered");
        return Ok(());
    };
    let settings = &state.settings.backchannel;
    let tried = d.attempts + 1;
    if tried >= settings.backchannel_max_attempts {
        state.store.logout_failed(d, now, None).await?;
        state.metrics.backchannel_logout("failed");
        tracing::warn!(client_id = %d.client_id, uri = %d.uri, %problem, attempts = tried,
            "back-channel logout given up");
        state
            .audit(
                AuditEvent::new(state.now().ms, "backchannel_logout_failed")
                    .target(&d.user_id)
                    .meta(serde_json::json!({
                        "client_id": d.client_id,
                        "session_id": d.session_id,
                        "attempts": tried,
                        "problem": problem,
                    })),
            )
            .await;
        return Ok(());
    }
    // 1×, 2×, 4× … the base, at most an hour; seconds, rounded up.
    let wait_ms = settings
        .backchannel_retry_base_ms
        .saturating_mul(1i64 << (tried - 1).min(20))
        .min(MAX_WAIT_MS);
    let retry_at = now + (wait_ms + 999) / 1000;
    state.store.logout_failed(d, now, Some(retry_at)).await?;
    state.metrics.backchannel_logout("retry");
    tracing::info!(client_id = %d.client_id, uri = %d.uri, %problem, attempts = tried,
        "back-channel logout will be retried");
    Ok(())
}
