//! DPoP at the edge (RFC 9449 §7): a token bound to a key (`cnf.jkt`) is
//! taken only under the `DPoP` scheme with a fresh proof for this request
//! (method, URL, `ath`), signed by that key, whose `jti` this edge has not
//! seen; a rule with `dpop: required` takes no unbound token. A stolen
//! bound token is useless without the private key.
//!
//! Replays are caught per sidecar (or module): a proof lives 60 s, and
//! the cache keeps each `jti` that long. Proofs are short-lived and bound
//! to one request's method and URL, so a replay elsewhere must also beat
//! that window (RFC 9449 §11.1 allows this per-server check).

use std::collections::HashMap;
use std::sync::Mutex;

use auth_types::dpop::{self, Expected, MAX_AGE_SECS, MAX_SKEW_SECS};
use auth_types::AccessClaims;
use ring::digest::{digest, SHA256};

use crate::decision::{Decision, DenyReason};

/// What the request carried toward a DPoP check.
#[derive(Debug, Clone, Copy, Default)]
pub struct Presented<'a> {
    /// `Authorization: DPoP …` rather than `Bearer`.
    pub scheme: bool,
    /// The `DPoP` header (`None`: absent; two are refused before here).
    pub proof: Option<&'a str>,
}

/// Proof `jti`s seen, until their proofs expire. Bounded overall and per
/// key: when full, proofs are refused (fail closed) rather than unchecked;
/// one key (one client) cannot fill it for the others.
pub struct ReplayCache {
    inner: Mutex<Seen>,
    capacity: usize,
}

/// Live proofs at most per key (about 15 a second for a proof's minute).
pub const PER_KEY: u32 = 1_000;

#[derive(Default)]
struct Seen {
    ids: std::collections::HashSet<[u8; 32]>,
    /// In the order seen, so expiry pops from the front (no scan).
    order: std::collections::VecDeque<(i64, [u8; 32], [u8; 32])>,
    per_key: HashMap<[u8; 32], u32>,
}

fn sha256(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, s.as_bytes()).as_ref());
    out
}

impl ReplayCache {
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            inner: Mutex::new(Seen::default()),
            capacity,
        }
    }

    /// `true` the first time this key and `jti` are seen.
    fn first_use(&self, jkt: &str, jti: &str, now: i64) -> bool {
        let (key, id) = (sha256(jkt), sha256(&format!("{jkt}.{jti}")));
        let Ok(mut seen) = self.inner.lock() else {
            return false;
        };
        let seen = &mut *seen;
        while let Some((expires, old_id, old_key)) = seen.order.front().copied() {
            if expires > now {
                break;
            }
            seen.order.pop_front();
            seen.ids.remove(&old_id);
            if let Some(n) = seen.per_key.get_mut(&old_key) {
                *n -= 1;
                if *n == 0 {
                    seen.per_key.remove(&old_key);
                }
            }
        }
        if seen.ids.contains(&id)
            || seen.ids.len() >= self.capacity
            || seen.per_key.get(&key).is_some_and(|n| *n >= PER_KEY)
        {
            return false;
        }
        // Kept one second past the last second a proof is still fresh in.
        let expires = now + MAX_AGE_SECS + MAX_SKEW_SECS + 1;
        seen.ids.insert(id);
        seen.order.push_back((expires, id, key));
        *seen.per_key.entry(key).or_insert(0) += 1;
        true
    }
}

/// Before the policy: a token bound to a key (`cnf.jkt`) is taken only
/// under the DPoP scheme with a valid, fresh, unseen proof by that key for
/// this request; else it is as good as an invalid token (so a stolen copy
/// cannot even learn which routes it would pass).
pub fn check_bound(
    claims: &AccessClaims,
    presented: Presented<'_>,
    token: &str,
    method: &str,
    target: Target<'_>,
    cache: &ReplayCache,
    now: i64,
) -> Result<(), DenyReason> {
    let Some(jkt) = bound_key(claims) else {
        return Ok(());
    };
    let (true, Some(proof)) = (presented.scheme, presented.proof) else {
        return Err(DenyReason::InvalidDpopProof);
    };
    let url = target.url();
    let expected = Expected {
        method,
        url: &url,
        access_token: Some(token),
        now,
    };
    match dpop::verify(proof, &expected) {
        Ok(p) if p.jkt == jkt && cache.first_use(&p.jkt, &p.jti, now) => Ok(()),
        _ => Err(DenyReason::InvalidDpopProof),
    }
}

/// After the policy, for an allowed unbound token: not under the DPoP
/// scheme (a confused client or a probe), and not on a `dpop: required`
/// rule.
pub fn enforce(decision: Decision, presented: Presented<'_>, required: bool) -> Decision {
    let Decision::Allow {
        rule,
        identity: Some(claims),
    } = decision
    else {
        return decision;
    };
    if bound_key(&claims).is_none() {
        if presented.scheme {
            return Decision::deny(Some(rule), DenyReason::InvalidDpopProof);
        }
        if required {
            return Decision::deny(Some(rule), DenyReason::DpopRequired);
        }
    }
    Decision::Allow {
        rule,
        identity: Some(claims),
    }
}

fn bound_key(claims: &AccessClaims) -> Option<&str> {
    claims.cnf.as_ref().map(|c| c.jkt.as_str())
}

/// Where a request went, for a proof's `htu`: the URL is only built when
/// a proof is checked (not on every request).
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    /// The configured public origin (`--public-origin`), if any.
    pub origin: Option<&'a str>,
    pub scheme: &'a str,
    pub host: &'a str,
    pub path: &'a str,
}

impl Target<'_> {
    pub fn url(&self) -> String {
        match self.origin {
            Some(origin) => request_url_at(origin, self.path),
            None => request_url(self.scheme, self.host, self.path),
        }
    }
}

/// `origin/path` (the query cut): the request at the configured public
/// origin.
pub fn request_url_at(origin: &str, path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    format!("{origin}{path}")
}

/// `scheme://host/path` of a request as the proxy saw it (the query cut).
pub fn request_url(scheme: &str, host: &str, path: &str) -> String {
    let scheme = if scheme.is_empty() { "http" } else { scheme };
    request_url_at(&format!("{scheme}://{host}"), path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jti_is_taken_once_until_it_expires_and_a_full_cache_refuses() {
        let cache = ReplayCache::new(2);
        assert!(cache.first_use("k", "a", 100));
        assert!(!cache.first_use("k", "a", 100));
        // Another key's jti is another proof.
        assert!(cache.first_use("k2", "a", 100));
        // Full of live entries: refused, not forgotten.
        assert!(!cache.first_use("k", "b", 100));
        // Still there in the last second its proof could be fresh.
        let last = 100 + MAX_AGE_SECS + MAX_SKEW_SECS;
        assert!(!cache.first_use("k", "a", last));
        // Once they expire there is room again.
        assert!(cache.first_use("k", "b", last + 1));
    }

    #[test]
    fn one_key_cannot_fill_the_cache_for_the_others() {
        let cache = ReplayCache::new(10 * PER_KEY as usize);
        for i in 0..PER_KEY {
            assert!(cache.first_use("greedy", &i.to_string(), 100));
        }
        assert!(!cache.first_use("greedy", "one-more", 100));
        assert!(cache.first_use("honest", "a", 100));
    }

    #[test]
    fn the_url_is_the_requests_without_its_query() {
        assert_eq!(
            request_url("https", "api.example", "/a/b?x=1"),
            "https://api.example/a/b"
        );
        assert_eq!(request_url("", "h:8080", "/"), "http://h:8080/");
    }
}
