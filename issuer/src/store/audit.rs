//! The audit trail: one event shape for everything (who did what to whom,
//! from where, with what outcome), queried with filters and a cursor.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    /// The caller failed to prove something (wrong password, bad token).
    Failure,
    /// The caller was refused by a rule (disabled account, limit, policy).
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "success" => Some(Outcome::Success),
            "failure" => Some(Outcome::Failure),
            "denied" => Some(Outcome::Denied),
            _ => None,
        }
    }
}

/// An event to record. Build with [`AuditEvent::new`] and the setters.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at_ms: i64,
    pub action: String,
    pub outcome: Outcome,
    /// Who acted: a user id, or `cli` / `system`.
    pub actor_id: Option<String>,
    /// Whom or what it was done to: a user id, team slug, key id.
    pub target_id: Option<String>,
    /// The account name involved, when there may be no account (failed sign-in).
    pub email: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub session_id: Option<String>,
    pub reason: Option<String>,
    pub trace_id: Option<String>,
    pub metadata: serde_json::Value,
}

impl AuditEvent {
    pub fn new(at_ms: i64, action: &str) -> AuditEvent {
        AuditEvent {
            at_ms,
            action: action.to_string(),
            outcome: Outcome::Success,
            actor_id: None,
            target_id: None,
            email: None,
            ip: None,
            user_agent: None,
            session_id: None,
            reason: None,
            trace_id: None,
            metadata: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn outcome(mut self, outcome: Outcome, reason: &str) -> Self {
        self.outcome = outcome;
        self.reason = Some(reason.to_string());
        self
    }

    pub fn actor(mut self, id: &str) -> Self {
        self.actor_id = Some(id.to_string());
        self
    }

    pub fn target(mut self, id: &str) -> Self {
        self.target_id = Some(id.to_string());
        self
    }

    /// A user acting on their own account.
    pub fn user(mut self, user: &User) -> Self {
        self.actor_id = Some(user.id.clone());
        self.target_id = Some(user.id.clone());
        self.email = Some(user.email.clone());
        self
    }

    /// The account acted upon (by someone else).
    pub fn on_user(mut self, user: &User) -> Self {
        self.target_id = Some(user.id.clone());
        self.email = Some(user.email.clone());
        self
    }

    pub fn email(mut self, email: &str) -> Self {
        self.email = Some(email.to_string());
        self
    }

    pub fn session(mut self, id: &str) -> Self {
        self.session_id = Some(id.to_string());
        self
    }

    pub fn from_ip(mut self, ip: Option<&str>, user_agent: Option<&str>) -> Self {
        self.ip = ip.map(str::to_string);
        self.user_agent = user_agent.map(str::to_string);
        self
    }

    pub fn meta(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }
}

/// A recorded event, as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub id: String,
    pub time: String,
    pub at_ms: i64,
    pub action: String,
    pub outcome: String,
    pub actor_id: Option<String>,
    pub target_id: Option<String>,
    pub email: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub session_id: Option<String>,
    pub reason: Option<String>,
    pub trace_id: Option<String>,
    pub metadata: serde_json::Value,
}

/// Filters of an audit query; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub outcome: Option<Outcome>,
    pub actor_id: Option<String>,
    pub target_id: Option<String>,
    /// Either actor or target.
    pub user_id: Option<String>,
    pub ip: Option<String>,
    pub session_id: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Only events older than this id (the cursor of newest-first pages).
    pub before_id: Option<i64>,
}

/// Per UTC day and action: how many events and how many distinct targets.
#[derive(Debug, Clone)]
pub struct DailyCount {
    pub day: i64,
    pub action: String,
    pub outcome: String,
    pub events: i64,
    pub distinct_targets: i64,
}

