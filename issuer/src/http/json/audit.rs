//! `/admin/audit` and `/admin/reports/daily` over `service::audit`.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::http::error::ApiResult;
use crate::service::admin::Admin;
use crate::service::audit::{self, AuditQuery};
use crate::AppState;

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
    let page = audit::search(&state, &admin, q).await?;
    Ok(Json(json!({"events": page.events, "next": page.next})))
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
    let pages = audit::export(&state, &admin, q)?;
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
    let report = audit::daily(&state, &admin, q.days).await?;
    Ok(Json(
        serde_json::to_value(report).map_err(crate::service::error::Error::internal)?,
    ))
}
