//! User accounts.

use auth_types::{RevocationKind, RevocationRecord};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::revocations::insert_revocation;
use super::sessions::revoke_user_sessions;
use super::*;

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
    /// Carried by access tokens as `user_gen`; bumped when roles change or
    /// the account is disabled, which revokes every older generation.
    pub token_generation: i64,
    pub email_verified_at: Option<i64>,
    pub avatar_url: Option<String>,
    /// JSON object the user may edit.
    pub metadata: String,
    /// JSON object only admins may set.
    pub admin_metadata: String,
}

impl User {
    /// Accounts made through GitHub have no password until one is set.
    pub fn has_password(&self) -> bool {
        !self.password_hash.is_empty()
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum DeleteUser {
    Done(Vec<RevocationRecord>),
    NoSuchUser,
    /// The last enabled admin.
    LastAdmin,
    /// The only owner of these teams.
    SoleOwner(Vec<String>),
}

/// A change to a user's profile; `None` fields stay as they are.
#[derive(Debug, Clone, Copy)]
pub struct UserTotals {
    pub total: i64,
    pub disabled: i64,
    pub email_verified: i64,
}

#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    pub name: Option<Option<String>>,
    pub avatar_url: Option<Option<String>>,
    pub metadata: Option<String>,
    pub admin_metadata: Option<String>,
}

/// An administrator's change to an account.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    pub roles: Option<Vec<String>>,
    pub disabled: Option<bool>,
    /// Roles that need a second factor (`--mfa-required-roles`): a user
    /// holding one after the change keeps no one-factor session.
    pub second_factor_roles: Vec<String>,
}

/// What `change_user` did.
#[derive(Debug)]
pub enum Changed {
    Done(Box<User>, Vec<RevocationRecord>),
    /// Refused: no enabled admin would be left. Checked inside the
    /// transaction, so two admins demoting each other at once cannot both win.
    LastAdmin,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("email already registered")]
    EmailTaken,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

pub(super) const USER_COLUMNS: &str =
    "id, email, name, password_hash, roles, created_at, password_changed_at, disabled_at, \
     token_generation, email_verified_at, avatar_url, metadata, admin_metadata";

impl Store {
    // ---- users ----

