//! The audit trail for admins: query with filters and a cursor, export as
//! NDJSON, and the daily summary computed from the events.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use crate::http::error::{ApiError, ApiResult};
use crate::service::admin::Admin;
use crate::store::{civil_date, AuditFilter, Outcome};
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

fn text(name: &str, v: Option<String>) -> ApiResult<Option<String>> {
    match v {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.chars().count() > MAX_FILTER_CHARS || v.chars().any(char::is_control) => {
            Err(ApiError::bad_request(
                "invalid_request",
                format!("{name}: at most {MAX_FILTER_CHARS} printable characters"),
            ))
        }
        Some(v) => Ok(Some(v)),
    }
}

fn secs_to_ms(name: &str, v: Option<i64>) -> ApiResult<Option<i64>> {
    v.map(|s| {
        s.checked_mul(1000).filter(|_| s >= 0).ok_or_else(|| {
            ApiError::bad_request("invalid_request", format!("{name}: Unix seconds"))
        })
    })
    .transpose()
}

impl AuditQuery {
    fn filter(self) -> ApiResult<(AuditFilter, Option<i64>)> {
        let outcome = match text("outcome", self.outcome)? {
            None => None,
            Some(o) => Some(Outcome::parse(&o).ok_or_else(|| {
                ApiError::bad_request("invalid_request", "outcome: success, failure or denied")
            })?),
        };
        let before_id = match self.after.as_deref() {
            None | Some("") => None,
            Some(c) => Some(
                URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| s.parse::<i64>().ok())
                    .filter(|id| *id > 0)
                    .ok_or_else(|| {
                        ApiError::bad_request("invalid_request", "after: not a cursor")
                    })?,
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

/// `GET /admin/audit?action=&outcome=&actor=&target=&user=&ip=&session=&since=&until=&after=&limit=`
/// Newest first; `next` continues the listing.
#[utoipa::path(
    get,
    path = "/admin/audit",
    operation_id = "audit_list",
    tag = "audit",
    summary = "Search the audit trail",
    params(AuditQuery),
    responses(
        (status = 200, description = "Audit events, newest first", body = crate::http::openapi::AnyObject),
    ),
    security(("admin" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let _auth = admin.auth();
    let (filter, limit) = q.filter()?;
    let limit = limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("limit: 1 to {MAX_PAGE}"),
        ));
    }
    let mut events = state
        .store
        .query_audit(&filter, limit + 1)
        .await
        .map_err(ApiError::internal)?;
    let more = events.len() as i64 > limit;
    events.truncate(usize::try_from(limit).unwrap_or(0));
    let next = more
        .then(|| events.last())
        .flatten()
        .map(|e| URL_SAFE_NO_PAD.encode(&e.id));
    Ok(Json(json!({"events": events, "next": next})))
}

/// `GET /admin/audit/export?<the same filters>`: every matching event as
/// NDJSON, newest first, read from the database a page at a time.
#[utoipa::path(
    get,
    path = "/admin/audit/export",
    operation_id = "audit_export",
    tag = "audit",
    summary = "Export the audit trail (NDJSON)",
    params(AuditQuery),
    responses(
        (status = 200, description = "Every matching event, one JSON object per line", content_type = "application/x-ndjson", body = String),
    ),
    security(("admin" = [])),
)]
pub async fn export(
    State(state): State<AppState>,
    admin: Admin,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Response> {
    let _auth = admin.auth();
    let (filter, limit) = q.filter()?;
    if limit.is_some() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "limit: not accepted by export (it returns every match)",
        ));
    }
    let store = state.store.clone();
    let pages = futures_util::stream::unfold(Some(filter), move |filter| {
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
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(chunk)), next))
                }
                // Headers are gone by now: end the body early, which the
                // client sees as a truncated transfer, and say why in the log.
                Err(e) => {
                    tracing::error!(error = %e, "audit export failed mid-stream");
                    Some((Err(std::io::Error::other("audit export failed")), None))
                }
            }
        }
    });
    let mut response = Body::from_stream(pages).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SummaryQuery {
    #[serde(default)]
    pub(crate) days: Option<i64>,
}

/// `GET /admin/reports/daily?days=7`: per UTC day (newest first) sign-ins,
/// failed sign-ins, rate-limited requests, refusals, active users (distinct
/// users who signed in) and new users; with the totals of users now.
#[utoipa::path(
    get,
    path = "/admin/reports/daily",
    operation_id = "audit_daily",
    tag = "audit",
    summary = "Daily security summary",
    params(SummaryQuery),
    responses(
        (status = 200, description = "Per UTC day: sign-ins, failures, refusals, users", body = crate::http::openapi::AnyObject),
    ),
    security(("admin" = [])),
)]
pub async fn daily(
    State(state): State<AppState>,
    admin: Admin,
    Query(q): Query<SummaryQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let _auth = admin.auth();
    let days = q.days.unwrap_or(7);
    if !(1..=MAX_SUMMARY_DAYS).contains(&days) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("days: 1 to {MAX_SUMMARY_DAYS}"),
        ));
    }
    let today = state.now().ms.div_euclid(DAY_MS);
    let first = today - days + 1;
    let since_ms = first * DAY_MS;
    let counts = state
        .store
        .daily_audit_counts(since_ms)
        .await
        .map_err(ApiError::internal)?;
    let limited = state
        .store
        .audit_metadata("rate_limited", since_ms)
        .await
        .map_err(ApiError::internal)?;
    let mut rows: BTreeMap<i64, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
    let mut add = |day: i64, key: &str, n: i64| {
        let row = rows.entry(day).or_default();
        let old = row.get(key).and_then(|v| v.as_i64()).unwrap_or(0);
        row.insert(key.to_string(), json!(old + n));
    };
    for c in &counts {
        match (c.action.as_str(), c.outcome.as_str()) {
            ("login_success", _) => {
                add(c.day, "sign_ins", c.events);
                add(c.day, "active_users", c.distinct_targets);
            }
            ("login_failure", _) => add(c.day, "sign_in_failures", c.events),
            ("register" | "github_account_created", _) => add(c.day, "new_users", c.events),
            // (Rate-limit summaries are counted by their own count below.)
            ("rate_limited", _) => {}
            (_, "denied") => add(c.day, "denied", c.events),
            _ => {}
        }
    }
    for (at_ms, meta) in &limited {
        let n = meta.get("count").and_then(|v| v.as_i64()).unwrap_or(0);
        add(at_ms.div_euclid(DAY_MS), "rate_limited", n);
    }
    let report: Vec<_> = (first..=today)
        .rev()
        .map(|day| {
            let row = rows.remove(&day).unwrap_or_default();
            let get = |k: &str| row.get(k).and_then(|v| v.as_i64()).unwrap_or(0);
            json!({
                "date": civil_date(day),
                "sign_ins": get("sign_ins"),
                "sign_in_failures": get("sign_in_failures"),
                "rate_limited": get("rate_limited"),
                "denied": get("denied"),
                "new_users": get("new_users"),
                "active_users": get("active_users"),
            })
        })
        .collect();
    let totals = state
        .store
        .user_totals()
        .await
        .map_err(ApiError::internal)?;
    let with_mfa = state
        .store
        .users_with_mfa()
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({
        "days": report,
        "users": {
            "total": totals.total,
            "disabled": totals.disabled,
            "email_verified": totals.email_verified,
            "with_mfa": with_mfa,
            "mfa_adoption": if totals.total > 0 { with_mfa as f64 / totals.total as f64 } else { 0.0 },
        },
    })))
}
