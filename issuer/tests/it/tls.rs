//! Production reaches PostgreSQL and Redis over TLS and verifies their
//! certificates (README "Deploying"): the binary against the test servers'
//! TLS endpoints, with their throwaway CA trusted, and without it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use issuer::testing::{fresh_postgres_database, required_service};
use sqlx::Connection;

fn issuer() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_issuer"));
    for (k, _) in std::env::vars() {
        if k.starts_with("ISSUER_") || k == "SSL_CERT_FILE" {
            cmd.env_remove(k);
        }
    }
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_verified_tls_and_an_untrusted_server_refused() {
    let Some(admin) = required_service("DM_TEST_POSTGRES_URL", "PostgreSQL") else {
        return;
    };
    let Some(ca) = required_service("DM_TEST_POSTGRES_CA", "PostgreSQL's CA") else {
        return;
    };
    let db = fresh_postgres_database(&admin).await.expect("database");
    let verified = format!("{db}?sslmode=verify-full&sslrootcert={ca}");
    let mut conn = sqlx::PgConnection::connect(&verified)
        .await
        .expect("verify-full");
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .expect("pg_stat_ssl");
    assert!(encrypted, "the session is not encrypted");
    conn.close().await.expect("close");

    let out = issuer()
        .args(["migrate", "--database-url", &verified])
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    // The same server without its CA: the certificate is not trusted.
    let out = issuer()
        .args([
            "migrate",
            "--database-url",
            &format!("{db}?sslmode=verify-full"),
        ])
        .output()
        .expect("run");
    assert!(
        !out.status.success(),
        "an untrusted certificate was accepted"
    );
}

struct Running {
    child: Child,
    url: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `issuer serve` on a free port, its address read from its JSON log.
fn serve(db: &str, redis: &str, dir: &std::path::Path, ca: Option<&str>) -> Running {
    let kek = dir.join("kek");
    std::fs::write(&kek, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n").expect("kek");
    let mut cmd = issuer();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--database-url", db, "--redis-url", redis])
        .arg("--kek-file")
        .arg(&kek)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(ca) = ca {
        // rustls-native-certs reads its roots from here when it is set.
        cmd.env("SSL_CERT_FILE", ca);
    }
    let mut child = cmd.spawn().expect("spawn issuer");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the issuer exited before listening")
            .expect("read");
        if line.contains("issuer listening") {
            let v: serde_json::Value = serde_json::from_str(&line).expect("json log");
            break v["fields"]["addr"].as_str().expect("addr").to_string();
        }
    };
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Running {
        child,
        url: format!("http://{addr}"),
    }
}

async fn local_decisions_after_a_login(url: &str) -> f64 {
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/auth/login"))
        .json(
            &serde_json::json!({"email": "nobody@example.com", "password": "wrong password here"}),
        )
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 401);
    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    metrics
        .lines()
        .find(|l| l.starts_with("issuer_rate_limit_local_decisions_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_verified_tls_and_an_untrusted_server_refused() {
    let Some(admin) = required_service("DM_TEST_POSTGRES_URL", "PostgreSQL") else {
        return;
    };
    let Some(redis) = required_service("DM_TEST_REDIS_TLS_URL", "Redis over TLS") else {
        return;
    };
    let Some(ca) = required_service("DM_TEST_REDIS_CA", "Redis's CA") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fresh_postgres_database(&admin).await.expect("database");
    {
        let trusted = serve(&db, &redis, dir.path(), Some(&ca));
        assert_eq!(
            local_decisions_after_a_login(&trusted.url).await,
            0.0,
            "the limiter did not decide through Redis over TLS"
        );
    }
    // Without the CA the handshake fails: the limiter decides locally.
    let untrusted = serve(&db, &redis, dir.path(), Some("/dev/null"));
    assert!(local_decisions_after_a_login(&untrusted.url).await >= 1.0);
}
