//! Rate limits per client IP and route class, with GCRA (the generic cell
//! rate algorithm): each key holds one number, its theoretical arrival time,
//! so a decision is one read-modify-write.
//!
//! With `--redis-url` the decision is one atomic Lua script on Redis, so every
//! replica draws on the same budget (Redis's own clock is used, so replicas'
//! clocks do not matter). Without Redis, or while Redis fails or is slow,
//! each replica decides alone from memory: limits then hold per replica
//! (N replicas allow up to N× the budget) rather than not at all.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Mutex as AsyncMutex;

/// `limit` requests per `period_ms`, in a burst or spread out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: u32,
    pub period_ms: i64,
}

impl Rate {
    fn interval_ms(self) -> i64 {
        (self.period_ms / i64::from(self.limit.max(1))).max(1)
    }
}

/// A rate setting: `N/SECONDS`, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSetting(pub Option<Rate>);

impl std::str::FromStr for RateSetting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("off") {
            return Ok(RateSetting(None));
        }
        let bad = || format!("expected N/SECONDS (like 100/900) or off, not {s:?}");
        let (n, secs) = s.trim().split_once('/').ok_or_else(bad)?;
        let limit: u32 = n.trim().parse().map_err(|_| bad())?;
        let secs: i64 = secs.trim().parse().map_err(|_| bad())?;
        if limit == 0 || !(1..=86_400).contains(&secs) {
            return Err(bad());
        }
        Ok(RateSetting(Some(Rate {
            limit,
            period_ms: secs * 1000,
        })))
    }
}

/// What the limiter decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Requests still allowed right now.
    pub remaining: u32,
    /// Milliseconds until one more request is allowed (0 if allowed now),
    /// or, when allowed, until the budget is whole again.
    pub reset_ms: i64,
    /// Decided from this replica's memory, not the shared store.
    pub local: bool,
}

/// The GCRA step: given the stored arrival time (or none) and now, the
/// verdict and the arrival time to store (if allowed).
pub fn gcra(rate: Rate, stored_tat: Option<i64>, now_ms: i64) -> (Verdict, Option<i64>) {
    let interval = rate.interval_ms();
    let tat = stored_tat.unwrap_or(now_ms).max(now_ms);
    let new_tat = tat + interval;
    if new_tat - now_ms > rate.period_ms {
        let verdict = Verdict {
            allowed: false,
            remaining: 0,
            reset_ms: new_tat - rate.period_ms - now_ms,
            local: true,
        };
        return (verdict, None);
    }
    let slack = rate.period_ms - (new_tat - now_ms);
    let verdict = Verdict {
        allowed: true,
        remaining: u32::try_from(slack / interval).unwrap_or(u32::MAX),
        reset_ms: new_tat - now_ms,
        local: true,
    };
    (verdict, Some(new_tat))
}

