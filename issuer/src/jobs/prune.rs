//! Forgetting what has expired: revocations past every token they cover,
//! dead sessions, spent ceremonies, tickets and states, sent mail, audit
//! entries past retention.

use std::time::Duration;

use super::Stop;
use crate::service::mail;
use crate::AppState;

/// Deletes revocations whose tokens have all expired, and long-dead sessions.
pub(super) async fn prune(state: AppState, mut stop: Stop) {
    while stop.sleep(Duration::from_secs(60)).await {
        let now = state.now().secs();
        match state.store.prune(now, 7 * 86_400).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "pruned expired revocations"),
            Err(e) => tracing::warn!(error = %e, "prune failed"),
        }
        let keep = state.settings.audit_retention_days * 86_400;
        if let Err(e) = state.store.prune_login_failures(now - 86_400).await {
            tracing::warn!(error = %e, "login failure prune failed");
        }
        if let Err(e) = state.store.prune_ceremonies(now).await {
            tracing::warn!(error = %e, "WebAuthn ceremony prune failed");
        }
        if let Err(e) = state.store.prune_mfa_tickets(now).await {
            tracing::warn!(error = %e, "MFA ticket prune failed");
        }
        // Kept an hour past expiry, so a replay within it still ends
        // the session the code opened.
        if let Err(e) = state.store.prune_codes(now - 3600).await {
            tracing::warn!(error = %e, "authorization code prune failed");
        }
        if let Err(e) = state.store.prune_logouts(now - 86_400).await {
            tracing::warn!(error = %e, "back-channel logout prune failed");
        }
        if let Err(e) = state.store.prune_oauth_states(now).await {
            tracing::warn!(error = %e, "oauth state prune failed");
        }
        if let Err(e) = state
            .store
            .prune_mail(now * 1000 - mail::KEEP_FINISHED_MS, now)
            .await
        {
            tracing::warn!(error = %e, "mail prune failed");
        }
        match state.store.prune_audit(now - keep).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned audit entries past retention"),
            Err(e) => tracing::warn!(error = %e, "audit prune failed"),
        }
    }
}
