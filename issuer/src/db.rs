//! Storage: one set of inline queries run on SQLite (embedded default) or
//! PostgreSQL (production) through sqlx's `Any` driver.
//!
//! Portability rules: ids are TEXT, times are BIGINT Unix seconds (`_ms`
//! columns are milliseconds), flags are nullable timestamps, placeholders are
//! `$N` (both backends accept them).

use std::time::Duration;

use auth_types::{RevocationKind, RevocationRecord};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Row, Transaction};

use crate::rotation::{KeyChange, RotationError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// Writes go here. SQLite has one writer at a time: a one-connection
    /// pool queues writers fairly instead of letting them spin on
    /// SQLITE_BUSY (which cost refreshes a p99 of ~80 ms at 8 concurrent).
    /// With PostgreSQL it is the same pool.
    writer: AnyPool,
    backend: Backend,
    /// Serialises key changes within this process (SQLite's only writer);
    /// PostgreSQL replicas also take an advisory lock.
    key_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub password_hash: String,
    pub roles: Vec<String>,
    pub created_at: i64,
    pub password_changed_at: i64,
    pub disabled_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub created_at: i64,
    pub last_used_at: i64,
    pub idle_expires_at: i64,
    pub absolute_expires_at: i64,
    pub revoked_at: Option<i64>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub amr: String,
}

impl Session {
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && now < self.idle_expires_at && now < self.absolute_expires_at
    }
}

pub struct NewSession<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub now: i64,
    pub idle_expires_at: i64,
    pub absolute_expires_at: i64,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub amr: &'a str,
    pub refresh_hash: &'a str,
}

#[derive(Debug, Clone)]
pub struct RefreshLookup {
    pub session: Session,
    pub rotated_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    pub state: String,
    pub public_jwk: String,
    pub private_key_enc: Vec<u8>,
    pub created_at: i64,
    pub activates_at: i64,
    pub retires_at: Option<i64>,
    pub removes_at: Option<i64>,
}

/// A revocation to record, in the same transaction as the change that causes it.
#[derive(Debug, Clone)]
pub struct NewRevocation<'a> {
    pub kind: RevocationKind,
    pub subject: &'a str,
    pub issued_before: i64,
    pub created_at_ms: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    pub at: i64,
    pub event: &'a str,
    pub user_id: Option<&'a str>,
    pub email: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub detail: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("email already registered")]
    EmailTaken,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

const USER_COLUMNS: &str =
    "id, email, name, password_hash, roles, created_at, password_changed_at, disabled_at";
const SESSION_COLUMNS: &str = "s.id, s.user_id, s.created_at, s.last_used_at, s.idle_expires_at, \
     s.absolute_expires_at, s.revoked_at, s.ip, s.user_agent, s.amr";
const KEY_COLUMNS: &str =
    "kid, alg, state, public_jwk, private_key_enc, created_at, activates_at, \
     retires_at, removes_at";

impl Store {
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if url.starts_with("sqlite:") {
            (Backend::Sqlite, prepare_sqlite_url(url)?)
        } else {
            (Backend::Postgres, url.to_string())
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&url)
            .await?;
        let writer = if backend == Backend::Sqlite {
            // WAL lets readers proceed while a writer commits; it persists in the file.
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await?;
            AnyPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect(&url)
                .await?
        } else {
            pool.clone()
        };
        Ok(Store {
            pool,
            writer,
            backend,
            key_lock: Default::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self.backend {
            Backend::Sqlite => {
                sqlx::migrate!("../migrations/sqlite")
                    .run(&self.writer)
                    .await?
            }
            Backend::Postgres => {
                sqlx::migrate!("../migrations/postgres")
                    .run(&self.writer)
                    .await?
            }
        }
        Ok(())
    }

    pub async fn ping(&self) -> sqlx::Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }

    // ---- users ----

