//! The audit trail: one event shape, admin queries with filters and a
//! cursor, NDJSON export, retention, and the daily summary.

use issuer::domain::clock::Clock;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::*;

async fn get_json(t: &TestIssuer, path: &str, token: &str) -> Value {
    let r = t.get_auth(path, token).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json().await.expect("json")
}

async fn audit_queries_filter_and_page(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    // A user who signs in once and fails three times, from a known client.
    let email = unique_email("-audited");
    let user = t.register(&email, PASSWORD).await;
    let user_id = user["id"].as_str().expect("id");
    for _ in 0..3 {
        let r = t
            .http
            .post(t.url("/auth/login"))
            .header("user-agent", "audit-test/1.0")
            .json(&json!({"email": email, "password": "wrong password here"}))
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let tokens = t.login(&email, PASSWORD).await;

    // Failures name the account tried, the outcome, the reason and the client.
    let page = get_json(
        &t,
        "/admin/audit?action=login_failure&outcome=failure&limit=2",
        &admin,
    )
    .await;
    let events = page["events"].as_array().expect("events");
    assert_eq!(events.len(), 2, "{page}");
    for e in events {
        assert_eq!(e["action"], "login_failure");
        assert_eq!(e["outcome"], "failure");
        assert_eq!(e["reason"], "invalid_credentials");
        assert_eq!(e["email"], email.as_str());
        assert_eq!(e["user_agent"], "audit-test/1.0");
        assert_eq!(e["ip"], "127.0.0.1");
        assert!(e["time"].as_str().expect("time").ends_with('Z'));
    }
    let next = page["next"].as_str().expect("a next page");
    let rest = get_json(
        &t,
        &format!("/admin/audit?action=login_failure&limit=2&after={next}"),
        &admin,
    )
    .await;
    let rest = rest["events"].as_array().expect("events");
    assert_eq!(rest.len(), 1, "three failures in all: {rest:?}");
    assert!(rest[0]["id"].as_str() != events[1]["id"].as_str());

    // The sign-in carries its session; filters by user and session find it.
    let mine = get_json(
        &t,
        &format!("/admin/audit?user={user_id}&action=login_success"),
        &admin,
    )
    .await;
    let mine = mine["events"].as_array().expect("events");
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["session_id"], tokens.session_id.as_str());
    assert_eq!(mine[0]["actor_id"], user_id);
    assert_eq!(mine[0]["metadata"]["amr"], "pwd");
    let by_session = get_json(
        &t,
        &format!("/admin/audit?session={}", tokens.session_id),
        &admin,
    )
    .await;
    assert!(!by_session["events"].as_array().expect("e").is_empty());

    // An admin action names the admin as actor and the user as target.
    let r = t
        .http
        .post(t.url(&format!("/admin/users/{user_id}/logout-all")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("logout-all");
    assert_eq!(r.status(), StatusCode::OK);
    let admin_events = get_json(
        &t,
        &format!("/admin/audit?target={user_id}&action=user_sessions_ended"),
        &admin,
    )
    .await;
    let e = &admin_events["events"][0];
    assert_ne!(e["actor_id"], user_id);
    assert_eq!(e["target_id"], user_id);
    assert_eq!(e["metadata"]["sessions_ended"], 1);

    // A time window excludes everything before it.
    let future = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
        + 3600)
        .to_string();
    let none = get_json(&t, &format!("/admin/audit?since={future}"), &admin).await;
    assert_eq!(none["events"], json!([]));
    assert_eq!(none["next"], Value::Null);

    // Bad filters are named; non-admins are refused.
    for bad in [
        "/admin/audit?outcome=maybe",
        "/admin/audit?after=not-a-cursor",
        "/admin/audit?limit=0",
        "/admin/audit?limit=501",
        "/admin/audit?since=-5",
        "/admin/audit?since=abc",
        "/admin/audit?colour=red",
        "/admin/audit/export?limit=5",
        "/admin/reports/daily?days=0",
        "/admin/reports/daily?days=91",
    ] {
        let (status, code, _) = error_code(t.get_auth(bad, &admin).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            code == "invalid_request" || code == "invalid_query",
            "{bad}: {code}"
        );
    }
    // (The admin ended the user's sessions above: sign in again.)
    let tokens = t.login(&email, PASSWORD).await;
    let (status, _, _) = error_code(t.get_auth("/admin/audit", &tokens.access).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = error_code(t.get_auth("/admin/audit/export", &tokens.access).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn export_streams_every_match_as_ndjson(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    // More events than one export page holds, written straight to the store.
    let store = &t.server.state.store;
    for i in 0..2_100 {
        store
            .record_audit(
                &issuer::store::AuditEvent::new(1_000 + i, "bulk_test")
                    .actor("system")
                    .meta(json!({"n": i})),
            )
            .await
            .expect("audit");
    }
    let r = t
        .get_auth("/admin/audit/export?action=bulk_test", &admin)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-type"].to_str().expect("ct"),
        "application/x-ndjson"
    );
    let body = r.text().await.expect("body");
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON event"))
        .collect();
    assert_eq!(lines.len(), 2_100);
    // Newest first, each exactly once.
    let ns: Vec<i64> = lines
        .iter()
        .map(|l| l["metadata"]["n"].as_i64().expect("n"))
        .collect();
    let expected: Vec<i64> = (0..2_100).rev().collect();
    assert_eq!(ns, expected);
    // Filters apply to the export too.
    let r = t
        .get_auth("/admin/audit/export?action=bulk_test&until=2", &admin)
        .await;
    assert_eq!(r.text().await.expect("body").lines().count(), 1000);
}

async fn retention_and_daily_summary(backend: Backend) {
    let clock = manual_clock();
    let Some(t) = start_with(backend, clock.clone(), |a| {
        a.rate_limit_login = "3/60".parse().expect("rate");
    })
    .await
    else {
        return;
    };
    let admin = make_admin(&t).await;
    let email = unique_email("daily");
    t.register(&email, PASSWORD).await;
    t.login(&email, PASSWORD).await;
    t.login(&email, PASSWORD).await;
    // Over the login limit of 3 a minute (the admin's own sign-in counted).
    let mut limited = 0;
    for _ in 0..3 {
        if t.post(
            "/auth/login",
            json!({"email": email, "password": "nope nope nope"}),
        )
        .await
        .status()
            == StatusCode::TOO_MANY_REQUESTS
        {
            limited += 1;
        }
    }
    assert!(limited >= 2, "the limit refused: {limited}");
    // Refusals reach the audit trail as one summary per class.
    issuer::audit_refusals(&t.server.state).await;
    let events = get_json(&t, "/admin/audit?action=rate_limited", &admin).await;
    let e = &events["events"][0];
    assert_eq!(e["target_id"], "login");
    assert_eq!(e["metadata"]["count"], limited);
    assert_eq!(e["metadata"]["top_clients"][0]["ip"], "127.0.0.1");

    let report = get_json(&t, "/admin/reports/daily?days=3", &admin).await;
    let days = report["days"].as_array().expect("days");
    assert_eq!(days.len(), 3);
    let today = &days[0];
    assert_eq!(
        today["date"].as_str().expect("date"),
        issuer::store::civil_date(clock.now_ms().div_euclid(86_400_000))
    );
    assert_eq!(today["sign_ins"], 3, "admin once, user twice: {today}");
    assert_eq!(today["active_users"], 2, "{today}");
    assert_eq!(today["new_users"], 2);
    assert_eq!(today["rate_limited"], limited);
    assert_eq!(days[1]["sign_ins"], 0);
    assert_eq!(report["users"]["total"], 2);

    // Retention: a year and a day later the old events go, new ones stay.
    let days_kept = t.server.state.settings.audit_retention_days;
    clock.advance_secs((days_kept + 1) * 86_400);
    let cutoff = clock.now_ms() / 1000 - days_kept * 86_400;
    t.server
        .state
        .store
        .record_audit(&issuer::store::AuditEvent::new(clock.now_ms(), "fresh"))
        .await
        .expect("audit");
    let pruned = t
        .server
        .state
        .store
        .prune_audit(cutoff)
        .await
        .expect("prune");
    assert!(pruned >= 6, "old events pruned: {pruned}");
    let left = t
        .server
        .state
        .store
        .recent_audit_events(100)
        .await
        .expect("audit");
    assert_eq!(left, vec!["fresh".to_string()]);
}

on_both_backends!(
    audit_queries_filter_and_page,
    export_streams_every_match_as_ndjson,
    retention_and_daily_summary,
);
