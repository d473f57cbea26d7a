//! Prometheus metrics of the issuer.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub logins: Family<OutcomeLabels, Counter>,
    pub refreshes: Family<OutcomeLabels, Counter>,
    pub revocations: Counter,
    pub feed_subscribers: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub signing_key_age_seconds: Gauge<f64, AtomicU64>,
    pub keys_by_state: Family<StateLabels, Gauge>,
    pub seconds_since_rotation: Gauge<f64, AtomicU64>,
    /// Requests refused by the rate limiter, by route class.
    pub rate_limited: Family<ClassLabels, Counter>,
    /// Limiter decisions made from this replica's memory (Redis absent,
    /// failing or slow).
    pub rate_limit_local: Counter,
    /// Delivery attempts by outcome (sent, retry, failed).
    pub mails: Family<OutcomeLabels, Counter>,
    /// Mail waiting in the outbox (every replica's), as last counted here.
    pub mail_backlog: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Back-channel logout deliveries by outcome (delivered, retry, failed).
    pub backchannel_logouts: Family<OutcomeLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    pub class: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("issuer");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ])
        });
        let logins = Family::<OutcomeLabels, Counter>::default();
        let refreshes = Family::<OutcomeLabels, Counter>::default();
        let revocations = Counter::default();
        let feed_subscribers = Gauge::default();
        let signing_key_age_seconds = Gauge::default();
        let keys_by_state = Family::<StateLabels, Gauge>::default();
        let seconds_since_rotation = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register("logins", "Login attempts by outcome", logins.clone());
        registry.register(
            "refreshes",
            "Refresh attempts by outcome",
            refreshes.clone(),
        );
        registry.register(
            "revocations",
            "Revocation records written",
            revocations.clone(),
        );
        registry.register(
            "revocation_feed_subscribers",
            "Connected revocation-feed followers",
            feed_subscribers.clone(),
        );
        registry.register(
            "signing_key_age_seconds",
            "Age of the current signing key",
            signing_key_age_seconds.clone(),
        );
        registry.register(
            "signing_keys",
            "Signing keys by lifecycle state",
            keys_by_state.clone(),
        );
        registry.register(
            "seconds_since_key_rotation",
            "Time since the newest signing key was created",
            seconds_since_rotation.clone(),
        );
        let rate_limited = Family::<ClassLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests refused by the rate limiter, by route class",
            rate_limited.clone(),
        );
        let rate_limit_local = Counter::default();
        registry.register(
            "rate_limit_local_decisions",
            "Rate-limit decisions made from this replica's memory instead of Redis",
            rate_limit_local.clone(),
        );
        let mails = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "mail_deliveries",
            "Mail delivery attempts by outcome (sent, retry, failed)",
            mails.clone(),
        );
        let mail_backlog = Gauge::default();
        registry.register(
            "mail_outbox_backlog",
            "Mails waiting in the outbox",
            mail_backlog.clone(),
        );
        let backchannel_logouts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "backchannel_logouts",
            "Back-channel logout deliveries by outcome (delivered, retry, failed)",
            backchannel_logouts.clone(),
        );
        Metrics {
            backchannel_logouts,
            mails,
            mail_backlog,
            rate_limited,
            rate_limit_local,
            registry,
            keys_by_state,
            seconds_since_rotation,
            requests,
            latency,
            logins,
            refreshes,
            revocations,
            feed_subscribers,
            signing_key_age_seconds,
        }
    }
}

impl Metrics {
    pub fn backchannel_logout(&self, outcome: &'static str) {
        self.backchannel_logouts
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn login(&self, outcome: &'static str) {
        self.logins.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn mail(&self, outcome: &'static str) {
        self.mails.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn refresh(&self, outcome: &'static str) {
        self.refreshes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics encoding failed");
        }
        out
    }
}
