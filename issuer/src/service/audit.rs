//! The audit trail for admins: search with filters and a cursor, export
//! every match a page at a time, and the daily summary computed from the
//! events.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::service::admin::Admin;
use crate::service::error::{Error, Result};
use crate::store::{civil_date, AuditFilter, AuditRecord, Outcome};
use crate::AppState;

const MAX_PAGE: i64 = 500;
const EXPORT_PAGE: i64 = 1000;
const MAX_FILTER_CHARS: usize = 254;
const MAX_SUMMARY_DAYS: i64 = 90;
const DAY_MS: i64 = 86_400_000;

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    pub(crate) action: Option<String>,
    #[serde(default)]
    pub(crate) outcome: Option<String>,
    #[serde(default)]
    pub(crate) actor: Option<String>,
    #[serde(default)]
    pub(crate) target: Option<String>,
    /// Actor or target.
    #[serde(default)]
    pub(crate) user: Option<String>,
    #[serde(default)]
    pub(crate) ip: Option<String>,
    #[serde(default)]
    pub(crate) session: Option<String>,
    /// Unix seconds, inclusive.
    #[serde(default)]
    pub(crate) since: Option<i64>,
    /// Unix seconds, exclusive.
    #[serde(default)]
    pub(crate) until: Option<i64>,
    /// The `next` of the previous page.
    #[serde(default)]
    pub(crate) after: Option<String>,
    #[serde(default)]
    pub(crate) limit: Option<i64>,
}

fn text(name: &str, v: Option<String>) -> Result<Option<String>> {
    match v {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.chars().count() > MAX_FILTER_CHARS || v.chars().any(char::is_control) => {
            Err(Error::bad_request(
                "invalid_request",
                format!("{name}: at most {MAX_FILTER_CHARS} printable characters"),
            ))
        }
        Some(v) => Ok(Some(v)),
    }
}

fn secs_to_ms(name: &str, v: Option<i64>) -> Result<Option<i64>> {
    v.map(|s| {
        s.checked_mul(1000)
            .filter(|_| s >= 0)
            .ok_or_else(|| Error::bad_request("invalid_request", format!("{name}: Unix seconds")))
    })
    .transpose()
}

impl AuditQuery {
    fn filter(self) -> Result<(AuditFilter, Option<i64>)> {
        let outcome = match text("outcome", self.outcome)? {
            None => None,
            Some(o) => Some(Outcome::parse(&o).ok_or_else(|| {
                Error::bad_request("invalid_request", "outcome: success, failure or denied")
            })?),
        };
        let before_id = match crate::service::cursor::after(self.after.as_deref())? {
            None => None,
            Some(key) => Some(
                key.parse::<i64>()
                    .ok()
                    .filter(|id| *id > 0)
                    .ok_or_else(crate::service::cursor::not_a_cursor)?,
            ),
        };
        let filter = AuditFilter {
            action: text("action", self.action)?,
            outcome,
            actor_id: text("actor", self.actor)?,
            target_id: text("target", self.target)?,
            user_id: text("user", self.user)?,
            ip: text("ip", self.ip)?,
            session_id: text("session", self.session)?,
            since_ms: secs_to_ms("since", self.since)?,
            until_ms: secs_to_ms("until", self.until)?,
            before_id,
        };
        Ok((filter, self.limit))
    }
}

/// One page of events, newest first; `next` continues it.
pub struct Page {
    pub events: Vec<AuditRecord>,
    pub next: Option<String>,
}

pub async fn search(state: &AppState, _admin: &Admin, q: AuditQuery) -> Result<Page> {
    let (filter, limit) = q.filter()?;
    let limit = limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::bad_request(
            "invalid_request",
            format!("limit: 1 to {MAX_PAGE}"),
        ));
    }
    let mut events = state.store.query_audit(&filter, limit + 1).await?;
    let more = events.len() as i64 > limit;
    events.truncate(usize::try_from(limit).unwrap_or(0));
    let next = more
        .then(|| events.last())
        .flatten()
        .map(|e| crate::service::cursor::next(&e.id));
    Ok(Page { events, next })
}

