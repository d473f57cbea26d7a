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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, state: &str, activates_at: i64, removes_at: Option<i64>) -> StoredKey {
        StoredKey {
            kid: kid.into(),
            alg: "ES256".into(),
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
}
