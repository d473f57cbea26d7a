//! Failed sign-ins per account name, for growing delays (not lockouts).

use sqlx::Row;

use super::*;

/// Failures allowed before delays start.
pub const FREE_FAILURES: i64 = 5;
/// The longest delay: a victim is slowed, never locked out.
pub const MAX_DELAY_MS: i64 = 60_000;
/// Consecutive wrong second factors before the factor check is locked
/// (NIST SP 800-63B §5.2.2 allows at most 100): at a minute per guess
/// after the first few, a six-digit code would otherwise fall within a
/// year.
pub const MAX_SECOND_FACTOR_FAILURES: i64 = 100;

/// The delay after `failures` failures: none for the first few, then
/// 1 s, 2 s, 4 s … up to a minute.
pub fn delay_ms(failures: i64) -> i64 {
    let over = failures - FREE_FAILURES;
    if over <= 0 {
        return 0;
    }
    let exp = u32::try_from(over - 1).unwrap_or(u32::MAX).min(16);
    (1_000i64 << exp).min(MAX_DELAY_MS)
}

impl Store {
    /// Counts an attempt at a second factor under `key` before it is
    /// checked (so concurrent guesses cannot all slip under the delay):
    /// refused with the time to wait while a delay runs, else the count so
    /// far. A success clears it. After `MAX_SECOND_FACTOR_FAILURES` the key
    /// is locked until an admin clears it (or a day without attempts).
    pub async fn reserve_attempt(&self, key: &str, now_ms: i64) -> sqlx::Result<Result<i64, i64>> {
        self.reserve(key, now_ms, Some(MAX_SECOND_FACTOR_FAILURES))
            .await
    }

    /// The same for a password under `email`, without the lock (a victim
    /// is slowed, never locked out): concurrent guesses cannot all slip
    /// through one open moment of the delay.
    pub async fn reserve_password_attempt(
        &self,
        email: &str,
        now_ms: i64,
    ) -> sqlx::Result<Result<i64, i64>> {
        self.reserve(email, now_ms, None).await
    }

    /// A reserved attempt that proved right: not a failure. The count goes
    /// back down and the door opens at once (a completed sign-in clears it).
    pub async fn release_attempt(&self, key: &str, now_ms: i64) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE login_failures SET \
             failures = CASE WHEN failures > 0 THEN failures - 1 ELSE 0 END, \
             delayed_until_ms = $1 WHERE email = $2",
        )
        .bind(now_ms)
        .bind(key)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn reserve(
        &self,
        key: &str,
        now_ms: i64,
        lock_after: Option<i64>,
    ) -> sqlx::Result<Result<i64, i64>> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO login_failures (email, failures, last_failure_at, delayed_until_ms) \
             VALUES ($1, 0, $2, 0) ON CONFLICT (email) DO NOTHING",
        )
        .bind(key)
        .bind(now_ms.div_euclid(1000))
        .execute(&mut *tx)
        .await?;
        let counted = sqlx::query(
            "UPDATE login_failures SET failures = failures + 1, last_failure_at = $1 \
             WHERE email = $2 AND delayed_until_ms <= $3 RETURNING failures",
        )
        .bind(now_ms.div_euclid(1000))
        .bind(key)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = counted else {
            let until: i64 =
                sqlx::query("SELECT delayed_until_ms FROM login_failures WHERE email = $1")
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("delayed_until_ms")?;
            tx.commit().await?;
            return Ok(Err(until));
        };
        let failures: i64 = row.try_get("failures")?;
        // This attempt is counted as failed until it succeeds: the delay
        // that a failure would cause applies to the next one at once.
        let until = if lock_after.is_some_and(|max| failures > max) {
            i64::MAX / 2
        } else {
            now_ms + delay_ms(failures)
        };
        sqlx::query("UPDATE login_failures SET delayed_until_ms = $1 WHERE email = $2")
            .bind(until)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ok(failures))
    }

    /// A success (or an admin) clears the count. Returns whether there was one.
    pub async fn clear_login_failures(&self, email: &str) -> sqlx::Result<bool> {
        Ok(sqlx::query("DELETE FROM login_failures WHERE email = $1")
            .bind(email)
            .execute(&self.writer)
            .await?
            .rows_affected()
            > 0)
    }

    /// Forgets counts untouched since `before` (seconds).
    pub async fn prune_login_failures(&self, before: i64) -> sqlx::Result<u64> {
        Ok(
            sqlx::query("DELETE FROM login_failures WHERE last_failure_at < $1")
                .bind(before)
                .execute(&self.writer)
                .await?
                .rows_affected(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        let delays: Vec<i64> = (0..=13).map(delay_ms).collect();
        assert_eq!(
            delays,
            vec![0, 0, 0, 0, 0, 0, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]
        );
        assert_eq!(delay_ms(i64::MAX), MAX_DELAY_MS);
    }
}