    pub async fn create_user(&self, user: &User) -> Result<(), CreateUserError> {
        let result = sqlx::query(
            "INSERT INTO users (id, email, name, password_hash, roles, created_at, password_changed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&user.id)
        .bind(&user.email)
        .bind(user.name.clone())
        .bind(&user.password_hash)
        .bind(user.roles.join(" "))
        .bind(user.created_at)
        .bind(user.password_changed_at)
        .execute(&self.writer)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(CreateUserError::EmailTaken)
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn user_by_email(&self, email: &str) -> sqlx::Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
        let row = sqlx::query(&sql)
            .bind(email)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn user_by_id(&self, id: &str) -> sqlx::Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Replaces a hash with a stronger one of the same password (legacy bcrypt,
    /// old argon2 parameters); only if the hash is still the one verified.
    pub async fn upgrade_password_hash(
        &self,
        user_id: &str,
        old_hash: &str,
        new_hash: &str,
    ) -> sqlx::Result<bool> {
        let done =
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3")
                .bind(new_hash)
                .bind(user_id)
                .bind(old_hash)
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets a new password, ends every session of the user and records the
    /// revocations, all in one transaction.
    pub async fn change_password(
        &self,
        user_id: &str,
        new_hash: &str,
        now_ms: i64,
        revocation_expires_at: i64,
    ) -> sqlx::Result<Vec<RevocationRecord>> {
        let now = now_ms.div_euclid(1000);
        let mut tx = self.begin_revoking().await?;
        sqlx::query("UPDATE users SET password_hash = $1, password_changed_at = $2 WHERE id = $3")
            .bind(new_hash)
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let mut records = revoke_user_sessions(
            &mut tx,
            user_id,
            "password_changed",
            now_ms,
            revocation_expires_at,
        )
        .await?;
        records.push(
            insert_revocation(
                &mut tx,
                &NewRevocation {
                    kind: RevocationKind::UserBefore,
                    subject: user_id,
                    issued_before: now,
                    created_at_ms: now_ms,
                    expires_at: revocation_expires_at,
                },
            )
            .await?,
        );
        tx.commit().await?;
        Ok(records)
    }

    pub async fn set_roles(&self, user_id: &str, roles: &[String]) -> sqlx::Result<bool> {
        let done = sqlx::query("UPDATE users SET roles = $1 WHERE id = $2")
            .bind(roles.join(" "))
            .bind(user_id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- sessions and refresh tokens ----

    pub async fn create_session(&self, s: &NewSession<'_>) -> sqlx::Result<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, created_at, last_used_at, idle_expires_at, \
             absolute_expires_at, ip, user_agent, amr) VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8)",
        )
        .bind(s.id)
        .bind(s.user_id)
        .bind(s.now)
        .bind(s.idle_expires_at)
        .bind(s.absolute_expires_at)
        .bind(s.ip.map(str::to_string))
        .bind(s.user_agent.map(str::to_string))
        .bind(s.amr)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES ($1, $2, $3)",
        )
        .bind(s.refresh_hash)
        .bind(s.id)
        .bind(s.now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    pub async fn session(&self, id: &str) -> sqlx::Result<Option<Session>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    pub async fn live_sessions(&self, user_id: &str, now: i64) -> sqlx::Result<Vec<Session>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.user_id = $1 AND s.revoked_at IS NULL \
             AND s.idle_expires_at > $2 AND s.absolute_expires_at > $2 ORDER BY s.created_at DESC, s.id"
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(session_from_row).collect()
    }

    pub async fn find_refresh(&self, token_hash: &str) -> sqlx::Result<Option<RefreshLookup>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS}, r.rotated_at FROM refresh_tokens r \
             JOIN sessions s ON s.id = r.session_id WHERE r.token_hash = $1"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(RefreshLookup {
            session: session_from_row(&row)?,
            rotated_at: row.try_get("rotated_at")?,
        }))
    }

