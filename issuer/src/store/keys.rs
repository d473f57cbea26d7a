//! Signing keys (sealed) and the key-set version.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::*;

pub use crate::domain::keys::{KeyUse, StoredKey};
use crate::domain::rotation::{KeyChange, RotationError};

/// At least one more than before, and at least the wall clock in ms: after
/// a database restore the next key change still outranks every version a
/// sidecar has seen.
const BUMP_KEY_SET_VERSION: &str = "UPDATE key_set_version SET version = \
     CASE WHEN version + 1 > $1 THEN version + 1 ELSE $1 END WHERE id = 1";

fn now_ms_for_version() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(super) const KEY_COLUMNS: &str =
    "kid, alg, key_use, state, public_jwk, private_key_enc, created_at, activates_at, \
     retires_at, removes_at";

impl Store {
    // ---- signing keys ----

    pub async fn insert_key(&self, key: &StoredKey) -> sqlx::Result<()> {
        let mut tx = self.writer.begin().await?;
        insert_key_row(&mut tx, key).await?;
        tx.commit().await
    }

    /// Read before the keys themselves, so a version never claims more than
    /// the keys read with it (a change in between only understates it).
    pub async fn key_set_version(&self) -> sqlx::Result<i64> {
        sqlx::query("SELECT version FROM key_set_version WHERE id = 1")
            .fetch_one(&self.pool)
            .await?
            .try_get("version")
    }

    pub async fn keys(&self) -> sqlx::Result<Vec<StoredKey>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM signing_keys ORDER BY created_at, kid");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Inserts `key` as the current signing key unless one exists, atomically
    /// across replicas. Returns whether it was inserted.
    pub async fn insert_first_key(&self, key: &StoredKey) -> sqlx::Result<bool> {
        let mut tx = self.writer.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7283002)")
                .execute(&mut *tx)
                .await?;
        }
        let existing: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM signing_keys WHERE state = 'current' AND key_use = $1",
        )
        .bind(key.key_use.as_str())
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if existing > 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_key_row(&mut tx, key).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Reads the keys and applies the changes `plan` makes of them, in one
    /// transaction no other replica can interleave with.
    pub async fn change_keys<P>(&self, plan: P) -> Result<Vec<KeyChange>, RotationError>
    where
        P: FnOnce(&[StoredKey]) -> Result<Vec<KeyChange>, RotationError>,
    {
        let _local = self.key_lock.lock().await;
        let db = |e: sqlx::Error| RotationError::Other(e.into());
        let mut tx = self.writer.begin().await.map_err(db)?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7283002)")
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let sql = format!("SELECT {KEY_COLUMNS} FROM signing_keys ORDER BY created_at, kid");
        let keys = sqlx::query(&sql)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?
            .iter()
            .map(key_from_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(db)?;
        let changes = plan(&keys)?;
        for change in &changes {
            let query = match change {
                KeyChange::Create(key) => sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, key_use, state, public_jwk, private_key_enc, \
                     created_at, activates_at, retires_at, removes_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(key.kid.clone())
                .bind(key.alg.clone())
                .bind(key.key_use.as_str())
                .bind(key.state.clone())
                .bind(key.public_jwk.clone())
                .bind(key.private_key_enc.clone())
                .bind(key.created_at)
                .bind(key.activates_at)
                .bind(key.retires_at)
                .bind(key.removes_at),
                KeyChange::Activate { kid, at } => sqlx::query(
                    "UPDATE signing_keys SET state = 'current', activates_at = $1 WHERE kid = $2 AND state = 'next'",
                )
                .bind(*at)
                .bind(kid.clone()),
                KeyChange::Retire { kid, at, removes_at } => sqlx::query(
                    "UPDATE signing_keys SET state = 'retired', retires_at = $1, removes_at = $2 \
                     WHERE kid = $3 AND state = 'current'",
                )
                .bind(*at)
                .bind(*removes_at)
                .bind(kid.clone()),
                KeyChange::Remove { kid } => sqlx::query(
                    "UPDATE signing_keys SET state = 'removed' WHERE kid = $1 AND state IN ('retired', 'next')",
                )
                .bind(kid.clone()),
                KeyChange::Revoke { kid, at } => sqlx::query(
                    "UPDATE signing_keys SET state = 'revoked', removes_at = $1 WHERE kid = $2",
                )
                .bind(*at)
                .bind(kid.clone()),
            };
            query.execute(&mut *tx).await.map_err(db)?;
        }
        if !changes.is_empty() {
            sqlx::query(BUMP_KEY_SET_VERSION)
                .bind(now_ms_for_version())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(changes)
    }
}

pub(super) fn key_from_row(row: &AnyRow) -> sqlx::Result<StoredKey> {
    Ok(StoredKey {
        kid: row.try_get("kid")?,
        alg: row.try_get("alg")?,
        key_use: {
            let text: String = row.try_get("key_use")?;
            KeyUse::parse(&text)
                .ok_or_else(|| sqlx::Error::Decode(format!("unknown key_use {text}").into()))?
        },
        state: row.try_get("state")?,
        public_jwk: row.try_get("public_jwk")?,
        private_key_enc: row.try_get("private_key_enc")?,
        created_at: row.try_get("created_at")?,
        activates_at: row.try_get("activates_at")?,
        retires_at: row.try_get("retires_at")?,
        removes_at: row.try_get("removes_at")?,
    })
}

/// Inserts one key and bumps the key-set version, inside the caller's
/// transaction.
async fn insert_key_row(tx: &mut Transaction<'static, Any>, key: &StoredKey) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO signing_keys (kid, alg, key_use, state, public_jwk, private_key_enc, \
         created_at, activates_at, retires_at, removes_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&key.kid)
    .bind(&key.alg)
    .bind(key.key_use.as_str())
    .bind(&key.state)
    .bind(&key.public_jwk)
    .bind(key.private_key_enc.clone())
    .bind(key.created_at)
    .bind(key.activates_at)
    .bind(key.retires_at)
    .bind(key.removes_at)
    .execute(&mut **tx)
    .await?;
    sqlx::query(BUMP_KEY_SET_VERSION)
        .bind(now_ms_for_version())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
