//! Token exchange (RFC 8693): a service registered for it trades the token
//! a user called it with for a token to another service it is registered
//! for, `sub` = the user, `act` = the service, narrower in scope, never
//! outliving the user's token; what ends the user's session, or the
//! service, ends it. The negative cases of the spec, on SQLite and
//! PostgreSQL.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::oauth::{oauth_error, register_client};
use crate::on_both_backends;
use crate::support::*;

on_both_backends!(services_act_for_users);

const MEMORY: &str = "https://memory.devmentor.test";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The issuer's own sign-in (`--client-id`'s default).
const FIRST_PARTY: &str = "devmentor-auth";

fn gateway(id: &str, extra: Value) -> Value {
    let mut body = json!({"client_id": id, "name": "AI gateway", "type": "confidential",
        "redirect_uris": [], "grant_types": [EXCHANGE],
        "scopes": ["openid", "memory:read", "memory:write"], "audiences": [MEMORY],
        "subject_clients": [FIRST_PARTY]});
    for (k, v) in extra.as_object().expect("object") {
        body[k] = v.clone();
    }
    body
}

async fn exchange(
    t: &TestIssuer,
    (id, secret): (&str, &str),
    subject: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", ACCESS),
    ];
    form.extend_from_slice(extra);
    t.http
        .post(t.url("/auth/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&form)
        .send()
        .await
        .expect("token")
}

async fn delegate(t: &TestIssuer, gw: (&str, &str), subject: &str) -> String {
    let r = exchange(t, gw, subject, &[("resource", MEMORY)]).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.expect("json")["access_token"]
        .as_str()
        .expect("access")
        .to_string()
}

async fn introspect(t: &TestIssuer, (id, secret): (&str, &str), token: &str) -> Value {
    t.http
        .post(t.url("/auth/oauth2/introspect"))
        .basic_auth(id, Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .expect("introspect")
        .json()
        .await
        .expect("json")
}

async fn services_act_for_users(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    for (body, names) in [
        (gateway("pub-gw", json!({"type": "public"})), "confidential"),
        (gateway("aud-gw", json!({"audiences": []})), "audiences"),
        // Whose users' tokens it may trade is said, never assumed; and only
        // a client that exchanges says it.
        (
            gateway("subj-gw", json!({"subject_clients": []})),
            "subject_clients",
        ),
        (
            gateway("cc-gw", json!({"grant_types": ["client_credentials"]})),
            "subject_clients",
        ),
        (
            gateway("sc-gw", json!({"subject_clients": ["Not An Id"]})),
            "subject_clients",
        ),
        // The issuer's own sign-in's id: its holder could introspect users'
        // own tokens and pass for them here.
        (gateway(FIRST_PARTY, json!({})), "the issuer's own"),
    ] {
        let (status, code, message) =
            error_code(t.post_auth("/admin/clients", &admin, Some(body)).await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_client_metadata")
        );
        assert!(message.contains(names), "{names}: {message}");
    }
    let secret = register_client(&t, &admin, gateway("ai-gw", json!({}))).await["client_secret"]
        .as_str()
        .expect("secret")
        .to_string();
    let gw = ("ai-gw", secret.as_str());
    let email = unique_email("obo");
    let user = t.register(&email, "correct horse battery").await;
    let user_id = user["id"].as_str().expect("user id").to_string();
    let tokens = t.login(&email, "correct horse battery").await;
    let subject = t.verify(&tokens.access).await;

    // The user's token, for the memory service: every route scope the
    // gateway has (none of a person's), the user as subject, the gateway
    // as actor, the user's session, no refresh and no ID token.
    let r = exchange(&t, gw, &tokens.access, &[("resource", MEMORY)]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["scope"], "memory:read memory:write");
    assert_eq!(v["issued_token_type"], ACCESS);
    assert_eq!(v["token_type"], "Bearer");
    assert!(
        v.get("refresh_token").is_none() && v.get("id_token").is_none(),
        "{v}"
    );
    let delegated = v["access_token"].as_str().expect("access").to_string();
    let claims = t.verify(&delegated).await;
    assert_eq!(claims.sub, user_id);
    assert_eq!(claims.sid, subject.sid);
    assert_eq!(claims.client_id, "ai-gw");
    assert_eq!(claims.aud, auth_types::Audience::One(MEMORY.into()));
    let act = claims.act.clone().expect("act");
    assert_eq!(
        (act.sub.as_str(), act.client_id.as_str()),
        ("client:ai-gw", "ai-gw")
    );
    assert!(claims.exp <= subject.exp, "never outlives the user's token");
    assert!(claims.email.is_none());
    assert_eq!(claims.user_gen, subject.user_gen);

    // Narrower, and by `audience` instead of `resource`.
    let v: Value = exchange(
        &t,
        gw,
        &tokens.access,
        &[("audience", MEMORY), ("scope", "memory:read")],
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(v["scope"], "memory:read", "{v}");

    // A service registered to act with another client's tokens only: the
    // user's own token (which reached it somehow) is not one of them. The
    // refusal is audited, without the token.
    let picky = register_client(
        &t,
        &admin,
        gateway("picky-gw", json!({"subject_clients": ["notes-app"]})),
    )
    .await;
    let picky = ("picky-gw", picky["client_secret"].as_str().expect("secret"));
    let r = exchange(&t, picky, &tokens.access, &[("resource", MEMORY)]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"], "invalid_request");
    assert!(
        v["error_description"]
            .as_str()
            .is_some_and(|m| m.contains("subject_clients")),
        "{v}"
    );
    let audit = t
        .get_auth("/admin/audit?action=token_exchange&outcome=failure", &admin)
        .await
        .text()
        .await
        .expect("audit");
    let events: Value = serde_json::from_str(&audit).expect("json");
    let refused = &events["events"][0];
    assert_eq!(refused["reason"], "invalid_request", "{events}");
    assert_eq!(refused["metadata"]["actor"], "picky-gw", "{events}");
    assert!(!audit.contains(&tokens.access), "no token in the audit log");

    // The spec's refusals.
    let bad = |extra: &'static [(&'static str, &'static str)], subject: String, want| {
        let t = &t;
        async move {
            let r = exchange(t, gw, &subject, extra).await;
            let (status, error) = oauth_error(r).await;
            assert_eq!(
                (status, error.as_str()),
                (StatusCode::BAD_REQUEST, want),
                "{extra:?}"
            );
        }
    };
    let user_token = tokens.access.clone();
    bad(&[], user_token.clone(), "invalid_request").await; // no target
    bad(
        &[("resource", "https://other.test")],
        user_token.clone(),
        "invalid_target",
    )
    .await;
    bad(
        &[("resource", MEMORY), ("audience", "https://other.test")],
        user_token.clone(),
        "invalid_target",
    )
    .await;
    for scope in ["memory:admin", "openid", "memory:read profile"] {
        let r = exchange(
            &t,
            gw,
            &tokens.access,
            &[("resource", MEMORY), ("scope", scope)],
        )
        .await;
        assert_eq!(
            oauth_error(r).await,
            (StatusCode::BAD_REQUEST, "invalid_scope".into()),
            "{scope}"
        );
    }
    for extra in [
        &[("resource", MEMORY), ("actor_token", "x")][..],
        &[
            ("resource", MEMORY),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:refresh_token",
            ),
        ][..],
        &[("resource", MEMORY), ("resource", MEMORY)][..],
    ] {
        let r = exchange(&t, gw, &tokens.access, extra).await;
        assert_eq!(
            oauth_error(r).await,
            (StatusCode::BAD_REQUEST, "invalid_request".into()),
            "{extra:?}"
        );
    }
    // Not an access token of the issuer: garbage, the refresh token, a
    // delegated token (one hop only), another type named.
    for subject in [
        "not-a-token".to_string(),
        tokens.refresh.clone(),
        delegated.clone(),
    ] {
        bad(&[("resource", MEMORY)], subject, "invalid_request").await;
    }
    let r = t
        .http
        .post(t.url("/auth/oauth2/token"))
        .basic_auth("ai-gw", Some(&secret))
        .form(&[
            ("grant_type", EXCHANGE),
            ("subject_token", tokens.access.as_str()),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:id_token",
            ),
            ("resource", MEMORY),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(
        oauth_error(r).await,
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );
    // A wrong secret; a client not registered for the grant.
    let r = exchange(
        &t,
        ("ai-gw", "cs_wrong"),
        &tokens.access,
        &[("resource", MEMORY)],
    )
    .await;
    assert_eq!(
        oauth_error(r).await,
        (StatusCode::UNAUTHORIZED, "invalid_client".into())
    );
    let batch = register_client(
        &t,
        &admin,
        gateway(
            "batch",
            json!({"grant_types": ["client_credentials"], "subject_clients": []}),
        ),
    )
    .await;
    let r = exchange(
        &t,
        ("batch", batch["client_secret"].as_str().expect("secret")),
        &tokens.access,
        &[("resource", MEMORY)],
    )
    .await;
    assert_eq!(
        oauth_error(r).await,
        (StatusCode::BAD_REQUEST, "unauthorized_client".into())
    );

    // The delegated token is for the memory service: not the issuer's API.
    for path in ["/auth/me", "/auth/oauth2/userinfo"] {
        assert_eq!(
            t.get_auth(path, &delegated).await.status(),
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }

    // Introspection tells the actor; the gateway's revocation ends that
    // one token (at the edge too: a `token` record), not the user's session.
    let v = introspect(&t, gw, &delegated).await;
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(v["act"]["client_id"], "ai-gw");
    assert_eq!(v["aud"], MEMORY);
    assert_eq!(v["sub"], user_id.as_str());
    let r = t
        .http
        .post(t.url("/auth/oauth2/revoke"))
        .basic_auth("ai-gw", Some(&secret))
        .form(&[("token", delegated.as_str())])
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(introspect(&t, gw, &delegated).await["active"], false);
    assert!(feed_records(&t)
        .await
        .iter()
        .any(|r| r.kind == auth_types::RevocationKind::Token && r.subject == claims.jti));
    assert_eq!(
        t.get_auth("/auth/me", &tokens.access).await.status(),
        StatusCode::OK
    );
    // The user's own token is not the gateway's to introspect (RFC 7662
    // §4: neither its client nor a resource server of its audience).
    assert_eq!(
        introspect(&t, gw, &tokens.access).await,
        json!({"active": false})
    );

    // Taking the grant away ends what the gateway got for users (one
    // user_before record of client:gw, which the edge applies to `act`).
    let before = delegate(&t, gw, &tokens.access).await;
    let cut = |records: &[auth_types::RevocationRecord]| {
        records
            .iter()
            .filter(|r| {
                r.kind == auth_types::RevocationKind::UserBefore && r.subject == "client:ai-gw"
            })
            .count()
    };
    assert_eq!(cut(&feed_records(&t).await), 0);
    let r = t
        .http
        .put(t.url("/admin/clients/ai-gw"))
        .bearer_auth(&admin)
        .json(&gateway(
            "ai-gw",
            json!({"grant_types": ["client_credentials"], "subject_clients": []}),
        ))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(cut(&feed_records(&t).await), 1);
    assert_eq!(introspect(&t, gw, &before).await["active"], false);
    let r = t
        .http
        .put(t.url("/admin/clients/ai-gw"))
        .bearer_auth(&admin)
        .json(&gateway("ai-gw", json!({})))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::OK);
    // The cut is by whole seconds: a token from the cut's own second is
    // refused too, so the next ones are asked for after it.
    let cut_at = feed_records(&t)
        .await
        .iter()
        .filter(|r| r.subject == "client:ai-gw")
        .map(|r| r.issued_before)
        .max()
        .expect("cut");
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        < u64::try_from(cut_at).expect("positive")
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // The user signs out: the derived token is dead, and the user's token
    // can no longer be exchanged.
    let after = delegate(&t, gw, &tokens.access).await;
    assert_eq!(introspect(&t, gw, &after).await["active"], true);
    let r = t.post_auth("/auth/logout", &tokens.access, None).await;
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(introspect(&t, gw, &after).await["active"], false);
    bad(
        &[("resource", MEMORY)],
        tokens.access.clone(),
        "invalid_request",
    )
    .await;

    // Taking a subject client away ends what the gateway got with its
    // tokens (the same cut as any narrowing of a service).
    let cuts = cut(&feed_records(&t).await);
    let r = t
        .http
        .put(t.url("/admin/clients/ai-gw"))
        .bearer_auth(&admin)
        .json(&gateway("ai-gw", json!({"subject_clients": ["notes-app"]})))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(cut(&feed_records(&t).await), cuts + 1);
}
