//! Revocation records, in commit order, for the feed.

use auth_types::{RevocationKind, RevocationRecord};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::*;

/// A revocation to record, in the same transaction as the change that causes it.
#[derive(Debug, Clone)]
pub struct NewRevocation<'a> {
    pub kind: RevocationKind,
    pub subject: &'a str,
    pub issued_before: i64,
    pub created_at_ms: i64,
    pub expires_at: i64,
}

impl Store {
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

    /// The latest live `user_before` cut-off for `subject`: its tokens
    /// issued before it are revoked.
    pub async fn revoked_before(&self, subject: &str, now: i64) -> sqlx::Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MAX(issued_before) AS cutoff FROM revocations \
             WHERE kind = $1 AND subject = $2 AND expires_at > $3",
        )
        .bind(RevocationKind::UserBefore.as_str())
        .bind(subject)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        row.try_get("cutoff")
    }

    /// Whether one access token (by `jti`) was revoked.
    pub async fn token_revoked(&self, jti: &str, now: i64) -> sqlx::Result<bool> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM revocations WHERE kind = $1 AND subject = $2 \
             AND expires_at > $3",
        )
        .bind(RevocationKind::Token.as_str())
        .bind(jti)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
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
}

pub(super) async fn insert_revocation(
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

pub(super) fn revocation_from_row(row: &AnyRow) -> sqlx::Result<RevocationRecord> {
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
