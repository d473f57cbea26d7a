//! Second factors: TOTP (sealed secret, newest accepted step), recovery
//! codes (hashed, single use) and the tickets between a first factor and
//! the second.

use sqlx::Row;

use super::*;

#[derive(Debug, Clone)]
pub struct TotpFactor {
    pub sealed_secret: String,
    pub confirmed_at: Option<i64>,
    pub last_step: i64,
}

#[derive(Debug, Clone)]
pub struct MfaTicket {
    pub user_id: String,
    /// How the first factor was proved (`pwd`, `fed`).
    pub amr: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MfaStatus {
    pub totp: bool,
    pub recovery_codes_left: i64,
    pub passkeys: i64,
}

impl MfaStatus {
    /// Whether the user has a second factor (a sign-in then needs one).
    pub fn any(&self) -> bool {
        self.totp || self.passkeys > 0
    }
}

/// Attempts one ticket allows.
pub const TICKET_ATTEMPTS: i64 = 5;

impl Store {
    /// Starts (or restarts) a TOTP enrolment. Refused (false) while a
    /// confirmed one exists: that must be removed first.
    pub async fn begin_totp(&self, user_id: &str, sealed: &str, now: i64) -> sqlx::Result<bool> {
        Ok(sqlx::query(
            "INSERT INTO mfa_totp (user_id, sealed_secret, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET sealed_secret = excluded.sealed_secret, \
             created_at = excluded.created_at, last_step = -1 \
             WHERE mfa_totp.confirmed_at IS NULL",
        )
        .bind(user_id)
        .bind(sealed)
        .bind(now)
        .execute(&self.writer)
        .await?
        .rows_affected()
            == 1)
    }