    /// Marks `old_hash` rotated and stores `new_hash`, only if `old_hash` was
    /// not rotated already: of two concurrent refreshes exactly one wins.
    pub async fn rotate_refresh(
        &self,
        session_id: &str,
        old_hash: &str,
        new_hash: &str,
        now: i64,
        idle_expires_at: i64,
    ) -> sqlx::Result<bool> {
        let mut tx = self.writer.begin().await?;
        let won = sqlx::query(
            "UPDATE refresh_tokens SET rotated_at = $1 WHERE token_hash = $2 AND rotated_at IS NULL",
        )
        .bind(now)
        .bind(old_hash)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !won {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES ($1, $2, $3)",
        )
        .bind(new_hash)
        .bind(session_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE sessions SET last_used_at = $1, idle_expires_at = $2 \
             WHERE id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(idle_expires_at)
        .bind(session_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Ends a session and records its revocation; `None` if it had already ended.
    pub async fn revoke_session(
        &self,
        session_id: &str,
        reason: &str,
        now_ms: i64,
        revocation_expires_at: i64,
    ) -> sqlx::Result<Option<RevocationRecord>> {
        let mut tx = self.begin_revoking().await?;
        let record =
            revoke_one_session(&mut tx, session_id, reason, now_ms, revocation_expires_at).await?;
        tx.commit().await?;
        Ok(record)
    }

    pub async fn revoke_all_sessions(
        &self,
        user_id: &str,
        reason: &str,
        now_ms: i64,
        revocation_expires_at: i64,
    ) -> sqlx::Result<Vec<RevocationRecord>> {
        let mut tx = self.begin_revoking().await?;
        let records =
            revoke_user_sessions(&mut tx, user_id, reason, now_ms, revocation_expires_at).await?;
        tx.commit().await?;
        Ok(records)
    }

    /// A transaction that may write revocation records. On PostgreSQL it holds
    /// an advisory lock so sequence numbers commit in order: a follower reading
    /// "after seq N" can then never miss a record that commits later with a
    /// smaller number. SQLite serialises writers anyway.
    async fn begin_revoking(&self) -> sqlx::Result<Transaction<'static, Any>> {
        let mut tx = self.writer.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7283001)")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    // ---- revocations ----

    pub async fn record_revocation(
        &self,
        revocation: &NewRevocation<'_>,
    ) -> sqlx::Result<RevocationRecord> {
        let mut tx = self.begin_revoking().await?;
        let record = insert_revocation(&mut tx, revocation).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Many records in one transaction (bulk imports, benchmarks).
    pub async fn record_revocations(
        &self,
        revocations: &[NewRevocation<'_>],
    ) -> sqlx::Result<Vec<RevocationRecord>> {
        let mut tx = self.begin_revoking().await?;
        let mut records = Vec::with_capacity(revocations.len());
        for r in revocations {
            records.push(insert_revocation(&mut tx, r).await?);
        }
        tx.commit().await?;
        Ok(records)
    }

    /// Live records (not yet expired) with a sequence number above `after`, in order.
    pub async fn revocations_after(
        &self,
        after: i64,
        now: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<RevocationRecord>> {
        let rows = sqlx::query(
            "SELECT seq, kind, subject, issued_before, created_at_ms, expires_at FROM revocations \
             WHERE seq > $1 AND expires_at > $2 ORDER BY seq LIMIT $3",
        )
        .bind(after)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(revocation_from_row).collect()
    }

    pub async fn last_revocation_seq(&self) -> sqlx::Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS last FROM revocations")
            .fetch_one(&self.pool)
            .await?;
        row.try_get("last")
    }

    /// Deletes revocation records whose tokens have all expired, and refresh
    /// tokens of sessions that ended long ago. Returns records deleted.
    pub async fn prune(&self, now: i64, keep_rotated_secs: i64) -> sqlx::Result<u64> {
        let gone = sqlx::query("DELETE FROM revocations WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected();
        sqlx::query(
            "DELETE FROM sessions WHERE absolute_expires_at <= $1 OR idle_expires_at <= $1 \
             OR (revoked_at IS NOT NULL AND revoked_at <= $1)",
        )
        .bind(now - keep_rotated_secs)
        .execute(&self.writer)
        .await?;
        Ok(gone)
    }

    // ---- signing keys ----

    pub async fn insert_key(&self, key: &StoredKey) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, state, public_jwk, private_key_enc, created_at, \
             activates_at, retires_at, removes_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.state)
        .bind(&key.public_jwk)
        .bind(key.private_key_enc.clone())
        .bind(key.created_at)
        .bind(key.activates_at)
        .bind(key.retires_at)
        .bind(key.removes_at)
        .execute(&self.writer)
        .await?;
        Ok(())
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
        let existing: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM signing_keys WHERE state = 'current'")
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
        if existing > 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, state, public_jwk, private_key_enc, created_at, \
             activates_at, retires_at, removes_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.state)
        .bind(&key.public_jwk)
        .bind(key.private_key_enc.clone())
        .bind(key.created_at)
        .bind(key.activates_at)
        .bind(key.retires_at)
        .bind(key.removes_at)
        .execute(&mut *tx)
        .await?;
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
                    "INSERT INTO signing_keys (kid, alg, state, public_jwk, private_key_enc, created_at, \
                     activates_at, retires_at, removes_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(key.kid.clone())
                .bind(key.alg.clone())
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
        tx.commit().await.map_err(db)?;
        Ok(changes)
    }

    // ---- audit ----

    pub async fn audit(&self, entry: &AuditEntry<'_>) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (at, event, user_id, email, ip, detail) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(entry.at)
        .bind(entry.event)
        .bind(entry.user_id.map(str::to_string))
        .bind(entry.email.map(str::to_string))
        .bind(entry.ip.map(str::to_string))
        .bind(entry.detail.map(str::to_string))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Most recent audit events, newest first (for tests and admins).
    pub async fn audit_events(&self, user_id: &str) -> sqlx::Result<Vec<String>> {
        let rows = sqlx::query("SELECT event FROM audit_log WHERE user_id = $1 ORDER BY id DESC")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| r.try_get("event")).collect()
    }
}

async fn revoke_one_session(
    tx: &mut Transaction<'static, Any>,
    session_id: &str,
    reason: &str,
    now_ms: i64,
    revocation_expires_at: i64,
) -> sqlx::Result<Option<RevocationRecord>> {
    let ended = sqlx::query(
        "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL",
    )
    .bind(now_ms.div_euclid(1000))
    .bind(reason)
    .bind(session_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if ended == 0 {
        return Ok(None);
    }
    let record = insert_revocation(
        tx,
        &NewRevocation {
            kind: RevocationKind::Session,
            subject: session_id,
            issued_before: 0,
            created_at_ms: now_ms,
            expires_at: revocation_expires_at,
        },
    )
    .await?;
    Ok(Some(record))
}

async fn revoke_user_sessions(
    tx: &mut Transaction<'static, Any>,
    user_id: &str,
    reason: &str,
    now_ms: i64,
    revocation_expires_at: i64,
) -> sqlx::Result<Vec<RevocationRecord>> {
    let ids: Vec<String> = sqlx::query(
        "SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL ORDER BY id",
    )
    .bind(user_id)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|r| r.try_get("id"))
    .collect::<Result<_, _>>()?;
    let mut records = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(r) = revoke_one_session(tx, &id, reason, now_ms, revocation_expires_at).await? {
            records.push(r);
        }
    }
    Ok(records)
}

async fn insert_revocation(
    tx: &mut Transaction<'static, Any>,
    r: &NewRevocation<'_>,
) -> sqlx::Result<RevocationRecord> {
    let row = sqlx::query(
        "INSERT INTO revocations (kind, subject, issued_before, created_at_ms, expires_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING seq",
    )
    .bind(r.kind.as_str())
    .bind(r.subject)
    .bind(r.issued_before)
    .bind(r.created_at_ms)
    .bind(r.expires_at)
    .fetch_one(&mut **tx)
    .await?;
    Ok(RevocationRecord {
        seq: row.try_get("seq")?,
        kind: r.kind,
        subject: r.subject.to_string(),
        issued_before: r.issued_before,
        created_at_ms: r.created_at_ms,
        expires_at: r.expires_at,
    })
}

fn prepare_sqlite_url(url: &str) -> anyhow::Result<String> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let file = path.split('?').next().unwrap_or_default();
    if file != ":memory:" && !file.is_empty() {
        if let Some(parent) = std::path::Path::new(file).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)?;
            }
        }
    }
    // Create the file on first start.
    Ok(if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

fn user_from_row(row: &AnyRow) -> sqlx::Result<User> {
    let roles: String = row.try_get("roles")?;
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        password_hash: row.try_get("password_hash")?,
        roles: roles.split_whitespace().map(str::to_string).collect(),
        created_at: row.try_get("created_at")?,
        password_changed_at: row.try_get("password_changed_at")?,
        disabled_at: row.try_get("disabled_at")?,
    })
}