/// Every matching event as NDJSON chunks, newest first, read from the
/// database a page at a time (the filters are checked before it starts).
pub fn export(
    state: &AppState,
    _admin: &Admin,
    q: AuditQuery,
) -> Result<impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>>> {
    let (filter, limit) = q.filter()?;
    if limit.is_some() {
        return Err(Error::bad_request(
            "invalid_request",
            "limit: not accepted by export (it returns every match)",
        ));
    }
    let store = state.store.clone();
    Ok(futures_util::stream::unfold(Some(filter), move |filter| {
        let store = store.clone();
        async move {
            let mut filter = filter?;
            match store.query_audit(&filter, EXPORT_PAGE).await {
                Ok(events) if events.is_empty() => None,
                Ok(events) => {
                    let mut chunk = Vec::new();
                    for e in &events {
                        if serde_json::to_writer(&mut chunk, e).is_ok() {
                            chunk.push(b'\n');
                        }
                    }
                    let last = events.last().and_then(|e| e.id.parse().ok());
                    let next = if (events.len() as i64) < EXPORT_PAGE {
                        None
                    } else {
                        filter.before_id = last;
                        Some(filter)
                    };
                    Some((Ok(bytes::Bytes::from(chunk)), next))
                }
                // Headers are gone by now: end the body early, which the
                // client sees as a truncated transfer, and say why in the log.
                Err(e) => {
                    tracing::error!(error = %e, "audit export failed mid-stream");
                    Some((Err(std::io::Error::other("audit export failed")), None))
                }
            }
        }
    }))
}

/// One UTC day of the summary. (Fields in alphabetical order: the JSON
/// answer has always listed them so.)
#[derive(Serialize, Default, Clone)]
pub struct Day {
    pub active_users: i64,
    pub date: String,
    pub denied: i64,
    pub new_users: i64,
    pub rate_limited: i64,
    pub sign_in_failures: i64,
    pub sign_ins: i64,
}

/// The users now.
#[derive(Serialize)]
pub struct Users {
    pub disabled: i64,
    pub email_verified: i64,
    pub mfa_adoption: f64,
    pub total: i64,
    pub with_mfa: i64,
}

/// Per UTC day, newest first, and the totals of users now.
#[derive(Serialize)]
pub struct Daily {
    pub days: Vec<Day>,
    pub users: Users,
}

/// Per UTC day (newest first) sign-ins, failed sign-ins, rate-limited
/// requests, refusals, active users (distinct users who signed in) and new
/// users; with the totals of users now.
pub async fn daily(state: &AppState, _admin: &Admin, days: Option<i64>) -> Result<Daily> {
    let days = days.unwrap_or(7);
    if !(1..=MAX_SUMMARY_DAYS).contains(&days) {
        return Err(Error::bad_request(
            "invalid_request",
            format!("days: 1 to {MAX_SUMMARY_DAYS}"),
        ));
    }
    let today = state.now().ms.div_euclid(DAY_MS);
    let first = today - days + 1;
    let since_ms = first * DAY_MS;
    let counts = state.store.daily_audit_counts(since_ms).await?;
    let limited = state.store.audit_metadata("rate_limited", since_ms).await?;
    let mut rows: BTreeMap<i64, Day> = BTreeMap::new();
    for c in &counts {
        let row = rows.entry(c.day).or_default();
        match (c.action.as_str(), c.outcome.as_str()) {
            ("login_success", _) => {
                row.sign_ins += c.events;
                row.active_users += c.distinct_targets;
            }
            ("login_failure", _) => row.sign_in_failures += c.events,
            ("register" | "github_account_created", _) => row.new_users += c.events,
            // (Rate-limit summaries are counted by their own count below.)
            ("rate_limited", _) => {}
            (_, "denied") => row.denied += c.events,
            _ => {}
        }
    }
    for (at_ms, meta) in &limited {
        let n = meta.get("count").and_then(|v| v.as_i64()).unwrap_or(0);
        rows.entry(at_ms.div_euclid(DAY_MS))
            .or_default()
            .rate_limited += n;
    }
    let report = (first..=today)
        .rev()
        .map(|day| Day {
            date: civil_date(day),
            ..rows.remove(&day).unwrap_or_default()
        })
        .collect();
    let totals = state.store.user_totals().await?;
    let with_mfa = state.store.users_with_mfa().await?;
    Ok(Daily {
        days: report,
        users: Users {
            total: totals.total,
            disabled: totals.disabled,
            email_verified: totals.email_verified,
            with_mfa,
            mfa_adoption: if totals.total > 0 {
                with_mfa as f64 / totals.total as f64
            } else {
                0.0
            },
        },
    })
}
