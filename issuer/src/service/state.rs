//! What every rule can reach: the store, settings, keys, hasher, metrics,
//! clock, feed, limiter and the optional GitHub, mail, passkey and tracing
//! parts. Built once by `app::build`.

use std::sync::Arc;

use auth_types::{Expectations, RevocationRecord};

use crate::config::ServeArgs;
use crate::domain::clock::{Clock, Now};
use crate::domain::keys::KeyUse;
use crate::domain::password::PasswordHasher;
use crate::domain::{ratelimit, rotation};
use crate::service::feed::FeedHub;
use crate::service::github::client as github_client;
use crate::service::keyring::Keyring;
use crate::service::mail;
use crate::service::metrics::{self, Metrics};
use crate::store::{AuditEvent, Store};

/// Verifiers may allow up to this much clock skew past `exp` (sidecars cannot
/// be configured with more), so revocation records live this much longer
/// than any token they cover: a revoked token never comes back.
pub const REVOCATION_LEEWAY_SECS: i64 = auth_types::MAX_LEEWAY_SECS;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub settings: Arc<ServeArgs>,
    pub keys: Arc<Keyring>,
    pub hasher: Arc<PasswordHasher>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub feed: Arc<FeedHub>,
    /// `None` when GitHub sign-in is not configured.
    pub github: Option<Arc<github_client::GitHub>>,
    pub limiter: Arc<ratelimit::Limiter>,
    /// `None` when no SMTP server is configured.
    pub mailer: Option<Arc<mail::Mailer>>,
    /// `None` when passkeys cannot be offered (no domain to bind them to).
    pub webauthn: Option<Arc<webauthn_rs::Webauthn>>,
    /// `None` unless an OTLP endpoint is configured.
    pub tracing: Option<Arc<telemetry::Tracing>>,
    /// Services' uses of their grants, not yet written.
    pub usage: Arc<crate::service::usage::ClientUsage>,
    /// The clusters whose workloads may sign in with their own tokens.
    pub workload: Arc<crate::service::oauth::workload::WorkloadTrust>,
    /// Wakes the back-channel logout job when sessions end here.
    pub backchannel_wake: Arc<tokio::sync::Notify>,
}

impl AppState {
    /// The one clock read of a request.
    pub fn now(&self) -> Now {
        Now {
            ms: self.clock.now_ms(),
        }
    }

    pub fn expectations(&self) -> Expectations {
        Expectations {
            issuer: self.settings.issuer_url.clone(),
            audience: self.settings.audience.clone(),
            leeway_secs: 0,
        }
    }

    /// A revocation made now can be forgotten once every access token it
    /// could cover has expired.
    pub fn revocation_expiry(&self, now: Now) -> i64 {
        now.secs() + self.settings.keys.access_token_ttl + REVOCATION_LEEWAY_SECS
    }

    /// Called after revocation records commit.
    pub async fn published(&self, records: Vec<RevocationRecord>) {
        if records.is_empty() {
            return;
        }
        self.metrics.revocations.inc_by(records.len() as u64);
        self.feed.revocations_committed().await;
        self.wake_backchannel(&records);
    }

    /// Sessions ended: their back-channel logouts (queued in the revoking
    /// transaction) are delivered now rather than at the next poll.
    fn wake_backchannel(&self, records: &[RevocationRecord]) {
        if records
            .iter()
            .any(|r| r.kind == auth_types::RevocationKind::Session)
        {
            self.backchannel_wake.notify_one();
        }
    }

    /// After sessions were revoked in the database: tell the edge (so their
    /// tokens are refused within milliseconds), then record why. Every way of
    /// ending sessions ends here, so neither step can be forgotten.
    pub async fn sessions_ended(
        &self,
        records: Vec<RevocationRecord>,
        event: crate::store::AuditEvent,
    ) {
        self.published(records).await;
        self.audit(event).await;
    }

    /// After a key change in the database: reload, push to this replica's
    /// followers, and tell the other replicas.
    pub async fn keys_changed(&self) -> anyhow::Result<()> {
        self.keys.reload(&self.store).await?;
        self.feed.keys_changed(self.keys.version(), true).await;
        Ok(())
    }

    pub async fn update_key_metrics(&self) -> anyhow::Result<()> {
        let keys = self.store.keys().await?;
        let now = self.now().secs();
        for state in [
            rotation::NEXT,
            rotation::CURRENT,
            rotation::RETIRED,
            rotation::REMOVED,
            rotation::REVOKED,
        ] {
            let n = keys.iter().filter(|k| k.state == state).count();
            self.metrics
                .keys_by_state
                .get_or_create(&metrics::StateLabels { state })
                .set(n as i64);
        }
        // The access keys' rotation; the ID-token lane follows the same schedule.
        let access = keys.iter().filter(|k| k.key_use == KeyUse::Access);
        if let Some(newest) = access.map(|k| k.created_at).max() {
            self.metrics
                .seconds_since_rotation
                .set((now - newest) as f64);
        }
        Ok(())
    }

    /// Ready to serve: the database answers.
    pub async fn ready(&self) -> crate::service::error::Result<()> {
        self.store
            .ping()
            .await
            .map_err(crate::service::error::Error::unavailable)
    }

    /// Audit failures are logged, not returned: the action itself succeeded.
    pub async fn audit(&self, event: AuditEvent) {
        if let Err(e) = self.store.record_audit(&event).await {
            tracing::error!(error = %e, action = event.action, "audit write failed");
        }
    }
}
