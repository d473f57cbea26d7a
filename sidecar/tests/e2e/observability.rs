//! Every metric the shipped alerting rules and Grafana dashboard name
//! exists on a running issuer and sidecar (scraped after real traffic
//! through Envoy), so a renamed metric cannot silently blind a dashboard.

use std::collections::BTreeSet;

use crate::support::*;

/// The `issuer_…` and `sidecar_…` names a file mentions.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("issuer_") || w.starts_with("sidecar_"))
        .map(str::to_string)
        .collect()
}

/// Whether the exposition has the metric: a sample of that name, or the
/// family declared (a labelled family has no sample until first used).
fn exposes(exposition: &str, name: &str) -> bool {
    let sample = exposition.lines().any(|l| {
        l.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
    });
    let base = ["_total", "_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    sample
        || exposition.lines().any(|l| {
            l == format!("# TYPE {base} counter") || l.starts_with(&format!("# TYPE {base} "))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_dashboard_name_exists() {
    let Some(stack) = Stack::start(|_| {}).await else {
        return;
    };
    // Some traffic of each kind: sign-in, refresh, an allowed and a denied request.
    let tokens = stack.login(&unique_email("metrics")).await;
    assert_eq!(
        stack.get("/ai/chat", Some(&token(&tokens))).await.status(),
        200
    );
    assert_eq!(stack.get("/ai/chat", None).await.status(), 401);
    let r = stack
        .http
        .post(stack.url("/auth/refresh"))
        .json(&serde_json::json!({"refresh_token": tokens["refresh_token"]}))
        .send()
        .await
        .expect("refresh");
    assert_eq!(r.status(), 200);

    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../observability");
    let mut wanted = BTreeSet::new();
    for file in ["prometheus/alerts.yml", "grafana/devmentor-auth.json"] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).expect("read");
        wanted.extend(metric_names(&text));
    }
    assert!(wanted.len() > 15, "{wanted:?}");
    let issuer = stack
        .http
        .get(format!("{}/metrics", stack.issuer().base_url))
        .send()
        .await
        .expect("issuer metrics")
        .text()
        .await
        .expect("text");
    let sidecar_admin = stack.sidecar.as_ref().expect("sidecar").admin;
    let sidecar = stack
        .http
        .get(format!("http://{sidecar_admin}/metrics"))
        .send()
        .await
        .expect("sidecar metrics")
        .text()
        .await
        .expect("text");
    let missing: Vec<_> = wanted
        .iter()
        .filter(|name| {
            let exposition = if name.starts_with("issuer_") {
                &issuer
            } else {
                &sidecar
            };
            !exposes(exposition, name)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "named by rules or dashboard but not exposed: {missing:?}"
    );
}
