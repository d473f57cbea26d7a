//! Signing-key lifecycle: next → current → retired → removed, plus revoked.
//!
//! - **next**: published, not signing, until `activates_at` (at least the
//!   publish lead after creation, so every verifier already has it);
//! - **current**: the one key that signs;
//! - **retired**: published, not signing, until every token it signed has
//!   expired (`removes_at`);
//! - **removed**: no longer published;
//! - **revoked**: pulled at once after a compromise.
//!
//! Planning is pure (keys + `now` → changes); `apply` runs a plan in one
//! transaction that replicas serialise on, so a scheduled rotation happens
//! exactly once however many replicas tick.

use auth_types::SigningAlg;

pub use crate::domain::keys::KeyUse;
use crate::domain::keys::StoredKey;

pub const NEXT: &str = "next";
pub const CURRENT: &str = "current";
pub const RETIRED: &str = "retired";
pub const REMOVED: &str = "removed";
pub const REVOKED: &str = "revoked";

/// Timing of the lifecycle, from the issuer's settings.
#[derive(Debug, Clone, Copy)]
pub struct Lifecycle {
    /// Rotate when the current key is this old (seconds); 0 disables the schedule.
    pub rotation_period: i64,
    /// A new key is published this long before it signs.
    pub publish_lead: i64,
    /// A retired key stays published this long (access-token lifetime + leeway).
    pub retired_keep: i64,
    pub alg: SigningAlg,
}

#[derive(Debug)]
pub enum KeyChange {
    Create(StoredKey),
    Activate {
        kid: String,
        at: i64,
    },
    Retire {
        kid: String,
        at: i64,
        removes_at: i64,
    },
    Remove {
        kid: String,
    },
    Revoke {
        kid: String,
        at: i64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("a rotation is already pending: key {kid} activates at {activates_at}")]
    AlreadyPending { kid: String, activates_at: i64 },
    #[error("no published key {0}")]
    UnknownKey(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

fn by_state<'a>(keys: &'a [StoredKey], state: &str) -> impl Iterator<Item = &'a StoredKey> {
    let state = state.to_string();
    keys.iter().filter(move |k| k.state == state)
}

fn current(keys: &[StoredKey]) -> Option<&StoredKey> {
    by_state(keys, CURRENT).max_by_key(|k| k.activates_at)
}

/// Time-driven transitions due at `now`, and the scheduled next key.
pub fn plan_tick(
    keys: &[StoredKey],
    now: i64,
    life: &Lifecycle,
    make_key: &mut dyn FnMut(&str, i64) -> anyhow::Result<StoredKey>,
) -> anyhow::Result<Vec<KeyChange>> {
    let mut changes = Vec::new();
    let due_next = by_state(keys, NEXT)
        .filter(|k| k.activates_at <= now)
        .max_by_key(|k| k.activates_at);
    if let Some(next) = due_next {
        changes.push(KeyChange::Activate {
            kid: next.kid.clone(),
            at: now,
        });
        for old in by_state(keys, CURRENT) {
            changes.push(KeyChange::Retire {
                kid: old.kid.clone(),
                at: now,
                removes_at: now + life.retired_keep,
            });
        }
    }
    for retired in by_state(keys, RETIRED) {
        if retired.removes_at.is_some_and(|at| at <= now) {
            changes.push(KeyChange::Remove {
                kid: retired.kid.clone(),
            });
        }
    }
    let pending = by_state(keys, NEXT).next().is_some();
    if life.rotation_period > 0 && due_next.is_none() && !pending {
        if let Some(cur) = current(keys) {
            let rotate_at = cur.activates_at + life.rotation_period;
            if now >= rotate_at - life.publish_lead {
                let activates_at = rotate_at.max(now + life.publish_lead);
                changes.push(KeyChange::Create(make_key(NEXT, activates_at)?));
            }
        }
    }
    Ok(changes)
}

/// An operator's rotation: a next key published now and signing after the
/// publish lead, or (`immediately`) a key that signs at once.
pub fn plan_rotate(
    keys: &[StoredKey],
    now: i64,
    life: &Lifecycle,
    immediately: bool,
    make_key: &mut dyn FnMut(&str, i64) -> anyhow::Result<StoredKey>,
) -> Result<Vec<KeyChange>, RotationError> {
    let pending: Vec<&StoredKey> = by_state(keys, NEXT).collect();
    if !immediately {
        if let Some(next) = pending.first() {
            return Err(RotationError::AlreadyPending {
                kid: next.kid.clone(),
                activates_at: next.activates_at,
            });
        }
        return Ok(vec![KeyChange::Create(make_key(
            NEXT,
            now + life.publish_lead,
        )?)]);
    }
    let mut changes = vec![KeyChange::Create(make_key(CURRENT, now)?)];
    for old in by_state(keys, CURRENT) {
        changes.push(KeyChange::Retire {
            kid: old.kid.clone(),
            at: now,
            removes_at: now + life.retired_keep,
        });
    }
    // A pending key would later take over from the one just made: drop it.
    for next in pending {
        changes.push(KeyChange::Remove {
            kid: next.kid.clone(),
        });
    }
    Ok(changes)
}

