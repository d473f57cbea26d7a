//! Workload identity (RFC 7523 JWT bearer): a pod's projected
//! service-account token, signed by a (fake) cluster's issuer, is traded
//! for our token for the client its namespace and service account are
//! mapped to; the negative cases of the spec, on both databases.

use reqwest::StatusCode;
use serde_json::{json, Value};

use fake_github::kube::{FakeCluster, Workload};

use crate::oauth::register_client;
use crate::on_both_backends;
use crate::support::*;

on_both_backends!(pods_sign_in_with_their_cluster_tokens);

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const PINNED_AUDIENCE: &str = "https://auth.devmentor.test";

const DEPLOYER: Workload<'static> = Workload {
    namespace: "ci",
    service_account: "deployer",
    pod: "deploy-7f9c",
};

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
    )
    .expect("secs")
}

async fn grant(t: &TestIssuer, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let r = t
        .http
        .post(t.url("/auth/oauth2/token"))
        .form(form)
        .send()
        .await
        .expect("token");
    (r.status(), r.json().await.expect("json"))
}

async fn pods_sign_in_with_their_cluster_tokens(backend: Backend) {
    // Two trusted clusters: one whose keys are fetched from its API server,
    // one pinned by a JWKS file (and its own audience); a third untrusted.
    let fetched = FakeCluster::start().await.expect("cluster");
    let pinned = FakeCluster::start().await.expect("cluster");
    let stranger = FakeCluster::start().await.expect("cluster");
    let burst = FakeCluster::start().await.expect("cluster");
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks = dir.path().join("pinned.jwks.json");
    std::fs::write(&jwks, pinned.jwks().to_string()).expect("write");
    let trust = dir.path().join("trust.yaml");
    std::fs::write(
        &trust,
        format!(
            "clusters:\n\
             - name: fetched\n  issuer: {}\n  jwks_uri: {}\n  accounts:\n    ci/deployer: ci-deployer\n    ai/ai-gateway: ai-gateway\n    ci/unregistered: nobody\n\
             - name: pinned\n  issuer: {}\n  jwks_file: {}\n  audience: {PINNED_AUDIENCE}\n  accounts:\n    ci/deployer: ci-deployer\n\
             - name: burst\n  issuer: {}\n  jwks_uri: {}\n  accounts:\n    ci/deployer: ci-deployer\n",
            fetched.issuer,
            fetched.jwks_uri(),
            pinned.issuer,
            jwks.display(),
            burst.issuer,
            burst.jwks_uri()
        ),
    )
    .expect("write");
    let Some(t) = start_with(
        backend,
        std::sync::Arc::new(issuer::domain::clock::SystemClock),
        |a| {
            a.workload_trust = Some(trust.clone());
        },
    )
    .await
    else {
        return;
    };
    let admin = make_admin(&t).await;
    // A workload's client needs no secret: its cluster vouches for it.
    register_client(
        &t,
        &admin,
        json!({"client_id": "ci-deployer", "name": "CI deployer", "type": "public",
               "redirect_uris": [], "grant_types": [JWT_BEARER],
               "scopes": ["notes:read", "notes:write"]}),
    )
    .await;
    // Mapped, but registered only for client_credentials.
    let gw = register_client(
        &t,
        &admin,
        json!({"client_id": "ai-gateway", "name": "AI gateway", "type": "confidential",
               "redirect_uris": [], "grant_types": ["client_credentials"], "scopes": ["memory:read"]}),
    )
    .await;
    let gw_secret = gw["client_secret"].as_str().expect("secret").to_string();

    // The pod's token for this issuer: our token for ci-deployer.
    let assertion = fetched.token(DEPLOYER, issuer::testing::TEST_ISSUER_URL, 600);
    let (status, v) = grant(
        &t,
        &[
            ("grant_type", JWT_BEARER),
            ("assertion", &assertion),
            ("scope", "notes:read"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v.get("refresh_token").is_none() && v.get("id_token").is_none());
    let claims = t.verify(v["access_token"].as_str().expect("access")).await;
    assert_eq!(claims.sub, "client:ci-deployer");
    assert_eq!(claims.client_id, "ci-deployer");
    assert_eq!(claims.scope.as_deref(), Some("notes:read"));
    // The same token again (pods reuse theirs until the kubelet renews it).
    let (status, _) = grant(&t, &[("grant_type", JWT_BEARER), ("assertion", &assertion)]).await;
    assert_eq!(status, StatusCode::OK);
    // The pinned cluster, with its own audience.
    let other = pinned.token(DEPLOYER, PINNED_AUDIENCE, 600);
    let (status, v) = grant(&t, &[("grant_type", JWT_BEARER), ("assertion", &other)]).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // Audited with the workload it came from.
    let audit: Value = t
        .get_auth("/admin/audit?action=client_credentials_grant", &admin)
        .await
        .json()
        .await
        .expect("json");
    let workload = &audit["events"][0]["metadata"]["workload"];
    assert_eq!(workload["namespace"], "ci", "{audit}");
    assert_eq!(workload["service_account"], "deployer");
    assert_eq!(workload["pod"], "deploy-7f9c");

    // Keys are fetched one fetch at a time: ten pods at once (or ten
    // made-up tokens) make one fetch, and tokens naming an unknown key
    // make no more within 30 s.
    let mut pods = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (url, assertion) = (
            t.url("/auth/oauth2/token"),
            burst.token(DEPLOYER, issuer::testing::TEST_ISSUER_URL, 600),
        );
        pods.spawn(async move {
            reqwest::Client::new()
                .post(url)
                .form(&[
                    ("grant_type", JWT_BEARER),
                    ("assertion", assertion.as_str()),
                ])
                .send()
                .await
                .expect("token")
                .status()
        });
    }
    while let Some(status) = pods.join_next().await {
        assert_eq!(status.expect("task"), StatusCode::OK);
    }
    assert_eq!(burst.jwks_fetches(), 1, "ten at once, one fetch");
    for _ in 0..5 {
        let mut c = stranger.claims(DEPLOYER, issuer::testing::TEST_ISSUER_URL, now(), 600);
        c["iss"] = json!(burst.issuer);
        let (status, _) = grant(
            &t,
            &[
                ("grant_type", JWT_BEARER),
                ("assertion", &stranger.sign(&c)),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    assert_eq!(
        burst.jwks_fetches(),
        1,
        "unknown keys: no fetch per request"
    );

    // A trust file that would take every pod's API token (its audience is
    // the cluster's own issuer), or fetch keys over plain http, is refused.
    for (bad, says) in [
        (
            format!("clusters:\n- name: x\n  issuer: {0}\n  jwks_uri: {1}\n  audience: {0}\n  accounts: {{}}\n", fetched.issuer, fetched.jwks_uri()),
            "not the cluster's issuer",
        ),
        (
            "clusters:\n- name: x\n  issuer: https://k.example\n  jwks_uri: http://k.example/openid/v1/jwks\n  accounts: {}\n".to_string(),
            "https",
        ),
    ] {
        let file = dir.path().join("bad.yaml");
        std::fs::write(&file, bad).expect("write");
        let e = issuer::service::oauth::workload::WorkloadTrust::load(Some(&file))
            .err()
            .expect("refused");
        assert!(e.to_string().contains(says), "{e}");
    }

    // The refusals: each an invalid_grant naming the problem.
    let at = now();
    let forged = {
        // The fetched cluster's issuer, signed by the stranger's key.
        let mut c = stranger.claims(DEPLOYER, issuer::testing::TEST_ISSUER_URL, at, 600);
        c["iss"] = json!(fetched.issuer);
        stranger.sign(&c)
    };
    let disagreeing = {
        let mut c = fetched.claims(DEPLOYER, issuer::testing::TEST_ISSUER_URL, at, 600);
        c["kubernetes.io"]["namespace"] = json!("prod");
        fetched.sign(&c)
    };
    let aud = issuer::testing::TEST_ISSUER_URL;
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong audience",
            fetched.token(DEPLOYER, "https://other.test", 600),
            "aud",
        ),
        (
            "expired",
            fetched.sign(&fetched.claims(DEPLOYER, aud, at - 7200, 3600)),
            "expired",
        ),
        (
            "not yet valid",
            fetched.sign(&fetched.claims(DEPLOYER, aud, at + 600, 600)),
            "not valid yet",
        ),
        (
            "good for too long",
            fetched.sign(&fetched.claims(DEPLOYER, aud, at, 7200)),
            "longer than",
        ),
        (
            "untrusted cluster",
            stranger.token(DEPLOYER, aud, 600),
            "not a trusted cluster",
        ),
        ("another cluster's key", forged, "assertion:"),
        (
            "unmapped account",
            fetched.token(
                Workload {
                    service_account: "builder",
                    ..DEPLOYER
                },
                aud,
                600,
            ),
            "not mapped",
        ),
        (
            "mapped to no client",
            fetched.token(
                Workload {
                    service_account: "unregistered",
                    ..DEPLOYER
                },
                aud,
                600,
            ),
            "not registered",
        ),
        (
            "client without the grant",
            fetched.token(
                Workload {
                    namespace: "ai",
                    service_account: "ai-gateway",
                    pod: "gw-1",
                },
                aud,
                600,
            ),
            "not registered",
        ),
        ("sub and kubernetes.io disagree", disagreeing, "disagree"),
        ("not a JWT", "garbage".to_string(), "not a JWT"),
    ];
    for (case, assertion, says) in cases {
        let (status, v) = grant(&t, &[("grant_type", JWT_BEARER), ("assertion", &assertion)]).await;
        assert_eq!(
            (status, v["error"].as_str().unwrap_or_default()),
            (StatusCode::BAD_REQUEST, "invalid_grant"),
            "{case}: {v}"
        );
        let description = v["error_description"].as_str().unwrap_or_default();
        assert!(description.contains(says), "{case}: {description}");
    }
    let (status, v) = grant(&t, &[("grant_type", JWT_BEARER)]).await;
    assert_eq!(
        (status, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_request"))
    );
    // Another client's credentials beside the pod's token: refused.
    let r = t
        .http
        .post(t.url("/auth/oauth2/token"))
        .basic_auth("ai-gateway", Some(&gw_secret))
        .form(&[("grant_type", JWT_BEARER), ("assertion", &assertion)])
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A workload's client may not use the secret-based grant it has no
    // secret for.
    let (status, v) = grant(
        &t,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "ci-deployer"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
}
