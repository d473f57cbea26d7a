//! Sign in with GitHub against the fake GitHub, with a cookie-keeping client
//! walking the redirects as a browser does.

use std::sync::Arc;

use fake_github::browser::Browser;
use fake_github::{Behaviour, Config, FakeEmail, FakeGitHub, FakeUser};
use issuer::config::{Secret, ServeArgs};
use issuer::domain::clock::{Clock, SystemClock};
use issuer::testing::TEST_ISSUER_URL;
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::*;

on_both_backends!(
    sign_in_creates_an_account_then_signs_it_in,
    api_clients_get_json_instead_of_redirects,
    state_is_bound_to_the_browser_and_single_use,
    github_refusals_create_nothing,
    github_down_or_slow_is_a_502_and_creates_nothing,
    existing_email_needs_an_explicit_link_with_the_password,
    unlinking_keeps_a_way_to_sign_in,
    org_gating_refuses_outsiders,
    concurrent_first_sign_ins_make_one_account,
    return_to_must_be_allow_listed,
    a_second_sign_in_replaces_the_browser_s_session,
);

/// A browser that signs in with GitHub again ends the session its refresh
/// cookie stood for, although GitHub's cross-site redirect back brings no
/// `SameSite=Strict` cookie (emulated: the callback goes without it).
async fn a_second_sign_in_replaces_the_browser_s_session(backend: Backend) {
    let Some(g) = Gh::start(backend).await else {
        return;
    };
    g.github_user("octo");
    let mut b = g.browser();
    let start = format!(
        "{TEST_ISSUER_URL}/auth/github/login?return_to={}",
        enc(&format!("{APP}/home"))
    );
    let first = b.get(&start).await;
    b.follow(&first.location.clone().expect("location")).await;
    let before = tokens_from_cookie(&g, &mut b).await;
    // Again: the start sees the refresh cookie; the callback will not.
    let second = b.get(&start).await;
    let state = b
        .cookie(TEST_ISSUER_URL, "__Host-github_oauth")
        .expect("state cookie");
    b.forget_cookies();
    b.set_cookie(TEST_ISSUER_URL, "__Host-github_oauth", &state);
    let last = b.follow(&second.location.clone().expect("location")).await;
    assert_eq!(last.status, StatusCode::FOUND, "{}", last.body);
    let after = b
        .cookie(TEST_ISSUER_URL, "__Host-refresh_token")
        .expect("new refresh cookie");
    assert_ne!(after, before.refresh);
    assert_eq!(
        g.t.refresh(&before.refresh).await.status(),
        StatusCode::UNAUTHORIZED,
        "the replaced session ended"
    );
    assert_eq!(
        g.t.get_auth("/auth/me", &before.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

const APP: &str = "https://app.example";
const CLIENT_ID: &str = "fake-client-id";
const CLIENT_SECRET: &str = "fake-client-secret";

struct Gh {
    t: TestIssuer,
    fake: FakeGitHub,
}

impl Gh {
    async fn start(backend: Backend) -> Option<Gh> {
        Self::start_with(backend, Arc::new(SystemClock), |_| {}).await
    }

    async fn start_with(
        backend: Backend,
        clock: Arc<dyn Clock>,
        tweak: impl FnOnce(&mut ServeArgs),
    ) -> Option<Gh> {
        let fake = FakeGitHub::start(Config {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_uri: format!("{TEST_ISSUER_URL}/auth/github/callback"),
            users: Vec::new(),
        })
        .await
        .expect("fake GitHub");
        let t = start_with(backend, clock, |a| {
            a.github.github_client_id = Some(CLIENT_ID.into());
            a.github.github_client_secret = Some(Secret(CLIENT_SECRET.into()));
            a.github.github_web_url = fake.url();
            a.github.github_api_url = fake.url();
            a.allowed_return_origins = vec![APP.into()];
            tweak(a);
        })
        .await?;
        Some(Gh { t, fake })
    }

    fn browser(&self) -> Browser {
        let mut b = Browser::new();
        b.alias(TEST_ISSUER_URL, &self.t.server.base_url);
        b
    }

    /// A fresh GitHub user (unique id and email) signed in at the fake.
    fn github_user(&self, tag: &str) -> FakeUser {
        let email = unique_email(tag);
        let id = next_github_id();
        let user = FakeUser::new(id, &format!("{tag}-{id}"), &email);
        self.fake.add_user(user.clone());
        self.fake.sign_in_as(&user.login);
        user
    }

    /// Walks the whole dance; returns the last answer.
    async fn sign_in(&self, b: &mut Browser) -> fake_github::browser::Visit {
        b.follow(&format!(
            "{TEST_ISSUER_URL}/auth/github/login?return_to={}",
            enc(&format!("{APP}/home?tab=1"))
        ))
        .await
    }

    async fn user_count(&self, email: &str) -> bool {
        self.t
            .server
            .state
            .store
            .user_by_email(email)
            .await
            .expect("db")
            .is_some()
    }

    /// Every one of `wanted` is among the recent audit events.
    async fn expect_events(&self, wanted: &[&str]) {
        let events = self.events().await;
        for e in wanted {
            assert!(events.iter().any(|x| x == e), "{e} in {events:?}");
        }
    }

    async fn events(&self) -> Vec<String> {
        self.t
            .server
            .state
            .store
            .recent_audit_events(200)
            .await
            .expect("audit")
    }
}

/// GitHub ids are unique per test process (each test has its own database).
fn next_github_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1_000);
    N.fetch_add(1, Ordering::SeqCst)
}

fn enc(s: &str) -> String {
    fake_github::encode(s)
}

fn query(url: &str, key: &str) -> Option<String> {
    Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Starts a link as the holder of `access` (with `password`); returns the
/// answer, whose `authorize_url` the browser follows.
async fn start_link(
    b: &mut Browser,
    access: Option<&str>,
    password: &str,
    return_to: Option<String>,
) -> fake_github::browser::Visit {
    let mut body = json!({ "password": password });
    if let Some(r) = return_to {
        body["return_to"] = json!(r);
    }
    b.request(
        Method::POST,
        &format!("{TEST_ISSUER_URL}/auth/github/link"),
        Some(body),
        access,
    )
    .await
}

fn authorize_url(v: &fake_github::browser::Visit) -> String {
    v.json()["authorize_url"]
        .as_str()
        .expect("authorize_url")
        .to_string()
}

/// Tokens from the refresh cookie the browser holds for the issuer.
async fn tokens_from_cookie(g: &Gh, b: &mut Browser) -> Tokens {
    let v = b
        .request(
            Method::POST,
            &format!("{TEST_ISSUER_URL}/auth/refresh"),
            None,
            None,
        )
        .await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.body);
    let _ = g;
    let mut body = v.json();
    // A browser gets its refresh token in the cookie only.
    assert!(body.get("refresh_token").is_none(), "{}", v.body);
    body["refresh_token"] = b
        .cookie(TEST_ISSUER_URL, "__Host-refresh_token")
        .expect("refresh cookie")
        .into();
    Tokens::from(body)
}

async fn sign_in_creates_an_account_then_signs_it_in(backend: Backend) {
    let Some(g) = Gh::start(backend).await else {
        return;
    };
    let gh_user = g.github_user("octo");
    let mut b = g.browser();

    // Step one: a redirect to GitHub with everything the flow needs.
    let first = b
        .get(&format!(
            "{TEST_ISSUER_URL}/auth/github/login?return_to={}",
            enc(&format!("{APP}/home"))
        ))
        .await;
    assert_eq!(first.status, StatusCode::FOUND);
    let to_github = first.location.clone().expect("location");
    assert!(to_github.starts_with(&format!("{}/login/oauth/authorize?", g.fake.url())));
    assert_eq!(query(&to_github, "client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(
        query(&to_github, "redirect_uri"),
        Some(format!("{TEST_ISSUER_URL}/auth/github/callback"))
    );
    assert_eq!(
        query(&to_github, "scope").as_deref(),
        Some("read:user user:email"),
        "minimal scopes; read:org only with gating"
    );
    assert_eq!(
        query(&to_github, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(query(&to_github, "state").is_some_and(|s| s.len() >= 16));
    let set_cookie = first.headers["set-cookie"].to_str().expect("ascii");
    for attr in [
        "__Host-github_oauth=",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
    ] {
        assert!(set_cookie.contains(attr), "{attr} in {set_cookie}");
    }
    assert!(
        !set_cookie.contains(&query(&to_github, "state").expect("state")),
        "the cookie is sealed, not the plain state"
    );

    // The rest of the dance lands on return_to with a refresh cookie only.
    let last = b.follow(&to_github).await;
    assert_eq!(last.status, StatusCode::FOUND, "{}", last.body);
    assert_eq!(last.location.as_deref(), Some(&*format!("{APP}/home")));
    assert!(b.cookie(TEST_ISSUER_URL, "__Host-refresh_token").is_some());
    assert!(b.cookie(TEST_ISSUER_URL, "__Host-github_oauth").is_none());
    assert!(!b
        .history
        .iter()
        .any(|u| u.contains("rt_") || u.contains("eyJ")));

    let tokens = tokens_from_cookie(&g, &mut b).await;
    let claims = g.t.verify(&tokens.access).await;
    assert_eq!(claims.amr, vec!["fed".to_string()]);
    let email = &gh_user.emails[0].email;
    assert_eq!(claims.email.as_deref(), Some(email.as_str()));
    let me: Value =
        g.t.get_auth("/auth/me", &tokens.access)
            .await
            .json()
            .await
            .expect("json");
    let user_id = me["user"]["id"].as_str().expect("id").to_string();
    let ids: Value =
        g.t.get_auth("/auth/identities", &tokens.access)
            .await
            .json()
            .await
            .expect("json");
    assert_eq!(ids["has_password"], false);
    assert_eq!(ids["identities"][0]["provider"], "github");
    assert_eq!(ids["identities"][0]["subject"], gh_user.id.to_string());
    let stored =
        g.t.server
            .state
            .store
            .user_by_id(&user_id)
            .await
            .expect("db")
            .expect("user");
    assert!(stored.email_verified_at.is_some(), "GitHub vouched for it");

    // Renamed on GitHub: still the same account (keyed on the numeric id).
    let mut renamed = gh_user.clone();
    renamed.login = format!("{}-renamed", gh_user.login);
    g.fake.add_user(renamed.clone());
    g.fake.sign_in_as(&renamed.login);
    let mut b2 = g.browser();
    let last = g.sign_in(&mut b2).await;
    assert_eq!(
        last.location.as_deref(),
        Some(&*format!("{APP}/home?tab=1"))
    );
    let again = tokens_from_cookie(&g, &mut b2).await;
    assert_eq!(g.t.verify(&again.access).await.sub, user_id);
    assert_ne!(again.session_id, tokens.session_id, "a new session");
    let ids: Value =
        g.t.get_auth("/auth/identities", &again.access)
            .await
            .json()
            .await
            .expect("json");
    assert_eq!(ids["identities"][0]["login"], renamed.login);

    // Password login is no way into a GitHub-made account.
    let r =
        g.t.post("/auth/login", json!({"email": email, "password": ""}))
            .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Sessions from GitHub end like any other: logout revokes at the edge.
    let r = g.t.post_auth("/auth/logout", &again.access, None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(feed_records(&g.t)
        .await
        .iter()
        .any(|r| r.subject == again.session_id));

    g.expect_events(&["github_account_created", "login_success"])
        .await;

    // A disabled account gets no tokens through GitHub either.
    let admin = make_admin(&g.t).await;
    // Admins find the account by its current GitHub login.
    let found: Value =
        g.t.get_auth(&format!("/admin/users?q={}", renamed.login), &admin)
            .await
            .json()
            .await
            .expect("json");
    assert_eq!(found["users"][0]["user"]["id"], user_id.as_str());
    assert_eq!(
        found["users"][0]["user"]["avatar_url"],
        format!("https://avatars.example/u/{}", gh_user.id)
    );
    let r =
        g.t.http
            .patch(g.t.url(&format!("/admin/users/{user_id}")))
            .bearer_auth(&admin)
            .json(&json!({"disabled": true}))
            .send()
            .await
            .expect("patch");
    assert_eq!(r.status(), StatusCode::OK);
    let mut b3 = g.browser();
    let last = g.sign_in(&mut b3).await;
    assert_eq!(
        query(last.location.as_deref().unwrap_or(""), "error").as_deref(),
        Some("account_disabled")
    );
    assert!(b3.cookie(TEST_ISSUER_URL, "__Host-refresh_token").is_none());
}

async fn api_clients_get_json_instead_of_redirects(backend: Backend) {
    let Some(g) = Gh::start(backend).await else {
        return;
    };
    let gh_user = g.github_user("cli");
    let mut b = g.browser();
    b.accept_json = true;
    let start = b.get(&format!("{TEST_ISSUER_URL}/auth/github/login")).await;
    assert_eq!(start.status, StatusCode::OK);
    let url = authorize_url(&start);
    // GitHub's pages are a browser's business; the JSON client follows.
    let at_github = b.get(&url).await;
    let callback = at_github.location.expect("back to the issuer");
    let done = b.get(&callback).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.headers["cache-control"], "no-store");
    let tokens = Tokens::from(done.json());
    assert_eq!(
        g.t.verify(&tokens.access).await.email.as_deref(),
        Some(gh_user.emails[0].email.as_str())
    );
}

async fn state_is_bound_to_the_browser_and_single_use(backend: Backend) {
    let clock = manual_clock();
    let Some(g) = Gh::start_with(backend, clock.clone(), |_| {}).await else {
        return;
    };
    g.github_user("state");

    // Walk to the callback but stop there.
    let mut b = g.browser();
    let first = b.get(&format!("{TEST_ISSUER_URL}/auth/github/login")).await;
    let at_github = b.get(first.location.as_deref().expect("to github")).await;
    let callback = at_github.location.clone().expect("callback");

    // Another browser (no cookie) cannot complete it: login CSRF.
    let mut stranger = g.browser();
    let v = stranger.get(&callback).await;
    assert_eq!(v.status, StatusCode::BAD_REQUEST);
    assert_eq!(v.json()["error"], "invalid_state");

    // A different state with this browser's cookie: refused.
    let forged = callback.replace("state=", "state=x");
    let v = b.get(&forged).await;
    assert_eq!(v.json()["error"], "invalid_state", "{}", v.body);

    // The cookie was cleared by that failure; put it back as an attacker
    // who copied it would, then complete once, then replay.
    let mut b = g.browser();
    let first = b.get(&format!("{TEST_ISSUER_URL}/auth/github/login")).await;
    let cookie = b
        .cookie(TEST_ISSUER_URL, "__Host-github_oauth")
        .expect("state cookie");
    let at_github = b.get(first.location.as_deref().expect("to github")).await;
    let callback = at_github.location.clone().expect("callback");
    let ok = b.get(&callback).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    b.set_cookie(TEST_ISSUER_URL, "__Host-github_oauth", &cookie);
    let replay = b.get(&callback).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert_eq!(replay.json()["error"], "invalid_state");

    // Expired: the state lives ten minutes.
    let mut b = g.browser();
    let first = b.get(&format!("{TEST_ISSUER_URL}/auth/github/login")).await;
    let at_github = b.get(first.location.as_deref().expect("to github")).await;
    clock.advance_secs(601);
    let v = b
        .get(at_github.location.as_deref().expect("callback"))
        .await;
    assert_eq!(v.json()["error"], "invalid_state");
    assert!(v.json()["message"]
        .as_str()
        .expect("message")
        .contains("too long"));

    // A garbage cookie is the same as none, never a 5xx.
    let mut b = g.browser();
    b.set_cookie(TEST_ISSUER_URL, "__Host-github_oauth", "-not-base64!");
    let v = b
        .get(&format!(
            "{TEST_ISSUER_URL}/auth/github/callback?code=x&state=y"
        ))
        .await;
    assert_eq!(v.status, StatusCode::BAD_REQUEST);

    // The same parameter twice is refused, not guessed at.
    let v = b
        .get(&format!(
            "{TEST_ISSUER_URL}/auth/github/callback?code=x&state=y&state=z"
        ))
        .await;
    assert_eq!(v.status, StatusCode::BAD_REQUEST);
    assert!(v.json()["error"].is_string(), "{}", v.body);

    g.expect_events(&["github_invalid_state"]).await;
}

async fn github_refusals_create_nothing(backend: Backend) {
    let Some(g) = Gh::start(backend).await else {
        return;
    };
    // The user says no at GitHub.
    let u = g.github_user("deny");
    g.fake.set(Behaviour {
        signed_in: Some(u.login.clone()),
        deny: true,
        ..Default::default()
    });
    let mut b = g.browser();
    let last = g.sign_in(&mut b).await;
    let to = last.location.expect("back to the app");
    assert!(
        to.starts_with(&format!("{APP}/home?tab=1&error=access_denied")),
        "{to}"
    );
    assert!(!g.user_count(&u.emails[0].email).await);
    g.fake.set(Behaviour::default());

    // A code bound to someone else's PKCE challenge (code injection):
    // GitHub refuses the exchange, with HTTP 200 and an `error` field.
    let u = g.github_user("pkce");
    let mut b = g.browser();
    let first = b
        .get(&format!(
            "{TEST_ISSUER_URL}/auth/github/login?return_to={}",
            enc(APP)
        ))
        .await;
    let original = first.location.expect("to github");
    let challenge = query(&original, "code_challenge").expect("challenge");
    let tampered = original.replace(&challenge, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let last = b.follow(&tampered).await;
    assert_eq!(
        query(last.location.as_deref().unwrap_or(""), "error").as_deref(),
        Some("github_code_rejected")
    );
    assert!(!g.user_count(&u.emails[0].email).await);

    // A made-up code.
    let mut b = g.browser();
    let first = b.get(&format!("{TEST_ISSUER_URL}/auth/github/login")).await;
    let state = query(first.location.as_deref().expect("loc"), "state").expect("state");
    let v = b
        .get(&format!(
            "{TEST_ISSUER_URL}/auth/github/callback?code=nonsense&state={state}"
        ))
        .await;
    assert_eq!(v.status, StatusCode::BAD_REQUEST);
    assert_eq!(v.json()["error"], "github_code_rejected");

    // No verified primary email (and the verified one is not primary).
    let mut u = g.github_user("unverified");
    u.emails = vec![
        FakeEmail {
            email: unique_email("primary-unverified"),
            primary: true,
            verified: false,
        },
        FakeEmail {
            email: unique_email("secondary-verified"),
            primary: false,
            verified: true,
        },
    ];
    g.fake.add_user(u.clone());
    let mut b = g.browser();
    let last = g.sign_in(&mut b).await;
    assert_eq!(
        query(last.location.as_deref().unwrap_or(""), "error").as_deref(),
        Some("no_verified_email")
    );
    for e in &u.emails {
        assert!(!g.user_count(&e.email).await);
    }

    // The verified primary address is found past the first page.
    let mut u = g.github_user("paged");
    let wanted = unique_email("paged-primary");
    u.emails = (0..150)
        .map(|i| FakeEmail {
            email: format!("other{i}-{wanted}"),
            primary: false,
            verified: true,
        })
        .chain([FakeEmail {
            email: wanted.clone(),
            primary: true,
            verified: true,
        }])
        .collect();
    g.fake.add_user(u.clone());
    let mut b = g.browser();
    let last = g.sign_in(&mut b).await;
    assert_eq!(
        last.location.as_deref(),
        Some(&*format!("{APP}/home?tab=1"))
    );
    assert!(g.user_count(&wanted).await);

    g.expect_events(&[
        "github_access_denied",
        "github_code_rejected",
        "github_no_verified_email",
    ])
    .await;
}

async fn github_down_or_slow_is_a_502_and_creates_nothing(backend: Backend) {
    let Some(g) = Gh::start_with(backend, Arc::new(SystemClock), |a| {
        a.github.github_timeout_ms = 300;
    })
    .await
    else {
        return;
    };
    for behaviour in [
        Behaviour {
            down: true,
            ..Default::default()
        },
        Behaviour {
            delay_ms: 2_000,
            ..Default::default()
        },
    ] {
        let u = g.github_user("outage");
        g.fake.set(Behaviour {
            signed_in: Some(u.login.clone()),
            ..behaviour
        });
        let mut b = g.browser();
        b.accept_json = true;
        let start = b.get(&format!("{TEST_ISSUER_URL}/auth/github/login")).await;
        let url = authorize_url(&start);
        let callback = b.get(&url).await.location.expect("callback");
        let v = b.get(&callback).await;
        assert_eq!(v.status, StatusCode::BAD_GATEWAY, "{}", v.body);
        assert_eq!(v.json()["error"], "upstream_unavailable");
        assert!(
            !v.body.contains("127.0.0.1") && !v.body.contains("timed out"),
            "no internals: {}",
            v.body
        );
        assert!(!g.user_count(&u.emails[0].email).await);
    }
    g.expect_events(&["github_unavailable"]).await;
}

async fn existing_email_needs_an_explicit_link_with_the_password(backend: Backend) {
    let Some(g) = Gh::start(backend).await else {
        return;
    };
    let u = g.github_user("taken");
    let email = u.emails[0].email.clone();
    let registered: Value = g.t.register(&email, PASSWORD).await;

    // Never linked automatically.
    let mut b = g.browser();
    let last = g.sign_in(&mut b).await;
    assert_eq!(
        query(last.location.as_deref().unwrap_or(""), "error").as_deref(),
        Some("link_required")
    );
    assert!(g
        .t
        .server
        .state
        .store
        .user_by_identity("github", &u.id.to_string())
        .await
        .expect("db")
        .is_none());

    // The owner signs in with the password and links, proving it again.
    let tokens = g.t.login(&email, PASSWORD).await;
    let mut b = g.browser();
    let v = start_link(&mut b, Some(&tokens.access), "not the password", None).await;
    assert_eq!(v.status, StatusCode::FORBIDDEN);
    let v = start_link(&mut b, None, PASSWORD, Some(format!("{APP}/settings"))).await;
    assert_eq!(v.status, StatusCode::UNAUTHORIZED, "a session is required");
    let v = start_link(
        &mut b,
        Some(&tokens.access),
        PASSWORD,
        Some(format!("{APP}/settings")),
    )
    .await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.body);
    let url = authorize_url(&v);
    let last = b.follow(&url).await;
    assert_eq!(
        last.location.as_deref(),
        Some(&*format!("{APP}/settings?linked=github"))
    );
    assert!(
        b.cookie(TEST_ISSUER_URL, "__Host-refresh_token").is_none(),
        "linking signs nobody in"
    );

    // A link started by a session that has since ended does not complete.
    let second = g.t.login(&email, PASSWORD).await;
    let mut b = g.browser();
    let v = start_link(&mut b, Some(&second.access), PASSWORD, None).await;
    let url = authorize_url(&v);
    let r = g.t.post_auth("/auth/logout", &second.access, None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let callback = b.get(&url).await.location.expect("callback");
    let v = b.get(&callback).await;
    assert_eq!(v.status, StatusCode::FORBIDDEN, "{}", v.body);

    // From now on GitHub signs in to the existing account.
    let mut b = g.browser();
    g.sign_in(&mut b).await;
    let t2 = tokens_from_cookie(&g, &mut b).await;
    assert_eq!(g.t.verify(&t2.access).await.sub, registered["id"]);

    // The same GitHub account cannot be linked to a second account.
    let other_email = unique_email("other");
    g.t.register(&other_email, PASSWORD).await;
    let other = g.t.login(&other_email, PASSWORD).await;
    let mut b = g.browser();
    let v = start_link(&mut b, Some(&other.access), PASSWORD, None).await;
    let url = authorize_url(&v);
    let callback = b.get(&url).await.location.expect("callback");
    let v = b.get(&callback).await;
    assert_eq!(v.status, StatusCode::CONFLICT);
    assert_eq!(v.json()["error"], "identity_in_use");
    g.expect_events(&[
        "github_link_required",
        "github_linked",
        "github_link_refused",
    ])
    .await;
}

async fn unlinking_keeps_a_way_to_sign_in(backend: Backend) {
    let Some(g) = Gh::start(backend).await else {
        return;
    };
    // A GitHub-made account has no password: GitHub is its only way in.
    g.github_user("only");
    let mut b = g.browser();
    g.sign_in(&mut b).await;
    let tokens = tokens_from_cookie(&g, &mut b).await;
    let r =
        g.t.http
            .delete(g.t.url("/auth/identities/github"))
            .bearer_auth(&tokens.access)
            .send()
            .await
            .expect("send");
    let (status, code, _) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "last_sign_in_method")
    );

    // With a password it can go, once.
    let u = g.github_user("both");
    let email = u.emails[0].email.clone();
    g.t.register(&email, PASSWORD).await;
    let owner = g.t.login(&email, PASSWORD).await;
    let mut b = g.browser();
    let v = start_link(&mut b, Some(&owner.access), PASSWORD, None).await;
    let url = authorize_url(&v);
    let callback = b.get(&url).await.location.expect("callback");
    assert_eq!(b.get(&callback).await.status, StatusCode::OK);
    // A session started through GitHub, then the unlink: it ends with the
    // link (at the edge too); the password session goes on.
    let mut b = g.browser();
    g.sign_in(&mut b).await;
    let via_github = tokens_from_cookie(&g, &mut b).await;
    assert_eq!(
        g.t.get_auth("/auth/me", &via_github.access).await.status(),
        StatusCode::OK
    );
    let unlink = || {
        g.t.http
            .delete(g.t.url("/auth/identities/github"))
            .bearer_auth(&owner.access)
            .send()
    };
    assert_eq!(
        unlink().await.expect("send").status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        unlink().await.expect("send").status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        g.t.get_auth("/auth/me", &via_github.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(feed_records(&g.t)
        .await
        .iter()
        .any(|r| r.subject == via_github.session_id));
    assert_eq!(
        g.t.get_auth("/auth/me", &owner.access).await.status(),
        StatusCode::OK
    );
    g.expect_events(&["identity_unlinked"]).await;
}

async fn org_gating_refuses_outsiders(backend: Backend) {
    let Some(g) = Gh::start_with(backend, Arc::new(SystemClock), |a| {
        a.github.github_allowed_orgs = vec!["Acme".into()];
        a.github.github_allowed_teams = vec!["partner/devs".into()];
    })
    .await
    else {
        return;
    };
    let outsider = g.github_user("outsider");
    let mut b = g.browser();
    let first = b
        .get(&format!(
            "{TEST_ISSUER_URL}/auth/github/login?return_to={}",
            enc(APP)
        ))
        .await;
    let to_github = first.location.clone().expect("loc");
    assert_eq!(
        query(&to_github, "scope").as_deref(),
        Some("read:user user:email read:org")
    );
    let last = b.follow(&to_github).await;
    assert_eq!(
        query(last.location.as_deref().unwrap_or(""), "error").as_deref(),
        Some("org_not_allowed")
    );
    assert!(!g.user_count(&outsider.emails[0].email).await);

    let mut member = g.github_user("member");
    member.orgs = vec!["acme".into()];
    g.fake.add_user(member.clone());
    let mut b = g.browser();
    let last = g.sign_in(&mut b).await;
    assert_eq!(
        last.location.as_deref(),
        Some(&*format!("{APP}/home?tab=1"))
    );

    let mut team = g.github_user("team");
    team.teams = vec!["partner/devs".into()];
    g.fake.add_user(team.clone());
    let mut b = g.browser();
    let last = g.sign_in(&mut b).await;
    assert_eq!(
        last.location.as_deref(),
        Some(&*format!("{APP}/home?tab=1"))
    );
    g.expect_events(&["github_org_refused"]).await;
}

async fn return_to_must_be_allow_listed(backend: Backend) {
    let Some(g) = Gh::start(backend).await else {
        return;
    };
    let mut b = g.browser();
    for bad in [
        "https://evil.example/",
        "//evil.example/",
        "https://app.example@evil.example/",
        "https://app.example.evil.example/",
        "http://app.example/",
        "javascript:alert(1)",
        "/relative",
        "https://user:pw@app.example/",
    ] {
        let v = b
            .get(&format!(
                "{TEST_ISSUER_URL}/auth/github/login?return_to={}",
                enc(bad)
            ))
            .await;
        assert_eq!(v.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(v.json()["error"], "invalid_return_to", "{bad}");
        assert!(v.location.is_none());
    }
    for good in ["https://app.example", "https://APP.example:443/x?y=1#z"] {
        let v = b
            .get(&format!(
                "{TEST_ISSUER_URL}/auth/github/login?return_to={}",
                enc(good)
            ))
            .await;
        assert_eq!(v.status, StatusCode::FOUND, "{good}");
    }

    // Without GitHub configured the routes say so.
    let Some(plain) = start(backend).await else {
        return;
    };
    let r = plain
        .http
        .get(plain.url("/auth/github/login"))
        .send()
        .await
        .expect("send");
    let (status, code, _) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "github_disabled")
    );
}

async fn concurrent_first_sign_ins_make_one_account(backend: Backend) {
    let Some(g) = Gh::start(backend).await else {
        return;
    };
    for _round in 0..3 {
        let u = g.github_user("twice");
        // Two browsers get as far as the callback, then finish together.
        let mut callbacks = Vec::new();
        for _ in 0..2 {
            let mut b = g.browser();
            b.accept_json = true;
            let start = b.get(&format!("{TEST_ISSUER_URL}/auth/github/login")).await;
            let url = authorize_url(&start);
            let callback = b.get(&url).await.location.expect("callback");
            callbacks.push((b, callback));
        }
        let finishing = callbacks
            .into_iter()
            .map(|(mut b, callback)| tokio::spawn(async move { b.get(&callback).await }));
        let mut subs = Vec::new();
        for f in finishing.collect::<Vec<_>>() {
            let v = f.await.expect("join");
            assert_eq!(v.status, StatusCode::OK, "{}", v.body);
            subs.push(g.t.verify(&Tokens::from(v.json()).access).await.sub);
        }
        assert_eq!(subs[0], subs[1], "one account for one GitHub identity");
        assert!(g.user_count(&u.emails[0].email).await);
    }
}
