//! The audit trail.

use sqlx::Row;

use super::*;

#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    pub at: i64,
    pub event: &'a str,
    pub user_id: Option<&'a str>,
    pub email: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub detail: Option<&'a str>,
}

impl Store {
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

    /// The newest `limit` event names of everyone, newest first.
    pub async fn recent_audit_events(&self, limit: i64) -> sqlx::Result<Vec<String>> {
        let rows = sqlx::query("SELECT event FROM audit_log ORDER BY id DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| r.try_get("event")).collect()
    }

    /// Deletes audit entries older than `before` (retention). Returns how many.
    pub async fn prune_audit(&self, before: i64) -> sqlx::Result<u64> {
        Ok(sqlx::query("DELETE FROM audit_log WHERE at < $1")
            .bind(before)
            .execute(&self.writer)
            .await?
            .rows_affected())
    }
}
