//! The in-memory revocation set a sidecar checks every token against.

use std::collections::HashMap;

use auth_types::{AccessClaims, RevocationKind, RevocationRecord};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationSet {
    /// `jti` → record expiry.
    tokens: HashMap<String, i64>,
    /// `sid` → record expiry.
    sessions: HashMap<String, i64>,
    /// user id → (issued_before, record expiry).
    users: HashMap<String, (i64, i64)>,
    /// user id → (first valid `user_gen`, record expiry).
    #[serde(default)]
    generations: HashMap<String, (i64, i64)>,
    /// Highest sequence number applied.
    pub last_seq: i64,
}

impl RevocationSet {
    pub fn apply(&mut self, r: &RevocationRecord) {
        match r.kind {
            RevocationKind::Token => {
                let e = self.tokens.entry(r.subject.clone()).or_insert(r.expires_at);
                *e = (*e).max(r.expires_at);
            }
            RevocationKind::Session => {
                let e = self
                    .sessions
                    .entry(r.subject.clone())
                    .or_insert(r.expires_at);
                *e = (*e).max(r.expires_at);
            }
            RevocationKind::UserBefore => {
                let e = self
                    .users
                    .entry(r.subject.clone())
                    .or_insert((r.issued_before, r.expires_at));
                *e = (e.0.max(r.issued_before), e.1.max(r.expires_at));
            }
            RevocationKind::UserGeneration => {
                let e = self
                    .generations
                    .entry(r.subject.clone())
                    .or_insert((r.issued_before, r.expires_at));
                *e = (e.0.max(r.issued_before), e.1.max(r.expires_at));
            }
        }
        self.last_seq = self.last_seq.max(r.seq);
    }

    pub fn is_revoked(&self, claims: &AccessClaims) -> bool {
        self.tokens.contains_key(&claims.jti)
            || (!claims.sid.is_empty() && self.sessions.contains_key(&claims.sid))
            || self
                .users
                .get(&claims.sub)
                .is_some_and(|(before, _)| claims.iat < *before)
            || self
                .generations
                .get(&claims.sub)
                .is_some_and(|(first_valid, _)| claims.user_gen < *first_valid)
            // A delegated token ends with its actor too: a service deleted
            // or cut off no longer acts for anyone.
            || claims.act.as_ref().is_some_and(|act| {
                self.users
                    .get(&act.sub)
                    .is_some_and(|(before, _)| claims.iat < *before)
            })
    }

    /// Drops entries once every token they cover has expired.
    pub fn prune(&mut self, now: i64) -> usize {
        let before = self.len();
        self.tokens.retain(|_, exp| *exp > now);
        self.sessions.retain(|_, exp| *exp > now);
        self.users.retain(|_, (_, exp)| *exp > now);
        self.generations.retain(|_, (_, exp)| *exp > now);
        before - self.len()
    }

    pub fn len(&self) -> usize {
        self.tokens.len() + self.sessions.len() + self.users.len() + self.generations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auth_types::Audience;

    fn claims(jti: &str, sid: &str, sub: &str, iat: i64) -> AccessClaims {
        AccessClaims {
            iss: "i".into(),
            sub: sub.into(),
            aud: Audience::One("a".into()),
            exp: iat + 900,
            iat,
            nbf: None,
            jti: jti.into(),
            sid: sid.into(),
            client_id: String::new(),
            roles: vec![],
            permissions: vec![],
            amr: vec![],
            email: None,
            user_gen: 0,
            teams: Default::default(),
            teams_overflow: false,
            email_verified: false,
            acr: None,
            auth_time: None,
            scope: None,
            act: None,
            cnf: None,
        }
    }

    fn record(
        seq: i64,
        kind: RevocationKind,
        subject: &str,
        issued_before: i64,
        expires_at: i64,
    ) -> RevocationRecord {
        RevocationRecord {
            seq,
            kind,
            subject: subject.into(),
            issued_before,
            created_at_ms: 0,
            expires_at,
        }
    }

    #[test]
    fn each_kind_covers_exactly_its_tokens_until_it_expires() {
        let mut set = RevocationSet::default();
        set.apply(&record(1, RevocationKind::Token, "j1", 0, 100));
        set.apply(&record(2, RevocationKind::Session, "s1", 0, 200));
        set.apply(&record(5, RevocationKind::UserBefore, "u1", 50, 300));
        assert_eq!(set.last_seq, 5);
        assert!(set.is_revoked(&claims("j1", "sx", "ux", 0)));
        assert!(set.is_revoked(&claims("jx", "s1", "ux", 0)));
        assert!(set.is_revoked(&claims("jx", "sx", "u1", 49)));
        assert!(
            !set.is_revoked(&claims("jx", "sx", "u1", 50)),
            "issued after the cut-off"
        );
        assert!(!set.is_revoked(&claims("jx", "sx", "ux", 0)));
        assert_eq!(set.prune(150), 1);
        assert!(!set.is_revoked(&claims("j1", "sx", "ux", 0)));
        assert!(set.is_revoked(&claims("jx", "s1", "ux", 0)));
        assert_eq!(set.prune(1_000), 2);
        assert!(set.is_empty());

        // Generations: exact, whatever the clock says.
        set.apply(&record(6, RevocationKind::UserGeneration, "u2", 3, 2_000));
        let mut old = claims("jx", "sx", "u2", 1_500);
        old.user_gen = 2;
        assert!(set.is_revoked(&old));
        let mut same_second = old.clone();
        same_second.user_gen = 3;
        assert!(!set.is_revoked(&same_second));
        assert_eq!(set.prune(2_000), 1);
    }

    #[test]
    fn a_delegated_token_ends_with_its_actor() {
        let mut set = RevocationSet::default();
        set.apply(&record(1, RevocationKind::UserBefore, "client:gw", 50, 300));
        let mut delegated = claims("jx", "sx", "u1", 49);
        delegated.act = Some(auth_types::Actor {
            sub: "client:gw".into(),
            client_id: "gw".into(),
        });
        assert!(set.is_revoked(&delegated));
        delegated.iat = 50;
        assert!(!set.is_revoked(&delegated), "issued after the cut-off");
        let mut other = claims("jx", "sx", "u1", 49);
        other.act = Some(auth_types::Actor {
            sub: "client:other".into(),
            client_id: "other".into(),
        });
        assert!(!set.is_revoked(&other));
    }
}
