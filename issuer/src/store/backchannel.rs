//! Back-channel logout deliveries: one per ended session of a client that
//! registered a URI, claimed by pushing `next_at` ahead (so one replica
//! delivers it at a time), retried until delivered or given up.

use sqlx::{Any, Row, Transaction};

use super::*;

/// One logout token to deliver.
#[derive(Debug, Clone)]
pub struct LogoutDelivery {
    pub session_id: String,
    pub client_id: String,
    pub user_id: String,
    pub uri: String,
    /// Tries made before this one.
    pub attempts: i64,
    /// Claimed until then: the outcome is recorded only while the claim
    /// holds (another replica may have taken it over since).
    pub claimed_until: i64,
}

/// At most this many session ids in one statement.
const CHUNK: usize = 200;

/// Queues a delivery for each of these sessions that belongs to a client
/// with a back-channel URI (once per session), inside the transaction that
/// revokes them: a revocation that commits always has its logouts, whoever
/// made it (the API, the CLI) and even if the process stops right after,
/// and a user's deletion later in the same transaction cannot hide them.
pub(super) async fn queue_logouts(
    tx: &mut Transaction<'static, Any>,
    session_ids: &[String],
    now: i64,
) -> sqlx::Result<()> {
    for chunk in session_ids.chunks(CHUNK) {
        let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "INSERT INTO oauth_logout_deliveries \
             (session_id, client_id, user_id, uri, attempts, next_at, created_at) \
             SELECT s.id, s.client_id, s.user_id, c.backchannel_logout_uri, 0, $1, $1 \
             FROM sessions s JOIN oauth_clients c ON c.id = s.client_id \
             WHERE c.backchannel_logout_uri IS NOT NULL AND s.id IN ({}) \
             ON CONFLICT (session_id) DO NOTHING",
            list.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(now);
        for id in chunk {
            q = q.bind(id);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

impl Store {
    /// Claims up to `limit` due deliveries: each one's `next_at` moves to
    /// `lease_until`, so no other replica takes it meanwhile; an outcome
    /// recorded after the attempt replaces it.
    pub async fn claim_logouts(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<LogoutDelivery>> {
        let rows = sqlx::query(
            "SELECT session_id, client_id, user_id, uri, attempts, next_at \
             FROM oauth_logout_deliveries \
             WHERE delivered_at IS NULL AND failed_at IS NULL AND next_at <= $1 \
             ORDER BY next_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::new();
        for row in rows {
            let session_id: String = row.try_get("session_id")?;
            let next_at: i64 = row.try_get("next_at")?;
            let took = sqlx::query(
                "UPDATE oauth_logout_deliveries SET next_at = $1 \
                 WHERE session_id = $2 AND next_at = $3 AND delivered_at IS NULL \
                 AND failed_at IS NULL",
            )
            .bind(lease_until)
            .bind(&session_id)
            .bind(next_at)
            .execute(&self.writer)
            .await?
            .rows_affected();
            if took == 1 {
                claimed.push(LogoutDelivery {
                    session_id,
                    client_id: row.try_get("client_id")?,
                    user_id: row.try_get("user_id")?,
                    uri: row.try_get("uri")?,
                    attempts: row.try_get("attempts")?,
                    claimed_until: lease_until,
                });
            }
        }
        Ok(claimed)
    }

    pub async fn logout_delivered(&self, d: &LogoutDelivery, now: i64) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE oauth_logout_deliveries SET delivered_at = $1, attempts = attempts + 1 \
             WHERE session_id = $2 AND next_at = $3",
        )
        .bind(now)
        .bind(&d.session_id)
        .bind(d.claimed_until)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// A failed try: again at `retry_at`, or given up when that is `None`.
    pub async fn logout_failed(
        &self,
        d: &LogoutDelivery,
        now: i64,
        retry_at: Option<i64>,
    ) -> sqlx::Result<()> {
        let sql = match retry_at {
            Some(_) => {
                "UPDATE oauth_logout_deliveries SET attempts = attempts + 1, next_at = $1 \
                 WHERE session_id = $2 AND next_at = $3"
            }
            None => {
                "UPDATE oauth_logout_deliveries SET attempts = attempts + 1, failed_at = $1 \
                 WHERE session_id = $2 AND next_at = $3"
            }
        };
        sqlx::query(sql)
            .bind(retry_at.unwrap_or(now))
            .bind(&d.session_id)
            .bind(d.claimed_until)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Forgets deliveries finished (delivered or given up) before `before`.
    pub async fn prune_logouts(&self, before: i64) -> sqlx::Result<u64> {
        let done = sqlx::query(
            "DELETE FROM oauth_logout_deliveries \
             WHERE COALESCE(delivered_at, failed_at) < $1",
        )
        .bind(before)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }
}
