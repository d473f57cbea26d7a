//! Storage, split by aggregate (users, sessions, revocations, signing
//! keys, audit): one set of inline queries run on SQLite (embedded default) or
//! PostgreSQL (production) through sqlx's `Any` driver.
//!
//! Portability rules: ids are TEXT, times are BIGINT Unix seconds (`_ms`
//! columns are milliseconds), flags are nullable timestamps, placeholders are
//! `$N` (both backends accept them).

use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

mod audit;
mod backchannel;
mod device;
mod identities;
mod keys;
mod login_failures;
mod mail;
mod mfa;
mod oauth;
mod passkeys;
mod pats;
mod revocations;
mod sessions;
mod teams;
mod usage;
mod users;

pub use crate::domain::clock::{civil_date, rfc3339_ms};
pub use audit::{AuditEvent, AuditFilter, AuditRecord, DailyCount, Outcome};
pub use backchannel::LogoutDelivery;
pub use device::{Approval, ApprovedDevice, NewDeviceCode, PendingDevice, Poll, SLOW_DOWN_SECS};
pub use identities::{Identity, LinkError, Unlink};
pub use keys::StoredKey;
pub use login_failures::{delay_ms, FREE_FAILURES, MAX_DELAY_MS};
pub use mail::{NewMail, OutboxCounts, OutboxMail, SpentToken, TokenPurpose};
pub use mfa::{MfaStatus, MfaTicket, TotpFactor, TICKET_ATTEMPTS};
pub use oauth::{Code, NewCode, OAuthClient, Redeemed, Rotated};
pub use passkeys::{Ceremony, StoredPasskey, MAX_CEREMONIES_PER_CLIENT, MAX_PASSKEYS};
pub use pats::PersonalToken;
pub use revocations::NewRevocation;
pub use sessions::{NewSession, OAuthBinding, RefreshLookup, Rotation, Session, Successor, Which};
pub use teams::{CreateTeam, Membership, MembershipChange, PermissionMap, Team, TEAM_ROLES};
pub use usage::UsageDelta;
pub use users::{
    Changed, CreateUserError, DeleteUser, ProfileChange, User, UserChange, UserTotals,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// Writes go here. SQLite has one writer at a time: a one-connection
    /// pool queues writers fairly instead of letting them spin on
    /// SQLITE_BUSY (which cost refreshes a p99 of ~80 ms at 8 concurrent).
    /// With PostgreSQL it is the same pool.
    writer: AnyPool,
    backend: Backend,
    /// Serialises key changes within this process (SQLite's only writer);
    /// PostgreSQL replicas also take an advisory lock.
    key_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Store {
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if url.starts_with("sqlite:") {
            (Backend::Sqlite, prepare_sqlite_url(url)?)
        } else {
            (Backend::Postgres, url.to_string())
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&url)
            .await?;
        let writer = if backend == Backend::Sqlite {
            // WAL lets readers proceed while a writer commits; it persists in the file.
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await?;
            AnyPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect(&url)
                .await?
        } else {
            pool.clone()
        };
        Ok(Store {
            pool,
            writer,
            backend,
            key_lock: Default::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// SQLite: rebuilds the user search index, which keys on rowids that
    /// `VACUUM` may renumber. Run when a server starts (not by every CLI
    /// command: it holds the write lock for a while on large databases).
    pub async fn rebuild_search_index(&self) -> sqlx::Result<()> {
        if self.backend == Backend::Sqlite {
            sqlx::query("INSERT INTO users_search(users_search) VALUES ('rebuild')")
                .execute(&self.writer)
                .await?;
        }
        Ok(())
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self.backend {
            Backend::Sqlite => {
                sqlx::migrate!("../migrations/sqlite")
                    .run(&self.writer)
                    .await?;
            }
            Backend::Postgres => {
                sqlx::migrate!("../migrations/postgres")
                    .run(&self.writer)
                    .await?
            }
        }
        Ok(())
    }

    pub async fn ping(&self) -> sqlx::Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

fn prepare_sqlite_url(url: &str) -> anyhow::Result<String> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let file = path.split('?').next().unwrap_or_default();
    if file != ":memory:" && !file.is_empty() {
        if let Some(parent) = std::path::Path::new(file).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)?;
            }
        }
    }
    // Create the file on first start.
    Ok(if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}
