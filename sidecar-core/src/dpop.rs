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

/// Proof `jti`s seen, until their proofs expire. Bounded: when full of
/// live entries, proofs are refused (fail closed) rather than unchecked.
pub struct ReplayCache {
    seen: Mutex<HashMap<[u8; 32], i64>>,
    capacity: usize,
}

impl ReplayCache {
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            seen: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// `true` the first time this key and `jti` are seen.
    fn first_use(&self, jkt: &str, jti: &str, now: i64) -> bool {
        let mut id = [0u8; 32];
        let d = digest(&SHA256, format!("{jkt}.{jti}").as_bytes());
        id.copy_from_slice(d.as_ref());
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        if seen.len() >= self.capacity {
            seen.retain(|_, expires| *expires > now);
            if seen.len() >= self.capacity {
                return false;
            }
        }
        let expires = now + MAX_AGE_SECS + MAX_SKEW_SECS;
        seen.insert(id, expires).is_none_or(|old| old <= now)
    }
}

/// An allowed decision, checked for DPoP: `token` is the raw access token,
/// `url` the request's (`scheme://host/path`).
#[allow(clippy::too_many_arguments)]
pub fn enforce(
    decision: Decision,
    presented: Presented<'_>,
    required: bool,
    token: Option<&str>,
    method: &str,
    url: &str,
    cache: &ReplayCache,
    now: i64,
) -> Decision {
    let Decision::Allow {
        rule,
        identity: Some(claims),
    } = decision
    else {
        return decision;
    };
    let refuse = |reason| Decision::deny(Some(rule.clone()), reason);
    match bound_key(&claims) {
        Some(jkt) => {
            // The bound token under the Bearer scheme is a downgrade.
            let (true, Some(proof), Some(token)) = (presented.scheme, presented.proof, token)
            else {
                return refuse(DenyReason::InvalidDpopProof);
            };
            let expected = Expected {
                method,
                url,
                access_token: Some(token),
                now,
            };
            match dpop::verify(proof, &expected) {
                Ok(p) if p.jkt == jkt => {
                    if !cache.first_use(&p.jkt, &p.jti, now) {
                        return refuse(DenyReason::InvalidDpopProof);
                    }
                }
                _ => return refuse(DenyReason::InvalidDpopProof),
            }
        }
        // An unbound token sent as if bound is a confused client or a
        // probe: refused, so the scheme always means a checked proof.
        None if presented.scheme => return refuse(DenyReason::InvalidDpopProof),
        None if required => return refuse(DenyReason::DpopRequired),
        None => {}
    }
    Decision::Allow {
        rule,
        identity: Some(claims),
    }
}

fn bound_key(claims: &AccessClaims) -> Option<&str> {
    claims.cnf.as_ref().map(|c| c.jkt.as_str())
}

/// `scheme://host/path` of a request as the proxy saw it (the query cut).
pub fn request_url(scheme: &str, host: &str, path: &str) -> String {
    let scheme = if scheme.is_empty() { "http" } else { scheme };
    let path = path.split('?').next().unwrap_or_default();
    format!("{scheme}://{host}{path}")
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
        // Once they expire there is room again.
        assert!(cache.first_use("k", "b", 100 + MAX_AGE_SECS + MAX_SKEW_SECS + 1));
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
