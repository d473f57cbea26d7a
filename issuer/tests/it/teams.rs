//! Teams, memberships and the role → permission map: the admin API, who may
//! use it, what tokens carry, and what the feed announces.

use std::time::Duration;

use auth_types::{PermissionMap, RevocationKind};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::*;

on_both_backends!(
    teams_reach_tokens_and_membership_changes_revoke,
    only_owners_and_admins_manage_members,
    team_claims_are_bounded_and_say_so,
    team_claims_are_bounded_in_bytes_too,
    role_permissions_are_versioned_and_announced,
    team_and_role_input_is_validated,
    unchanged_memberships_revoke_nothing_and_outsiders_learn_nothing,
    an_invitation_is_worth_what_its_author_still_is,
);

/// An owner's invitation stands while they own the team; declined or
/// outlived, it adds nobody.
async fn an_invitation_is_worth_what_its_author_still_is(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let (alice, alice_email, _) = user(&t, "alice").await;
    let (bob, bob_email, _) = user(&t, "bob").await;
    let (carol, _, carol_tokens) = user(&t, "carol").await;
    let r = send(
        &t,
        reqwest::Method::POST,
        "/admin/teams",
        &admin,
        Some(json!({"slug": "green", "name": "Green", "owner": alice})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let alice_tokens = t.login(&alice_email, PASSWORD).await;
    for (who, role) in [(&carol, "member"), (&bob, "member")] {
        let r = send(
            &t,
            reqwest::Method::PUT,
            &format!("/auth/teams/green/members/{who}"),
            &alice_tokens.access,
            Some(json!({"role": role})),
        )
        .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    // Carol declines.
    let r = send(
        &t,
        reqwest::Method::DELETE,
        "/auth/teams/green/invitation",
        &carol_tokens.access,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = t
        .post_auth("/auth/teams/green/invitation", &carol_tokens.access, None)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Alice stops owning the team (an admin hands it to Carol); her
    // invitation to Bob is worth nothing now.
    for (who, role) in [(&carol, "owner"), (&alice, "member")] {
        let r = send(
            &t,
            reqwest::Method::PUT,
            &format!("/auth/teams/green/members/{who}"),
            &admin,
            Some(json!({"role": role})),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let bob_tokens = t.login(&bob_email, PASSWORD).await;
    let r = t
        .post_auth("/auth/teams/green/invitation", &bob_tokens.access, None)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let members: Value = t
        .get_auth("/auth/teams/green/members", &admin)
        .await
        .json()
        .await
        .expect("json");
    assert!(!members.to_string().contains(bob.as_str()), "{members}");
}

async fn send(
    t: &TestIssuer,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = t.http.request(method, t.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.expect("request")
}

/// A registered user: (id, tokens).
async fn user(t: &TestIssuer, tag: &str) -> (String, String, Tokens) {
    let email = unique_email(tag);
    let u: Value = t.register(&email, PASSWORD).await;
    let tokens = t.login(&email, PASSWORD).await;
    (u["id"].as_str().expect("id").to_string(), email, tokens)
}

fn generation_revoked(records: &[auth_types::RevocationRecord], user_id: &str) -> bool {
    records
        .iter()
        .any(|r| r.kind == RevocationKind::UserGeneration && r.subject == user_id)
}

async fn teams_reach_tokens_and_membership_changes_revoke(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let (alice, alice_email, _) = user(&t, "alice").await;
    let (bob, bob_email, bob_before) = user(&t, "bob").await;

    let r = send(
        &t,
        reqwest::Method::POST,
        "/admin/teams",
        &admin,
        Some(json!({"slug": "blue", "name": "Blue team", "owner": alice})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let alice_tokens = t.login(&alice_email, PASSWORD).await;
    let claims = t.verify(&alice_tokens.access).await;
    assert_eq!(claims.teams.get("blue").map(String::as_str), Some("owner"));
    assert!(!claims.teams_overflow);

    // The owner invites Bob (an owner adds people only with their
    // consent): nothing of Bob's is cut, and he is no member until he
    // accepts. Then his next refresh says he is one.
    let r = send(
        &t,
        reqwest::Method::PUT,
        &format!("/auth/teams/blue/members/{bob}"),
        &alice_tokens.access,
        Some(json!({"role": "member"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.json::<Value>().await.expect("json")["invited"], true);
    assert!(!generation_revoked(&feed_records(&t).await, &bob));
    assert_eq!(
        t.get_auth("/auth/me", &bob_before.access).await.status(),
        StatusCode::OK
    );
    let pending: Value = t
        .get_auth("/auth/teams/invitations", &bob_before.access)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(pending["invitations"][0]["team"], "blue");
    assert_eq!(pending["invitations"][0]["invited_by"], alice.as_str());
    assert!(t.verify(&bob_before.access).await.teams.is_empty());
    let r = t
        .post_auth("/auth/teams/blue/invitation", &bob_before.access, None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Spent: a second accept finds nothing.
    let r = t
        .post_auth("/auth/teams/blue/invitation", &bob_before.access, None)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = t.refresh(&bob_before.refresh).await;
    assert_eq!(r.status(), StatusCode::OK);
    let bob_now = Tokens::from(r.json::<Value>().await.expect("json"));
    assert_eq!(
        t.verify(&bob_now.access)
            .await
            .teams
            .get("blue")
            .map(String::as_str),
        Some("member")
    );
    let mine: Value = t
        .get_auth("/auth/teams", &bob_now.access)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(mine["teams"], json!([{"slug": "blue", "role": "member"}]));

    // Members see each other.
    let members: Value = t
        .get_auth("/auth/teams/blue/members", &bob_now.access)
        .await
        .json()
        .await
        .expect("json");
    let emails: Vec<&str> = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["email"].as_str().expect("email"))
        .collect();
    assert!(emails.contains(&alice_email.as_str()) && emails.contains(&bob_email.as_str()));

    // Bob leaves by himself.
    let r = send(
        &t,
        reqwest::Method::DELETE,
        &format!("/auth/teams/blue/members/{bob}"),
        &bob_now.access,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let bob_later = t.login(&bob_email, PASSWORD).await;
    assert!(t.verify(&bob_later.access).await.teams.is_empty());

    // The last owner stays.
    let r = send(
        &t,
        reqwest::Method::DELETE,
        &format!("/auth/teams/blue/members/{alice}"),
        &alice_tokens.access,
        None,
    )
    .await;
    let (status, code, _) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "last_owner")
    );

    // Deleting the team revokes its members' tokens.
    let r = send(
        &t,
        reqwest::Method::DELETE,
        "/admin/teams/blue",
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        t.get_auth("/auth/me", &alice_tokens.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let events = t
        .server
        .state
        .store
        .recent_audit_events(50)
        .await
        .expect("audit");
    for e in [
        "team_created",
        "team_member_invited",
        "team_invitation_accepted",
        "team_member_removed",
        "team_deleted",
    ] {
        assert!(events.contains(&e.to_string()), "{e} in {events:?}");
    }
}

async fn only_owners_and_admins_manage_members(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let (owner, _, _) = user(&t, "owner").await;
    let (member, member_email, _) = user(&t, "member").await;
    let (_, _, outsider) = user(&t, "outsider").await;
    for slug in ["red", "green"] {
        let r = send(
            &t,
            reqwest::Method::POST,
            "/admin/teams",
            &admin,
            Some(json!({"slug": slug, "name": slug, "owner": owner})),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let r = send(
        &t,
        reqwest::Method::PUT,
        &format!("/auth/teams/red/members/{member}"),
        &admin,
        Some(json!({"role": "maintainer"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "admins manage any team");
    let member_tokens = t.login(&member_email, PASSWORD).await;

    // A maintainer is not an owner.
    let r = send(
        &t,
        reqwest::Method::PUT,
        &format!("/auth/teams/red/members/{owner}"),
        &member_tokens.access,
        Some(json!({"role": "member"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // An outsider cannot even see the team.
    let r = t
        .get_auth("/auth/teams/red/members", &outsider.access)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Nor can a member of one team manage another.
    let r = send(
        &t,
        reqwest::Method::PUT,
        &format!("/auth/teams/green/members/{member}"),
        &member_tokens.access,
        Some(json!({"role": "owner"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Plain users cannot create teams or touch roles.
    for (method, path, body) in [
        (
            reqwest::Method::POST,
            "/admin/teams",
            Some(json!({"slug": "mine", "name": "Mine"})),
        ),
        (reqwest::Method::GET, "/admin/teams", None),
        (reqwest::Method::GET, "/admin/roles", None),
        (
            reqwest::Method::PUT,
            "/admin/roles/editor",
            Some(json!({"permissions": ["x"]})),
        ),
    ] {
        let r = send(&t, method.clone(), path, &outsider.access, body).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
    // No such user or team: 404, nothing written.
    let r = send(
        &t,
        reqwest::Method::PUT,
        "/auth/teams/red/members/no-such-user",
        &admin,
        Some(json!({"role": "member"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = send(
        &t,
        reqwest::Method::PUT,
        &format!("/auth/teams/nope/members/{member}"),
        &admin,
        Some(json!({"role": "member"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn team_claims_are_bounded_and_say_so(backend: Backend) {
    let Some(t) = start_with(
        backend,
        std::sync::Arc::new(issuer::domain::clock::SystemClock),
        |a| a.max_token_teams = 2,
    )
    .await
    else {
        return;
    };
    let admin = make_admin(&t).await;
    let (id, email, _) = user(&t, "many").await;
    for (i, slug) in ["t1", "t2", "t3"].iter().enumerate() {
        let r = send(
            &t,
            reqwest::Method::POST,
            "/admin/teams",
            &admin,
            Some(json!({"slug": slug, "name": slug, "owner": id})),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let claims = t.verify(&t.login(&email, PASSWORD).await.access).await;
        if i < 2 {
            assert_eq!(claims.teams.len(), i + 1);
            assert!(!claims.teams_overflow);
        } else {
            // Never a silently cut list: none, and a flag saying why.
            assert!(claims.teams.is_empty(), "{:?}", claims.teams);
            assert!(claims.teams_overflow);
        }
    }
}

async fn team_claims_are_bounded_in_bytes_too(backend: Backend) {
    let Some(t) = start_with(
        backend,
        std::sync::Arc::new(issuer::domain::clock::SystemClock),
        |a| a.max_token_teams = 1000,
    )
    .await
    else {
        return;
    };
    let admin = make_admin(&t).await;
    let (id, email, _) = user(&t, "wide").await;
    for i in 0..50 {
        let slug = format!("{}-{i:02}", "long-team-name".repeat(4));
        let r = send(
            &t,
            reqwest::Method::POST,
            "/admin/teams",
            &admin,
            Some(json!({"slug": slug, "name": "x", "owner": id})),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let tokens = t.login(&email, PASSWORD).await;
    let claims = t.verify(&tokens.access).await;
    assert!(claims.teams_overflow && claims.teams.is_empty());
    assert!(tokens.access.len() < 4096, "{} bytes", tokens.access.len());
}

async fn role_permissions_are_versioned_and_announced(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let map = || async {
        t.http
            .get(t.url("/internal/permissions"))
            .send()
            .await
            .expect("map")
            .json::<PermissionMap>()
            .await
            .expect("json")
    };
    let before = map().await;

    // Follow the feed, then change a role: the stream announces the version.
    let r = t
        .http
        .get(t.url("/internal/revocations/stream?after=0"))
        .send()
        .await
        .expect("stream");
    let mut body = Box::pin(r.bytes_stream());
    let r = send(
        &t,
        reqwest::Method::PUT,
        "/admin/roles/editor",
        &admin,
        Some(json!({"permissions": ["docs.write", "docs.read", "docs.read"], "description": "Edits docs"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let set: Value = r.json().await.expect("json");
    let version = set["version"].as_i64().expect("version");
    assert!(version > before.version);
    let mut seen = String::new();
    let wanted = format!("\"version\":{version}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(seen.contains("event: permissions_changed") && seen.contains(&wanted)) {
        match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            _ => panic!("no permissions_changed {version} within 10 s: {seen}"),
        }
    }
    let after = map().await;
    assert_eq!(after.version, version);
    assert_eq!(
        after.roles.get("editor"),
        Some(&vec!["docs.read".to_string(), "docs.write".to_string()]),
        "sorted, without duplicates"
    );
    let listed: Value = t
        .get_auth("/admin/roles", &admin)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        listed["roles"]["editor"],
        json!(["docs.read", "docs.write"])
    );

    let r = send(
        &t,
        reqwest::Method::DELETE,
        "/admin/roles/editor",
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let gone = map().await;
    assert!(gone.version > version);
    assert!(!gone.roles.contains_key("editor"));
    let r = send(
        &t,
        reqwest::Method::DELETE,
        "/admin/roles/editor",
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let events = t
        .server
        .state
        .store
        .recent_audit_events(20)
        .await
        .expect("audit");
    assert!(
        events.contains(&"role_set".to_string()) && events.contains(&"role_deleted".to_string())
    );
}

async fn team_and_role_input_is_validated(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    for (slug, name) in [
        ("", "x"),
        ("UPPER", "x"),
        ("-lead", "x"),
        ("trail-", "x"),
        ("has/slash", "x"),
        ("dots.no", "x"),
        ("ok", ""),
        ("ok", "   "),
    ] {
        let r = send(
            &t,
            reqwest::Method::POST,
            "/admin/teams",
            &admin,
            Some(json!({"slug": slug, "name": name})),
        )
        .await;
        let (status, code, _) = error_code(r).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_team"),
            "{slug:?} {name:?}"
        );
    }
    let long = "a".repeat(64);
    let r = send(
        &t,
        reqwest::Method::POST,
        "/admin/teams",
        &admin,
        Some(json!({"slug": long, "name": "x"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = send(
        &t,
        reqwest::Method::POST,
        "/admin/teams",
        &admin,
        Some(json!({"slug": "dup", "name": "x"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = send(
        &t,
        reqwest::Method::POST,
        "/admin/teams",
        &admin,
        Some(json!({"slug": "dup", "name": "y"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = send(
        &t,
        reqwest::Method::POST,
        "/admin/teams",
        &admin,
        Some(json!({"slug": "ghost", "name": "x", "owner": "no-such-user"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = send(
        &t,
        reqwest::Method::PUT,
        "/auth/teams/dup/members/someone",
        &admin,
        Some(json!({"role": "boss"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    for body in [
        json!({"permissions": ["has space"]}),
        json!({"permissions": [""]}),
        json!({"permissions": "not-a-list"}),
        json!({"permissions": [], "extra": 1}),
    ] {
        let r = send(
            &t,
            reqwest::Method::PUT,
            "/admin/roles/editor",
            &admin,
            Some(body.clone()),
        )
        .await;
        assert!(r.status().is_client_error(), "{body}: {}", r.status());
        let b: Value = r.json().await.expect("json error");
        assert!(b["error"].is_string());
    }
    let r = send(
        &t,
        reqwest::Method::POST,
        "/admin/teams",
        &admin,
        Some(json!({"slug": "ctl", "name": "bad\u{7}name"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Control characters in a path or query never reach the database.
    for path in [
        "/auth/teams/a%00b/members",
        "/admin/users/x%00y",
        "/admin/users?after=%00",
        "/auth/sessions/%0a",
    ] {
        let r = t.get_auth(path, &admin).await;
        let (status, code, _) = error_code(r).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{path}"
        );
    }
    // A path a proxy could read differently (one that decodes before it
    // matches `/auth/` prefixes) never reaches the router: even with an
    // admin token, `/admin/roles/..%2F..%2Fauth%2Fx` is not a role.
    for path in [
        // (Dot segments never leave reqwest: its URL parser resolves them;
        // the unit test of `canonical_path` covers them.)
        "/admin/roles/..%2F..%2Fauth%2Fx",
        "/admin/roles/a%5Cb",
        "/admin//users",
    ] {
        let r = send(
            &t,
            reqwest::Method::PUT,
            path,
            &admin,
            Some(json!({"permissions": []})),
        )
        .await;
        let (status, code, _) = error_code(r).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_path"),
            "{path}"
        );
    }
    let r = send(
        &t,
        reqwest::Method::PUT,
        "/admin/roles/bad%20role",
        &admin,
        Some(json!({"permissions": []})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

async fn unchanged_memberships_revoke_nothing_and_outsiders_learn_nothing(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let (owner, _, _) = user(&t, "owner").await;
    let (member, _, _) = user(&t, "member").await;
    let (_, _, outsider) = user(&t, "outsider").await;
    let r = send(
        &t,
        reqwest::Method::POST,
        "/admin/teams",
        &admin,
        Some(json!({"slug": "quiet", "name": "Quiet", "owner": owner})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let member_path = format!("/auth/teams/quiet/members/{member}");
    let put = |role: &'static str| {
        send(
            &t,
            reqwest::Method::PUT,
            &member_path,
            &admin,
            Some(json!({"role": role})),
        )
    };
    let count = |records: Vec<auth_types::RevocationRecord>| {
        records
            .iter()
            .filter(|r| r.kind == RevocationKind::UserGeneration && r.subject == member)
            .count()
    };
    // Adding and raising cut nothing (review finding: an owner could sign
    // anyone out by adding them again and again); the same role again
    // neither; only withdrawn rights do.
    for role in ["member", "maintainer", "maintainer", "maintainer"] {
        assert_eq!(put(role).await.status(), StatusCode::OK);
    }
    assert_eq!(count(feed_records(&t).await), 0);
    assert_eq!(put("member").await.status(), StatusCode::OK);
    assert_eq!(
        count(feed_records(&t).await),
        1,
        "a lower role is cut at once"
    );

    // "Leaving" a team one is not in: the same answer for a real team and
    // a made-up one.
    let outsider_id = t.verify(&outsider.access).await.sub;
    let mut answers = Vec::new();
    for slug in ["quiet", "no-such-team"] {
        let r = send(
            &t,
            reqwest::Method::DELETE,
            &format!("/auth/teams/{slug}/members/{outsider_id}"),
            &outsider.access,
            None,
        )
        .await;
        answers.push((r.status(), r.text().await.expect("body")));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, StatusCode::NOT_FOUND);

    // The only owner of a team cannot be deleted until someone else owns it.
    let r = send(
        &t,
        reqwest::Method::DELETE,
        &format!("/admin/users/{owner}"),
        &admin,
        None,
    )
    .await;
    let (status, code, message) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "sole_team_owner")
    );
    assert!(message.contains("quiet"), "{message}");
    let r = send(
        &t,
        reqwest::Method::PUT,
        &format!("/auth/teams/quiet/members/{member}"),
        &admin,
        Some(json!({"role": "owner"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = send(
        &t,
        reqwest::Method::DELETE,
        &format!("/admin/users/{owner}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}
