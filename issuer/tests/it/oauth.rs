//! The issuer as an OpenID Provider: the authorization code flow driven by
//! the `openidconnect` crate (a client we did not write), and the attacks
//! of the OAuth security BCP (RFC 9700) by hand.

use std::future::Future;
use std::pin::Pin;

use openidconnect::core::{CoreClient, CoreProviderMetadata, CoreResponseType};
use openidconnect::{
    AccessTokenHash, AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::*;

on_both_backends!(
    openidconnect_crate_signs_in_refreshes_and_reads_userinfo,
    a_replayed_code_ends_what_it_issued,
    pkce_redirect_uri_and_client_attacks_are_refused,
    third_party_clients_ask_for_consent_once,
    revocation_introspection_and_disconnecting_an_app,
    prompt_login_and_max_age_need_a_new_sign_in,
    authlib_relying_party_does_the_whole_dance,
    id_tokens_are_rs256_from_a_key_lane_of_their_own,
);

pub(crate) const REDIRECT: &str = "https://app.test/cb";

/// The issuer's public URL (`https://issuer.test`) sent to the test server.
pub(crate) type HttpFuture =
    Pin<Box<dyn Future<Output = Result<openidconnect::HttpResponse, std::io::Error>> + Send>>;

pub(crate) fn transport(real: String) -> impl Fn(openidconnect::HttpRequest) -> HttpFuture {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    move |req: openidconnect::HttpRequest| {
        let http = http.clone();
        let url = req
            .uri()
            .to_string()
            .replace(issuer::testing::TEST_ISSUER_URL, &real);
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

pub(crate) fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A browser signed in on the hosted pages: its cookie header.
pub(crate) async fn page_sign_in(t: &TestIssuer, email: &str) -> String {
    let r = no_redirects()
        .post(t.url("/auth/ui/login"))
        .header("sec-fetch-site", "same-origin")
        .form(&[("email", email), ("password", PASSWORD)])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::to_string)
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    cookies.join("; ")
}

/// The authorization endpoint, as the signed-in browser visits it.
pub(crate) async fn authorize(t: &TestIssuer, cookies: &str, url: &str) -> reqwest::Response {
    let real = url.replace(issuer::testing::TEST_ISSUER_URL, &t.url(""));
    no_redirects()
        .get(real)
        .header("cookie", cookies)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("authorize")
}

pub(crate) fn location(r: &reqwest::Response) -> oauth2::url::Url {
    let l = r.headers()["location"].to_str().expect("location");
    oauth2::url::Url::parse(l).unwrap_or_else(|e| panic!("{l}: {e}"))
}

pub(crate) fn param(url: &oauth2::url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub(crate) async fn register_client(t: &TestIssuer, admin: &str, body: Value) -> Value {
    let r = t.post_auth("/admin/clients", admin, Some(body)).await;
    let status = r.status();
    let answer: Value = r.json().await.expect("json");
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer
}

fn confidential(id: &str, first_party: bool) -> Value {
    json!({
        "client_id": id,
        "name": "Notes",
        "type": "confidential",
        "redirect_uris": [REDIRECT],
        "scopes": ["openid", "profile", "email", "notes:read"],
        "first_party": first_party,
    })
}

/// Discovery, code + PKCE, the ID token (nonce, at_hash), userinfo and a
/// refresh, all by the `openidconnect` crate; the access token carries the
/// client and its scope, and acts on nothing of the issuer's own.
async fn openidconnect_crate_signs_in_refreshes_and_reads_userinfo(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let registered = register_client(&t, &admin, confidential("notes", true)).await;
    let secret = registered["client_secret"]
        .as_str()
        .expect("secret")
        .to_string();
    assert!(secret.starts_with("cs_"));
    let email = unique_email("oidc");
    let user = t.register(&email, PASSWORD).await;
    let cookies = page_sign_in(&t, &email).await;

    let http = transport(t.url(""));
    let issuer = IssuerUrl::new(issuer::testing::TEST_ISSUER_URL.into()).expect("issuer");
    let metadata = CoreProviderMetadata::discover_async(issuer, &http)
        .await
        .expect("discovery");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new("notes".into()),
        Some(ClientSecret::new(secret)),
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
    let r = authorize(&t, &cookies, url.as_str()).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let back = location(&r);
    assert!(back.as_str().starts_with(REDIRECT), "{back}");
    assert_eq!(
        param(&back, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    assert_eq!(
        param(&back, "iss").as_deref(),
        Some(issuer::testing::TEST_ISSUER_URL)
    );
    let code = param(&back, "code").expect("code");

    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("exchange");
    let id_token = tokens.id_token().expect("id_token");
    let verifier = client.id_token_verifier();
    let claims = id_token.claims(&verifier, &nonce).expect("valid ID token");
    // The crate's own default (RS256), whatever the access tokens use.
    assert_eq!(
        id_token.signing_alg().expect("alg"),
        &openidconnect::core::CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256
    );
    assert_eq!(claims.subject().as_str(), user["id"].as_str().expect("id"));
    assert_eq!(claims.email().map(|e| e.as_str()), Some(email.as_str()));
    let expected_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().expect("alg"),
        id_token.signing_key(&verifier).expect("key"),
    )
    .expect("hash");
    assert_eq!(claims.access_token_hash(), Some(&expected_hash));
    assert!(claims.auth_time().is_some());

    let access = tokens.access_token().secret().clone();
    let at = t.verify(&access).await;
    assert_eq!(at.client_id, "notes");
    assert_eq!(at.scope.as_deref(), Some("openid email notes:read"));
    // An application's token does not act on the account.
    assert_eq!(
        t.get_auth("/auth/me", &access).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let info: openidconnect::core::CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)
        .expect("userinfo endpoint")
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(info.email().map(|e| e.as_str()), Some(email.as_str()));

    let refresh = tokens.refresh_token().expect("refresh token").clone();
    // The issuer's own refresh endpoint does not refresh a client's token.
    assert_eq!(
        t.refresh(refresh.secret()).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let again = client
        .exchange_refresh_token(&refresh)
        .expect("token endpoint")
        .request_async(&http)
        .await
        .expect("refresh");
    assert_ne!(again.access_token().secret(), &access);
    let rotated = again.refresh_token().expect("rotated").clone();
    assert_ne!(rotated.secret(), refresh.secret());
    assert_eq!(t.verify(again.access_token().secret()).await.sid, at.sid);
    // Another client cannot refresh it.
    let other = register_client(&t, &admin, confidential("other", true)).await;
    let r = t
        .http
        .post(t.url("/auth/oauth2/token"))
        .basic_auth("other", other["client_secret"].as_str())
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rotated.secret()),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "invalid_grant");
}

pub(crate) struct Pkce {
    pub(crate) verifier: String,
    pub(crate) challenge: String,
}

pub(crate) fn pkce() -> Pkce {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    Pkce {
        verifier: verifier.secret().clone(),
        challenge: challenge.as_str().to_string(),
    }
}

pub(crate) fn authorize_url(
    t: &TestIssuer,
    client_id: &str,
    redirect: &str,
    challenge: &str,
    extra: &str,
) -> String {
    let mut q = oauth2::url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", "openid")
        .append_pair("state", "s-1")
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    format!("{}?{}{extra}", t.url("/auth/ui/authorize"), q.finish())
}

pub(crate) async fn code_for(t: &TestIssuer, cookies: &str, client_id: &str, p: &Pkce) -> String {
    let r = authorize(
        t,
        cookies,
        &authorize_url(t, client_id, REDIRECT, &p.challenge, ""),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.headers());
    param(&location(&r), "code").expect("code")
}

pub(crate) async fn exchange(
    t: &TestIssuer,
    client: (&str, Option<&str>),
    code: &str,
    verifier: &str,
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
    ];
    let mut req = t.http.post(t.url("/auth/oauth2/token"));
    match client.1 {
        Some(secret) => req = req.basic_auth(client.0, Some(secret)),
        None => form.push(("client_id", client.0)),
    }
    req.form(&form).send().await.expect("send")
}

pub(crate) async fn oauth_error(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.expect("json");
    (status, body["error"].as_str().expect("error").to_string())
}

/// RFC 9700 §4.2.4: a code presented twice ends the session the first
/// exchange opened; the edge hears of it through the feed.
async fn a_replayed_code_ends_what_it_issued(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let secret = register_client(&t, &admin, confidential("notes", true)).await["client_secret"]
        .as_str()
        .expect("secret")
        .to_string();
    let email = unique_email("replay");
    t.register(&email, PASSWORD).await;
    let cookies = page_sign_in(&t, &email).await;
    let p = pkce();
    let code = code_for(&t, &cookies, "notes", &p).await;
    let r = exchange(&t, ("notes", Some(&secret)), &code, &p.verifier).await;
    assert_eq!(r.status(), StatusCode::OK);
    let tokens: Value = r.json().await.expect("json");
    let sid = t
        .verify(tokens["access_token"].as_str().expect("at"))
        .await
        .sid;
    let r = exchange(&t, ("notes", Some(&secret)), &code, &p.verifier).await;
    assert_eq!(
        oauth_error(r).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );
    assert!(
        feed_records(&t).await.iter().any(|r| r.subject == sid),
        "the session's revocation is on the feed"
    );
    let r = t
        .http
        .post(t.url("/auth/oauth2/token"))
        .basic_auth("notes", Some(&secret))
        .form(&[
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                tokens["refresh_token"].as_str().expect("rt"),
            ),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(
        oauth_error(r).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );

    // Two exchanges of one code at once: at most one gets tokens, and
    // whatever it got is ended by the other.
    for _ in 0..5 {
        let p = pkce();
        let code = code_for(&t, &cookies, "notes", &p).await;
        let (a, b) = tokio::join!(
            exchange(&t, ("notes", Some(&secret)), &code, &p.verifier),
            exchange(&t, ("notes", Some(&secret)), &code, &p.verifier),
        );
        let mut issued = Vec::new();
        for r in [a, b] {
            if r.status() == StatusCode::OK {
                issued.push(r.json::<Value>().await.expect("json"));
            } else {
                assert_eq!(r.status(), StatusCode::BAD_REQUEST);
            }
        }
        assert!(issued.len() <= 1, "{issued:?}");
        for tokens in issued {
            let r = t
                .http
                .post(t.url("/auth/oauth2/token"))
                .basic_auth("notes", Some(&secret))
                .form(&[
                    ("grant_type", "refresh_token"),
                    (
                        "refresh_token",
                        tokens["refresh_token"].as_str().expect("rt"),
                    ),
                ])
                .send()
                .await
                .expect("send");
            assert_eq!(
                r.status(),
                StatusCode::BAD_REQUEST,
                "the raced session ended"
            );
        }
    }
    // The issuer's own token is not an application's: userinfo refuses it.
    let own = t.login(&email, PASSWORD).await;
    let r = t.get_auth("/auth/oauth2/userinfo", &own.access).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

async fn pkce_redirect_uri_and_client_attacks_are_refused(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let secret = register_client(&t, &admin, confidential("notes", true)).await["client_secret"]
        .as_str()
        .expect("secret")
        .to_string();
    register_client(
        &t,
        &admin,
        json!({"client_id": "cli", "name": "CLI", "type": "public",
               "redirect_uris": ["http://127.0.0.1/callback", REDIRECT], "scopes": ["openid"],
               "first_party": true}),
    )
    .await;
    let email = unique_email("attack");
    t.register(&email, PASSWORD).await;
    let cookies = page_sign_in(&t, &email).await;
    let p = pkce();

    // Redirect URIs in doubt: shown, never redirected to.
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
    ] {
        let r = authorize(
            &t,
            &cookies,
            &authorize_url(&t, "notes", bad, &p.challenge, ""),
        )
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.headers().get("location").is_none(), "{bad}");
    }
    let r = authorize(
        &t,
        &cookies,
        &authorize_url(&t, "nobody", REDIRECT, &p.challenge, ""),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A parameter given twice.
    let r = authorize(
        &t,
        &cookies,
        &authorize_url(&t, "notes", REDIRECT, &p.challenge, "&client_id=cli"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // PKCE downgrade: plain, or none at all, goes back as an error.
    for extra in ["&code_challenge_method=plain"] {
        let url = authorize_url(&t, "notes", REDIRECT, &p.challenge, "")
            .replace("code_challenge_method=S256", extra.trim_start_matches('&'));
        let r = authorize(&t, &cookies, &url).await;
        let back = location(&r);
        assert_eq!(
            param(&back, "error").as_deref(),
            Some("invalid_request"),
            "{back}"
        );
        assert_eq!(param(&back, "state").as_deref(), Some("s-1"));
        assert!(param(&back, "code").is_none());
    }
    let url = authorize_url(&t, "notes", REDIRECT, &p.challenge, "")
        .replace(&format!("code_challenge={}", p.challenge), "");
    let back = location(&authorize(&t, &cookies, &url).await);
    assert_eq!(param(&back, "error").as_deref(), Some("invalid_request"));
    // A scope the client may not ask for.
    let url = authorize_url(&t, "notes", REDIRECT, &p.challenge, "&scope=admin");
    let r = authorize(&t, &cookies, &url).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "scope twice");
    let url = authorize_url(&t, "notes", REDIRECT, &p.challenge, "")
        .replace("scope=openid", "scope=openid+admin");
    let back = location(&authorize(&t, &cookies, &url).await);
    assert_eq!(param(&back, "error").as_deref(), Some("invalid_scope"));

    // Loopback redirects of a native app may take any port.
    let url = authorize_url(
        &t,
        "cli",
        "http://127.0.0.1:51004/callback",
        &p.challenge,
        "",
    );
    let back = location(&authorize(&t, &cookies, &url).await);
    assert_eq!(back.port(), Some(51004));
    assert!(param(&back, "code").is_some());

    // The wrong verifier spends the code.
    let code = code_for(&t, &cookies, "notes", &p).await;
    let wrong = pkce();
    let r = exchange(&t, ("notes", Some(&secret)), &code, &wrong.verifier).await;
    assert_eq!(
        oauth_error(r).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );
    let r = exchange(&t, ("notes", Some(&secret)), &code, &p.verifier).await;
    assert_eq!(
        oauth_error(r).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );

    // Code injection: a code issued to one client, presented by another.
    let code = code_for(&t, &cookies, "notes", &p).await;
    let r = exchange(&t, ("cli", None), &code, &p.verifier).await;
    assert_eq!(
        oauth_error(r).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );

    // A confidential client presenting no secret; a public one presenting one;
    // a wrong secret; an unknown client.
    let code = code_for(&t, &cookies, "notes", &p).await;
    let r = exchange(&t, ("notes", None), &code, &p.verifier).await;
    assert_eq!(
        oauth_error(r).await,
        (StatusCode::UNAUTHORIZED, "invalid_client".into())
    );
    let r = exchange(&t, ("cli", Some("cs_anything")), &code, &p.verifier).await;
    assert_eq!(
        oauth_error(r).await,
        (StatusCode::UNAUTHORIZED, "invalid_client".into())
    );
    let r = exchange(&t, ("notes", Some("cs_wrong")), &code, &p.verifier).await;
    let www = r.headers()["www-authenticate"]
        .to_str()
        .expect("header")
        .to_string();
    assert!(www.starts_with("Basic"), "{www}");
    assert_eq!(
        oauth_error(r).await,
        (StatusCode::UNAUTHORIZED, "invalid_client".into())
    );
    let r = exchange(&t, ("nobody", Some("x")), &code, &p.verifier).await;
    assert_eq!(
        oauth_error(r).await,
        (StatusCode::UNAUTHORIZED, "invalid_client".into())
    );
    // The code survived the refused clients: it was never spent by them.
    let r = exchange(&t, ("notes", Some(&secret)), &code, &p.verifier).await;
    assert_eq!(r.status(), StatusCode::OK);

    // prompt=none without a session: login_required, to the client.
    let r = no_redirects()
        .get(authorize_url(
            &t,
            "notes",
            REDIRECT,
            &p.challenge,
            "&prompt=none",
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(
        param(&location(&r), "error").as_deref(),
        Some("login_required")
    );
    // Without a session: to the sign-in page, which comes back here.
    let r = no_redirects()
        .get(authorize_url(&t, "notes", REDIRECT, &p.challenge, ""))
        .send()
        .await
        .expect("send");
    let to = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    assert!(
        to.starts_with("/auth/ui/login?return_to=%2Fauth%2Fui%2Fauthorize%3F"),
        "{to}"
    );
    // Arriving cross-site, the browser is bounced once through our own page.
    let r = no_redirects()
        .get(authorize_url(&t, "notes", REDIRECT, &p.challenge, ""))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r
        .text()
        .await
        .expect("body")
        .contains("http-equiv=\"refresh\""));
    // Unsupported grant types and bodies.
    let r = t
        .http
        .post(t.url("/auth/oauth2/token"))
        .form(&[("grant_type", "password"), ("client_id", "cli")])
        .send()
        .await
        .expect("send");
    assert_eq!(
        oauth_error(r).await,
        (StatusCode::BAD_REQUEST, "unsupported_grant_type".into())
    );
    let r = t
        .http
        .post(t.url("/auth/oauth2/token"))
        .json(&json!({"grant_type": "authorization_code"}))
        .send()
        .await
        .expect("send");
    assert_eq!(
        oauth_error(r).await,
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );
}

/// A third-party client: the user is asked, the answer is remembered, a
/// refusal tells the client `access_denied`.
async fn third_party_clients_ask_for_consent_once(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    register_client(
        &t,
        &admin,
        json!({"client_id": "grafana", "name": "Grafana", "type": "public",
               "redirect_uris": [REDIRECT], "scopes": ["openid", "email"]}),
    )
    .await;
    let email = unique_email("consent");
    t.register(&email, PASSWORD).await;
    let cookies = page_sign_in(&t, &email).await;
    let p = pkce();
    let url = authorize_url(&t, "grafana", REDIRECT, &p.challenge, "");
    let r = authorize(&t, &cookies, &url).await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.expect("page");
    assert!(page.contains("Grafana") && page.contains("Allow"), "{page}");
    // prompt=none cannot ask: consent_required.
    let r = authorize(&t, &cookies, &format!("{url}&prompt=none")).await;
    assert_eq!(
        param(&location(&r), "error").as_deref(),
        Some("consent_required")
    );

    let query = url.split_once('?').expect("query").1.to_string();
    let token = hidden(&page, "consent_token");
    let answer = |decision: &str, token: &str| {
        no_redirects()
            .post(t.url("/auth/ui/authorize"))
            .header("cookie", &cookies)
            .header("sec-fetch-site", "same-origin")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("{query}&decision={decision}&consent_token={token}"))
            .send()
    };
    // A form the issuer did not render for this session: refused.
    let r = answer("allow", "forged").await.expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let denied = answer("deny", &token).await.expect("send");
    let denied = denied.text().await.expect("page");
    assert!(denied.contains("error=access_denied"), "{denied}");
    // A form from another site is refused (the pages' CSRF check).
    let r = no_redirects()
        .post(t.url("/auth/ui/authorize"))
        .header("cookie", &cookies)
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("{query}&decision=allow&consent_token={token}"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let allowed = answer("allow", &token).await.expect("send");
    let allowed = allowed.text().await.expect("page");
    // Without offline_access, a third-party application gets no refresh token.
    let to = landing_url(&allowed);
    let code = param(&oauth2::url::Url::parse(&to).expect("url"), "code").expect("code");
    let r = exchange(&t, ("grafana", None), &code, &p.verifier).await;
    let tokens: Value = r.json().await.expect("json");
    assert!(tokens["access_token"].is_string(), "{tokens}");
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");
    // Remembered: the next request goes straight back with a code.
    let r = authorize(&t, &cookies, &url).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(param(&location(&r), "code").is_some());
    // Even a request for no scope at all asks a user who never answered.
    let stranger = unique_email("stranger");
    t.register(&stranger, PASSWORD).await;
    let theirs = page_sign_in(&t, &stranger).await;
    let r = authorize(&t, &theirs, &url.replace("scope=openid", "scope=")).await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.headers());
    assert!(r.text().await.expect("page").contains("Allow"));
}

pub(crate) fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    page.split(&marker)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        .to_string()
}

/// Where a page that moves on by itself goes.
pub(crate) fn landing_url(page: &str) -> String {
    page.split("url=")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no landing URL in {page}"))
        .replace("&amp;", "&")
}

/// The page-login with `return_to`: its cookies, and where its page goes.
async fn sign_in_returning(t: &TestIssuer, email: &str, return_to: &str) -> (String, String) {
    let r = no_redirects()
        .post(t.url("/auth/ui/login"))
        .header("sec-fetch-site", "same-origin")
        .form(&[
            ("email", email),
            ("password", PASSWORD),
            ("return_to", return_to),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "a page goes on to the authorization endpoint"
    );
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::to_string)
        .collect();
    let page = r.text().await.expect("page");
    (cookies.join("; "), t.url(&landing_url(&page)))
}

/// `prompt=login` and `max_age` send a signed-in browser to sign in again,
/// and only a sign-in after the issuer's sealed marker satisfies them:
/// removing or forging the marker does not.
async fn prompt_login_and_max_age_need_a_new_sign_in(backend: Backend) {
    let clock = manual_clock();
    let Some(t) = start_with(backend, clock.clone(), |_| {}).await else {
        return;
    };
    let admin = make_admin(&t).await;
    register_client(
        &t,
        &admin,
        json!({"client_id": "cli", "name": "CLI", "type": "public",
               "redirect_uris": [REDIRECT], "scopes": ["openid"], "first_party": true}),
    )
    .await;
    let email = unique_email("prompt");
    t.register(&email, PASSWORD).await;
    let cookies = page_sign_in(&t, &email).await;
    let p = pkce();
    for extra in ["&prompt=login", "&max_age=5"] {
        // The session is older than max_age by now.
        clock.advance_secs(6);
        let url = authorize_url(&t, "cli", REDIRECT, &p.challenge, extra);
        let r = authorize(&t, &cookies, &url).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let to = r.headers()["location"]
            .to_str()
            .expect("location")
            .to_string();
        assert!(to.starts_with("/auth/ui/login?return_to="), "{extra}: {to}");
        let return_to = param(
            &oauth2::url::Url::parse(&t.url(&to)).expect("url"),
            "return_to",
        )
        .expect("return_to");
        assert!(return_to.contains("auth_after="), "{return_to}");
        // The continuation without its marker, or with a forged one: no code.
        let bare: String = return_to
            .split('&')
            .filter(|kv| !kv.starts_with("auth_after="))
            .collect::<Vec<_>>()
            .join("&");
        let r = authorize(&t, &cookies, &t.url(&bare)).await;
        let l = r.headers()["location"].to_str().expect("l").to_string();
        assert!(l.starts_with("/auth/ui/login"), "{extra}: {l}");
        let forged = format!("{bare}&auth_after=0");
        let back = location(&authorize(&t, &cookies, &t.url(&forged)).await);
        assert_eq!(
            param(&back, "error").as_deref(),
            Some("invalid_request"),
            "{extra}"
        );
        // An old marker (the sign-in took too long) is refused too.
        clock.advance_secs(601);
        let back = location(&authorize(&t, &cookies, &t.url(&return_to)).await);
        assert_eq!(
            param(&back, "error").as_deref(),
            Some("invalid_request"),
            "{extra}"
        );
        clock.advance_secs(-601);
        // A new sign-in, then the continuation: a code.
        clock.advance_secs(1);
        let (fresh, next) = sign_in_returning(&t, &email, &return_to).await;
        let r = authorize(&t, &fresh, &next).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let back = location(&r);
        assert!(param(&back, "code").is_some(), "{extra}: {back}");
    }
}

async fn form_post(
    t: &TestIssuer,
    path: &str,
    client: (&str, Option<&str>),
    form: &[(&str, &str)],
) -> reqwest::Response {
    t.http
        .post(t.url(path))
        .basic_auth(client.0, client.1)
        .form(form)
        .send()
        .await
        .expect("send")
}

/// RFC 7009 and RFC 7662, and the account's "disconnect": each ends the
/// application's session, and the edge hears of it on the feed.
async fn revocation_introspection_and_disconnecting_an_app(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let secret = register_client(&t, &admin, confidential("notes", true)).await["client_secret"]
        .as_str()
        .expect("secret")
        .to_string();
    let other = register_client(&t, &admin, confidential("other", true)).await["client_secret"]
        .as_str()
        .expect("secret")
        .to_string();
    // A resource server of the mesh: it serves the mesh's audience.
    let mut rs = confidential("mesh-rs", true);
    rs["serves"] = json!(["devmentor"]);
    let rs = register_client(&t, &admin, rs).await["client_secret"]
        .as_str()
        .expect("secret")
        .to_string();
    register_client(
        &t,
        &admin,
        json!({"client_id": "cli", "name": "CLI", "type": "public",
               "redirect_uris": [REDIRECT], "scopes": ["openid"], "first_party": true}),
    )
    .await;
    let email = unique_email("revoke");
    t.register(&email, PASSWORD).await;
    let cookies = page_sign_in(&t, &email).await;
    let tokens_for = |p: Pkce| {
        let (t, cookies, secret) = (&t, cookies.clone(), secret.clone());
        async move {
            let code = code_for(t, &cookies, "notes", &p).await;
            let r = exchange(t, ("notes", Some(&secret)), &code, &p.verifier).await;
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.expect("json")
        }
    };
    let tokens = tokens_for(pkce()).await;
    let access = tokens["access_token"].as_str().expect("at").to_string();
    let refresh = tokens["refresh_token"].as_str().expect("rt").to_string();
    let sid = t.verify(&access).await.sid;

    let introspect = |who: (&'static str, Option<String>), token: String| {
        let t = &t;
        async move {
            let r = form_post(
                t,
                "/auth/oauth2/introspect",
                (who.0, who.1.as_deref()),
                &[("token", &token)],
            )
            .await;
            let status = r.status();
            (status, r.json::<Value>().await.expect("json"))
        }
    };
    let (status, body) = introspect(("notes", Some(secret.clone())), access.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["client_id"], "notes");
    assert_eq!(body["scope"], "openid");
    // A resource server of its audience may introspect the access token;
    // another client (confidential, authenticated) learns nothing of it
    // (RFC 7662 §4), and a public client may not introspect at all.
    let (status, body) = introspect(("mesh-rs", Some(rs.clone())), access.clone()).await;
    assert_eq!(
        (status, body["active"].clone()),
        (StatusCode::OK, json!(true)),
        "{body}"
    );
    assert_eq!(body["client_id"], "notes");
    assert_eq!(
        introspect(("other", Some(other.clone())), access.clone())
            .await
            .1,
        json!({"active": false})
    );
    assert_eq!(
        introspect(("other", Some(other.clone())), refresh.clone())
            .await
            .1["active"],
        false
    );
    assert_eq!(
        introspect(("cli", None), access.clone()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        introspect(("notes", Some(secret.clone())), "garbage".into())
            .await
            .1,
        json!({"active": false})
    );

    // Another client's revocation does nothing (and says nothing).
    let r = form_post(
        &t,
        "/auth/oauth2/revoke",
        ("other", Some(&other)),
        &[("token", &refresh)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        introspect(("notes", Some(secret.clone())), access.clone())
            .await
            .1["active"],
        true
    );
    let r = form_post(
        &t,
        "/auth/oauth2/revoke",
        ("notes", Some(&secret)),
        &[("token", &refresh), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        introspect(("notes", Some(secret.clone())), access.clone())
            .await
            .1["active"],
        false
    );
    assert!(feed_records(&t).await.iter().any(|r| r.subject == sid));
    let r = form_post(
        &t,
        "/auth/oauth2/revoke",
        ("notes", Some(&secret)),
        &[("token", "unknown")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);

    // The account page's list, and disconnecting: the session ends.
    let tokens = tokens_for(pkce()).await;
    let sid = t
        .verify(tokens["access_token"].as_str().expect("at"))
        .await
        .sid;
    let own = t.login(&email, PASSWORD).await;
    let apps: Value = t
        .get_auth("/auth/apps", &own.access)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(apps[0]["client_id"], "notes", "{apps}");
    let r = t
        .http
        .delete(t.url("/auth/apps/notes"))
        .bearer_auth(&own.access)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.expect("json")["sessions_ended"], 1);
    assert!(feed_records(&t).await.iter().any(|r| r.subject == sid));
    let r = form_post(
        &t,
        "/auth/oauth2/token",
        ("notes", Some(&secret)),
        &[
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                tokens["refresh_token"].as_str().expect("rt"),
            ),
        ],
    )
    .await;
    assert_eq!(
        oauth_error(r).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );
    let r = t
        .http
        .delete(t.url("/auth/apps/notes"))
        .bearer_auth(&own.access)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// Authlib (PyPI), a relying party we did not write: discovery, code +
/// PKCE, ID-token validation, userinfo, refresh, revocation and
/// RP-initiated logout (scripts/interop/authlib_rp.py).
async fn authlib_relying_party_does_the_whole_dance(backend: Backend) {
    let Some(python) = issuer::testing::required_service("DM_TEST_PYTHON", "Python with Authlib")
    else {
        return;
    };
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let registered = register_client(
        &t,
        &admin,
        json!({"client_id": "py-rp", "name": "Python RP", "type": "confidential",
               "redirect_uris": [REDIRECT], "post_logout_redirect_uris": ["https://app.test/bye"],
               "scopes": ["openid", "email"], "first_party": true}),
    )
    .await;
    let secret = registered["client_secret"]
        .as_str()
        .expect("secret")
        .to_string();
    run_authlib(&t, &python, "py-rp", secret, "authlib").await;
}

/// Runs scripts/interop/authlib_rp.py for a fresh user of `t`.
pub(crate) async fn run_authlib(
    t: &TestIssuer,
    python: &str,
    client_id: &str,
    secret: String,
    who: &str,
) {
    let email = unique_email(who);
    t.register(&email, PASSWORD).await;
    let cookies = page_sign_in(t, &email).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/interop/authlib_rp.py"
    );
    let args = [
        script.to_string(),
        t.url(""),
        issuer::testing::TEST_ISSUER_URL.to_string(),
        client_id.into(),
        secret,
        cookies,
        REDIRECT.into(),
        "https://app.test/bye".into(),
    ];
    let python = python.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args(&args)
            .output()
            .expect("run python")
    })
    .await
    .expect("join");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("all steps passed"), "{text}");
}

pub(crate) fn header_of(jwt: &str) -> Value {
    use base64::Engine;
    let part = jwt.split('.').next().expect("header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json")
}

async fn keys_of_use(t: &TestIssuer, admin: &str, key_use: &str) -> Vec<Value> {
    let r = t.get_auth("/admin/keys", admin).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    body["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["use"] == key_use)
        .cloned()
        .collect()
}

/// OIDC Core §15.1: ID tokens in RS256 while access tokens keep the
/// configured ES256. The RS256 key is made with the first ID token, is
/// published, survives a rotation of the access keys, and a revoked one
/// is replaced in its own lane.
async fn id_tokens_are_rs256_from_a_key_lane_of_their_own(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    assert!(
        keys_of_use(&t, &admin, "id_token").await.is_empty(),
        "no RSA key until a client is registered"
    );
    let secret = register_client(&t, &admin, confidential("rs256", true)).await["client_secret"]
        .as_str()
        .expect("secret")
        .to_string();
    let email = unique_email("rs256");
    t.register(&email, PASSWORD).await;
    let cookies = page_sign_in(&t, &email).await;
    let id_token = |cookies: String| {
        let (t, secret) = (&t, &secret);
        async move {
            let p = pkce();
            let code = code_for(t, &cookies, "rs256", &p).await;
            let r = exchange(t, ("rs256", Some(secret)), &code, &p.verifier).await;
            assert_eq!(r.status(), StatusCode::OK);
            let body: Value = r.json().await.expect("json");
            let access = body["access_token"].as_str().expect("access").to_string();
            let id = body["id_token"].as_str().expect("id_token").to_string();
            (access, id)
        }
    };
    let (access, first) = id_token(cookies.clone()).await;
    assert_eq!(header_of(&access)["alg"], "ES256");
    let header = header_of(&first);
    assert_eq!(header["alg"], "RS256");
    let kid = header["kid"].as_str().expect("kid").to_string();
    let lane = keys_of_use(&t, &admin, "id_token").await;
    assert_eq!(lane.len(), 1);
    assert_eq!(
        (&lane[0]["kid"], &lane[0]["alg"], &lane[0]["state"]),
        (&json!(kid), &json!("RS256"), &json!("current"))
    );
    let jwks = t.get_json("/.well-known/jwks.json").await;
    assert!(jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .any(|k| k["kid"] == kid.as_str() && k["kty"] == "RSA"));
    let discovery = t.get_json("/.well-known/openid-configuration").await;
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );

    // Rotating the access keys leaves the ID-token key signing.
    let r = t
        .post_auth("/admin/keys/rotate", &admin, Some(json!({"now": true})))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let (_, second) = id_token(cookies.clone()).await;
    assert_eq!(header_of(&second)["kid"], kid.as_str());

    // Revoking it: a new RS256 key in the same lane signs the next one.
    let r = t
        .post_auth(&format!("/admin/keys/{kid}/revoke"), &admin, None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let (access, third) = id_token(cookies).await;
    let header = header_of(&third);
    assert_eq!(header["alg"], "RS256");
    assert_ne!(header["kid"], kid.as_str());
    assert_eq!(header_of(&access)["alg"], "ES256");
    let lane = keys_of_use(&t, &admin, "id_token").await;
    let states: Vec<(&str, &str)> = lane
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().expect("kid"),
                k["state"].as_str().expect("state"),
            )
        })
        .collect();
    assert!(states.contains(&(kid.as_str(), "revoked")), "{states:?}");
    assert!(
        states.contains(&(header["kid"].as_str().expect("kid"), "current")),
        "{states:?}"
    );
}
