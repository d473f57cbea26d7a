//! Device authorization requests (RFC 8628): made by a device, approved
//! or denied by its user on another screen, redeemed once by the device.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::Store;

/// A device's request, as the device authorization endpoint records it.
#[derive(Debug, Clone)]
pub struct NewDeviceCode<'a> {
    pub device_code_hash: &'a str,
    pub user_code_hash: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub resource: Option<&'a str>,
    pub created_at_ms: i64,
    pub expires_at: i64,
    pub poll_interval: i64,
    pub requested_ip: Option<&'a str>,
}

/// A pending request, as the verification page shows it.
#[derive(Debug, Clone)]
pub struct PendingDevice {
    pub client_id: String,
    pub scope: String,
    pub resource: Option<String>,
    pub expires_at: i64,
    pub created_at: i64,
    pub requested_ip: Option<String>,
}

/// Who approves a request: the user, as signed in in this browser session.
#[derive(Debug, Clone, Copy)]
pub struct Approval<'a> {
    pub user_id: &'a str,
    pub session_id: &'a str,
    pub amr: &'a str,
    pub auth_time: i64,
}

/// What the user approved: what the device's session is opened with.
#[derive(Debug, Clone)]
pub struct ApprovedDevice {
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub resource: Option<String>,
    pub amr: String,
    pub auth_time: i64,
    /// The browser session that approved.
    pub approved_by_session: String,
}

/// What a device's poll found (RFC 8628 §3.5).
#[derive(Debug)]
pub enum Poll {
    /// Approved, and now used: this poll opens the session.
    Approved(ApprovedDevice),
    Pending,
    /// Polled sooner than its interval allows; the interval grew by 5 s.
    SlowDown,
    Denied,
    Expired,
    /// Unknown, another client's, or used before.
    Invalid,
}

/// How much a `slow_down` adds to the device's interval (RFC 8628 §3.5).
pub const SLOW_DOWN_SECS: i64 = 5;

fn pending_from_row(row: &AnyRow) -> sqlx::Result<PendingDevice> {
    Ok(PendingDevice {
        client_id: row.try_get("client_id")?,
        scope: row.try_get("scope")?,
        resource: row.try_get("resource")?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
        requested_ip: row.try_get("requested_ip")?,
    })
}

impl Store {
    /// Records a request; false when its user code is taken (the caller
    /// draws another).
    pub async fn create_device_code(&self, d: &NewDeviceCode<'_>) -> sqlx::Result<bool> {
        let done = sqlx::query(
            "INSERT INTO device_codes (device_code_hash, user_code_hash, client_id, scope, \
             resource, created_at, expires_at, poll_interval, polled_at_ms, requested_ip) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
        )
        .bind(d.device_code_hash)
        .bind(d.user_code_hash)
        .bind(d.client_id)
        .bind(d.scope)
        .bind(d.resource)
        .bind(d.created_at_ms.div_euclid(1000))
        .bind(d.expires_at)
        .bind(d.poll_interval)
        // The first poll may come at once (clients do: RFC 8628 asks the
        // interval between polls).
        .bind(d.created_at_ms - d.poll_interval * 1000)
        .bind(d.requested_ip)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The pending, unexpired request a user code names.
    pub async fn pending_device(
        &self,
        user_code_hash: &str,
        now: i64,
    ) -> sqlx::Result<Option<PendingDevice>> {
        let row = sqlx::query(
            "SELECT client_id, scope, resource, expires_at, created_at, requested_ip \
             FROM device_codes \
             WHERE user_code_hash = $1 AND status = 'pending' AND expires_at > $2",
        )
        .bind(user_code_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(pending_from_row).transpose()
    }

    /// The user's answer to a pending, unexpired request; false when it is
    /// no longer pending (answered in another tab, or expired).
    pub async fn decide_device(
        &self,
        user_code_hash: &str,
        approved: Option<Approval<'_>>,
        now: i64,
    ) -> sqlx::Result<bool> {
        let status = if approved.is_some() {
            "approved"
        } else {
            "denied"
        };
        let done = sqlx::query(
            "UPDATE device_codes SET status = $1, user_id = $2, amr = $3, auth_time = $4, \
             approved_by_session = $5 \
             WHERE user_code_hash = $6 AND status = 'pending' AND expires_at > $7",
        )
        .bind(status)
        .bind(approved.map(|a| a.user_id))
        .bind(approved.map(|a| a.amr))
        .bind(approved.map(|a| a.auth_time))
        .bind(approved.map(|a| a.session_id))
        .bind(user_code_hash)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A device's poll: too soon (slow down), then the request's state; an
    /// approved request is used by the first poll that finds it, once.
    pub async fn poll_device(
        &self,
        device_code_hash: &str,
        client_id: &str,
        now_ms: i64,
    ) -> sqlx::Result<Poll> {
        let now = now_ms.div_euclid(1000);
        let row = sqlx::query(
            "SELECT status, expires_at FROM device_codes \
             WHERE device_code_hash = $1 AND client_id = $2",
        )
        .bind(device_code_hash)
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(Poll::Invalid);
        };
        let status: String = row.try_get("status")?;
        let expires_at: i64 = row.try_get("expires_at")?;
        if status == "used" {
            return Ok(Poll::Invalid);
        }
        if expires_at <= now {
            return Ok(Poll::Expired);
        }
        // One poll per interval: the update that moves `polled_at_ms` is the
        // one that may go on (two racing polls cannot both).
        let on_time = sqlx::query(
            "UPDATE device_codes SET polled_at_ms = $1 WHERE device_code_hash = $2 \
             AND polled_at_ms <= $1 - poll_interval * 1000",
        )
        .bind(now_ms)
        .bind(device_code_hash)
        .execute(&self.writer)
        .await?;
        if on_time.rows_affected() == 0 {
            sqlx::query(
                "UPDATE device_codes SET poll_interval = poll_interval + $1, polled_at_ms = $2 \
                 WHERE device_code_hash = $3",
            )
            .bind(SLOW_DOWN_SECS)
            .bind(now_ms)
            .bind(device_code_hash)
            .execute(&self.writer)
            .await?;
            return Ok(Poll::SlowDown);
        }
        match status.as_str() {
            "pending" => return Ok(Poll::Pending),
            "denied" => return Ok(Poll::Denied),
            _ => {}
        }
        let won = sqlx::query(
            "UPDATE device_codes SET status = 'used' WHERE device_code_hash = $1 \
             AND status = 'approved' \
             RETURNING client_id, user_id, scope, resource, amr, auth_time, approved_by_session",
        )
        .bind(device_code_hash)
        .fetch_optional(&self.writer)
        .await?;
        let Some(row) = won else {
            return Ok(Poll::Invalid);
        };
        Ok(Poll::Approved(ApprovedDevice {
            client_id: row.try_get("client_id")?,
            user_id: row.try_get("user_id")?,
            scope: row.try_get("scope")?,
            resource: row.try_get("resource")?,
            amr: row.try_get("amr")?,
            auth_time: row.try_get("auth_time")?,
            approved_by_session: row.try_get("approved_by_session")?,
        }))
    }

    /// Deletes requests that expired before `before`.
    pub async fn prune_device_codes(&self, before: i64) -> sqlx::Result<u64> {
        let done = sqlx::query("DELETE FROM device_codes WHERE expires_at < $1")
            .bind(before)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }
}