impl Store {
    pub async fn record_audit(&self, e: &AuditEvent) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO audit_events (at_ms, action, outcome, actor_id, target_id, email, ip, \
             user_agent, session_id, reason, trace_id, metadata) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(e.at_ms)
        .bind(&e.action)
        .bind(e.outcome.as_str())
        .bind(e.actor_id.clone())
        .bind(e.target_id.clone())
        .bind(e.email.clone())
        .bind(e.ip.clone())
        .bind(e.user_agent.clone())
        .bind(e.session_id.clone())
        .bind(e.reason.clone())
        .bind(e.trace_id.clone())
        .bind(e.metadata.to_string())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Newest first, at most `limit`.
    pub async fn query_audit(
        &self,
        filter: &AuditFilter,
        limit: i64,
    ) -> sqlx::Result<Vec<AuditRecord>> {
        let mut sql = String::from(
            "SELECT id, at_ms, action, outcome, actor_id, target_id, email, ip, user_agent, \
             session_id, reason, trace_id, metadata FROM audit_events WHERE 1 = 1",
        );
        let mut texts: Vec<String> = Vec::new();
        let mut ints: Vec<i64> = Vec::new();
        // Text binds come first ($1..), then integers, so placeholders can be
        // numbered as the clauses are written.
        let mut clauses_text = Vec::new();
        let mut clauses_int = Vec::new();
        let mut text = |col: &str, v: &Option<String>| {
            if let Some(v) = v {
                texts.push(v.clone());
                clauses_text.push(format!("{col} = ${}", texts.len()));
            }
        };
        text("action", &filter.action);
        text("outcome", &filter.outcome.map(|o| o.as_str().to_string()));
        text("actor_id", &filter.actor_id);
        text("target_id", &filter.target_id);
        text("ip", &filter.ip);
        text("session_id", &filter.session_id);
        if let Some(user) = &filter.user_id {
            texts.push(user.clone());
            let n = texts.len();
            clauses_text.push(format!("(actor_id = ${n} OR target_id = ${n})"));
        }
        let base = texts.len();
        let mut int = |clause: &str, v: Option<i64>| {
            if let Some(v) = v {
                ints.push(v);
                clauses_int.push(format!("{clause} ${}", base + ints.len()));
            }
        };
        int("at_ms >=", filter.since_ms);
        int("at_ms <", filter.until_ms);
        int("id <", filter.before_id);
        for c in clauses_text.iter().chain(clauses_int.iter()) {
            sql.push_str(" AND ");
            sql.push_str(c);
        }
        sql.push_str(&format!(
            " ORDER BY id DESC LIMIT ${}",
            base + ints.len() + 1
        ));
        let mut q = sqlx::query(&sql);
        for t in texts {
            q = q.bind(t);
        }
        for i in ints {
            q = q.bind(i);
        }
        let rows = q.bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(audit_record).collect()
    }

    /// Action names of events where the user acted or was acted upon,
    /// newest first (for tests).
    pub async fn audit_events(&self, user_id: &str) -> sqlx::Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT action FROM audit_events WHERE actor_id = $1 OR target_id = $1 ORDER BY id DESC",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| r.try_get("action")).collect()
    }

    /// The newest `limit` action names of everyone, newest first.
    pub async fn recent_audit_events(&self, limit: i64) -> sqlx::Result<Vec<String>> {
        let rows = sqlx::query("SELECT action FROM audit_events ORDER BY id DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| r.try_get("action")).collect()
    }

    /// Event counts per UTC day, action and outcome since `since_ms`.
    pub async fn daily_audit_counts(&self, since_ms: i64) -> sqlx::Result<Vec<DailyCount>> {
        let rows = sqlx::query(
            "SELECT at_ms / 86400000 AS day, action, outcome, COUNT(*) AS events, \
             COUNT(DISTINCT target_id) AS targets FROM audit_events WHERE at_ms >= $1 \
             GROUP BY at_ms / 86400000, action, outcome",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DailyCount {
                    day: r.try_get("day")?,
                    action: r.try_get("action")?,
                    outcome: r.try_get("outcome")?,
                    events: r.try_get("events")?,
                    distinct_targets: r.try_get("targets")?,
                })
            })
            .collect()
    }

    /// Metadata of one action's events since `since_ms` (for summing counts).
    pub async fn audit_metadata(
        &self,
        action: &str,
        since_ms: i64,
    ) -> sqlx::Result<Vec<(i64, serde_json::Value)>> {
        let rows = sqlx::query(
            "SELECT at_ms, metadata FROM audit_events WHERE action = $1 AND at_ms >= $2",
        )
        .bind(action)
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let meta: String = r.try_get("metadata")?;
                Ok((
                    r.try_get("at_ms")?,
                    serde_json::from_str(&meta).unwrap_or(serde_json::Value::Null),
                ))
            })
            .collect()
    }

    /// Deletes audit events older than `before` (Unix seconds). Returns how many.
    pub async fn prune_audit(&self, before: i64) -> sqlx::Result<u64> {
        Ok(sqlx::query("DELETE FROM audit_events WHERE at_ms < $1")
            .bind(before.saturating_mul(1000))
            .execute(&self.writer)
            .await?
            .rows_affected())
    }
}

fn audit_record(r: &AnyRow) -> sqlx::Result<AuditRecord> {
    let id: i64 = r.try_get("id")?;
    let at_ms: i64 = r.try_get("at_ms")?;
    let metadata: String = r.try_get("metadata")?;
    Ok(AuditRecord {
        id: id.to_string(),
        time: rfc3339_ms(at_ms),
        at_ms,
        action: r.try_get("action")?,
        outcome: r.try_get("outcome")?,
        actor_id: r.try_get("actor_id")?,
        target_id: r.try_get("target_id")?,
        email: r.try_get("email")?,
        ip: r.try_get("ip")?,
        user_agent: r.try_get("user_agent")?,
        session_id: r.try_get("session_id")?,
        reason: r.try_get("reason")?,
        trace_id: r.try_get("trace_id")?,
        metadata: serde_json::from_str(&metadata).unwrap_or(serde_json::Value::Null),
    })
}
