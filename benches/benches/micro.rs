//! Micro-benchmarks of the hot paths:
//! - the pure decision with a verified token (what a cache hit leaves to do);
//! - the sidecar's whole `check` on a verified-token cache hit;
//! - an allow's answer, with and without cookies to rewrite;
//! - an uncached check (signature + claims) per algorithm;
//! - revocation lookup among 100k live entries;
//! - policy matching against 200 rules;
//! - access-token signing on the issuer, per algorithm.

use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use auth_types::{
    AccessClaims, Audience, Expectations, JwkSet, PermissionMap, RevocationKind, RevocationRecord,
    SigningAlg, VerifyingKeySet,
};
use criterion::{criterion_group, criterion_main, Criterion};
use issuer::domain::keys::{generate_pkcs8, SigningKey};
use issuer::domain::tokens::mint_access_token;
use sidecar::decision::{decide, RequestAttrs, TokenInput};
use sidecar::policy::Policy;
use sidecar::revocations::RevocationSet;

const NOW: i64 = 1_800_000_000;

fn claims() -> AccessClaims {
    AccessClaims {
        iss: "https://issuer.bench".into(),
        sub: "3f2c7a9e-1d2b-4c5d-8e9f-0a1b2c3d4e5f".into(),
        aud: Audience::One("devmentor".into()),
        exp: NOW + 900,
        iat: NOW,
        nbf: Some(NOW),
        jti: "7a1d2e3f-4b5c-6d7e-8f90-a1b2c3d4e5f6".into(),
        sid: "c0ffee00-1111-2222-3333-444455556666".into(),
        client_id: "devmentor-auth".into(),
        roles: vec!["dev".into(), "team:blue".into()],
        permissions: vec![],
        amr: vec!["pwd".into()],
        email: Some("dev@example.com".into()),
        user_gen: 0,
        teams: Default::default(),
        teams_overflow: false,
        email_verified: false,
        acr: None,
        auth_time: None,
        scope: None,
        act: None,
        cnf: None,
    }
}

fn expect() -> Expectations {
    Expectations {
        issuer: "https://issuer.bench".into(),
        audience: "devmentor".into(),
        leeway_secs: 30,
    }
}

fn key(alg: SigningAlg) -> SigningKey {
    SigningKey::from_pkcs8(
        &format!("kid-{alg}"),
        alg,
        &generate_pkcs8(alg).expect("gen"),
    )
    .expect("load")
}

/// 199 rules that do not match a request to /api/v1/items/42, then one that does.
fn policy_200() -> Policy {
    let mut text = String::from("rules:\n");
    for i in 0..199 {
        text.push_str(&format!(
            "  - {{ pattern: \"/svc{i}/{{team}}/**\", roles: [\"team:{{team}}\"] }}\n"
        ));
    }
    text.push_str("  - { prefix: /api/, allow: authenticated }\n");
    Policy::parse(&text, "bench").expect("policy")
}

fn revocations(n: usize) -> RevocationSet {
    let mut set = RevocationSet::default();
    for i in 0..n {
        let kind = match i % 3 {
            0 => RevocationKind::Token,
            1 => RevocationKind::Session,
            _ => RevocationKind::UserBefore,
        };
        set.apply(&RevocationRecord {
            seq: i as i64 + 1,
            kind,
            subject: format!("subject-{i:08}"),
            issued_before: NOW - 10,
            created_at_ms: 0,
            expires_at: NOW + 900,
        });
    }
    set
}

