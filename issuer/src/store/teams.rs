//! Teams, memberships, and the role → permission map sidecars expand roles
//! with. Every change to what a user's token says (a membership) bumps their
//! token generation in the same transaction; every change to the map bumps
//! its version, which the feed announces.

use std::collections::BTreeMap;

use auth_types::RevocationRecord;
use sqlx::Row;

use super::users::bump_generation;
use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    pub slug: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub team_slug: String,
    pub user_id: String,
    pub email: String,
    pub role: String,
    pub added_at: i64,
}

pub use auth_types::TEAM_ROLES;

#[derive(Debug, PartialEq, Eq)]
pub enum CreateTeam {
    Created(Vec<RevocationRecord>),
    SlugTaken,
    NoSuchOwner,
}

#[derive(Debug, PartialEq, Eq)]
pub enum MembershipChange {
    Done(Vec<RevocationRecord>),
    NoSuchTeam,
    NoSuchUser,
    NotAMember,
    /// The change would leave the team without an owner.
    LastOwner,
}

pub use auth_types::PermissionMap;

impl Store {
    /// Creates a team, with its first owner if given, together or not at all.
    pub async fn create_team(
        &self,
        slug: &str,
        name: &str,
        owner: Option<&str>,
        now_ms: i64,
        revocation_expires_at: i64,
    ) -> sqlx::Result<CreateTeam> {
        let mut tx = self.begin_revoking().await?;
        if sqlx::query("SELECT 1 FROM teams WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&mut *tx)
            .await?
            .is_some()
        {
            return Ok(CreateTeam::SlugTaken);
        }
        let now = now_ms.div_euclid(1000);
        let inserted =
            sqlx::query("INSERT INTO teams (slug, name, created_at) VALUES ($1, $2, $3)")
                .bind(slug)
                .bind(name)
                .bind(now)
                .execute(&mut *tx)
                .await;
        match inserted {
            Ok(_) => {}
            // A concurrent create of the same slug.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Ok(CreateTeam::SlugTaken)
            }
            Err(e) => return Err(e),
        }
        let mut records = Vec::new();
        if let Some(owner) = owner {
            sqlx::query(
                "INSERT INTO team_members (team_slug, user_id, role, added_at) \
                 SELECT $1, id, 'owner', $2 FROM users WHERE id = $3",
            )
            .bind(slug)
            .bind(now)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
            match bump_generation(&mut tx, owner, now_ms, revocation_expires_at).await? {
                Some(record) => records.push(record),
                None => return Ok(CreateTeam::NoSuchOwner),
            }
        }
        tx.commit().await?;
        Ok(CreateTeam::Created(records))
    }

    pub async fn teams(&self) -> sqlx::Result<Vec<Team>> {
        sqlx::query("SELECT slug, name, created_at FROM teams ORDER BY slug")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(Team {
                    slug: r.try_get("slug")?,
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    pub async fn team_exists(&self, slug: &str) -> sqlx::Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM teams WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Deletes a team; its members' tokens are refused from now on (their
    /// next refresh no longer names it). `None` if there was no such team.
    pub async fn delete_team(
        &self,
        slug: &str,
        now_ms: i64,
        revocation_expires_at: i64,
    ) -> sqlx::Result<Option<Vec<RevocationRecord>>> {
        let mut tx = self.begin_revoking().await?;
        let members: Vec<String> =
            sqlx::query("SELECT user_id FROM team_members WHERE team_slug = $1 ORDER BY user_id")
                .bind(slug)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get("user_id"))
                .collect::<sqlx::Result<_>>()?;
        // Members first (SQLite enforces the cascade only with the pragma).
        sqlx::query("DELETE FROM team_invitations WHERE team_slug = $1")
            .bind(slug)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM team_members WHERE team_slug = $1")
            .bind(slug)
            .execute(&mut *tx)
            .await?;
        let gone = sqlx::query("DELETE FROM teams WHERE slug = $1")
            .bind(slug)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let mut records = Vec::new();
        for user_id in &members {
            records.extend(bump_generation(&mut tx, user_id, now_ms, revocation_expires_at).await?);
        }
        tx.commit().await?;
        Ok(Some(records))
    }

    pub async fn team_members(&self, slug: &str) -> sqlx::Result<Vec<Membership>> {
        sqlx::query(
            "SELECT m.team_slug, m.user_id, u.email, m.role, m.added_at FROM team_members m \
             JOIN users u ON u.id = m.user_id WHERE m.team_slug = $1 ORDER BY u.email",
        )
        .bind(slug)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(Membership {
                team_slug: r.try_get("team_slug")?,
                user_id: r.try_get("user_id")?,
                email: r.try_get("email")?,
                role: r.try_get("role")?,
                added_at: r.try_get("added_at")?,
            })
        })
        .collect()
    }