/// Emergency: the key leaves the JWKS now; if it was signing, a fresh key
/// signs from now on.
pub fn plan_revoke(
    keys: &[StoredKey],
    kid: &str,
    now: i64,
    make_key: &mut dyn FnMut(&str, i64) -> anyhow::Result<StoredKey>,
) -> Result<Vec<KeyChange>, RotationError> {
    let key = keys
        .iter()
        .find(|k| k.kid == kid && [NEXT, CURRENT, RETIRED].contains(&k.state.as_str()))
        .ok_or_else(|| RotationError::UnknownKey(kid.to_string()))?;
    let mut changes = vec![KeyChange::Revoke {
        kid: kid.to_string(),
        at: now,
    }];
    if key.state == CURRENT {
        changes.push(KeyChange::Create(make_key(CURRENT, now)?));
    }
    Ok(changes)
}

/// Makes a key of a lane and algorithm: (use, alg, state, activates_at).
pub type MakeKey<'a> = dyn FnMut(KeyUse, SigningAlg, &str, i64) -> anyhow::Result<StoredKey> + 'a;

/// One lane's keys; the plans above each see one lane only, so a change in
/// one never retires or replaces a key of the other.
pub fn lane(keys: &[StoredKey], key_use: KeyUse) -> Vec<StoredKey> {
    keys.iter()
        .filter(|k| k.key_use == key_use)
        .cloned()
        .collect()
}

/// The scheduled transitions of both lanes; `id_tokens_wanted` (clients
/// are registered) makes the ID-token lane's first key.
pub fn plan_tick_all(
    keys: &[StoredKey],
    now: i64,
    life: &Lifecycle,
    id_tokens_wanted: bool,
    make: &mut MakeKey<'_>,
) -> anyhow::Result<Vec<KeyChange>> {
    let access = lane(keys, KeyUse::Access);
    let mut changes = plan_tick(&access, now, life, &mut |st, at| {
        make(KeyUse::Access, life.alg, st, at)
    })?;
    changes.extend(plan_id_token_lane(keys, now, life, id_tokens_wanted, make)?);
    Ok(changes)
}

/// The ID-token lane: kept while the access keys are not RS256, wound down
/// when they are (its keys retire, staying published while ID tokens they
/// signed may still be checked). `create` makes its first key, current at
/// once: registering the first client asks for it (before any relying
/// party reads the JWKS for it), so issuers without clients never pay for
/// RSA.
pub fn plan_id_token_lane(
    keys: &[StoredKey],
    now: i64,
    life: &Lifecycle,
    create: bool,
    make: &mut MakeKey<'_>,
) -> anyhow::Result<Vec<KeyChange>> {
    let access_alg = current(&lane(keys, KeyUse::Access)).map(|k| k.alg.clone());
    let ids = lane(keys, KeyUse::IdToken);
    let mut make_id = |st: &str, at: i64| make(KeyUse::IdToken, SigningAlg::RS256, st, at);
    let needed = access_alg.is_some_and(|alg| alg != SigningAlg::RS256.as_str());
    if needed && current(&ids).is_some() {
        let id_life = Lifecycle {
            alg: SigningAlg::RS256,
            ..*life
        };
        return plan_tick(&ids, now, &id_life, &mut make_id);
    }
    let mut changes = Vec::new();
    if needed {
        if create {
            changes.push(KeyChange::Create(make_id(CURRENT, now)?));
        }
    } else {
        for old in by_state(&ids, CURRENT) {
            changes.push(KeyChange::Retire {
                kid: old.kid.clone(),
                at: now,
                removes_at: now + life.retired_keep,
            });
        }
    }
    for next in by_state(&ids, NEXT) {
        changes.push(KeyChange::Remove {
            kid: next.kid.clone(),
        });
    }
    for retired in by_state(&ids, RETIRED) {
        if retired.removes_at.is_some_and(|at| at <= now) {
            changes.push(KeyChange::Remove {
                kid: retired.kid.clone(),
            });
        }
    }
    Ok(changes)
}