fn session_from_row(row: &AnyRow) -> sqlx::Result<Session> {
    Ok(Session {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        idle_expires_at: row.try_get("idle_expires_at")?,
        absolute_expires_at: row.try_get("absolute_expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
        amr: row.try_get("amr")?,
    })
}

fn key_from_row(row: &AnyRow) -> sqlx::Result<StoredKey> {
    Ok(StoredKey {
        kid: row.try_get("kid")?,
        alg: row.try_get("alg")?,
        state: row.try_get("state")?,
        public_jwk: row.try_get("public_jwk")?,
        private_key_enc: row.try_get("private_key_enc")?,
        created_at: row.try_get("created_at")?,
        activates_at: row.try_get("activates_at")?,
        retires_at: row.try_get("retires_at")?,
        removes_at: row.try_get("removes_at")?,
    })
}

fn revocation_from_row(row: &AnyRow) -> sqlx::Result<RevocationRecord> {
    let kind: String = row.try_get("kind")?;
    Ok(RevocationRecord {
        seq: row.try_get("seq")?,
        kind: RevocationKind::parse(&kind)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown revocation kind {kind}").into()))?,
        subject: row.try_get("subject")?,
        issued_before: row.try_get("issued_before")?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at: row.try_get("expires_at")?,
    })
}
