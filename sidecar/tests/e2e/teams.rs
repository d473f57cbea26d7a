//! Teams, roles and permissions at the edge, through real Envoy: team-scoped
//! routes, membership changes and role → permission changes reaching the
//! sidecar's decisions within the revocation lag, and bounded team claims.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

/// An admin's access token (registered through Envoy, promoted in the store).
async fn admin(stack: &Stack) -> String {
    let email = unique_email("admin");
    stack.login(&email).await;
    let store = &stack.issuer().state.store;
    let user = store
        .user_by_email(&email)
        .await
        .expect("db")
        .expect("user");
    store
        .set_roles(&user.id, &["admin".to_string()])
        .await
        .expect("roles");
    token(&stack.login_again(&email).await)
}

async fn issuer_call(
    stack: &Stack,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Value,
) -> reqwest::Response {
    stack
        .http
        .request(method, format!("{}{path}", stack.issuer().base_url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("issuer call")
}

async fn user_id(stack: &Stack, access: &str) -> String {
    let me: Value = stack
        .get("/auth/me", Some(access))
        .await
        .json()
        .await
        .expect("json");
    me["user"]["id"].as_str().expect("id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_routes_follow_membership_changes_at_the_edge() {
    let Some(stack) = Stack::start(|_| {}).await else {
        return;
    };
    let admin = admin(&stack).await;
    let alice = stack.login(&unique_email("alice")).await;
    let alice_id = user_id(&stack, &token(&alice)).await;
    for (slug, owner) in [("blue", Some(alice_id.clone())), ("red", None)] {
        let r = issuer_call(
            &stack,
            reqwest::Method::POST,
            "/admin/teams",
            &admin,
            json!({"slug": slug, "name": slug, "owner": owner}),
        )
        .await;
        assert_eq!(r.status(), 201);
    }
    // The token from before the membership was revoked with it; refresh.
    let r = stack
        .http
        .post(stack.url("/auth/refresh"))
        .json(&json!({"refresh_token": alice["refresh_token"]}))
        .send()
        .await
        .expect("refresh");
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.expect("json");
    let access = token(&tokens);
    assert_eq!(
        stack
            .get("/memory/teams/blue/doc", Some(&access))
            .await
            .status(),
        200
    );
    let r = stack.get("/memory/teams/red/doc", Some(&access)).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"],
        "not_team_member"
    );

    // An admin adds her to red: an addition cuts nothing (her current
    // token still opens blue); the refreshed one opens red too.
    let r = issuer_call(
        &stack,
        reqwest::Method::PUT,
        &format!("/auth/teams/red/members/{alice_id}"),
        &admin,
        json!({"role": "member"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        stack
            .get("/memory/teams/blue/doc", Some(&access))
            .await
            .status(),
        200
    );
    let r = stack
        .http
        .post(stack.url("/auth/refresh"))
        .json(&json!({"refresh_token": tokens["refresh_token"]}))
        .send()
        .await
        .expect("refresh");
    let access = token(&r.json::<Value>().await.expect("json"));
    assert_eq!(
        stack
            .get("/memory/teams/red/doc", Some(&access))
            .await
            .status(),
        200
    );
    // Removed from red: the edge refuses her current token within a second.
    let r = issuer_call(
        &stack,
        reqwest::Method::DELETE,
        &format!("/auth/teams/red/members/{alice_id}"),
        &admin,
        json!(null),
    )
    .await;
    assert_eq!(r.status(), 204);
    let lag = wait_until(Duration::from_secs(1), || async {
        stack
            .get("/memory/teams/blue/doc", Some(&access))
            .await
            .status()
            == 401
    })
    .await
    .expect("membership change reaches the edge within a second");
    eprintln!("membership change → old token refused at the edge after {lag:?}");
    // Admins pass any team's route.
    assert_eq!(
        stack
            .get("/memory/teams/green/doc", Some(&admin))
            .await
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_changes_reach_the_sidecar_without_a_new_token() {
    let Some(stack) = Stack::start(|_| {}).await else {
        return;
    };
    let admin = admin(&stack).await;
    let email = unique_email("modeller");
    stack.login(&email).await;
    let store = &stack.issuer().state.store;
    let user = store
        .user_by_email(&email)
        .await
        .expect("db")
        .expect("user");
    store
        .set_roles(&user.id, &["model-admin".to_string()])
        .await
        .expect("roles");
    let access = token(&stack.login_again(&email).await);
    let put = || {
        stack
            .http
            .put(stack.url("/ai/models/llama"))
            .bearer_auth(&access)
            .send()
    };
    let r = put().await.expect("put");
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"],
        "missing_permission"
    );
    assert_eq!(
        stack.get("/ai/models/llama", Some(&access)).await.status(),
        200,
        "reading needs no permission"
    );

    let grant = |permissions: Value| {
        issuer_call(
            &stack,
            reqwest::Method::PUT,
            "/admin/roles/model-admin",
            &admin,
            json!({ "permissions": permissions }),
        )
    };
    assert_eq!(grant(json!(["models.manage"])).await.status(), 200);
    let lag = wait_until(Duration::from_secs(1), || async {
        put().await.expect("put").status() == 200
    })
    .await
    .expect("the grant reaches the sidecar within a second, same token");
    eprintln!("role grant → allowed at the edge after {lag:?}");
    assert_eq!(grant(json!([])).await.status(), 200);
    wait_until(Duration::from_secs(1), || async {
        put().await.expect("put").status() == 403
    })
    .await
    .expect("the withdrawal reaches the sidecar within a second");
    let held = stack
        .sidecar
        .as_ref()
        .expect("sidecar")
        .authz()
        .permissions_version();
    assert!(held > 1);
    // A change written straight to the database (as the CLI does, with no
    // announcement) reaches the sidecar too: the feed repeats the version
    // with every heartbeat.
    stack
        .issuer()
        .state
        .store
        .set_role("model-admin", None, &["models.manage".to_string()], 0)
        .await
        .expect("set role");
    wait_until(Duration::from_secs(5), || async {
        put().await.expect("put").status() == 200
    })
    .await
    .expect("an unannounced change arrives with the heartbeats");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflowing_team_claims_are_refused_not_guessed() {
    let Some(stack) = Stack::start_with(|a| a.max_token_teams = 1, |_| {}).await else {
        return;
    };
    let admin = admin(&stack).await;
    let email = unique_email("joiner");
    let first = stack.login(&email).await;
    let id = user_id(&stack, &token(&first)).await;
    for slug in ["blue", "red"] {
        let r = issuer_call(
            &stack,
            reqwest::Method::POST,
            "/admin/teams",
            &admin,
            json!({"slug": slug, "name": slug, "owner": id}),
        )
        .await;
        assert_eq!(r.status(), 201);
    }
    let access = token(&stack.login_again(&email).await);
    let r = stack.get("/memory/teams/blue/doc", Some(&access)).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"],
        "team_claims_overflow"
    );
    // Routes that do not depend on teams are unaffected.
    assert_eq!(
        stack.get("/memory/notes", Some(&access)).await.status(),
        200
    );
}
