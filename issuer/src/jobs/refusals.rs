//! The rate limiter's refusals, summarised into the audit trail.

use std::time::Duration;

use super::Stop;
use crate::store::{self, AuditEvent};
use crate::AppState;

/// Records the rate limiter's refusals in the audit trail, one event per
/// route class and interval (a flood of 429s must not become a flood of
/// writes).
pub(super) async fn audit_refusals_every(state: AppState, every: Duration, mut stop: Stop) {
    while stop.sleep(every).await {
        audit_refusals(&state).await;
    }
}

pub async fn audit_refusals(state: &AppState) {
    let now = state.now();
    for r in state.limiter.take_refusals() {
        let top: Vec<_> = r
            .top_clients
            .iter()
            .map(|(ip, n)| serde_json::json!({"ip": ip, "count": n}))
            .collect();
        state
            .audit(
                AuditEvent::new(now.ms, "rate_limited")
                    .actor("system")
                    .target(r.class)
                    .outcome(store::Outcome::Denied, "rate_limited")
                    .meta(
                        serde_json::json!({"class": r.class, "count": r.count, "top_clients": top}),
                    ),
            )
            .await;
    }
}
