//! Sessions and their rotating refresh tokens.

use auth_types::{RevocationKind, RevocationRecord};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::revocations::insert_revocation;
use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub created_at: i64,
    pub last_used_at: i64,
    pub idle_expires_at: i64,
    pub absolute_expires_at: i64,
    pub revoked_at: Option<i64>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub amr: String,
    /// When the user last actively authenticated in this session (sign-in
    /// or step-up), Unix seconds.
    pub auth_time: i64,
    /// The OAuth client the session was opened for (its tokens carry it,
    /// only it may refresh); `None` for the issuer's own sign-in.
    pub client_id: Option<String>,
    /// The scope granted to that client.
    pub scope: Option<String>,
    /// The resource (RFC 8707) its access tokens are for; `None`: the
    /// issuer's audience.
    pub resource: Option<String>,
    /// Its access tokens' lifetime when its client set one (seconds).
    pub access_ttl: Option<i64>,
    /// The DPoP key (RFC 9449 thumbprint) it is bound to, if any.
    pub dpop_jkt: Option<String>,
}

impl Session {
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && now < self.idle_expires_at && now < self.absolute_expires_at
    }
}

pub struct NewSession<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub now: i64,
    pub idle_expires_at: i64,
    pub absolute_expires_at: i64,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub amr: &'a str,
    pub refresh_hash: &'a str,
    /// The passkey (credential id) that opened it, if one did.
    pub opened_by: Option<&'a str>,
    /// For an OAuth client: its id, the granted scope, and when the user
    /// authenticated (the browser session's, not now).
    pub oauth: Option<OAuthBinding<'a>>,
}

#[derive(Debug, Clone, Copy)]
pub struct OAuthBinding<'a> {
    pub client_id: &'a str,
    pub scope: &'a str,
    pub auth_time: i64,
    /// The resource (RFC 8707) its access tokens are for.
    pub resource: Option<&'a str>,
    /// The client's access-token lifetime, kept for the session's refreshes.
    pub access_ttl: Option<i64>,
    /// The DPoP key the client proved it holds (RFC 9449), if it did.
    pub dpop_jkt: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct RefreshLookup {
    pub session: Session,
    pub rotated_at: Option<i64>,
    /// Set when this token was rotated: what it was rotated into.
    pub successor: Option<Successor>,
}

/// The token a rotated refresh token was replaced by, for the grace window.
#[derive(Debug, Clone)]
pub struct Successor {
    pub rotated_at_ms: i64,
    /// The successor token sealed with the KEK; cleared once the session
    /// rotates again, so only the newest rotation can be replayed into.
    pub sealed: Option<Vec<u8>>,
    /// Whether the successor has itself been rotated (this token is then
    /// two generations old).
    pub successor_rotated: bool,
}

/// What a rotation writes.
pub struct Rotation<'a> {
    pub session_id: &'a str,
    pub old_hash: &'a str,
    pub new_hash: &'a str,
    /// `None` when the grace window is off.
    pub new_sealed: Option<&'a [u8]>,
    pub now_ms: i64,
    pub idle_expires_at: i64,
}

pub(super) const SESSION_COLUMNS: &str =
    "s.id, s.user_id, s.created_at, s.last_used_at, s.idle_expires_at, \
     s.absolute_expires_at, s.revoked_at, s.ip, s.user_agent, s.amr, \
     COALESCE(s.auth_time, s.created_at) AS auth_time, s.client_id, s.scope, s.resource, \
     s.access_ttl, s.dpop_jkt";

impl Store {
    // ---- sessions and refresh tokens ----

    pub async fn create_session(&self, s: &NewSession<'_>) -> sqlx::Result<()> {
        let mut tx = self.writer.begin().await?;
        insert_session(&mut tx, s).await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES ($1, $2, $3)",
        )
        .bind(s.refresh_hash)
        .bind(s.id)
        .bind(s.now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    pub async fn session(&self, id: &str) -> sqlx::Result<Option<Session>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    pub async fn live_sessions(&self, user_id: &str, now: i64) -> sqlx::Result<Vec<Session>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.user_id = $1 AND s.revoked_at IS NULL \
             AND s.idle_expires_at > $2 AND s.absolute_expires_at > $2 ORDER BY s.created_at DESC, s.id"
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(session_from_row).collect()
    }