fn benches(c: &mut Criterion) {
    let policy = policy_200();
    let small_policy = Policy::parse(
        "rules:\n  - { prefix: /ai/, allow: authenticated }\n",
        "bench",
    )
    .expect("policy");
    let verified = Arc::new(claims());
    let empty = RevocationSet::default();
    let many = revocations(100_000);
    let expect = expect();
    let request = RequestAttrs {
        method: "GET",
        host: "mesh.local",
        path: "/api/v1/items/42",
    };

    c.bench_function("decide/verified-token/1-rule", |b| {
        let req = RequestAttrs {
            path: "/ai/chat",
            ..request
        };
        b.iter(|| {
            black_box(decide(
                &small_policy,
                black_box(req),
                || TokenInput::Verified(verified.clone()),
                &empty,
                &PermissionMap::default(),
                &expect,
                NOW,
            ))
        })
    });
    c.bench_function("decide/verified-token/200-rules+100k-revocations", |b| {
        b.iter(|| {
            black_box(decide(
                &policy,
                black_box(request),
                || TokenInput::Verified(verified.clone()),
                &many,
                &PermissionMap::default(),
                &expect,
                NOW,
            ))
        })
    });
    c.bench_function("policy/match-last-of-200", |b| {
        b.iter(|| black_box(policy.route("mesh.local", "GET", black_box("/api/v1/items/42"))))
    });
    let revoked_probe = {
        let mut c = claims();
        c.jti = "not-revoked".into();
        c
    };
    c.bench_function("revocations/lookup-in-100k", |b| {
        b.iter(|| black_box(many.is_revoked(black_box(&revoked_probe))))
    });

    for alg in [SigningAlg::ES256, SigningAlg::EdDSA, SigningAlg::RS256] {
        let signer = key(alg);
        let token = mint_access_token(&signer, &claims()).expect("mint");
        let (keys, _) = VerifyingKeySet::from_jwks(&JwkSet {
            keys: vec![signer.public_jwk()],
            version: 0,
        });
        c.bench_function(&format!("uncached-check/{alg}"), |b| {
            b.iter(|| {
                let v = auth_types::jws::verify(black_box(&token), &keys).expect("valid");
                v.claims.validate(&expect, NOW).expect("claims");
                black_box(v)
            })
        });
        c.bench_function(&format!("issuer/sign/{alg}"), |b| {
            b.iter(|| black_box(mint_access_token(&signer, black_box(&claims())).expect("mint")))
        });
    }

    // The sidecar's whole check path on a verified-token cache hit.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("dm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let policy_path = dir.join("policy.yaml");
    std::fs::write(
        &policy_path,
        "rules:\n  - { prefix: /ai/, allow: authenticated }\n",
    )
    .expect("policy");
    let mut settings =
        sidecar::config::Settings::for_tests("http://127.0.0.1:9", policy_path.clone());
    settings.expected_issuer = Some("https://issuer.bench".into());
    let authz = sidecar::authz::Authorizer::new(
        settings,
        Policy::load(&policy_path).expect("policy"),
        Arc::new(sidecar::metrics::Metrics::default()),
    )
    .expect("authorizer");
    let signer = key(SigningAlg::ES256);
    let now_ms = sidecar::authz::now_ms();
    let mut live = claims();
    live.iat = now_ms / 1000;
    live.nbf = Some(live.iat);
    live.exp = live.iat + 3600;
    let token = mint_access_token(&signer, &live).expect("mint");
    authz.install_jwks(
        &JwkSet {
            keys: vec![signer.public_jwk()],
            version: 0,
        },
        now_ms,
    );
    authz.feed_contact_ms.store(now_ms, Ordering::Relaxed);
    authz.revocations_synced.store(true, Ordering::Relaxed);
    let req = RequestAttrs {
        path: "/ai/chat",
        ..request
    };
    let bearer = sidecar::authz::Credential {
        token: Some(&token),
        ..Default::default()
    };
    let first = runtime.block_on(authz.check(req, bearer, now_ms));
    assert!(
        matches!(first, sidecar::decision::Decision::Allow { .. }),
        "{first:?}"
    );
    c.bench_function("sidecar-check/cache-hit", |b| {
        b.iter(|| black_box(runtime.block_on(authz.check(black_box(req), bearer, now_ms))))
    });
    // The same with a DPoP-bound token (RFC 9449) and a fresh proof each
    // time (made outside the timing, as the client makes it): the proof's
    // checks (its ES256 signature, method, URL, age, ath) and the replay
    // cache's insert are what DPoP adds at the edge.
    let client_key = key(SigningAlg::ES256);
    let mut bound = live.clone();
    bound.cnf = Some(auth_types::Confirmation {
        jkt: issuer::testing::dpop_jkt(&client_key),
    });
    let bound_token = mint_access_token(&signer, &bound).expect("mint");
    let url = "http://mesh.local/ai/chat";
    let mut n = 0u64;
    let mut proof = || {
        n += 1;
        issuer::testing::dpop_proof(
            &client_key,
            "GET",
            url,
            Some(&bound_token),
            now_ms / 1000,
            &format!("jti-{n}"),
        )
    };
    // The request as the edge sees it (`url` above).
    fn dpop<'a>(token: &'a str, proof: &'a str) -> sidecar::authz::Credential<'a> {
        sidecar::authz::Credential {
            token: Some(token),
            dpop: sidecar::dpop::Presented {
                scheme: true,
                proof: Some(proof),
            },
            target: sidecar::dpop::Target {
                origin: None,
                scheme: "http",
                host: "mesh.local",
                path: "/ai/chat",
            },
        }
    }
    let p = proof();
    let first_bound = runtime.block_on(authz.check(req, dpop(&bound_token, &p), now_ms));
    assert!(
        matches!(first_bound, sidecar::decision::Decision::Allow { .. }),
        "{first_bound:?}"
    );
    c.bench_function("sidecar-check/cache-hit-dpop", |b| {
        b.iter_batched(
            &mut proof,
            |p| {
                black_box(runtime.block_on(authz.check(
                    black_box(req),
                    dpop(&bound_token, &p),
                    now_ms,
                )))
            },
            criterion::BatchSize::SmallInput,
        )
    });
    // What an allow's answer costs (identity headers, and the `cookie`
    // header rewritten without the issuer's cookies): no cookies, an
    // application's cookies only (read, left as they are), and the same
    // with the refresh and page cookies among them (rewritten).
    let app_cookies = "_ga=GA1.1.123456789.1700000000; theme=dark; lang=en; csrftoken=abcdefghijklmnopqrstuvwxyz0123456789";
    for (label, cookie) in [
        ("no-cookie", None),
        ("app-cookies", Some(app_cookies.to_string())),
        (
            "with-issuer-cookies",
            Some(format!(
                "{app_cookies}; __Host-refresh_token=rt_{}; __Secure-page_token={}",
                "x".repeat(43),
                "y".repeat(600)
            )),
        ),
    ] {
        let headers: std::collections::HashMap<String, String> = cookie
            .map(|c| ("cookie".to_string(), c))
            .into_iter()
            .collect();
        c.bench_function(&format!("edge/answer-allow/{label}"), |b| {
            b.iter(|| {
                black_box(sidecar::edge::answer(
                    &authz.settings,
                    black_box(&first),
                    black_box(&headers),
                ))
            })
        });
    }
    // What tracing adds to a Check: the span continuing Envoy's context,
    // with the decision's attributes, ended (queued for export; nothing
    // listens at the endpoint, so this is the request path's cost only).
    let _guard = runtime.enter();
    let tracing = telemetry::Tracing::new("http://127.0.0.1:9", 1.0, "bench").expect("tracing");
    for (label, flags) in [("sampled", "01"), ("unsampled", "00")] {
        let traceparent = format!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}");
        c.bench_function(&format!("tracing/check-span/{label}"), |b| {
            b.iter(|| {
                use telemetry::SpanApi;
                let parent = telemetry::extract(Some(&traceparent), None);
                let mut span = tracing.server_span("ext_authz check", &parent, Vec::new());
                span.set_attribute(telemetry::Attribute::new("authz.decision", "allow"));
                span.set_attribute(telemetry::Attribute::new("authz.rule", "ai-gateway"));
                span.set_attribute(telemetry::Attribute::new("url.path", "/ai/chat"));
                span.set_attribute(telemetry::Attribute::new(
                    "authz.key_id",
                    "kcrsBOK5tjTu8_dsu",
                ));
                black_box(span);
            })
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(micro, benches);
criterion_main!(micro);