    pub async fn create_user(&self, user: &User) -> Result<(), CreateUserError> {
        match insert_user(&self.writer, user).await {
            Ok(()) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(CreateUserError::EmailTaken)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Users whose email, name or linked login contains `query` (case
    /// insensitive), ordered by email, after the email `after`; at most
    /// `limit`. Without a query: every user, the same way.
    pub async fn search_users(
        &self,
        query: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> sqlx::Result<Vec<User>> {
        let query = query.map(str::to_lowercase).filter(|q| !q.is_empty());
        let filter = match (&query, self.backend) {
            (None, _) => "TRUE",
            // The trigram index answers queries of three characters or more.
            (Some(q), Backend::Sqlite) if q.chars().count() >= 3 => {
                "rowid IN (SELECT rowid FROM users_search WHERE users_search MATCH $3)"
            }
            (Some(_), _) => "search_text LIKE $3 ESCAPE '\\'",
        };
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE email > $1 AND {filter} \
             ORDER BY email LIMIT $2"
        );
        let mut q = sqlx::query(&sql).bind(after.unwrap_or("")).bind(limit);
        if let Some(text) = &query {
            q = q.bind(match self.backend {
                Backend::Sqlite if text.chars().count() >= 3 => {
                    format!("\"{}\"", text.replace('"', "\"\""))
                }
                _ => contains_pattern(text),
            });
        }
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(user_from_row)
            .collect()
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
        let mut tx = self.begin_revoking().await?;
        let records =
            set_password(&mut tx, user_id, new_hash, now_ms, revocation_expires_at).await?;
        tx.commit().await?;
        Ok(records)
    }

    /// Changes roles and/or the disabled flag. Whatever a live token says
    /// about the user may now be wrong, so in the same transaction the
    /// user's token generation is bumped and every older generation revoked
    /// (exact: no clock involved); disabling also ends every session.
    /// `None` if there is no such user.
    pub async fn change_user(
        &self,
        user_id: &str,
        change: &UserChange,
        now_ms: i64,
        revocation_expires_at: i64,
    ) -> sqlx::Result<Option<Changed>> {
        // Revoking transactions are serialised (see `begin_revoking`), which
        // the last-admin check below relies on.
        let mut tx = self.begin_revoking().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let Some(row) = sqlx::query(&sql)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let mut user = user_from_row(&row)?;
        let was_admin = user.disabled_at.is_none() && user.roles.iter().any(|r| r == "admin");
        if let Some(roles) = &change.roles {
            user.roles = roles.clone();
        }
        match change.disabled {
            Some(true) if user.disabled_at.is_none() => {
                user.disabled_at = Some(now_ms.div_euclid(1000))
            }
            Some(false) => user.disabled_at = None,
            _ => {}
        }
        let is_admin = user.disabled_at.is_none() && user.roles.iter().any(|r| r == "admin");
        if was_admin && !is_admin && !another_admin(&mut tx, user_id).await? {
            tx.rollback().await?;
            return Ok(Some(Changed::LastAdmin));
        }
        user.token_generation += 1;
        sqlx::query(
            "UPDATE users SET roles = $1, disabled_at = $2, token_generation = $3 WHERE id = $4",
        )
        .bind(user.roles.join(" "))
        .bind(user.disabled_at)
        .bind(user.token_generation)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        let needs_second_factor = user
            .roles
            .iter()
            .any(|r| change.second_factor_roles.contains(r));
        let mut records = if change.disabled == Some(true) {
            revoke_user_sessions(&mut tx, user_id, "disabled", now_ms, revocation_expires_at)
                .await?
        } else if needs_second_factor {
            super::sessions::revoke_sessions_where(
                &mut tx,
                user_id,
                super::sessions::Which::OneFactor,
                "role_needs_second_factor",
                now_ms,
                revocation_expires_at,
            )
            .await?
        } else {
            Vec::new()
        };
        records.push(
            generation_revocation(
                &mut tx,
                user_id,
                user.token_generation,
                now_ms,
                revocation_expires_at,
            )
            .await?,
        );
        tx.commit().await?;
        Ok(Some(Changed::Done(Box::new(user), records)))
    }

    /// Sets roles (tests and tools); `change_user` also revokes live tokens.
    /// Deletes an account and everything it had: its sessions end and every
    /// token it holds is refused at the edge (records returned), then the
    /// row goes with its identities and memberships. Refused while the user
    /// is some team's only owner (ownership is transferred first).
    pub async fn delete_user(
        &self,
        user_id: &str,
        now_ms: i64,
        revocation_expires_at: i64,
    ) -> sqlx::Result<DeleteUser> {
        let mut tx = self.begin_revoking().await?;
        let sole: Vec<String> = sqlx::query(
            "SELECT m.team_slug FROM team_members m WHERE m.user_id = $1 AND m.role = 'owner' \
             AND (SELECT COUNT(*) FROM team_members o WHERE o.team_slug = m.team_slug \
                  AND o.role = 'owner') = 1 ORDER BY m.team_slug",
        )
        .bind(user_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("team_slug"))
        .collect::<sqlx::Result<_>>()?;
        if !sole.is_empty() {
            return Ok(DeleteUser::SoleOwner(sole));
        }
        let enabled_admin =
            sqlx::query("SELECT roles FROM users WHERE id = $1 AND disabled_at IS NULL")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get::<String, _>("roles"))
                .transpose()?
                .is_some_and(|roles| roles.split_whitespace().any(|r| r == "admin"));
        if enabled_admin && !another_admin(&mut tx, user_id).await? {
            return Ok(DeleteUser::LastAdmin);
        }
        let mut records = revoke_user_sessions(
            &mut tx,
            user_id,
            "user_deleted",
            now_ms,
            revocation_expires_at,
        )
        .await?;
        let Some(record) = bump_generation(&mut tx, user_id, now_ms, revocation_expires_at).await?
        else {
            return Ok(DeleteUser::NoSuchUser);
        };
        records.push(record);
        // Children first: SQLite applies ON DELETE CASCADE only with its pragma.
        for statement in [
            "DELETE FROM refresh_tokens WHERE session_id IN \
             (SELECT id FROM sessions WHERE user_id = $1)",
            "DELETE FROM identities WHERE user_id = $1",
            "DELETE FROM team_members WHERE user_id = $1",
            "DELETE FROM team_invitations WHERE user_id = $1 OR invited_by = $1",
            "DELETE FROM sessions WHERE user_id = $1",
        ] {
            sqlx::query(statement)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(DeleteUser::Done(records))
    }

    /// Applies a profile change; `None` if there is no such user.
    pub async fn update_profile(
        &self,
        user_id: &str,
        change: &ProfileChange,
    ) -> sqlx::Result<Option<User>> {
        let mut tx = self.writer.begin().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let Some(row) = sqlx::query(&sql)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let mut user = user_from_row(&row)?;
        if let Some(name) = &change.name {
            user.name = name.clone();
        }
        if let Some(avatar) = &change.avatar_url {
            user.avatar_url = avatar.clone();
        }
        if let Some(m) = &change.metadata {
            user.metadata = m.clone();
        }
        if let Some(m) = &change.admin_metadata {
            user.admin_metadata = m.clone();
        }
        sqlx::query(
            "UPDATE users SET name = $1, avatar_url = $2, metadata = $3, admin_metadata = $4 \
             WHERE id = $5",
        )
        .bind(user.name.clone())
        .bind(user.avatar_url.clone())
        .bind(&user.metadata)
        .bind(&user.admin_metadata)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        refresh_search_text(&mut *tx, self.backend, user_id).await?;
        tx.commit().await?;
        Ok(Some(user))
    }

    pub async fn set_roles(&self, user_id: &str, roles: &[String]) -> sqlx::Result<bool> {
        let done = sqlx::query("UPDATE users SET roles = $1 WHERE id = $2")
            .bind(roles.join(" "))
            .bind(user_id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// How many accounts there are, disabled, and with a verified email.
    pub async fn user_totals(&self) -> sqlx::Result<UserTotals> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS total, \
             COALESCE(SUM(CASE WHEN disabled_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS disabled, \
             COALESCE(SUM(CASE WHEN email_verified_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS verified \
             FROM users",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(UserTotals {
            total: row.try_get("total")?,
            disabled: row.try_get("disabled")?,
            email_verified: row.try_get("verified")?,
        })
    }
}

/// Whether an enabled admin other than `user_id` exists. Inside a revoking
/// transaction (serialised), so two admins demoting or deleting each other
/// at once cannot both see the other. LIKE only narrows (it ignores case on
/// SQLite); the role is compared exactly here.
async fn another_admin(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    user_id: &str,
) -> sqlx::Result<bool> {
    let rows = sqlx::query(
        "SELECT roles FROM users WHERE id <> $1 AND disabled_at IS NULL \
         AND (' ' || roles || ' ') LIKE '% admin %'",
    )
    .bind(user_id)
    .fetch_all(&mut **tx)
    .await?;
    for row in rows {
        let roles: String = row.try_get("roles")?;
        if roles.split_whitespace().any(|r| r == "admin") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Refuses every token of `user_id` older than `generation`.
async fn generation_revocation(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    user_id: &str,
    generation: i64,
    now_ms: i64,
    revocation_expires_at: i64,
) -> sqlx::Result<RevocationRecord> {
    insert_revocation(
        tx,
        &NewRevocation {
            kind: RevocationKind::UserGeneration,
            subject: user_id,
            issued_before: generation,
            created_at_ms: now_ms,
            expires_at: revocation_expires_at,
        },
    )
    .await
}

/// What a token says about `user_id` changed (teams, roles): bump the
/// generation and refuse every older token, in the caller's transaction.
/// `None` if there is no such user.
pub(super) async fn bump_generation(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    user_id: &str,
    now_ms: i64,
    revocation_expires_at: i64,
) -> sqlx::Result<Option<RevocationRecord>> {
    let row = sqlx::query(
        "UPDATE users SET token_generation = token_generation + 1 WHERE id = $1 \
         RETURNING token_generation",
    )
    .bind(user_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let generation: i64 = row.try_get("token_generation")?;
    generation_revocation(tx, user_id, generation, now_ms, revocation_expires_at)
        .await
        .map(Some)
}

pub(super) async fn insert_user<'c, E>(db: E, user: &User) -> sqlx::Result<()>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO users (id, email, name, password_hash, roles, created_at, \
         password_changed_at, email_verified_at, avatar_url, metadata, admin_metadata, \
         search_text) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&user.id)
    .bind(&user.email)
    .bind(user.name.clone())
    .bind(&user.password_hash)
    .bind(user.roles.join(" "))
    .bind(user.created_at)
    .bind(user.password_changed_at)
    .bind(user.email_verified_at)
    .bind(user.avatar_url.clone())
    .bind(&user.metadata)
    .bind(&user.admin_metadata)
    .bind(format!("{} {}", user.email, user.name.as_deref().unwrap_or("")).to_lowercase())
    .execute(db)
    .await?;
    Ok(())
}

/// Recomputes a user's search text from the email, name and linked logins.
pub(super) async fn refresh_search_text<'c, E>(
    db: E,
    backend: Backend,
    user_id: &str,
) -> sqlx::Result<()>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let logins = match backend {
        Backend::Sqlite => "group_concat(lower(login), ' ')",
        Backend::Postgres => "string_agg(lower(login), ' ')",
    };
    sqlx::query(&format!(
        "UPDATE users SET search_text = lower(email || ' ' || coalesce(name, '') || coalesce(\
         (SELECT ' ' || {logins} FROM identities WHERE user_id = $1), '')) WHERE id = $1"
    ))
    .bind(user_id)
    .execute(db)
    .await?;
    Ok(())
}

/// A `LIKE` pattern matching `text` anywhere, with `\` escaping wildcards.
fn contains_pattern(text: &str) -> String {
    let mut p = String::from("%");
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

pub(super) fn user_from_row(row: &AnyRow) -> sqlx::Result<User> {
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
        token_generation: row.try_get("token_generation")?,
        email_verified_at: row.try_get("email_verified_at")?,
        avatar_url: row.try_get("avatar_url")?,
        metadata: row.try_get("metadata")?,
        admin_metadata: row.try_get("admin_metadata")?,
    })
}

/// Sets a password and ends every session of the user, inside `tx`.
pub(super) async fn set_password(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    user_id: &str,
    new_hash: &str,
    now_ms: i64,
    revocation_expires_at: i64,
) -> sqlx::Result<Vec<RevocationRecord>> {
    let now = now_ms.div_euclid(1000);
    sqlx::query("UPDATE users SET password_hash = $1, password_changed_at = $2 WHERE id = $3")
        .bind(new_hash)
        .bind(now)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    let mut records = revoke_user_sessions(
        tx,
        user_id,
        "password_changed",
        now_ms,
        revocation_expires_at,
    )
    .await?;
    records.push(
        insert_revocation(
            tx,
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
    Ok(records)
}
