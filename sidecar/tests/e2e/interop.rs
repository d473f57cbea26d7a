//! The OpenID Provider through real Envoy, as deployed: two relying
//! parties we did not write (Authlib, and the Rust `openidconnect` crate)
//! sign in, refresh, revoke and log out, and the edge enforces each step on
//! their access tokens; then the OAuth security BCP's attacks (RFC 9700)
//! are sent through the same Envoy. On SQLite and PostgreSQL.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use issuer::service::oauth::clients::NewClient;
use openidconnect::core::{CoreClient, CoreProviderMetadata, CoreResponseType};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use serde_json::Value;

use crate::support::*;

const REDIRECT: &str = "https://app.test/cb";
/// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// The route whose rule names `scopes: [notes:read]` (envoy/policy.yaml).
const NOTES: &str = "/memory/notes/1";

/// Registers a client as an admin would; its secret, if it has one.
async fn register(stack: &Stack, new: NewClient) -> Option<String> {
    let state = &stack.issuer().state;
    let (client, secret) =
        issuer::service::oauth::clients::check(&new, state.now().secs()).expect("client");
    assert!(state
        .store
        .create_client(&client, "test")
        .await
        .expect("db"));
    // As the admin API's registration does: the ID-token key exists before
    // a relying party first reads the JWKS.
    issuer::service::keys::id_token_key(state)
        .await
        .expect("id-token key");
    secret
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The authorization endpoint through Envoy, for the signed-in browser;
/// `extra` is appended to the query as is.
async fn authorize(
    stack: &Stack,
    cookies: &str,
    client_id: &str,
    redirect: &str,
    extra: &str,
) -> reqwest::Response {
    let mut url = reqwest::Url::parse(&stack.url("/auth/ui/authorize")).expect("url");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", "openid notes:read")
        .append_pair("state", "s-1")
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    let url = format!("{url}{extra}");
    no_redirects()
        .get(url)
        .header("cookie", cookies)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("authorize")
}

fn back_param(r: &reqwest::Response, name: &str) -> Option<String> {
    let location = r.headers().get("location")?.to_str().ok()?;
    reqwest::Url::parse(location)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn code(stack: &Stack, cookies: &str, client_id: &str) -> String {
    let r = authorize(stack, cookies, client_id, REDIRECT, "").await;
    assert_eq!(r.status(), 303, "{:?}", r.headers());
    back_param(&r, "code").expect("code")
}

/// The token endpoint through Envoy: `secret` as client_secret_basic, or
/// the client_id alone in the body.
async fn exchange(
    stack: &Stack,
    client_id: &str,
    secret: Option<&str>,
    code: &str,
    verifier: &str,
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
    ];
    let mut req = stack.http.post(stack.url("/auth/oauth2/token"));
    match secret {
        Some(s) => req = req.basic_auth(client_id, Some(s)),
        None => form.push(("client_id", client_id)),
    }
    req.form(&form).send().await.expect("token")
}

/// An ID token's claims, read without verifying (the relying parties
/// above verify; this looks at one claim).
fn id_token_claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json")
}