    pub async fn find_refresh(&self, token_hash: &str) -> sqlx::Result<Option<RefreshLookup>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS}, r.rotated_at, r.rotated_at_ms, r.successor_sealed, \
             n.token_hash AS successor_hash, n.rotated_at AS successor_rotated_at \
             FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id \
             LEFT JOIN refresh_tokens n ON n.token_hash = r.successor_hash \
             WHERE r.token_hash = $1"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let rotated_at_ms: Option<i64> = row.try_get("rotated_at_ms")?;
        let successor_hash: Option<String> = row.try_get("successor_hash")?;
        let successor = match (rotated_at_ms, successor_hash) {
            (Some(rotated_at_ms), Some(_)) => Some(Successor {
                rotated_at_ms,
                sealed: row.try_get("successor_sealed")?,
                successor_rotated: row
                    .try_get::<Option<i64>, _>("successor_rotated_at")?
                    .is_some(),
            }),
            _ => None,
        };
        Ok(Some(RefreshLookup {
            session: session_from_row(&row)?,
            rotated_at: row.try_get("rotated_at")?,
            successor,
        }))
    }

    /// Marks `old_hash` rotated into `new_hash`, only if `old_hash` was not
    /// rotated already: of two concurrent refreshes exactly one wins, and the
    /// loser reads the winner's successor (decided once, here, for every
    /// replica).
    pub async fn rotate_refresh(&self, r: &Rotation<'_>) -> sqlx::Result<bool> {
        let mut tx = self.writer.begin().await?;
        let won = sqlx::query(
            "UPDATE refresh_tokens SET rotated_at = $1, rotated_at_ms = $2, successor_hash = $3, \
             successor_sealed = $4 WHERE token_hash = $5 AND rotated_at IS NULL",
        )
        .bind(r.now_ms.div_euclid(1000))
        .bind(r.now_ms)
        .bind(r.new_hash)
        .bind(r.new_sealed.map(<[u8]>::to_vec))
        .bind(r.old_hash)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !won {
            tx.rollback().await?;
            return Ok(false);
        }
        // Only the newest rotation keeps its sealed successor.
        sqlx::query(
            "UPDATE refresh_tokens SET successor_sealed = NULL \
             WHERE session_id = $1 AND token_hash <> $2 AND successor_sealed IS NOT NULL",
        )
        .bind(r.session_id)
        .bind(r.old_hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES ($1, $2, $3)",
        )
        .bind(r.new_hash)
        .bind(r.session_id)
        .bind(r.now_ms.div_euclid(1000))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE sessions SET last_used_at = $1, idle_expires_at = $2 \
             WHERE id = $3 AND revoked_at IS NULL",
        )
        .bind(r.now_ms.div_euclid(1000))
        .bind(r.idle_expires_at)
        .bind(r.session_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Ends a session and records its revocation; `None` if it had already ended.
    pub async fn revoke_session(
        &self,
        session_id: &str,
        reason: &str,
        now_ms: i64,
        revocation_expires_at: i64,
    ) -> sqlx::Result<Option<RevocationRecord>> {
        let mut tx = self.begin_revoking().await?;
        let record =
            revoke_one_session(&mut tx, session_id, reason, now_ms, revocation_expires_at).await?;
        tx.commit().await?;
        Ok(record)
    }

    pub async fn revoke_all_sessions(
        &self,
        user_id: &str,
        reason: &str,
        now_ms: i64,
        revocation_expires_at: i64,
    ) -> sqlx::Result<Vec<RevocationRecord>> {
        let mut tx = self.begin_revoking().await?;
        let records =
            revoke_user_sessions(&mut tx, user_id, reason, now_ms, revocation_expires_at).await?;
        tx.commit().await?;
        Ok(records)
    }

    /// Ends every session of the user but `keep` (after a first second
    /// factor: sessions from before it were one-factor).
    pub async fn revoke_other_sessions(
        &self,
        user_id: &str,
        keep: &str,
        reason: &str,
        now_ms: i64,
        revocation_expires_at: i64,
    ) -> sqlx::Result<Vec<RevocationRecord>> {
        let which = Which::AllBut(keep);
        self.revoke_sessions(user_id, which, reason, now_ms, revocation_expires_at)
            .await
    }

    /// Ends the user's sessions that `which` names.
    pub async fn revoke_sessions(
        &self,
        user_id: &str,
        which: Which<'_>,
        reason: &str,
        now_ms: i64,
        revocation_expires_at: i64,
    ) -> sqlx::Result<Vec<RevocationRecord>> {
        let mut tx = self.begin_revoking().await?;
        let records = revoke_sessions_where(
            &mut tx,
            user_id,
            which,
            reason,
            now_ms,
            revocation_expires_at,
        )
        .await?;
        tx.commit().await?;
        Ok(records)
    }

    /// Step-up: the user proved a factor again inside a live session.
    /// `by`: the passkey that proved it, if one did (removing that passkey
    /// then ends the session).
    pub async fn step_up_session(
        &self,
        session_id: &str,
        amr: &str,
        auth_time: i64,
        by: Option<&str>,
    ) -> sqlx::Result<bool> {
        Ok(sqlx::query(
            "UPDATE sessions SET amr = $1, auth_time = $2, opened_by = COALESCE($4, opened_by) \
             WHERE id = $3 AND revoked_at IS NULL",
        )
        .bind(amr)
        .bind(auth_time)
        .bind(session_id)
        .bind(by.map(str::to_string))
        .execute(&self.writer)
        .await?
        .rows_affected()
            == 1)
    }

    /// A transaction that may write revocation records. On PostgreSQL it holds
    /// an advisory lock so sequence numbers commit in order: a follower reading
    /// "after seq N" can then never miss a record that commits later with a
    /// smaller number. SQLite serialises writers anyway.
    pub(super) async fn begin_revoking(&self) -> sqlx::Result<Transaction<'static, Any>> {
        let mut tx = self.writer.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7283001)")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }
}

