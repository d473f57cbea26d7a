//! The signing keys this replica holds in memory: opened from the store
//! under the KEK, swapped whole on reload so a request reads one snapshot.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use arc_swap::ArcSwap;
use auth_types::{Jwk, JwkSet, SigningAlg, VerifyingKeySet};

use crate::domain::keys::{new_stored_key, Kek, KeyUse, SigningKey, StoredKey};
use crate::domain::rotation::{self, KeyChange};
use crate::store::Store;

/// What the keyring serves at one moment.
pub struct KeySnapshot {
    pub signing: Arc<SigningKey>,
    /// Signs ID tokens: RS256, the ID-token lane's key or the access key
    /// when that is RS256.
    pub id_signing: Arc<SigningKey>,
    /// When the signing key began signing (Unix seconds).
    pub signing_created_at: i64,
    pub jwks: JwkSet,
    /// The JWKS serialised once, served as is.
    pub jwks_json: bytes::Bytes,
    /// Every published key (ID token hints).
    pub verifying: VerifyingKeySet,
    /// The access lane's published keys: the issuer accepts its own
    /// access tokens only from those.
    pub verifying_access: VerifyingKeySet,
}

/// Published keys and the current signer, swapped atomically on reload.
pub struct Keyring {
    kek: Kek,
    snapshot: ArcSwap<KeySnapshot>,
}

/// States whose public key is published.
const PUBLISHED: [&str; 3] = ["next", "current", "retired"];

impl Keyring {
    /// Loads keys, creating the first signing key if there is none.
    pub async fn open(store: &Store, kek: Kek, alg: SigningAlg, now: i64) -> anyhow::Result<Self> {
        let mut keys = store.keys().await?;
        // Generate only when needed (an RSA key takes a while); the insert
        // itself re-checks under the key lock, so racing replicas make one.
        if current_of(&keys, KeyUse::Access).is_none() {
            let first = new_stored_key(&kek, KeyUse::Access, alg, rotation::CURRENT, now, now)?;
            if store.insert_first_key(&first).await? {
                tracing::info!(kid = %first.kid, alg = %alg, "created the first signing key");
            }
        }
        let version = store.key_set_version().await?;
        keys = store.keys().await?;
        let snapshot = build_snapshot(&kek, &keys, version)?;
        Ok(Keyring {
            kek,
            snapshot: ArcSwap::from_pointee(snapshot),
        })
    }

    /// A new key sealed under this keyring's KEK.
    pub fn make_key(
        &self,
        key_use: KeyUse,
        alg: SigningAlg,
        state: &str,
        now: i64,
        activates_at: i64,
    ) -> anyhow::Result<StoredKey> {
        new_stored_key(&self.kek, key_use, alg, state, now, activates_at)
    }

    /// Seals other secrets at rest (the refresh grace window's successor,
    /// sign-in state). Callers put their purpose in `aad`, so a sealed value
    /// cannot be replayed where another kind is expected.
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.kek.seal(aad, plaintext)
    }

    pub fn open_sealed(&self, aad: &str, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.kek.open(aad, sealed)
    }

    pub fn snapshot(&self) -> Arc<KeySnapshot> {
        self.snapshot.load_full()
    }

    /// Re-reads keys from the database (another replica may have rotated).
    /// Returns whether the published set changed.
    pub async fn reload(&self, store: &Store) -> anyhow::Result<bool> {
        let version = store.key_set_version().await?;
        let next = build_snapshot(&self.kek, &store.keys().await?, version)?;
        let current = self.snapshot.load();
        // Never step back to an older set (a slower concurrent reload).
        if next.jwks.version < current.jwks.version {
            return Ok(false);
        }
        let changed = next.jwks != current.jwks
            || next.signing.kid != current.signing.kid
            || next.id_signing.kid != current.id_signing.kid;
        if changed {
            self.snapshot.store(Arc::new(next));
        }
        Ok(changed)
    }

    pub fn version(&self) -> i64 {
        self.snapshot.load().jwks.version
    }
}

fn current_of(keys: &[StoredKey], key_use: KeyUse) -> Option<&StoredKey> {
    keys.iter()
        .filter(|k| k.state == rotation::CURRENT && k.key_use == key_use)
        .max_by_key(|k| k.activates_at)
}

fn open_key(kek: &Kek, key: &StoredKey) -> anyhow::Result<Arc<SigningKey>> {
    let alg = SigningAlg::parse(&key.alg)
        .ok_or_else(|| anyhow!("key {}: unknown alg {}", key.kid, key.alg))?;
    let pkcs8 = kek.open(&key.kid, &key.private_key_enc)?;
    Ok(Arc::new(SigningKey::from_pkcs8(&key.kid, alg, &pkcs8)?))
}

fn build_snapshot(kek: &Kek, keys: &[StoredKey], version: i64) -> anyhow::Result<KeySnapshot> {
    let current =
        current_of(keys, KeyUse::Access).ok_or_else(|| anyhow!("no current signing key"))?;
    let signing = open_key(kek, current)?;
    // Until the lane has a key (it is made when the first ID token is),
    // this is the access key; the minting checks.
    let id_signing = match current_of(keys, KeyUse::IdToken) {
        Some(k) if signing.alg != SigningAlg::RS256 => open_key(kek, k)?,
        _ => signing.clone(),
    };
    let mut jwks = JwkSet {
        keys: Vec::new(),
        version,
    };
    for key in keys
        .iter()
        .filter(|k| PUBLISHED.contains(&k.state.as_str()))
    {
        let jwk: Jwk = serde_json::from_str(&key.public_jwk)
            .with_context(|| format!("key {}: bad public JWK", key.kid))?;
        jwks.keys.push(jwk);
    }
    let (verifying, skipped) = VerifyingKeySet::from_jwks(&jwks);
    if let Some(bad) = skipped.first() {
        bail!("{bad}");
    }
    let access_kids: Vec<&str> = keys
        .iter()
        .filter(|k| k.key_use == KeyUse::Access && PUBLISHED.contains(&k.state.as_str()))
        .map(|k| k.kid.as_str())
        .collect();
    let (verifying_access, _) = VerifyingKeySet::from_jwks(&JwkSet {
        keys: jwks
            .keys
            .iter()
            .filter(|k| access_kids.contains(&k.kid.as_str()))
            .cloned()
            .collect(),
        version,
    });
    let jwks_json = bytes::Bytes::from(serde_json::to_vec(&jwks)?);
    Ok(KeySnapshot {
        signing,
        id_signing,
        signing_created_at: current.activates_at,
        jwks,
        jwks_json,
        verifying,
        verifying_access,
    })
}

/// The key a rotation created, if it created one.
pub fn created_kid(changes: &[KeyChange]) -> Option<String> {
    changes.iter().find_map(|c| match c {
        KeyChange::Create(k) => Some(k.kid.clone()),
        _ => None,
    })
}
