//! External identities (GitHub) linked to accounts, and spent OAuth states.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::users::{insert_user, refresh_search_text, user_from_row, USER_COLUMNS};
use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub provider: String,
    /// The provider's stable id for the person (GitHub: the numeric id).
    pub subject: String,
    pub user_id: String,
    pub login: String,
    pub email: Option<String>,
    pub linked_at: i64,
    pub last_used_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The identity already belongs to an account (maybe this one).
    #[error("identity is linked to an account already")]
    IdentityTaken,
    /// The account already has an identity with this provider.
    #[error("account has an identity with this provider already")]
    ProviderTaken,
    /// (Creating an account) the email belongs to another account.
    #[error("email already registered")]
    EmailTaken,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Unlink {
    /// Removed; the sessions it had started are revoked (these records).
    Done(Identity, Vec<auth_types::RevocationRecord>),
    NotLinked,
    /// It is the account's only way to sign in.
    LastMethod,
}

const IDENTITY_COLUMNS: &str = "provider, subject, user_id, login, email, linked_at, last_used_at";

impl Store {
    /// The account an identity signs in, with the identity.
    pub async fn user_by_identity(
        &self,
        provider: &str,
        subject: &str,
    ) -> sqlx::Result<Option<(User, Identity)>> {
        let Some(identity) = sqlx::query(&format!(
            "SELECT {IDENTITY_COLUMNS} FROM identities WHERE provider = $1 AND subject = $2"
        ))
        .bind(provider)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(identity_from_row)
        .transpose()?
        else {
            return Ok(None);
        };
        let user = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(&identity.user_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()?;
        Ok(user.map(|u| (u, identity)))
    }

    pub async fn identities_of(&self, user_id: &str) -> sqlx::Result<Vec<Identity>> {
        sqlx::query(&format!(
            "SELECT {IDENTITY_COLUMNS} FROM identities WHERE user_id = $1 ORDER BY provider"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(identity_from_row)
        .collect()
    }

    /// A new account and its first identity, together or not at all.
    pub async fn create_user_with_identity(
        &self,
        user: &User,
        identity: &Identity,
    ) -> Result<(), LinkError> {
        let mut tx = self.writer.begin().await?;
        if let Err(e) = insert_user(&mut *tx, user).await {
            return Err(match e {
                sqlx::Error::Database(d) if d.is_unique_violation() => LinkError::EmailTaken,
                e => e.into(),
            });
        }
        insert_identity(&mut tx, identity).await?;
        refresh_search_text(&mut *tx, self.backend, &user.id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Links an identity to an existing account.
    pub async fn link_identity(&self, identity: &Identity) -> Result<(), LinkError> {
        let mut tx = self.writer.begin().await?;
        insert_identity(&mut tx, identity).await?;
        refresh_search_text(&mut *tx, self.backend, &identity.user_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Keeps the display fields current and records the sign-in.
    pub async fn touch_identity(
        &self,
        provider: &str,
        subject: &str,
        login: &str,
        email: Option<&str>,
        now: i64,
    ) -> sqlx::Result<()> {
        // The login may have been renamed: the owner's search text follows.
        let owner = sqlx::query(
            "UPDATE identities SET login = $1, email = $2, last_used_at = $3 \
             WHERE provider = $4 AND subject = $5 RETURNING user_id",
        )
        .bind(login)
        .bind(email.map(str::to_string))
        .bind(now)
        .bind(provider)
        .bind(subject)
        .fetch_optional(&self.writer)
        .await?
        .map(|r| r.try_get::<String, _>("user_id"))
        .transpose()?;
        if let Some(user_id) = owner {
            refresh_search_text(&self.writer, self.backend, &user_id).await?;
        }
        Ok(())
    }

    /// Removes an identity unless it is the account's last way to sign in
    /// (checked in the same statement, so two concurrent unlinks cannot both
    /// pass), and ends the sessions it started (`amr`), in one transaction:
    /// unlinking a compromised GitHub account also throws its sessions out.
    pub async fn unlink_identity(
        &self,
        user_id: &str,
        provider: &str,
        amr: &str,
        now_ms: i64,
        revocation_expires_at: i64,
    ) -> sqlx::Result<Unlink> {
        let mut tx = self.begin_revoking().await?;
        let removed = sqlx::query(&format!(
            "DELETE FROM identities WHERE user_id = $1 AND provider = $2 AND ( \
               EXISTS (SELECT 1 FROM users WHERE id = $1 AND password_hash <> '') \
               OR (SELECT COUNT(*) FROM identities WHERE user_id = $1) > 1) \
             RETURNING {IDENTITY_COLUMNS}"
        ))
        .bind(user_id)
        .bind(provider)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = removed {
            let identity = identity_from_row(&row)?;
            refresh_search_text(&mut *tx, self.backend, user_id).await?;
            let records = super::sessions::revoke_sessions_where(
                &mut tx,
                user_id,
                super::sessions::Which::SignedInWith(amr),
                "identity_unlinked",
                now_ms,
                revocation_expires_at,
            )
            .await?;
            tx.commit().await?;
            return Ok(Unlink::Done(identity, records));
        }
        tx.rollback().await?;
        let exists = sqlx::query("SELECT 1 FROM identities WHERE user_id = $1 AND provider = $2")
            .bind(user_id)
            .bind(provider)
            .fetch_optional(&self.pool)
            .await?
            .is_some();
        Ok(if exists {
            Unlink::LastMethod
        } else {
            Unlink::NotLinked
        })
    }

    /// Records an OAuth state as spent; `false` if it was spent already.
    pub async fn spend_oauth_state(&self, state_hash: &str, expires_at: i64) -> sqlx::Result<bool> {
        let result =
            sqlx::query("INSERT INTO oauth_states_used (state_hash, expires_at) VALUES ($1, $2)")
                .bind(state_hash)
                .bind(expires_at)
                .execute(&self.writer)
                .await;
        match result {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn prune_oauth_states(&self, now: i64) -> sqlx::Result<u64> {
        Ok(
            sqlx::query("DELETE FROM oauth_states_used WHERE expires_at <= $1")
                .bind(now)
                .execute(&self.writer)
                .await?
                .rows_affected(),
        )
    }
}

async fn insert_identity(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    identity: &Identity,
) -> Result<(), LinkError> {
    // Checked first: after a failed statement PostgreSQL refuses the rest of
    // the transaction, so the error could not be told apart afterwards.
    let taken = sqlx::query("SELECT 1 FROM identities WHERE provider = $1 AND subject = $2")
        .bind(&identity.provider)
        .bind(&identity.subject)
        .fetch_optional(&mut **tx)
        .await?;
    if taken.is_some() {
        return Err(LinkError::IdentityTaken);
    }
    let slot = sqlx::query("SELECT 1 FROM identities WHERE user_id = $1 AND provider = $2")
        .bind(&identity.user_id)
        .bind(&identity.provider)
        .fetch_optional(&mut **tx)
        .await?;
    if slot.is_some() {
        return Err(LinkError::ProviderTaken);
    }
    let result = sqlx::query(&format!(
        "INSERT INTO identities ({IDENTITY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(&identity.provider)
    .bind(&identity.subject)
    .bind(&identity.user_id)
    .bind(&identity.login)
    .bind(identity.email.clone())
    .bind(identity.linked_at)
    .bind(identity.last_used_at)
    .execute(&mut **tx)
    .await;
    match result {
        Ok(_) => Ok(()),
        // A concurrent link of the same identity won the race.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(LinkError::IdentityTaken),
        Err(e) => Err(e.into()),
    }
}

fn identity_from_row(row: &AnyRow) -> sqlx::Result<Identity> {
    Ok(Identity {
        provider: row.try_get("provider")?,
        subject: row.try_get("subject")?,
        user_id: row.try_get("user_id")?,
        login: row.try_get("login")?,
        email: row.try_get("email")?,
        linked_at: row.try_get("linked_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}