    pub async fn totp(&self, user_id: &str) -> sqlx::Result<Option<TotpFactor>> {
        let row = sqlx::query(
            "SELECT sealed_secret, confirmed_at, last_step FROM mfa_totp WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.writer)
        .await?;
        row.map(|r| {
            Ok(TotpFactor {
                sealed_secret: r.try_get("sealed_secret")?,
                confirmed_at: r.try_get("confirmed_at")?,
                last_step: r.try_get("last_step")?,
            })
        })
        .transpose()
    }

    /// Accepts time step `step` for the user's TOTP: a compare-and-set that
    /// only moves forward, so a step is accepted at most once (also across
    /// replicas and concurrent requests). With `confirm`, also activates an
    /// unconfirmed enrolment.
    /// `confirm` carries the time and the sealed secret the code was
    /// checked against: a secret replaced meanwhile is not activated.
    pub async fn accept_totp_step(
        &self,
        user_id: &str,
        step: i64,
        confirm: Option<(i64, &str)>,
    ) -> sqlx::Result<bool> {
        let q = match confirm {
            Some((now, sealed)) => sqlx::query(
                "UPDATE mfa_totp SET last_step = $1, confirmed_at = $2 \
                 WHERE user_id = $4 AND last_step < $1 AND confirmed_at IS NULL \
                 AND sealed_secret = $3",
            )
            .bind(step)
            .bind(now)
            .bind(sealed.to_string()),
            None => sqlx::query(
                "UPDATE mfa_totp SET last_step = $1 \
                 WHERE user_id = $2 AND last_step < $1 AND confirmed_at IS NOT NULL",
            )
            .bind(step),
        };
        Ok(q.bind(user_id).execute(&self.writer).await?.rows_affected() == 1)
    }

    /// Removes TOTP and the recovery codes, and with `passkeys` the
    /// passkeys too. Returns whether there was anything.
    pub async fn remove_mfa(&self, user_id: &str, passkeys: bool) -> sqlx::Result<bool> {
        let mut tx = self.writer.begin().await?;
        let keys = if passkeys {
            sqlx::query("DELETE FROM passkeys WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
        } else {
            0
        };
        let totp = sqlx::query("DELETE FROM mfa_totp WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let codes = sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(totp + codes + keys > 0)
    }

    /// Replaces the user's recovery codes (the old set stops working).
    pub async fn replace_recovery_codes(
        &self,
        user_id: &str,
        hashes: &[String],
        now: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        for h in hashes {
            sqlx::query(
                "INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)",
            )
            .bind(user_id)
            .bind(h)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Spends a recovery code (compare-and-set: once only).
    pub async fn use_recovery_code(
        &self,
        user_id: &str,
        hash: &str,
        now: i64,
    ) -> sqlx::Result<bool> {
        Ok(sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 \
             AND used_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .bind(hash)
        .execute(&self.writer)
        .await?
        .rows_affected()
            == 1)
    }

    pub async fn mfa_status(&self, user_id: &str) -> sqlx::Result<MfaStatus> {
        let totp = sqlx::query(
            "SELECT COUNT(*) AS n FROM mfa_totp WHERE user_id = $1 AND confirmed_at IS NOT NULL",
        )
        .bind(user_id)
        .fetch_one(&self.writer)
        .await?
        .try_get::<i64, _>("n")?;
        let codes = sqlx::query(
            "SELECT COUNT(*) AS n FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(&self.writer)
        .await?
        .try_get::<i64, _>("n")?;
        let passkeys = sqlx::query("SELECT COUNT(*) AS n FROM passkeys WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&self.writer)
            .await?
            .try_get::<i64, _>("n")?;
        Ok(MfaStatus {
            totp: totp > 0,
            recovery_codes_left: codes,
            passkeys,
        })
    }

    /// Users with an active second factor (for the daily report).
    pub async fn users_with_mfa(&self) -> sqlx::Result<i64> {
        sqlx::query(
            "SELECT COUNT(*) AS n FROM users u WHERE EXISTS (SELECT 1 FROM mfa_totp t \
             WHERE t.user_id = u.id AND t.confirmed_at IS NOT NULL) \
             OR EXISTS (SELECT 1 FROM passkeys p WHERE p.user_id = u.id)",
        )
        .fetch_one(&self.pool)
        .await?
        .try_get("n")
    }

    pub async fn create_mfa_ticket(
        &self,
        ticket_hash: &str,
        user_id: &str,
        amr: &str,
        now: i64,
        expires_at: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO mfa_tickets (ticket_hash, user_id, amr, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(ticket_hash)
        .bind(user_id)
        .bind(amr)
        .bind(now)
        .bind(expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Counts one attempt on a live ticket and returns it; `None` when the
    /// ticket is unknown, used, expired or out of attempts.
    pub async fn attempt_mfa_ticket(
        &self,
        ticket_hash: &str,
        now: i64,
    ) -> sqlx::Result<Option<MfaTicket>> {
        let counted = sqlx::query(
            "UPDATE mfa_tickets SET attempts = attempts + 1 WHERE ticket_hash = $1 \
             AND used_at IS NULL AND expires_at > $2 AND attempts < $3",
        )
        .bind(ticket_hash)
        .bind(now)
        .bind(TICKET_ATTEMPTS)
        .execute(&self.writer)
        .await?
        .rows_affected()
            == 1;
        if !counted {
            return Ok(None);
        }
        let row =
            sqlx::query("SELECT user_id, amr, created_at FROM mfa_tickets WHERE ticket_hash = $1")
                .bind(ticket_hash)
                .fetch_one(&self.writer)
                .await?;
        Ok(Some(MfaTicket {
            user_id: row.try_get("user_id")?,
            amr: row.try_get("amr")?,
            created_at: row.try_get("created_at")?,
        }))
    }

    /// A live ticket, without counting an attempt.
    pub async fn peek_mfa_ticket(
        &self,
        ticket_hash: &str,
        now: i64,
    ) -> sqlx::Result<Option<MfaTicket>> {
        let row = sqlx::query(
            "SELECT user_id, amr, created_at FROM mfa_tickets WHERE ticket_hash = $1 \
             AND used_at IS NULL AND expires_at > $2 AND attempts < $3",
        )
        .bind(ticket_hash)
        .bind(now)
        .bind(TICKET_ATTEMPTS)
        .fetch_optional(&self.writer)
        .await?;
        row.map(|r| {
            Ok(MfaTicket {
                user_id: r.try_get("user_id")?,
                amr: r.try_get("amr")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// Spends a ticket after its second factor passed (once only).
    pub async fn use_mfa_ticket(&self, ticket_hash: &str, now: i64) -> sqlx::Result<bool> {
        Ok(sqlx::query(
            "UPDATE mfa_tickets SET used_at = $1 WHERE ticket_hash = $2 AND used_at IS NULL \
             AND expires_at > $1",
        )
        .bind(now)
        .bind(ticket_hash)
        .execute(&self.writer)
        .await?
        .rows_affected()
            == 1)
    }

    pub async fn prune_mfa_tickets(&self, now: i64) -> sqlx::Result<u64> {
        Ok(sqlx::query("DELETE FROM mfa_tickets WHERE expires_at < $1")
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected())
    }
}
