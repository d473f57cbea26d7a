//! HTTP forward-auth through a real nginx (`auth_request`, the config in
//! examples/nginx/): the same decisions, identity headers set and client
//! copies replaced, spoofed forwarding headers ignored, and denials that
//! never reach the upstream.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

struct Nginx {
    _child: tokio::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

async fn start_nginx(
    sidecar_admin: std::net::SocketAddr,
    upstream: std::net::SocketAddr,
) -> Option<Nginx> {
    let nginx = issuer::testing::required_service("DM_TEST_NGINX", "nginx")?;
    let dir = tempfile::tempdir().expect("tempdir");
    // Workers run unprivileged when nginx starts as root.
    let _ = std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/nginx/forward-auth.conf.tmpl"
    ))
    .expect("template");
    let conf = template
        .replace("{{PREFIX}}", &dir.path().display().to_string())
        .replace("{{NGINX_PORT}}", &port.to_string())
        .replace("{{SIDECAR_ADMIN}}", &sidecar_admin.to_string())
        .replace("{{UPSTREAM}}", &upstream.to_string());
    assert!(!conf.contains("{{"), "unrendered placeholder");
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).expect("write conf");
    let child = tokio::process::Command::new(nginx)
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir.path())
        .arg("-g")
        .arg("daemon off;")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start nginx");
    wait_until(Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await
    .expect("nginx listens");
    Some(Nginx {
        _child: child,
        port,
        _dir: dir,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_gets_the_same_decisions() {
    let Some(stack) = Stack::start(|s| s.forward_auth = true).await else {
        return;
    };
    let upstream = echo_upstream("behind-nginx").await;
    let admin = stack.sidecar.as_ref().expect("sidecar").admin;
    let Some(nginx) = start_nginx(admin, upstream).await else {
        return;
    };
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", nginx.port);
    let http = &stack.http;
    let tokens = stack.login(&unique_email("nginx")).await;
    let access = token(&tokens);

    // Allowed, with the identity the sidecar vouched for replacing the
    // client's copies (an empty roles header removes the client's).
    let r = http
        .get(url("/ai/chat"))
        .bearer_auth(&access)
        .header("x-user-id", "someone-else")
        .header("x-user-roles", "admin")
        .header("x-forwarded-host", "admin.internal")
        .header("x-original-url", "/ai/admin/settings")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let echoed: Value = r.json().await.expect("json");
    assert_eq!(echoed["upstream"], "behind-nginx");
    let claims = stack.issuer().state.keys.snapshot();
    let sub = auth_types::jws::verify(&access, &claims.verifying)
        .expect("verify")
        .claims
        .sub;
    assert_eq!(echoed["headers"]["x-user-id"], serde_json::json!([sub]));
    assert!(
        echoed["headers"].get("x-user-roles").is_none(),
        "the client's roles never pass: {echoed}"
    );
    for routing in ["x-forwarded-host", "x-original-url"] {
        assert!(
            echoed["headers"].get(routing).is_none(),
            "{routing} never reaches the upstream: {echoed}"
        );
    }

    // The issuer's cookies never reach the application; its own do, and a
    // request with only the issuer's arrives with none.
    let r = http
        .get(url("/ai/chat"))
        .bearer_auth(&access)
        .header(
            "cookie",
            "app=1; __Host-refresh_token=secret-rt; __Secure-page_token=secret-pt; theme=dark",
        )
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let echoed: Value = r.json().await.expect("json");
    assert_eq!(
        echoed["headers"]["cookie"],
        serde_json::json!(["app=1; theme=dark"]),
        "{echoed}"
    );
    for cookie in ["__Host-refresh_token=secret-rt", "app=1"] {
        let r = http
            .get(url("/ai/chat"))
            .bearer_auth(&access)
            .header("cookie", cookie)
            .send()
            .await
            .expect("request");
        let echoed: Value = r.json().await.expect("json");
        let expected = (cookie == "app=1").then(|| serde_json::json!([cookie]));
        assert_eq!(
            echoed["headers"].get("cookie"),
            expected.as_ref(),
            "{echoed}"
        );
    }

    // No token: 401 with the challenge; not the upstream's answer.
    let r = http.get(url("/ai/chat")).send().await.expect("request");
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"].to_str().expect("ascii"),
        "Bearer"
    );
    assert!(!r.text().await.expect("body").contains("behind-nginx"));
    // A forged forwarding header changes nothing: nginx sets its own.
    let r = http
        .get(url("/ai/chat"))
        .header("x-forwarded-uri", "/auth/login")
        .header("x-original-uri", "/auth/login")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
    // Policy: not an admin.
    let r = http
        .get(url("/ai/admin/settings"))
        .bearer_auth(&access)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403);
    // Public routes pass without a token.
    let r = http
        .get(url("/auth/anything"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    // A path an upstream could rewrite is refused (nginx turns the
    // sidecar's 400 into a 500: still no upstream).
    for raw in [
        "/ai/admin;x/settings",
        "/ai/%61dmin/settings",
        "/ai/admin%2fsettings",
    ] {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", nginx.port))
            .await
            .expect("connect");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let req = format!(
            "GET {raw} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {access}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.expect("write");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        let status = answer
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        assert!(
            status != "200" && !answer.contains("behind-nginx"),
            "{raw}: {status}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_is_off_unless_asked_and_refuses_ambiguity() {
    let Some(stack) = Stack::start(|s| s.forward_auth = true).await else {
        return;
    };
    let admin = stack.sidecar.as_ref().expect("sidecar").admin;
    let endpoint = format!("http://{admin}/authz");
    let r = stack
        .http
        .get(&endpoint)
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/ai/chat")
        .header("x-forwarded-uri", "/auth/login")
        .header("x-forwarded-host", "localhost")
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.status(),
        400,
        "two URIs: which one would the upstream act on?"
    );
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"],
        "malformed_request"
    );
    let r = stack.http.get(&endpoint).send().await.expect("request");
    assert_eq!(r.status(), 400, "no forwarded request at all");
    // Both families at once: a client's copies got through beside the proxy's.
    let r = stack
        .http
        .get(&endpoint)
        .header("x-original-method", "GET")
        .header("x-original-uri", "/ai/admin/settings")
        .header("x-original-host", "localhost")
        .header("x-forwarded-uri", "/auth/login")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);
    // The host is the forwarded one, never the Host of the call to us.
    let r = stack
        .http
        .get(&endpoint)
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/auth/login")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);
    // nginx's family alone works.
    let r = stack
        .http
        .get(&endpoint)
        .header("x-original-method", "GET")
        .header("x-original-uri", "/auth/login")
        .header("x-original-host", "localhost")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    // Off loopback, --forward-auth needs an explicit opt-in.
    let mut exposed = sidecar_settings("http://127.0.0.1:1");
    exposed.forward_auth = true;
    exposed.admin_listen = ([0, 0, 0, 0], 9002).into();
    assert!(exposed.clone().validate().is_err());
    exposed.forward_auth_allow_remote = true;
    assert!(exposed.validate().is_ok());

    let Some(plain) = Stack::start(|_| {}).await else {
        return;
    };
    let admin = plain.sidecar.as_ref().expect("sidecar").admin;
    let r = plain
        .http
        .get(format!("http://{admin}/authz"))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/auth/login")
        .header("x-forwarded-host", "localhost")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404, "off by default");
}