/// The same step on Redis, atomically, on Redis's clock. Returns
/// {allowed, remaining, reset_ms}.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now > period then
  return {0, 0, new_tat - period - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return {1, math.floor((period - (new_tat - now)) / interval), new_tat - now}
"#;

/// Local state entries at most; past this, expired ones are dropped.
const LOCAL_CAPACITY: usize = 100_000;
/// A Redis decision slower than this falls back to memory.
const REDIS_TIMEOUT: Duration = Duration::from_millis(100);
/// After a Redis failure, memory decides for this long before retrying.
const REDIS_BACKOFF_MS: i64 = 1_000;

pub struct Limiter {
    redis: Option<redis::Client>,
    script: redis::Script,
    conn: AsyncMutex<Option<redis::aio::MultiplexedConnection>>,
    /// Until when (ms) Redis is skipped after a failure.
    redis_down_until: Mutex<i64>,
    local: Mutex<LocalTable>,
    /// Refusals since the last [`Limiter::take_refusals`], per class and
    /// client, for the audit trail (which gets one summary a minute, not a
    /// row per refused request).
    refusals: Mutex<HashMap<(&'static str, String), u64>>,
}

/// Distinct (class, client) pairs remembered between audit summaries;
/// past this, refusals are counted under the client `other`.
const REFUSAL_KEYS: usize = 10_000;

/// Refusals of one route class since the last summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusals {
    pub class: &'static str,
    pub count: u64,
    /// The clients refused most, most first (at most ten).
    pub top_clients: Vec<(String, u64)>,
}

impl Limiter {
    pub fn new(redis_url: Option<&str>) -> anyhow::Result<Self> {
        Ok(Limiter {
            redis: redis_url.map(redis::Client::open).transpose()?,
            script: redis::Script::new(SCRIPT),
            conn: AsyncMutex::new(None),
            redis_down_until: Mutex::new(0),
            local: Mutex::new(LocalTable::default()),
            refusals: Mutex::new(HashMap::new()),
        })
    }

    pub fn note_refusal(&self, class: &'static str, client: &str) {
        let mut map = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        let key = if map.len() < REFUSAL_KEYS || map.contains_key(&(class, client.to_string())) {
            (class, client.to_string())
        } else {
            (class, "other".to_string())
        };
        *map.entry(key).or_default() += 1;
    }

    /// The refusals counted since the last call, per class.
    pub fn take_refusals(&self) -> Vec<Refusals> {
        let map = std::mem::take(&mut *self.refusals.lock().unwrap_or_else(|e| e.into_inner()));
        let mut by_class: HashMap<&'static str, Vec<(String, u64)>> = HashMap::new();
        for ((class, client), n) in map {
            by_class.entry(class).or_default().push((client, n));
        }
        let mut out: Vec<Refusals> = by_class
            .into_iter()
            .map(|(class, mut clients)| {
                clients.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                Refusals {
                    class,
                    count: clients.iter().map(|c| c.1).sum(),
                    top_clients: clients.into_iter().take(10).collect(),
                }
            })
            .collect();
        out.sort_by_key(|r| r.class);
        out
    }

    /// Opens the Redis connection before the first request, whose budget
    /// ([`REDIS_TIMEOUT`]) is too short for a TLS handshake on a busy host:
    /// without this the first requests after a start decide per replica.
    /// A failure is logged; requests then connect as before.
    pub async fn connect(&self, within: Duration) {
        let Some(client) = &self.redis else {
            return;
        };
        let mut guard = self.conn.lock().await;
        if guard.is_some() {
            return;
        }
        match tokio::time::timeout(within, client.get_multiplexed_async_connection()).await {
            Ok(Ok(conn)) => *guard = Some(conn),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "rate limit store unavailable at start; limiting per replica")
            }
            Err(_) => tracing::warn!("rate limit store slow at start; limiting per replica"),
        }
    }

    /// One request under `key` (class and client), at `now_ms` (this
    /// replica's clock, used only when deciding from memory).
    pub async fn check(&self, key: &str, rate: Rate, now_ms: i64) -> Verdict {
        if self.redis.is_some() && now_ms >= self.down_until() {
            match tokio::time::timeout(REDIS_TIMEOUT, self.check_redis(key, rate)).await {
                Ok(Ok(v)) => return v,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "rate limit store unavailable; limiting per replica")
                }
                Err(_) => tracing::warn!("rate limit store slow; limiting per replica"),
            }
            self.mark_down(now_ms);
        }
        self.check_local(key, rate, now_ms)
    }

    fn down_until(&self) -> i64 {
        *self
            .redis_down_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn mark_down(&self, now_ms: i64) {
        *self
            .redis_down_until
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = now_ms + REDIS_BACKOFF_MS;
    }

    async fn check_redis(&self, key: &str, rate: Rate) -> anyhow::Result<Verdict> {
        let Some(client) = &self.redis else {
            anyhow::bail!("no redis");
        };
        // The multiplexed connection is shared by clones: the lock is held
        // only to get one, never across a round trip.
        let mut conn = {
            let mut guard = self.conn.lock().await;
            if guard.is_none() {
                *guard = Some(client.get_multiplexed_async_connection().await?);
            }
            match guard.as_ref() {
                Some(c) => c.clone(),
                None => anyhow::bail!("no connection"),
            }
        };
        let result: redis::RedisResult<(i64, i64, i64)> = self
            .script
            .key(format!("devmentor-auth:rl:{key}"))
            .arg(rate.interval_ms())
            .arg(rate.period_ms)
            .invoke_async(&mut conn)
            .await;
        match result {
            Ok((allowed, remaining, reset_ms)) => Ok(Verdict {
                allowed: allowed == 1,
                remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
                reset_ms: reset_ms.max(0),
                local: false,
            }),
            Err(e) => {
                // A broken connection is rebuilt on the next try.
                *self.conn.lock().await = None;
                Err(e.into())
            }
        }
    }

    fn check_local(&self, key: &str, rate: Rate, now_ms: i64) -> Verdict {
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        if !local.tat.contains_key(key) && !local.make_room(now_ms) {
            // Full of live entries: fail closed for new keys rather than grow.
            return Verdict {
                allowed: false,
                remaining: 0,
                reset_ms: 1_000,
                local: true,
            };
        }
        let (verdict, new_tat) = gcra(rate, local.tat.get(key).copied(), now_ms);
        if let Some(t) = new_tat {
            local.set(key, t);
        }
        verdict
    }
}

/// The in-memory arrival times, with a heap of (arrival time, key) that
/// holds one entry per key, so room is found by popping what has expired
/// (O(log n)), never by scanning the table under the lock.
#[derive(Default)]
struct LocalTable {
    tat: HashMap<String, i64>,
    /// Lazily updated: an entry's time may be older than the key's.
    expiry: BinaryHeap<Reverse<(i64, String)>>,
}

