//! How much each service uses its grants (`client_credentials`, workload
//! identity, token exchange as the actor): counted in memory per client and
//! day, and added to the store in batches by a background job (and at
//! shutdown), never a write per request. Replicas each add their own
//! counts, so the sums are right across them.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::domain::clock::{civil_date, Now};
use crate::store::UsageDelta;
use crate::AppState;

#[derive(Default)]
struct Pending {
    /// Unix seconds.
    last_used_at: i64,
    /// Uses per UTC day (`YYYY-MM-DD`).
    by_day: HashMap<String, i64>,
}

/// Uses not yet written.
#[derive(Default)]
pub struct ClientUsage {
    pending: Mutex<HashMap<String, Pending>>,
}

impl ClientUsage {
    /// One use of a grant by `client_id`, now.
    pub fn record(&self, client_id: &str, now: Now) {
        let day = civil_date(now.secs().div_euclid(86_400));
        // A poisoned lock only means another request panicked mid-count.
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let entry = pending.entry(client_id.to_string()).or_default();
        entry.last_used_at = entry.last_used_at.max(now.secs());
        *entry.by_day.entry(day).or_default() += 1;
    }

    fn take(&self) -> Vec<UsageDelta> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending
            .drain()
            .flat_map(|(client_id, p)| {
                let last_used_at = p.last_used_at;
                p.by_day.into_iter().map(move |(day, uses)| UsageDelta {
                    client_id: client_id.clone(),
                    day,
                    uses,
                    last_used_at,
                })
            })
            .collect()
    }

    /// Counts a failed write would lose: back into the pending ones.
    fn give_back(&self, deltas: Vec<UsageDelta>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for d in deltas {
            let entry = pending.entry(d.client_id).or_default();
            entry.last_used_at = entry.last_used_at.max(d.last_used_at);
            *entry.by_day.entry(d.day).or_default() += d.uses;
        }
    }
}

/// Writes the pending counts; the number of (client, day) rows written.
pub async fn flush(state: &AppState) -> anyhow::Result<usize> {
    let deltas = state.usage.take();
    if deltas.is_empty() {
        return Ok(0);
    }
    let n = deltas.len();
    if let Err(e) = state.store.add_client_usage(&deltas).await {
        state.usage.give_back(deltas);
        return Err(e.into());
    }
    Ok(n)
}
