//! Personal access tokens: a name, a hash and the last use beside a
//! session of their own (same id), which holds the scope, expiry and
//! revocation.

use sqlx::Row;

use super::sessions::{insert_session, session_from_row, SESSION_COLUMNS};
use super::*;

/// A token as its owner sees it (never the token itself).
#[derive(Debug, Clone)]
pub struct PersonalToken {
    pub id: String,
    pub name: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
}

impl Store {
    /// The session and the token in one transaction. `false` (nothing
    /// written) when the user already holds `max_live` live tokens.
    pub async fn create_personal_token(
        &self,
        session: &NewSession<'_>,
        created_in: &str,
        name: &str,
        token_hash: &str,
        max_live: i64,
    ) -> sqlx::Result<bool> {
        // Serialised (PostgreSQL's advisory lock): two creations at once
        // cannot both pass the count.
        let mut tx = self.begin_revoking().await?;
        let live: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM personal_tokens p JOIN sessions s ON s.id = p.id \
             WHERE p.user_id = $1 AND s.revoked_at IS NULL AND s.absolute_expires_at > $2",
        )
        .bind(session.user_id)
        .bind(session.now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if live >= max_live {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_session(&mut tx, session).await?;
        sqlx::query(
            "UPDATE sessions SET opened_by = (SELECT opened_by FROM sessions WHERE id = $2) \
             WHERE id = $1",
        )
        .bind(session.id)
        .bind(created_in)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO personal_tokens (id, user_id, name, token_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(session.id)
        .bind(session.user_id)
        .bind(name)
        .bind(token_hash)
        .bind(session.now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The user's live tokens, newest first.
    pub async fn personal_tokens(
        &self,
        user_id: &str,
        now: i64,
    ) -> sqlx::Result<Vec<PersonalToken>> {
        let rows = sqlx::query(
            "SELECT p.id, p.name, s.scope, p.created_at, s.absolute_expires_at, \
             p.last_used_at FROM personal_tokens p JOIN sessions s ON s.id = p.id \
             WHERE p.user_id = $1 AND s.revoked_at IS NULL AND s.absolute_expires_at > $2 \
             ORDER BY p.created_at DESC, p.id",
        )
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PersonalToken {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    scope: row
                        .try_get::<Option<String>, _>("scope")?
                        .unwrap_or_default(),
                    created_at: row.try_get("created_at")?,
                    expires_at: row.try_get("absolute_expires_at")?,
                    last_used_at: row.try_get("last_used_at")?,
                })
            })
            .collect()
    }

    /// The session a token stands for, if the hash is one.
    pub async fn personal_token_session(&self, token_hash: &str) -> sqlx::Result<Option<Session>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM personal_tokens p JOIN sessions s ON s.id = p.id \
             WHERE p.token_hash = $1"
        );
        let row = sqlx::query(&sql)
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// Notes a use: at most one write a minute per token, however often a
    /// script exchanges it.
    pub async fn note_personal_token_use(&self, id: &str, now: i64) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE personal_tokens SET last_used_at = $2 \
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(id)
        .bind(now)
        .bind(now - 60)
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}
