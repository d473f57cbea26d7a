//! Mail: the outbox (claimed by lease, so each mail is sent by one replica),
//! single-use emailed tokens, and the devices a user has signed in from.

use auth_types::RevocationRecord;
use sqlx::Row;

use super::users::set_password;

use super::*;

/// Devices remembered per user.
const MAX_DEVICES: usize = 50;

/// A mail to enqueue. Bodies arrive sealed (they may hold a reset link).
#[derive(Debug, Clone)]
pub struct NewMail<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    pub sealed_body: &'a str,
    pub now_ms: i64,
}

#[derive(Debug, Clone)]
pub struct OutboxMail {
    pub id: String,
    pub kind: String,
    pub to: String,
    pub subject: String,
    pub sealed_body: String,
    pub attempts: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxCounts {
    pub pending: i64,
    pub failed: i64,
}

/// What an emailed token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    VerifyEmail,
    ResetPassword,
}

impl TokenPurpose {
    fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::VerifyEmail => "verify_email",
            TokenPurpose::ResetPassword => "reset_password",
        }
    }
}

/// A token that was valid and is now spent.
#[derive(Debug, Clone)]
pub struct SpentToken {
    pub user_id: String,
    pub email: String,
    /// This spend proved the address for the first time.
    pub first_proof: bool,
}

