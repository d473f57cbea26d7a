//! Services' use of their grants, per day, added in batches.

use sqlx::Row;

use super::Store;

/// Uses of one client on one day since the last batch.
#[derive(Debug, Clone)]
pub struct UsageDelta {
    pub client_id: String,
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub uses: i64,
    /// Unix seconds.
    pub last_used_at: i64,
}

impl Store {
    /// Adds a batch of counts, in one transaction; counts of a client
    /// deleted meanwhile are dropped.
    pub async fn add_client_usage(&self, deltas: &[UsageDelta]) -> sqlx::Result<()> {
        let mut tx = self.writer.begin().await?;
        for d in deltas {
            sqlx::query(
                "INSERT INTO client_usage (client_id, day, uses) \
                 SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM oauth_clients WHERE id = $1) \
                 ON CONFLICT (client_id, day) DO UPDATE SET uses = client_usage.uses + excluded.uses",
            )
            .bind(&d.client_id)
            .bind(&d.day)
            .bind(d.uses)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE oauth_clients SET last_used_at = $2 WHERE id = $1 \
                 AND (last_used_at IS NULL OR last_used_at < $2)",
            )
            .bind(&d.client_id)
            .bind(d.last_used_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// A client's uses per day, the latest `days` days that have any,
    /// newest first.
    pub async fn client_usage(
        &self,
        client_id: &str,
        days: i64,
    ) -> sqlx::Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT day, uses FROM client_usage WHERE client_id = $1 ORDER BY day DESC LIMIT $2",
        )
        .bind(client_id)
        .bind(days)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("day")?, r.try_get("uses")?)))
            .collect()
    }
}
