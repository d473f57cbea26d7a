//! Per-user quotas of route rules (`quota: N/SECONDS`), counted in this
//! sidecar's memory with GCRA. Each sidecar counts alone: behind N sidecars
//! a user may make up to N × the quota (README "Quotas"). Decided after the
//! policy allowed the request, so a refused request spends nothing.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::policy::Quota;

/// Tracked (rule, user) pairs at most. Past this, expired entries are
/// dropped; if all are live, a new pair is let through untracked (and
/// counted in a metric) rather than refused: quotas are abuse control, and
/// authorisation never depends on them.
const CAPACITY: usize = 100_000;

#[derive(Default)]
pub struct Quotas {
    tat: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    /// (rule name, subject) → theoretical arrival time in ms.
    map: HashMap<(String, String), i64>,
    /// When expired entries were last swept (at most once a second: a sweep
    /// walks the whole table under the lock).
    swept_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaVerdict {
    Allowed,
    /// Over the quota; retry after this many seconds (at least 1).
    Exceeded {
        retry_after_secs: u64,
    },
    /// The table was full: allowed without counting.
    Untracked,
}

impl Quotas {
    pub fn check(&self, rule: &str, subject: &str, quota: Quota, now_ms: i64) -> QuotaVerdict {
        let period = i64::from(quota.period_secs) * 1000;
        let interval = (period / i64::from(quota.limit)).max(1);
        let mut table = self.tat.lock().unwrap_or_else(|e| e.into_inner());
        let key = (rule.to_string(), subject.to_string());
        if !table.map.contains_key(&key) && table.map.len() >= CAPACITY {
            if now_ms - table.swept_at_ms >= 1000 {
                table.swept_at_ms = now_ms;
                table.map.retain(|_, tat| *tat > now_ms);
            }
            if table.map.len() >= CAPACITY {
                return QuotaVerdict::Untracked;
            }
        }
        let map = &mut table.map;
        let tat = map.get(&key).copied().unwrap_or(now_ms).max(now_ms);
        let new_tat = tat + interval;
        if new_tat - now_ms > period {
            let wait_ms = new_tat - period - now_ms;
            return QuotaVerdict::Exceeded {
                retry_after_secs: u64::try_from((wait_ms + 999) / 1000).unwrap_or(1).max(1),
            };
        }
        map.insert(key, new_tat);
        QuotaVerdict::Allowed
    }

    pub fn len(&self) -> usize {
        self.tat.lock().unwrap_or_else(|e| e.into_inner()).map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate_per_user_and_rule() {
        let q = Quotas::default();
        let quota = Quota {
            limit: 3,
            period_secs: 60,
        };
        let t = 1_000_000;
        for _ in 0..3 {
            assert_eq!(q.check("ai", "alice", quota, t), QuotaVerdict::Allowed);
        }
        assert_eq!(
            q.check("ai", "alice", quota, t),
            QuotaVerdict::Exceeded {
                retry_after_secs: 20
            }
        );
        // Others, and other rules, have their own budgets.
        assert_eq!(q.check("ai", "bob", quota, t), QuotaVerdict::Allowed);
        assert_eq!(q.check("memory", "alice", quota, t), QuotaVerdict::Allowed);
        // One request's worth comes back every 20 s, not more.
        assert_eq!(
            q.check("ai", "alice", quota, t + 20_000),
            QuotaVerdict::Allowed
        );
        assert!(matches!(
            q.check("ai", "alice", quota, t + 20_000),
            QuotaVerdict::Exceeded { .. }
        ));
        // A refused request spends nothing.
        assert_eq!(
            q.check("ai", "alice", quota, t + 40_000),
            QuotaVerdict::Allowed
        );
    }
}