impl LocalTable {
    fn set(&mut self, key: &str, tat: i64) {
        if self.tat.insert(key.to_string(), tat).is_none() {
            self.expiry.push(Reverse((tat, key.to_string())));
        }
    }

    /// Whether a new key fits, after dropping expired entries.
    fn make_room(&mut self, now_ms: i64) -> bool {
        while self.tat.len() >= LOCAL_CAPACITY {
            let Some(Reverse((at, key))) = self.expiry.peek().cloned() else {
                return false;
            };
            if at > now_ms {
                return false;
            }
            self.expiry.pop();
            match self.tat.get(&key).copied() {
                // Used since: back in the heap at its current time.
                Some(current) if current > now_ms => self.expiry.push(Reverse((current, key))),
                _ => {
                    self.tat.remove(&key);
                }
            }
        }
        true
    }
}

/// The part of a client's address its limits are kept under: the address
/// for IPv4, the network of `ipv6_prefix` bits for IPv6 (a host is handed
/// a whole /64: per address it would have 2^64 budgets). Anything that is
/// not an address is its own key.
pub fn client_key(ip: &str, ipv6_prefix: u8) -> String {
    match ip.parse::<IpAddr>().map(|a| a.to_canonical()) {
        Ok(IpAddr::V6(v6)) => {
            let bits = u32::from(ipv6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            let net = std::net::Ipv6Addr::from(u128::from(v6) & mask);
            format!("{net}/{bits}")
        }
        Ok(v4) => v4.to_string(),
        Err(_) => ip.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        limit: 3,
        period_ms: 60_000,
    };

    #[test]
    fn ipv6_clients_share_their_network_s_budget() {
        assert_eq!(client_key("2001:db8:1:2:aaaa::1", 64), "2001:db8:1:2::/64");
        assert_eq!(
            client_key("2001:db8:1:2:ffff:ffff:ffff:ffff", 64),
            client_key("2001:db8:1:2::7", 64)
        );
        assert_ne!(
            client_key("2001:db8:1:3::1", 64),
            client_key("2001:db8:1:2::1", 64)
        );
        assert_eq!(client_key("2001:db8::1", 128), "2001:db8::1/128");
        assert_eq!(client_key("::ffff:192.0.2.7", 64), "192.0.2.7");
        assert_eq!(client_key("192.0.2.7", 64), "192.0.2.7");
        assert_eq!(client_key("unknown", 64), "unknown");
    }

    #[test]
    fn a_full_table_makes_room_from_expired_entries_only() {
        let mut t = LocalTable::default();
        for i in 0..LOCAL_CAPACITY {
            // Half expire at 10, half at 1000.
            t.set(&format!("k{i}"), if i % 2 == 0 { 10 } else { 1_000 });
        }
        assert!(!t.make_room(5), "nothing expired yet");
        // A key used again lives on at its new time.
        t.tat.insert("k0".into(), 2_000);
        assert!(t.make_room(20));
        assert_eq!(t.tat.len(), LOCAL_CAPACITY - 1);
        assert!(t.tat.contains_key("k0"), "used since: kept");
        // Room is taken one expired entry at a time, not by a sweep.
        assert!(t.make_room(20));
        assert_eq!(t.tat.len(), LOCAL_CAPACITY - 1);
    }

    #[test]
    fn a_burst_of_the_limit_then_one_per_interval() {
        let mut tat = None;
        let mut remaining = Vec::new();
        for _ in 0..3 {
            let (v, t) = gcra(RATE, tat, 1_000);
            assert!(v.allowed);
            remaining.push(v.remaining);
            tat = t;
        }
        assert_eq!(remaining, vec![2, 1, 0]);
        let (v, t) = gcra(RATE, tat, 1_000);
        assert!(!v.allowed && t.is_none());
        assert_eq!(v.reset_ms, 20_000, "one interval until the next");
        // One interval later, exactly one more.
        let (v, t) = gcra(RATE, tat, 21_000);
        assert!(v.allowed);
        let (v, _) = gcra(RATE, t, 21_000);
        assert!(!v.allowed);
    }

    #[test]
    fn settings_parse_strictly() {
        assert_eq!(
            "100/900".parse::<RateSetting>(),
            Ok(RateSetting(Some(Rate {
                limit: 100,
                period_ms: 900_000
            })))
        );
        assert_eq!("off".parse::<RateSetting>(), Ok(RateSetting(None)));
        for bad in ["0/60", "10", "10/0", "-1/60", "x/60", "10/100000"] {
            assert!(bad.parse::<RateSetting>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn without_redis_memory_decides() {
        let limiter = Limiter::new(None).expect("limiter");
        for _ in 0..3 {
            assert!(limiter.check("k", RATE, 0).await.allowed);
        }
        let v = limiter.check("k", RATE, 0).await;
        assert!(!v.allowed && v.local);
        assert!(limiter.check("other", RATE, 0).await.allowed);
    }
}