    /// The user's role in the team, if a member.
    pub async fn team_role(&self, slug: &str, user_id: &str) -> sqlx::Result<Option<String>> {
        sqlx::query("SELECT role FROM team_members WHERE team_slug = $1 AND user_id = $2")
            .bind(slug)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get("role"))
            .transpose()
    }

    /// Every team of a user with their role there, by slug.
    pub async fn teams_of(&self, user_id: &str) -> sqlx::Result<Vec<(String, String)>> {
        sqlx::query(
            "SELECT team_slug, role FROM team_members WHERE user_id = $1 ORDER BY team_slug",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("team_slug")?, r.try_get("role")?)))
        .collect()
    }

    /// Sets (`Some(role)`) or removes (`None`) a membership. A team keeps at
    /// least one owner. When rights are withdrawn (removal, a lower role)
    /// the user's live tokens are refused in the same transaction, so their
    /// next refresh carries the change; a new or higher role waits for the
    /// next refresh (cutting tokens on every addition would let an owner
    /// sign anyone out at will).
    pub async fn set_membership(
        &self,
        slug: &str,
        user_id: &str,
        role: Option<&str>,
        now: i64,
        now_ms: i64,
        revocation_expires_at: i64,
    ) -> sqlx::Result<MembershipChange> {
        let mut tx = self.begin_revoking().await?;
        if sqlx::query("SELECT 1 FROM teams WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&mut *tx)
            .await?
            .is_none()
        {
            return Ok(MembershipChange::NoSuchTeam);
        }
        let current: Option<String> =
            sqlx::query("SELECT role FROM team_members WHERE team_slug = $1 AND user_id = $2")
                .bind(slug)
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get("role"))
                .transpose()?;
        // Nothing changes: no revocation (a member's tokens are not
        // someone else's to invalidate at will).
        if current.as_deref() == role {
            return Ok(if role.is_some() {
                MembershipChange::Done(Vec::new())
            } else {
                MembershipChange::NotAMember
            });
        }
        if current.as_deref() == Some("owner") && role != Some("owner") {
            let owners: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM team_members WHERE team_slug = $1 AND role = 'owner'",
            )
            .bind(slug)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
            if owners <= 1 {
                return Ok(MembershipChange::LastOwner);
            }
        }
        match (role, current.is_some()) {
            (None, false) => return Ok(MembershipChange::NotAMember),
            (None, true) => {
                sqlx::query("DELETE FROM team_members WHERE team_slug = $1 AND user_id = $2")
                    .bind(slug)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
            }
            (Some(role), true) => {
                sqlx::query(
                    "UPDATE team_members SET role = $1 WHERE team_slug = $2 AND user_id = $3",
                )
                .bind(role)
                .bind(slug)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            }
            (Some(role), false) => {
                if sqlx::query("SELECT 1 FROM users WHERE id = $1")
                    .bind(user_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_none()
                {
                    return Ok(MembershipChange::NoSuchUser);
                }
                sqlx::query(
                    "INSERT INTO team_members (team_slug, user_id, role, added_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(slug)
                .bind(user_id)
                .bind(role)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        // Any invitation is answered by the change.
        sqlx::query("DELETE FROM team_invitations WHERE team_slug = $1 AND user_id = $2")
            .bind(slug)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let rank = |r: Option<&str>| r.and_then(auth_types::team_role_rank).unwrap_or(0);
        let withdrawn = rank(role) < rank(current.as_deref());
        let records = if withdrawn {
            bump_generation(&mut tx, user_id, now_ms, revocation_expires_at)
                .await?
                .into_iter()
                .collect()
        } else {
            Vec::new()
        };
        tx.commit().await?;
        Ok(MembershipChange::Done(records))
    }

    /// Invites `user_id` into the team with `role` (replacing an earlier
    /// invitation). `Done` with nothing when they are already a member.
    pub async fn invite(
        &self,
        slug: &str,
        user_id: &str,
        role: &str,
        invited_by: &str,
        now: i64,
    ) -> sqlx::Result<MembershipChange> {
        let mut tx = self.writer.begin().await?;
        let exists = |sql: &'static str, key: &str| sqlx::query(sql).bind(key.to_string());
        if exists("SELECT 1 FROM teams WHERE slug = $1", slug)
            .fetch_optional(&mut *tx)
            .await?
            .is_none()
        {
            return Ok(MembershipChange::NoSuchTeam);
        }
        if exists("SELECT 1 FROM users WHERE id = $1", user_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_none()
        {
            return Ok(MembershipChange::NoSuchUser);
        }
        sqlx::query(
            "INSERT INTO team_invitations (team_slug, user_id, role, invited_by, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (team_slug, user_id) \
             DO UPDATE SET role = excluded.role, invited_by = excluded.invited_by, \
             created_at = excluded.created_at",
        )
        .bind(slug)
        .bind(user_id)
        .bind(role)
        .bind(invited_by)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(MembershipChange::Done(Vec::new()))
    }

    /// The user's pending invitations: (team, role, invited by, when).
    pub async fn invitations_of(
        &self,
        user_id: &str,
    ) -> sqlx::Result<Vec<(String, String, String, i64)>> {
        sqlx::query(
            "SELECT team_slug, role, invited_by, created_at FROM team_invitations \
             WHERE user_id = $1 ORDER BY team_slug",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("team_slug")?,
                r.try_get("role")?,
                r.try_get("invited_by")?,
                r.try_get("created_at")?,
            ))
        })
        .collect()
    }

    /// Takes (deletes) an invitation: its role, who invited and when, if
    /// there was one.
    pub async fn take_invitation(
        &self,
        slug: &str,
        user_id: &str,
    ) -> sqlx::Result<Option<(String, String, i64)>> {
        sqlx::query(
            "DELETE FROM team_invitations WHERE team_slug = $1 AND user_id = $2 \
             RETURNING role, invited_by, created_at",
        )
        .bind(slug)
        .bind(user_id)
        .fetch_optional(&self.writer)
        .await?
        .map(|r| {
            Ok((
                r.try_get("role")?,
                r.try_get("invited_by")?,
                r.try_get("created_at")?,
            ))
        })
        .transpose()
    }

    // ---- roles and permissions ----

    pub async fn permissions_version(&self) -> sqlx::Result<i64> {
        sqlx::query("SELECT version FROM permissions_version WHERE id = 1")
            .fetch_one(&self.pool)
            .await?
            .try_get("version")
    }

    /// Every defined role with its permissions (roles without any too), and
    /// the version, read together.
    pub async fn permission_map(&self) -> sqlx::Result<PermissionMap> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            // Version and contents from one snapshot.
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let version: i64 = sqlx::query("SELECT version FROM permissions_version WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?
            .try_get("version")?;
        let mut roles: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in sqlx::query("SELECT name FROM roles ORDER BY name")
            .fetch_all(&mut *tx)
            .await?
        {
            roles.insert(r.try_get("name")?, Vec::new());
        }
        for r in
            sqlx::query("SELECT role, permission FROM role_permissions ORDER BY role, permission")
                .fetch_all(&mut *tx)
                .await?
        {
            let role: String = r.try_get("role")?;
            roles
                .entry(role)
                .or_default()
                .push(r.try_get("permission")?);
        }
        tx.commit().await?;
        Ok(PermissionMap { version, roles })
    }

    /// Defines a role (or replaces its permissions). Returns the new version.
    pub async fn set_role(
        &self,
        role: &str,
        description: Option<&str>,
        permissions: &[String],
        now: i64,
    ) -> sqlx::Result<i64> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO roles (name, description, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET description = excluded.description",
        )
        .bind(role)
        .bind(description.map(str::to_string))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM role_permissions WHERE role = $1")
            .bind(role)
            .execute(&mut *tx)
            .await?;
        for p in permissions {
            sqlx::query(
                "INSERT INTO role_permissions (role, permission) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(role)
            .bind(p)
            .execute(&mut *tx)
            .await?;
        }
        let version = bump_permissions_version(&mut tx).await?;
        tx.commit().await?;
        Ok(version)
    }

    /// Removes a role's definition and grants (bindings stay and simply
    /// grant nothing). `None` if it was not defined.
    pub async fn delete_role(&self, role: &str) -> sqlx::Result<Option<i64>> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM role_permissions WHERE role = $1")
            .bind(role)
            .execute(&mut *tx)
            .await?;
        let gone = sqlx::query("DELETE FROM roles WHERE name = $1")
            .bind(role)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let version = bump_permissions_version(&mut tx).await?;
        tx.commit().await?;
        Ok(Some(version))
    }
}

async fn bump_permissions_version(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
) -> sqlx::Result<i64> {
    sqlx::query(
        "UPDATE permissions_version SET version = version + 1 WHERE id = 1 RETURNING version",
    )
    .fetch_one(&mut **tx)
    .await?
    .try_get("version")
}