impl Store {
    pub async fn enqueue_mail(&self, m: &NewMail<'_>) -> sqlx::Result<()> {
        // The sealed text goes in text_body; html_body stays empty (both
        // bodies are inside the one sealed blob).
        sqlx::query(
            "INSERT INTO mail_outbox (id, created_at_ms, kind, to_addr, subject, text_body, \
             html_body, next_attempt_at_ms) VALUES ($1, $2, $3, $4, $5, $6, '', $2)",
        )
        .bind(m.id)
        .bind(m.now_ms)
        .bind(m.kind)
        .bind(m.to)
        .bind(m.subject)
        .bind(m.sealed_body)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Claims up to `limit` due mails for `owner` until `lease_until_ms`.
    /// Each claim is a compare-and-set, so two replicas never both hold one.
    pub async fn claim_mail(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<OutboxMail>> {
        let candidates = sqlx::query(
            "SELECT id FROM mail_outbox WHERE sent_at_ms IS NULL AND failed_at_ms IS NULL \
             AND next_attempt_at_ms <= $1 AND (lease_until_ms IS NULL OR lease_until_ms < $1) \
             ORDER BY next_attempt_at_ms LIMIT $2",
        )
        .bind(now_ms)
        // More candidates than wanted: another replica may win some.
        .bind(limit.saturating_mul(4).max(8))
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::new();
        for row in candidates {
            if claimed.len() as i64 >= limit {
                break;
            }
            let id: String = row.try_get("id")?;
            let taken = sqlx::query(
                "UPDATE mail_outbox SET lease_owner = $1, lease_until_ms = $2 WHERE id = $3 \
                 AND sent_at_ms IS NULL AND failed_at_ms IS NULL AND next_attempt_at_ms <= $4 \
                 AND (lease_until_ms IS NULL OR lease_until_ms < $4)",
            )
            .bind(owner)
            .bind(lease_until_ms)
            .bind(&id)
            .bind(now_ms)
            .execute(&self.writer)
            .await?
            .rows_affected()
                == 1;
            if !taken {
                continue;
            }
            let r = sqlx::query(
                "SELECT id, kind, to_addr, subject, text_body, attempts FROM mail_outbox WHERE id = $1",
            )
            .bind(&id)
            .fetch_one(&self.writer)
            .await?;
            claimed.push(OutboxMail {
                id: r.try_get("id")?,
                kind: r.try_get("kind")?,
                to: r.try_get("to_addr")?,
                subject: r.try_get("subject")?,
                sealed_body: r.try_get("text_body")?,
                attempts: r.try_get("attempts")?,
            });
        }
        Ok(claimed)
    }

    /// Marks a claimed mail sent and forgets its body.
    pub async fn mail_sent(&self, id: &str, owner: &str, now_ms: i64) -> sqlx::Result<bool> {
        Ok(sqlx::query(
            "UPDATE mail_outbox SET sent_at_ms = $1, text_body = '', attempts = attempts + 1, \
             lease_owner = NULL, lease_until_ms = NULL, last_error = NULL \
             WHERE id = $2 AND lease_owner = $3",
        )
        .bind(now_ms)
        .bind(id)
        .bind(owner)
        .execute(&self.writer)
        .await?
        .rows_affected()
            == 1)
    }

    /// Records a failed delivery: retried at `retry_at_ms`, or given up
    /// (`None`), when the body is forgotten too.
    pub async fn mail_failed(
        &self,
        id: &str,
        owner: &str,
        error: &str,
        retry_at_ms: Option<i64>,
        now_ms: i64,
    ) -> sqlx::Result<()> {
        let error: String = error.chars().take(500).collect();
        let q = match retry_at_ms {
            Some(at) => sqlx::query(
                "UPDATE mail_outbox SET attempts = attempts + 1, next_attempt_at_ms = $1, \
                 last_error = $2, lease_owner = NULL, lease_until_ms = NULL \
                 WHERE id = $3 AND lease_owner = $4",
            )
            .bind(at),
            None => sqlx::query(
                "UPDATE mail_outbox SET attempts = attempts + 1, failed_at_ms = $1, \
                 text_body = '', last_error = $2, lease_owner = NULL, lease_until_ms = NULL \
                 WHERE id = $3 AND lease_owner = $4",
            )
            .bind(now_ms),
        };
        q.bind(error)
            .bind(id)
            .bind(owner)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn outbox_counts(&self) -> sqlx::Result<OutboxCounts> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(CASE WHEN sent_at_ms IS NULL AND failed_at_ms IS NULL THEN 1 ELSE 0 END), 0) AS pending, \
             COALESCE(SUM(CASE WHEN failed_at_ms IS NOT NULL THEN 1 ELSE 0 END), 0) AS failed FROM mail_outbox",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(OutboxCounts {
            pending: row.try_get("pending")?,
            failed: row.try_get("failed")?,
        })
    }

    /// Forgets mail finished before `before_ms`, and spent or expired tokens.
    pub async fn prune_mail(&self, before_ms: i64, now: i64) -> sqlx::Result<u64> {
        let mail =
            sqlx::query("DELETE FROM mail_outbox WHERE COALESCE(sent_at_ms, failed_at_ms) < $1")
                .bind(before_ms)
                .execute(&self.writer)
                .await?
                .rows_affected();
        // Kept a day past expiry: the hourly mail caps count them.
        let tokens = sqlx::query("DELETE FROM email_tokens WHERE expires_at < $1")
            .bind(now - 86_400)
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(mail + tokens)
    }

    /// Creates a token unless the user already got `max` of this purpose
    /// since `since`; returns whether it did. The user's row is locked
    /// first, so concurrent requests (on any replica) cannot both slip
    /// under the limit.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_email_token(
        &self,
        token_hash: &str,
        user: &User,
        purpose: TokenPurpose,
        now: i64,
        expires_at: i64,
        since: i64,
        max: i64,
    ) -> sqlx::Result<bool> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("UPDATE users SET id = id WHERE id = $1")
            .bind(&user.id)
            .execute(&mut *tx)
            .await?;
        let recent: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM email_tokens WHERE user_id = $1 AND purpose = $2 \
             AND created_at >= $3",
        )
        .bind(&user.id)
        .bind(purpose.as_str())
        .bind(since)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if recent >= max {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO email_tokens (token_hash, user_id, purpose, email, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash)
        .bind(&user.id)
        .bind(purpose.as_str())
        .bind(&user.email)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Whether a token is live (unspent, unexpired, for the address its
    /// account still has, which is not disabled), without spending it.
    pub async fn peek_email_token(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: i64,
    ) -> sqlx::Result<Option<SpentToken>> {
        let row = sqlx::query(LIVE_TOKEN)
            .bind(token_hash)
            .bind(purpose.as_str())
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| spent_token(&r)).transpose()
    }

    /// Spends a token (see [`spend`]).
    pub async fn spend_email_token(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: i64,
    ) -> sqlx::Result<Option<SpentToken>> {
        let mut tx = self.writer.begin().await?;
        let spent = spend(&mut tx, token_hash, purpose, now).await?;
        if spent.is_some() {
            tx.commit().await?;
        }
        Ok(spent)
    }

    /// Spends a reset token and sets the password in one transaction: the
    /// link is never spent without the password changing, nor the reverse.
    pub async fn reset_password(
        &self,
        token_hash: &str,
        new_hash: &str,
        now_ms: i64,
        revocation_expires_at: i64,
    ) -> sqlx::Result<Option<(SpentToken, Vec<RevocationRecord>)>> {
        let mut tx = self.begin_revoking().await?;
        let now = now_ms.div_euclid(1000);
        let Some(spent) = spend(&mut tx, token_hash, TokenPurpose::ResetPassword, now).await?
        else {
            return Ok(None);
        };
        let records = set_password(
            &mut tx,
            &spent.user_id,
            new_hash,
            now_ms,
            revocation_expires_at,
        )
        .await?;
        if spent.first_proof {
            // Whoever set these up had not proved the mailbox: they may
            // have registered the address before its owner did.
            for table in ["mfa_totp", "recovery_codes", "passkeys", "identities"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                    .bind(&spent.user_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(Some((spent, records)))
    }

    /// Records a sign-in from a device. Returns true when the device is new
    /// to a user who had signed in from another before.
    pub async fn note_device(
        &self,
        user_id: &str,
        device_hash: &str,
        now: i64,
    ) -> sqlx::Result<bool> {
        let mut tx = self.writer.begin().await?;
        let known = sqlx::query("SELECT device_hash FROM known_devices WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(&mut *tx)
            .await?;
        let mut seen = false;
        for r in &known {
            let h: String = r.try_get("device_hash")?;
            seen |= h == device_hash;
        }
        if !seen && known.len() >= MAX_DEVICES {
            // Bounded per user: the least recently seen device is forgotten.
            sqlx::query(
                "DELETE FROM known_devices WHERE user_id = $1 AND device_hash = \
                 (SELECT device_hash FROM known_devices WHERE user_id = $1 \
                 ORDER BY last_seen_at, device_hash LIMIT 1)",
            )
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        }
        if seen {
            sqlx::query(
                "UPDATE known_devices SET last_seen_at = $1 WHERE user_id = $2 AND device_hash = $3",
            )
            .bind(now)
            .bind(user_id)
            .bind(device_hash)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "INSERT INTO known_devices (user_id, device_hash, first_seen_at, last_seen_at) \
                 VALUES ($1, $2, $3, $3) ON CONFLICT (user_id, device_hash) DO UPDATE \
                 SET last_seen_at = excluded.last_seen_at",
            )
            .bind(user_id)
            .bind(device_hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(!seen && !known.is_empty())
    }
}

const LIVE_TOKEN: &str =
    "SELECT t.user_id, t.email FROM email_tokens t JOIN users u ON u.id = t.user_id \
     WHERE t.token_hash = $1 AND t.purpose = $2 AND t.used_at IS NULL AND t.expires_at > $3 \
     AND u.email = t.email AND u.disabled_at IS NULL";

fn spent_token(r: &sqlx::any::AnyRow) -> sqlx::Result<SpentToken> {
    Ok(SpentToken {
        user_id: r.try_get("user_id")?,
        email: r.try_get("email")?,
        first_proof: false,
    })
}

/// Spends a live token inside `tx`: a compare-and-set on `used_at`, so of
/// two concurrent uses one wins. It spends the user's other tokens of that
/// purpose too, and marks the address verified (either kind of token proves
/// the mailbox is the user's).
async fn spend(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    token_hash: &str,
    purpose: TokenPurpose,
    now: i64,
) -> sqlx::Result<Option<SpentToken>> {
    let Some(row) = sqlx::query(LIVE_TOKEN)
        .bind(token_hash)
        .bind(purpose.as_str())
        .bind(now)
        .fetch_optional(&mut **tx)
        .await?
    else {
        return Ok(None);
    };
    let token = spent_token(&row)?;
    let won = sqlx::query(
        "UPDATE email_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL \
         AND expires_at > $1",
    )
    .bind(now)
    .bind(token_hash)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if !won {
        return Ok(None);
    }
    sqlx::query(
        "UPDATE email_tokens SET used_at = $1 WHERE user_id = $2 AND purpose = $3 \
         AND used_at IS NULL",
    )
    .bind(now)
    .bind(&token.user_id)
    .bind(purpose.as_str())
    .execute(&mut **tx)
    .await?;
    let first_proof = sqlx::query(
        "UPDATE users SET email_verified_at = $1 WHERE id = $2 AND email = $3 \
         AND email_verified_at IS NULL",
    )
    .bind(now)
    .bind(&token.user_id)
    .bind(&token.email)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    Ok(Some(SpentToken {
        first_proof,
        ..token
    }))
}