async fn error_of(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("json");
    (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

type HttpFuture =
    Pin<Box<dyn Future<Output = Result<openidconnect::HttpResponse, std::io::Error>> + Send>>;

/// The crate's HTTP client: requests to the issuer's public URL go to
/// Envoy (what DNS does in a deployment), nothing else changes.
fn through_envoy(envoy: String) -> impl Fn(openidconnect::HttpRequest) -> HttpFuture {
    let http = no_redirects();
    move |req: openidconnect::HttpRequest| {
        let http = http.clone();
        let url = req
            .uri()
            .to_string()
            .replace(issuer::testing::TEST_ISSUER_URL, &envoy);
        Box::pin(async move {
            let mut r = http.request(req.method().clone(), url);
            for (k, v) in req.headers() {
                r = r.header(k, v);
            }
            let resp = r
                .body(req.body().clone())
                .send()
                .await
                .map_err(std::io::Error::other)?;
            let mut out = openidconnect::http::Response::builder().status(resp.status());
            for (k, v) in resp.headers() {
                out = out.header(k, v);
            }
            let body = resp.bytes().await.map_err(std::io::Error::other)?.to_vec();
            out.body(body).map_err(std::io::Error::other)
        }) as HttpFuture
    }
}

/// The `openidconnect` crate: discovery, code + PKCE, the ID token,
/// userinfo and a refresh through Envoy; its access token passes the edge's
/// scoped route, and the grant's revocation (RFC 7009) is refused there.
async fn openidconnect_crate(stack: &Stack, cookies: &str, secret: String, email: &str) {
    let http = through_envoy(stack.url(""));
    let issuer_url = IssuerUrl::new(issuer::testing::TEST_ISSUER_URL.into()).expect("issuer");
    let metadata = CoreProviderMetadata::discover_async(issuer_url, &http)
        .await
        .expect("discovery");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new("rs-rp".into()),
        Some(ClientSecret::new(secret.clone())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).expect("redirect"));
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("notes:read".into()))
        .set_pkce_challenge(challenge)
        .url();
    let r = no_redirects()
        .get(
            url.as_str()
                .replace(issuer::testing::TEST_ISSUER_URL, &stack.url("")),
        )
        .header("cookie", cookies)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("authorize");
    assert_eq!(r.status(), 303);
    assert_eq!(
        back_param(&r, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    let code = back_param(&r, "code").expect("code");
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("exchange");
    let id_token = tokens.id_token().expect("id_token");
    let claims = id_token
        .claims(&client.id_token_verifier(), &nonce)
        .expect("a valid ID token");
    assert_eq!(claims.email().map(|e| e.as_str()), Some(email));
    let info: openidconnect::core::CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)
        .expect("userinfo endpoint")
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(info.email().map(|e| e.as_str()), Some(email));
    let again = client
        .exchange_refresh_token(tokens.refresh_token().expect("refresh token"))
        .expect("token endpoint")
        .request_async(&http)
        .await
        .expect("refresh");
    let access = again.access_token().secret().clone();
    let r = stack.get(NOTES, Some(&access)).await;
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.expect("json");
    assert_eq!(seen["headers"]["x-client-id"], serde_json::json!(["rs-rp"]));
    // Revoked by the client (RFC 7009): refused at the edge.
    let r = stack
        .http
        .post(stack.url("/auth/oauth2/revoke"))
        .basic_auth("rs-rp", Some(&secret))
        .form(&[
            (
                "token",
                again.refresh_token().expect("rotated").secret().as_str(),
            ),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 200);
    let lag = wait_until(Duration::from_secs(2), || async {
        stack.get(NOTES, Some(&access)).await.status() == 401
    })
    .await
    .expect("the revoked grant refused at the edge");
    eprintln!("openidconnect: revoked grant → denied at the edge after {lag:?}");
}

async fn standard_clients_and_attacks_through_envoy(postgres: bool) {
    let Some(python) = issuer::testing::required_service("DM_TEST_PYTHON", "Python with Authlib")
    else {
        return;
    };
    let Some(stack) = Stack::start_on(postgres, |_| {}, |_| {}).await else {
        return;
    };
    let rp_secret = register(
        &stack,
        NewClient {
            client_id: "py-rp".into(),
            name: "Python RP".into(),
            kind: "confidential".into(),
            redirect_uris: vec![REDIRECT.into()],
            post_logout_redirect_uris: vec!["https://app.test/bye".into()],
            scopes: vec!["openid".into(), "email".into(), "notes:read".into()],
            first_party: true,
            ..Default::default()
        },
    )
    .await
    .expect("secret");
    let rs_secret = register(
        &stack,
        NewClient {
            client_id: "rs-rp".into(),
            name: "Rust RP".into(),
            kind: "confidential".into(),
            redirect_uris: vec![REDIRECT.into()],
            scopes: vec!["openid".into(), "email".into(), "notes:read".into()],
            first_party: true,
            ..Default::default()
        },
    )
    .await
    .expect("secret");
    register(
        &stack,
        NewClient {
            client_id: "bcp-cli".into(),
            name: "CLI".into(),
            kind: "public".into(),
            redirect_uris: vec![REDIRECT.into(), "http://127.0.0.1/callback".into()],
            scopes: vec!["openid".into(), "notes:read".into()],
            first_party: true,
            ..Default::default()
        },
    )
    .await;
    let web_secret = register(
        &stack,
        NewClient {
            client_id: "bcp-web".into(),
            name: "Web".into(),
            kind: "confidential".into(),
            redirect_uris: vec![REDIRECT.into()],
            scopes: vec!["openid".into(), "notes:read".into()],
            first_party: true,
            ..Default::default()
        },
    )
    .await
    .expect("secret");
    register(
        &stack,
        NewClient {
            client_id: "bcp-third".into(),
            name: "Third party".into(),
            kind: "public".into(),
            redirect_uris: vec![REDIRECT.into()],
            scopes: vec!["openid".into(), "notes:read".into()],
            ..Default::default()
        },
    )
    .await;

    // Authlib, every request through Envoy; the edge checked at each step.
    let email = unique_email("authlib-envoy");
    stack.login(&email).await;
    let cookies = stack.page_cookies(&email).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/interop/authlib_rp.py"
    );
    let args = [
        script.to_string(),
        stack.url(""),
        issuer::testing::TEST_ISSUER_URL.to_string(),
        "py-rp".into(),
        rp_secret,
        cookies.clone(),
        REDIRECT.into(),
        "https://app.test/bye".into(),
        stack.url(NOTES),
    ];
    let (succeeded, text) = run_script(python, args.to_vec()).await;
    assert!(succeeded && text.contains("all steps passed"), "{text}");
    eprintln!("{text}");

    // The logout above ended the pages' session: sign in again.
    let cookies = stack.page_cookies(&email).await;
    openidconnect_crate(&stack, &cookies, rs_secret, &email).await;

    // RFC 9700 through Envoy.
    // Redirect URIs in doubt (§4.1): shown on a page, never redirected to,
    // however encoded.
    for bad in [
        "https://app.test/cb/",
        "https://APP.test/cb",
        "https://app.test/cb?x=1",
        "https://app.test/cb#f",
        "https://app.test/%63b",
        "https://user@app.test/cb",
        "https://app.test.evil.com/cb",
        "https://evil.com/cb",
        "/auth/ui/account",
        "http://127.0.0.1.evil.com/callback",
    ] {
        let r = authorize(&stack, &cookies, "bcp-cli", bad, "").await;
        assert_eq!(r.status(), 400, "{bad}");
        assert!(r.headers().get("location").is_none(), "{bad}");
    }
    // A parameter given twice (a proxy or a client that would pick either).
    let r = authorize(&stack, &cookies, "bcp-cli", REDIRECT, "&client_id=bcp-web").await;
    assert_eq!(r.status(), 400);
    // PKCE downgrade (§2.1.1): plain, or no challenge, back as an error.
    let r = authorize(
        &stack,
        &cookies,
        "bcp-cli",
        REDIRECT,
        "&code_challenge_method=plain",
    )
    .await;
    assert_eq!(r.status(), 400, "the method given twice");
    let mut url = reqwest::Url::parse(&stack.url("/auth/ui/authorize")).expect("url");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "bcp-cli")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "openid")
        .append_pair("state", "s-2")
        .append_pair("code_challenge", VERIFIER)
        .append_pair("code_challenge_method", "plain");
    let r = no_redirects()
        .get(url.as_str())
        .header("cookie", &cookies)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("authorize");
    assert_eq!(back_param(&r, "error").as_deref(), Some("invalid_request"));
    assert_eq!(back_param(&r, "state").as_deref(), Some("s-2"));
    assert!(back_param(&r, "code").is_none());
    // Mix-up (§4.4): the response names its issuer; state comes back.
    let r = authorize(&stack, &cookies, "bcp-cli", REDIRECT, "").await;
    assert_eq!(
        back_param(&r, "iss").as_deref(),
        Some(issuer::testing::TEST_ISSUER_URL)
    );
    assert_eq!(back_param(&r, "state").as_deref(), Some("s-1"));

    // Client authentication: a public client presenting a secret, a
    // confidential one presenting none, a wrong secret.
    let code_a = code(&stack, &cookies, "bcp-cli").await;
    let r = exchange(&stack, "bcp-cli", Some("cs_made-up"), &code_a, VERIFIER).await;
    assert_eq!(error_of(r).await, (401, "invalid_client".into()));
    let r = exchange(&stack, "bcp-web", None, &code_a, VERIFIER).await;
    assert_eq!(error_of(r).await, (401, "invalid_client".into()));
    let r = exchange(&stack, "bcp-web", Some("cs_wrong"), &code_a, VERIFIER).await;
    assert_eq!(error_of(r).await, (401, "invalid_client".into()));
    // Code injection (§4.5): another client's code, or the wrong verifier,
    // is refused, and the code is spent by the attempt.
    let r = exchange(&stack, "bcp-web", Some(&web_secret), &code_a, VERIFIER).await;
    assert_eq!(error_of(r).await, (400, "invalid_grant".into()));
    let r = exchange(&stack, "bcp-cli", None, &code_a, VERIFIER).await;
    assert_eq!(error_of(r).await, (400, "invalid_grant".into()));
    let code_b = code(&stack, &cookies, "bcp-cli").await;
    let wrong = "x".repeat(43);
    let r = exchange(&stack, "bcp-cli", None, &code_b, &wrong).await;
    assert_eq!(error_of(r).await, (400, "invalid_grant".into()));
    // Code replay (§4.2.4): the second exchange fails and ends what the
    // first issued, at the edge too.
    let code_c = code(&stack, &cookies, "bcp-cli").await;
    let r = exchange(&stack, "bcp-cli", None, &code_c, VERIFIER).await;
    assert_eq!(r.status(), 200);
    let app = token(&r.json::<Value>().await.expect("json"));
    assert_eq!(stack.get(NOTES, Some(&app)).await.status(), 200);
    let r = exchange(&stack, "bcp-cli", None, &code_c, VERIFIER).await;
    assert_eq!(error_of(r).await, (400, "invalid_grant".into()));
    let lag = wait_until(Duration::from_secs(2), || async {
        stack.get(NOTES, Some(&app)).await.status() == 401
    })
    .await
    .expect("the replayed code's token refused at the edge");
    eprintln!("code replay → its access token denied at the edge after {lag:?}");

    // State and nonce replay: the same state twice yields two different
    // single-use codes, and each ID token carries its own request's nonce
    // (an old one replayed with a new response does not match).
    let mut nonces = Vec::new();
    for nonce in ["n-1", "n-2"] {
        let r = authorize(
            &stack,
            &cookies,
            "bcp-web",
            REDIRECT,
            &format!("&nonce={nonce}"),
        )
        .await;
        assert_eq!(back_param(&r, "state").as_deref(), Some("s-1"));
        let code = back_param(&r, "code").expect("code");
        let r = exchange(&stack, "bcp-web", Some(&web_secret), &code, VERIFIER).await;
        let v: Value = r.json().await.expect("json");
        let id_token = v["id_token"].as_str().expect("id_token");
        nonces.push(id_token_claims(id_token)["nonce"].clone());
    }
    assert_eq!(nonces, ["n-1", "n-2"]);

    // Consent clickjacking (§4.16): the consent page may not be framed.
    let r = authorize(&stack, &cookies, "bcp-third", REDIRECT, "").await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(r.text().await.expect("page").contains("consent_token"));

    service_through_envoy(&stack).await;
    on_behalf_through_envoy(&stack).await;
    crate::pats::pat_through_envoy(&stack).await;
}