pub(super) async fn revoke_one_session(
    tx: &mut Transaction<'static, Any>,
    session_id: &str,
    reason: &str,
    now_ms: i64,
    revocation_expires_at: i64,
) -> sqlx::Result<Option<RevocationRecord>> {
    let ended = sqlx::query(
        "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL",
    )
    .bind(now_ms.div_euclid(1000))
    .bind(reason)
    .bind(session_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if ended == 0 {
        return Ok(None);
    }
    super::backchannel::queue_logouts(tx, &[session_id.to_string()], now_ms.div_euclid(1000))
        .await?;
    let record = insert_revocation(
        tx,
        &NewRevocation {
            kind: RevocationKind::Session,
            subject: session_id,
            issued_before: 0,
            created_at_ms: now_ms,
            expires_at: revocation_expires_at,
        },
    )
    .await?;
    Ok(Some(record))
}

/// Ends every live session of a user in two set-based statements (records
/// first, then the sessions), not one round trip per session.
pub(super) async fn revoke_user_sessions(
    tx: &mut Transaction<'static, Any>,
    user_id: &str,
    reason: &str,
    now_ms: i64,
    revocation_expires_at: i64,
) -> sqlx::Result<Vec<RevocationRecord>> {
    revoke_sessions_where(
        tx,
        user_id,
        Which::All,
        reason,
        now_ms,
        revocation_expires_at,
    )
    .await
}

/// Like [`revoke_user_sessions`], limited to sessions whose `amr` is `amr`
/// when given (the sessions a sign-in method started).
/// Which of a user's sessions to end.
#[derive(Debug, Clone, Copy)]
pub enum Which<'a> {
    All,
    /// Those a sign-in method started (the first word of `amr`: `fed`, or
    /// `fed otp mfa` after a second factor).
    SignedInWith(&'a str),
    /// All but this session.
    AllBut(&'a str),
    /// Those without a second factor in their `amr`.
    OneFactor,
    /// Those this passkey (credential id) opened, but `keep`.
    OpenedByBut(&'a str, &'a str),
    /// Those a one-time code (TOTP, a recovery code) completed, but `keep`.
    CodesBut(&'a str),
    /// Those opened for this OAuth client.
    OfClient(&'a str),
}

pub(super) async fn revoke_sessions_where(
    tx: &mut Transaction<'static, Any>,
    user_id: &str,
    which: Which<'_>,
    reason: &str,
    now_ms: i64,
    revocation_expires_at: i64,
) -> sqlx::Result<Vec<RevocationRecord>> {
    let (only, args): (&str, Vec<&str>) = match which {
        Which::All => ("", vec![]),
        Which::SignedInWith(amr) => (" AND (amr = $4 OR amr LIKE $4 || ' %')", vec![amr]),
        Which::AllBut(id) => (" AND id <> $4", vec![id]),
        Which::OneFactor => (" AND (' ' || amr || ' ') NOT LIKE '% mfa %'", vec![]),
        Which::OpenedByBut(cred, keep) => (" AND opened_by = $4 AND id <> $5", vec![cred, keep]),
        Which::CodesBut(keep) => (
            " AND id <> $4 AND ((' ' || amr || ' ') LIKE '% otp %' \
             OR (' ' || amr || ' ') LIKE '% rc %')",
            vec![keep],
        ),
        Which::OfClient(client) => (" AND client_id = $4", vec![client]),
    };
    let insert = format!(
        "INSERT INTO revocations (kind, subject, issued_before, created_at_ms, expires_at) \
         SELECT 'session', id, 0, $1, $2 FROM sessions \
         WHERE user_id = $3 AND revoked_at IS NULL{only} ORDER BY id \
         RETURNING seq, subject"
    );
    let mut q = sqlx::query(&insert)
        .bind(now_ms)
        .bind(revocation_expires_at)
        .bind(user_id);
    for a in &args {
        q = q.bind(*a);
    }
    let rows = q.fetch_all(&mut **tx).await?;
    let ended: Vec<String> = rows
        .iter()
        .map(|row| row.try_get("subject"))
        .collect::<sqlx::Result<_>>()?;
    super::backchannel::queue_logouts(tx, &ended, now_ms.div_euclid(1000)).await?;
    let update = format!(
        "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
         WHERE user_id = $3 AND revoked_at IS NULL{only}"
    );
    let mut q = sqlx::query(&update)
        .bind(now_ms.div_euclid(1000))
        .bind(reason)
        .bind(user_id);
    for a in &args {
        q = q.bind(*a);
    }
    q.execute(&mut **tx).await?;
    let mut records = rows
        .iter()
        .map(|row| {
            Ok(RevocationRecord {
                seq: row.try_get("seq")?,
                kind: RevocationKind::Session,
                subject: row.try_get("subject")?,
                issued_before: 0,
                created_at_ms: now_ms,
                expires_at: revocation_expires_at,
            })
        })
        .collect::<sqlx::Result<Vec<_>>>()?;
    records.sort_by_key(|r| r.seq);
    Ok(records)
}

pub(super) fn session_from_row(row: &AnyRow) -> sqlx::Result<Session> {
    Ok(Session {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        idle_expires_at: row.try_get("idle_expires_at")?,
        absolute_expires_at: row.try_get("absolute_expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
        amr: row.try_get("amr")?,
        auth_time: row.try_get("auth_time")?,
        client_id: row.try_get("client_id")?,
        scope: row.try_get("scope")?,
        resource: row.try_get("resource")?,
        access_ttl: row.try_get("access_ttl")?,
        dpop_jkt: row.try_get("dpop_jkt")?,
    })
}

/// The session's row alone (its refresh token, if it has one, is the
/// caller's to add in the same transaction).
pub(super) async fn insert_session(
    tx: &mut Transaction<'_, Any>,
    s: &NewSession<'_>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO sessions (id, user_id, created_at, last_used_at, idle_expires_at, \
         absolute_expires_at, ip, user_agent, amr, opened_by, client_id, scope, auth_time, \
         resource, access_ttl, dpop_jkt) \
         VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(s.id)
    .bind(s.user_id)
    .bind(s.now)
    .bind(s.idle_expires_at)
    .bind(s.absolute_expires_at)
    .bind(s.ip.map(str::to_string))
    .bind(s.user_agent.map(str::to_string))
    .bind(s.amr)
    .bind(s.opened_by.map(str::to_string))
    .bind(s.oauth.map(|o| o.client_id.to_string()))
    .bind(s.oauth.map(|o| o.scope.to_string()))
    .bind(s.oauth.map(|o| o.auth_time))
    .bind(s.oauth.and_then(|o| o.resource.map(str::to_string)))
    .bind(s.oauth.and_then(|o| o.access_ttl))
    .bind(s.oauth.and_then(|o| o.dpop_jkt.map(str::to_string)))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
