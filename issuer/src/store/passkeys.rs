//! Passkeys and WebAuthn ceremony state.

use sqlx::Row;

use super::*;

#[derive(Debug, Clone)]
pub struct StoredPasskey {
    pub cred_id: String,
    pub user_id: String,
    pub name: String,
    /// webauthn-rs's `Passkey`, as JSON.
    pub passkey: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// Ceremonies pending at once, across users and replicas.
pub const MAX_CEREMONIES: i64 = 50_000;
/// Ceremonies pending at once for one client (network or user): its
/// oldest goes for a new one.
pub const MAX_CEREMONIES_PER_CLIENT: i64 = 20;

/// An order of starts finer than the second: `now` × 10^6 plus a counter.
fn start_order(now: i64) -> i64 {
    static STARTS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    now.saturating_mul(1_000_000) + n.rem_euclid(1_000_000)
}

/// Whether a ceremony was stored.
#[derive(Debug, PartialEq, Eq)]
pub enum Ceremony {
    Stored,
    /// `MAX_CEREMONIES` are pending in all.
    Full,
}

/// Passkeys one user may have.
pub const MAX_PASSKEYS: i64 = 20;

impl Store {
    /// Adds a passkey unless the user has `MAX_PASSKEYS` already or the
    /// credential is known. Returns whether it was added.
    pub async fn add_passkey(&self, p: &StoredPasskey) -> sqlx::Result<bool> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("UPDATE users SET id = id WHERE id = $1")
            .bind(&p.user_id)
            .execute(&mut *tx)
            .await?;
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM passkeys WHERE user_id = $1")
            .bind(&p.user_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if n >= MAX_PASSKEYS {
            return Ok(false);
        }
        let added = sqlx::query(
            "INSERT INTO passkeys (cred_id, user_id, name, passkey, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (cred_id) DO NOTHING",
        )
        .bind(&p.cred_id)
        .bind(&p.user_id)
        .bind(&p.name)
        .bind(&p.passkey)
        .bind(p.created_at)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        tx.commit().await?;
        Ok(added)
    }

    pub async fn passkeys_of(&self, user_id: &str) -> sqlx::Result<Vec<StoredPasskey>> {
        let rows = sqlx::query(
            "SELECT cred_id, user_id, name, passkey, created_at, last_used_at FROM passkeys \
             WHERE user_id = $1 ORDER BY created_at, cred_id",
        )
        .bind(user_id)
        .fetch_all(&self.writer)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredPasskey {
                    cred_id: r.try_get("cred_id")?,
                    user_id: r.try_get("user_id")?,
                    name: r.try_get("name")?,
                    passkey: r.try_get("passkey")?,
                    created_at: r.try_get("created_at")?,
                    last_used_at: r.try_get("last_used_at")?,
                })
            })
            .collect()
    }

    /// After a sign-in: the passkey's new counters (when they changed) and
    /// when it was used.
    pub async fn passkey_used(
        &self,
        cred_id: &str,
        passkey: Option<&str>,
        now: i64,
    ) -> sqlx::Result<()> {
        let q = match passkey {
            Some(p) => sqlx::query(
                "UPDATE passkeys SET passkey = $1, last_used_at = $2 WHERE cred_id = $3",
            )
            .bind(p.to_string()),
            None => sqlx::query("UPDATE passkeys SET last_used_at = $1 WHERE cred_id = $2"),
        };
        q.bind(now).bind(cred_id).execute(&self.writer).await?;
        Ok(())
    }

    pub async fn rename_passkey(
        &self,
        user_id: &str,
        cred_id: &str,
        name: &str,
    ) -> sqlx::Result<bool> {
        Ok(
            sqlx::query("UPDATE passkeys SET name = $1 WHERE user_id = $2 AND cred_id = $3")
                .bind(name)
                .bind(user_id)
                .bind(cred_id)
                .execute(&self.writer)
                .await?
                .rows_affected()
                == 1,
        )
    }

    pub async fn delete_passkey(&self, user_id: &str, cred_id: &str) -> sqlx::Result<bool> {
        Ok(
            sqlx::query("DELETE FROM passkeys WHERE user_id = $1 AND cred_id = $2")
                .bind(user_id)
                .bind(cred_id)
                .execute(&self.writer)
                .await?
                .rows_affected()
                == 1,
        )
    }

    /// Stores a ceremony unless `MAX_CEREMONIES` are pending (anyone may
    /// start a sign-in ceremony: the table must not grow without bound).
    /// A client (network or user) keeps at most `MAX_CEREMONIES_PER_CLIENT`:
    /// past that its oldest is dropped, so one client cannot take the table.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_ceremony(
        &self,
        id: &str,
        kind: &str,
        user_id: Option<&str>,
        client: &str,
        state: &str,
        now: i64,
        expires_at: i64,
    ) -> sqlx::Result<Ceremony> {
        let pending: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM webauthn_ceremonies WHERE expires_at > $1")
                .bind(now)
                .fetch_one(&self.writer)
                .await?
                .try_get("n")?;
        if pending >= MAX_CEREMONIES {
            return Ok(Ceremony::Full);
        }
        sqlx::query(
            "INSERT INTO webauthn_ceremonies \
             (id, kind, user_id, client, state, created_at, expires_at, started) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id)
        .bind(kind)
        .bind(user_id.map(str::to_string))
        .bind(client)
        .bind(state)
        .bind(now)
        .bind(expires_at)
        .bind(start_order(now))
        .execute(&self.writer)
        .await?;
        // Then the client keeps only its newest: one statement, so starts
        // racing each other still leave at most the cap.
        sqlx::query(
            "DELETE FROM webauthn_ceremonies WHERE client = $1 AND id NOT IN \
             (SELECT id FROM webauthn_ceremonies WHERE client = $1 \
              ORDER BY started DESC, id DESC LIMIT $2)",
        )
        .bind(client)
        .bind(MAX_CEREMONIES_PER_CLIENT)
        .execute(&self.writer)
        .await?;
        Ok(Ceremony::Stored)
    }

    /// Takes a live ceremony (once: it is deleted in the same statement).
    /// Returns its user and state.
    pub async fn take_ceremony(
        &self,
        id: &str,
        kind: &str,
        now: i64,
    ) -> sqlx::Result<Option<(Option<String>, String)>> {
        let row = sqlx::query(
            "DELETE FROM webauthn_ceremonies WHERE id = $1 AND kind = $2 AND expires_at > $3 \
             RETURNING user_id, state",
        )
        .bind(id)
        .bind(kind)
        .bind(now)
        .fetch_optional(&self.writer)
        .await?;
        row.map(|r| Ok((r.try_get("user_id")?, r.try_get("state")?)))
            .transpose()
    }

    pub async fn prune_ceremonies(&self, now: i64) -> sqlx::Result<u64> {
        Ok(
            sqlx::query("DELETE FROM webauthn_ceremonies WHERE expires_at < $1")
                .bind(now)
                .execute(&self.writer)
                .await?
                .rows_affected(),
        )
    }
}