/// A service (`client_credentials`) through Envoy: its token reaches the
/// route its scope names, the upstream learns the client, no route written
/// for people; deleting the client is refused at the edge.
async fn service_through_envoy(stack: &Stack) {
    let secret = register(
        stack,
        NewClient {
            client_id: "svc".into(),
            name: "Nightly batch".into(),
            kind: "confidential".into(),
            grant_types: Some(vec!["client_credentials".into()]),
            scopes: vec!["notes:read".into()],
            ..Default::default()
        },
    )
    .await
    .expect("secret");
    let r = stack
        .http
        .post(stack.url("/auth/oauth2/token"))
        .basic_auth("svc", Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), 200);
    let svc = token(&r.json::<Value>().await.expect("json"));
    let r = stack.get(NOTES, Some(&svc)).await;
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.expect("json");
    assert_eq!(seen["headers"]["x-client-id"], serde_json::json!(["svc"]));
    assert_eq!(
        seen["headers"]["x-user-id"],
        serde_json::json!(["client:svc"])
    );
    assert_eq!(stack.get("/ai/chat", Some(&svc)).await.status(), 403);
    let state = &stack.issuer().state;
    let now = state.now();
    let records = state
        .store
        .delete_client("svc", now.ms, state.revocation_expiry(now))
        .await
        .expect("db")
        .expect("deleted");
    state
        .sessions_ended(
            records,
            issuer::store::AuditEvent::new(now.ms, "oauth_client_deleted"),
        )
        .await;
    let lag = wait_until(Duration::from_secs(2), || async {
        stack.get(NOTES, Some(&svc)).await.status() == 401
    })
    .await
    .expect("a deleted service's token refused at the edge");
    eprintln!("service deleted → its token denied at the edge after {lag:?}");
}

