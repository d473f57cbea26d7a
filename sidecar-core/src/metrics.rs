//! Prometheus metrics of the sidecar.

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub checks: Family<DecisionLabels, Counter>,
    pub check_seconds: Histogram,
    pub token_cache: Family<OutcomeLabels, Counter>,
    pub jwks_fetches: Family<OutcomeLabels, Counter>,
    pub jwks_age_seconds: Gauge<f64, AtomicU64>,
    pub jwks_keys: Gauge<i64, AtomicI64>,
    pub revocations: Gauge<i64, AtomicI64>,
    pub revocation_seq: Gauge<i64, AtomicI64>,
    pub revocation_lag_seconds: Histogram,
    pub revocation_feed_age_seconds: Gauge<f64, AtomicU64>,
    pub policy_reloads: Family<OutcomeLabels, Counter>,
    pub permissions_version: Gauge<i64, AtomicI64>,
    /// Requests let through uncounted because the quota table was full.
    pub quota_untracked: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sidecar");
        let latency_buckets = [
            0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05,
        ];
        let m = Metrics {
            checks: Family::default(),
            check_seconds: Histogram::new(latency_buckets),
            token_cache: Family::default(),
            jwks_fetches: Family::default(),
            jwks_age_seconds: Gauge::default(),
            jwks_keys: Gauge::default(),
            revocations: Gauge::default(),
            revocation_seq: Gauge::default(),
            revocation_lag_seconds: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            revocation_feed_age_seconds: Gauge::default(),
            policy_reloads: Family::default(),
            permissions_version: Gauge::default(),
            quota_untracked: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "checks",
            "Check decisions by outcome and reason",
            m.checks.clone(),
        );
        registry.register(
            "check_duration_seconds",
            "Time to decide one Check",
            m.check_seconds.clone(),
        );
        registry.register(
            "token_cache",
            "Verified-token cache lookups",
            m.token_cache.clone(),
        );
        registry.register(
            "jwks_fetches",
            "JWKS fetches by outcome",
            m.jwks_fetches.clone(),
        );
        registry.register(
            "jwks_age_seconds",
            "Time since the key set was last fetched",
            m.jwks_age_seconds.clone(),
        );
        registry.register(
            "jwks_keys",
            "Keys in the cached key set",
            m.jwks_keys.clone(),
        );
        registry.register(
            "permissions_version",
            "Version of the role → permission map held (0: none yet)",
            m.permissions_version.clone(),
        );
        registry.register(
            "revocations",
            "Live revocation entries held",
            m.revocations.clone(),
        );
        registry.register(
            "revocation_seq",
            "Last revocation sequence number applied",
            m.revocation_seq.clone(),
        );
        registry.register(
            "revocation_lag_seconds",
            "Time from the issuer recording a revocation to this sidecar applying it",
            m.revocation_lag_seconds.clone(),
        );
        registry.register(
            "revocation_feed_age_seconds",
            "Time since the last message from the revocation feed",
            m.revocation_feed_age_seconds.clone(),
        );
        registry.register(
            "policy_reloads",
            "Policy file reloads by outcome",
            m.policy_reloads.clone(),
        );
        registry.register(
            "quota_untracked",
            "Requests let through without counting because the quota table was full",
            m.quota_untracked.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics encoding failed");
        }
        out
    }
}