/// An operator's rotation of the access keys (to `alg`).
pub fn plan_rotate_access(
    keys: &[StoredKey],
    now: i64,
    life: &Lifecycle,
    immediately: bool,
    alg: SigningAlg,
    make: &mut MakeKey<'_>,
) -> Result<Vec<KeyChange>, RotationError> {
    let access = lane(keys, KeyUse::Access);
    plan_rotate(&access, now, life, immediately, &mut |st, at| {
        make(KeyUse::Access, alg, st, at)
    })
}

/// Revokes a key of either lane; a signing key is replaced in its lane
/// (access keys by one of `access_alg`, ID-token keys by RS256).
pub fn plan_revoke_any(
    keys: &[StoredKey],
    kid: &str,
    now: i64,
    access_alg: SigningAlg,
    make: &mut MakeKey<'_>,
) -> Result<Vec<KeyChange>, RotationError> {
    let key_use = keys
        .iter()
        .find(|k| k.kid == kid)
        .map_or(KeyUse::Access, |k| k.key_use);
    let alg = match key_use {
        KeyUse::Access => access_alg,
        KeyUse::IdToken => SigningAlg::RS256,
    };
    plan_revoke(&lane(keys, key_use), kid, now, &mut |st, at| {
        make(key_use, alg, st, at)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, state: &str, activates_at: i64, removes_at: Option<i64>) -> StoredKey {
        StoredKey {
            kid: kid.into(),
            alg: "ES256".into(),
            key_use: KeyUse::Access,
            state: state.into(),
            public_jwk: String::new(),
            private_key_enc: Vec::new(),
            created_at: 0,
            activates_at,
            retires_at: None,
            removes_at,
        }
    }

    fn life() -> Lifecycle {
        Lifecycle {
            rotation_period: 1000,
            publish_lead: 100,
            retired_keep: 50,
            alg: SigningAlg::ES256,
        }
    }

    fn maker() -> impl FnMut(&str, i64) -> anyhow::Result<StoredKey> {
        |state: &str, at: i64| Ok(key("new", state, at, None))
    }

    #[test]
    fn the_schedule_publishes_ahead_then_swaps_then_removes() {
        let mut make = maker();
        let keys = vec![key("k1", CURRENT, 0, None)];
        assert!(plan_tick(&keys, 899, &life(), &mut make)
            .expect("plan")
            .is_empty());
        let changes = plan_tick(&keys, 900, &life(), &mut make).expect("plan");
        assert!(
            matches!(&changes[..], [KeyChange::Create(k)] if k.state == NEXT && k.activates_at == 1000)
        );

        let keys = vec![key("k1", CURRENT, 0, None), key("k2", NEXT, 1000, None)];
        assert!(
            plan_tick(&keys, 999, &life(), &mut make)
                .expect("plan")
                .is_empty(),
            "pending: nothing more"
        );
        let changes = plan_tick(&keys, 1000, &life(), &mut make).expect("plan");
        assert!(matches!(&changes[..], [
            KeyChange::Activate { kid: a, at: 1000 },
            KeyChange::Retire { kid: r, removes_at: 1050, .. },
        ] if a == "k2" && r == "k1"));

        let keys = vec![
            key("k1", RETIRED, 0, Some(1050)),
            key("k2", CURRENT, 1000, None),
        ];
        assert!(plan_tick(&keys, 1049, &life(), &mut make)
            .expect("plan")
            .is_empty());
        let changes = plan_tick(&keys, 1050, &life(), &mut make).expect("plan");
        assert!(matches!(&changes[..], [KeyChange::Remove { kid }] if kid == "k1"));
    }

    #[test]
    fn operator_rotation_and_revocation() {
        let mut make = maker();
        let keys = vec![key("k1", CURRENT, 0, None)];
        let changes = plan_rotate(&keys, 10, &life(), false, &mut make).expect("plan");
        assert!(matches!(&changes[..], [KeyChange::Create(k)] if k.activates_at == 110));
        let pending = vec![key("k1", CURRENT, 0, None), key("k2", NEXT, 110, None)];
        assert!(matches!(
            plan_rotate(&pending, 20, &life(), false, &mut make),
            Err(RotationError::AlreadyPending { .. })
        ));
        let changes = plan_rotate(&pending, 20, &life(), true, &mut make).expect("plan");
        assert!(matches!(&changes[..], [
            KeyChange::Create(k), KeyChange::Retire { kid: r, .. }, KeyChange::Remove { kid: gone },
        ] if k.state == CURRENT && r == "k1" && gone == "k2"));

        let changes = plan_revoke(&keys, "k1", 30, &mut make).expect("plan");
        assert!(
            matches!(&changes[..], [KeyChange::Revoke { kid, .. }, KeyChange::Create(k)] if kid == "k1" && k.state == CURRENT)
        );
        let retired = vec![key("k0", RETIRED, 0, Some(99)), key("k1", CURRENT, 0, None)];
        let changes = plan_revoke(&retired, "k0", 30, &mut make).expect("plan");
        assert_eq!(changes.len(), 1, "revoking a retired key needs no new key");
        assert!(matches!(
            plan_revoke(&keys, "nope", 30, &mut make),
            Err(RotationError::UnknownKey(_))
        ));
    }

    fn id_key(kid: &str, state: &str, activates_at: i64, removes_at: Option<i64>) -> StoredKey {
        StoredKey {
            alg: "RS256".into(),
            key_use: KeyUse::IdToken,
            ..key(kid, state, activates_at, removes_at)
        }
    }

    fn lane_maker() -> impl FnMut(KeyUse, SigningAlg, &str, i64) -> anyhow::Result<StoredKey> {
        |key_use, alg, state: &str, at: i64| {
            Ok(StoredKey {
                alg: alg.as_str().into(),
                key_use,
                ..key("new", state, at, None)
            })
        }
    }

    #[test]
    fn es256_access_keys_get_an_rs256_id_token_lane_that_rotates_on_its_own() {
        let mut make = lane_maker();
        let keys = vec![key("a1", CURRENT, 0, None)];
        assert!(
            plan_tick_all(&keys, 10, &life(), false, &mut make)
                .expect("plan")
                .is_empty(),
            "no lane until a client is registered"
        );
        let changes = plan_id_token_lane(&keys, 10, &life(), true, &mut make).expect("plan");
        assert!(matches!(&changes[..], [KeyChange::Create(k)]
            if k.key_use == KeyUse::IdToken && k.alg == "RS256" && k.state == CURRENT));

        // Each lane's schedule sees its own keys: the ID key, made later,
        // rotates later, and rotating one never retires the other.
        let keys = vec![
            key("a1", CURRENT, 0, None),
            id_key("i1", CURRENT, 500, None),
        ];
        let changes = plan_tick_all(&keys, 900, &life(), true, &mut make).expect("plan");
        assert!(matches!(&changes[..], [KeyChange::Create(k)]
            if k.key_use == KeyUse::Access && k.alg == "ES256" && k.state == NEXT));
        let keys = vec![
            key("a1", CURRENT, 0, None),
            key("a2", NEXT, 1000, None),
            id_key("i1", CURRENT, 500, None),
        ];
        let changes = plan_tick_all(&keys, 1000, &life(), true, &mut make).expect("plan");
        assert!(matches!(&changes[..], [
            KeyChange::Activate { kid: a, .. }, KeyChange::Retire { kid: r, .. },
        ] if a == "a2" && r == "a1"));
        let changes = plan_rotate_access(&keys, 1000, &life(), true, SigningAlg::ES256, &mut make)
            .expect("plan");
        assert!(!changes.iter().any(
            |c| matches!(c, KeyChange::Retire { kid, .. } | KeyChange::Remove { kid } if kid == "i1")
        ));

        // Revoking the ID key replaces it with RS256 in its lane.
        let changes = plan_revoke_any(&keys, "i1", 30, SigningAlg::ES256, &mut make).expect("plan");
        assert!(
            matches!(&changes[..], [KeyChange::Revoke { kid, .. }, KeyChange::Create(k)]
            if kid == "i1" && k.key_use == KeyUse::IdToken && k.alg == "RS256")
        );
    }

    #[test]
    fn rs256_access_keys_sign_id_tokens_and_the_lane_winds_down() {
        let mut make = lane_maker();
        let rs = |kid: &str| StoredKey {
            alg: "RS256".into(),
            ..key(kid, CURRENT, 0, None)
        };
        assert!(
            plan_id_token_lane(&[rs("a1")], 10, &life(), true, &mut make)
                .expect("plan")
                .is_empty()
        );
        let keys = vec![
            rs("a1"),
            id_key("i1", CURRENT, 0, None),
            id_key("i0", RETIRED, 0, Some(5)),
        ];
        let changes = plan_tick_all(&keys, 10, &life(), true, &mut make).expect("plan");
        assert!(matches!(&changes[..], [
            KeyChange::Retire { kid: r, removes_at: 60, .. }, KeyChange::Remove { kid: gone },
        ] if r == "i1" && gone == "i0"));
    }
}