/// The memory route the AI gateway calls for users (envoy/policy.yaml:
/// `audiences`, `scopes: [memory:read]`, `actors: [ai-gateway]`).
const RECALL: &str = "/memory/recall/1";
const MEMORY_AUD: &str = "https://memory.devmentor.local";

/// On-behalf-of through Envoy (RFC 8693): the gateway trades the user's
/// token for one to the memory service; the edge takes it only on the rule
/// naming the gateway as actor, tells the upstream both (and drops a
/// client's own `x-actor-id`), refuses the user's token and the gateway's
/// own there, and refuses the derived token once the user signs out.
async fn on_behalf_through_envoy(stack: &Stack) {
    let secret = register(
        stack,
        NewClient {
            client_id: "ai-gateway".into(),
            name: "AI gateway".into(),
            kind: "confidential".into(),
            grant_types: Some(vec![
                "client_credentials".into(),
                "urn:ietf:params:oauth:grant-type:token-exchange".into(),
            ]),
            scopes: vec!["memory:read".into()],
            audiences: vec![MEMORY_AUD.into()],
            // Users call the gateway with the issuer's own sign-in.
            subject_clients: vec!["devmentor-auth".into()],
            ..Default::default()
        },
    )
    .await
    .expect("secret");
    let user_token = token(&stack.login(&unique_email("obo")).await);
    let me: Value = stack
        .get("/auth/me", Some(&user_token))
        .await
        .json()
        .await
        .expect("json");
    let grant = |form: Vec<(&'static str, String)>| {
        let secret = secret.clone();
        async move {
            let r = stack
                .http
                .post(stack.url("/auth/oauth2/token"))
                .basic_auth("ai-gateway", Some(&secret))
                .form(&form)
                .send()
                .await
                .expect("token");
            assert_eq!(r.status(), 200);
            token(&r.json::<Value>().await.expect("json"))
        }
    };
    let delegated = grant(vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange".into(),
        ),
        ("subject_token", user_token.clone()),
        (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:access_token".into(),
        ),
        ("resource", MEMORY_AUD.into()),
    ])
    .await;
    let r = stack
        .http
        .get(stack.url(RECALL))
        .bearer_auth(&delegated)
        .header("x-actor-id", "someone-else")
        .send()
        .await
        .expect("recall");
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.expect("json");
    assert_eq!(
        seen["headers"]["x-actor-id"],
        serde_json::json!(["ai-gateway"])
    );
    assert_eq!(
        seen["headers"]["x-user-id"],
        serde_json::json!([me["user"]["id"].clone()])
    );
    // The user's own token: not for the memory service's resource; the
    // gateway as itself (for that resource): not acting for anyone.
    assert_eq!(stack.get(RECALL, Some(&user_token)).await.status(), 401);
    let own = grant(vec![
        ("grant_type", "client_credentials".into()),
        ("resource", MEMORY_AUD.into()),
    ])
    .await;
    let r = stack.get(RECALL, Some(&own)).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"],
        "actor_not_allowed"
    );
    // A delegated token is for its resource alone.
    assert_eq!(stack.get(NOTES, Some(&delegated)).await.status(), 401);
    // A user's request carrying its own x-actor-id loses it.
    let r = stack
        .http
        .get(stack.url("/ai/chat"))
        .bearer_auth(&user_token)
        .header("x-actor-id", "ai-gateway")
        .send()
        .await
        .expect("chat");
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.expect("json");
    assert!(seen["headers"].get("x-actor-id").is_none(), "{seen}");

    // The user signs out: what the gateway got for them is refused too.
    let r = stack
        .http
        .post(stack.url("/auth/logout"))
        .bearer_auth(&user_token)
        .send()
        .await
        .expect("logout");
    assert!(r.status().is_success(), "{}", r.status());
    let lag = wait_until(Duration::from_secs(2), || async {
        stack.get(RECALL, Some(&delegated)).await.status() == 401
    })
    .await
    .expect("the derived token refused at the edge after the user's logout");
    eprintln!("user signed out → the gateway's token for them denied at the edge after {lag:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_clients_and_attacks_through_envoy_on_sqlite() {
    standard_clients_and_attacks_through_envoy(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_clients_and_attacks_through_envoy_on_postgres() {
    standard_clients_and_attacks_through_envoy(true).await;
}
