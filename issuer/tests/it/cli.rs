//! The binary's command line: exit codes and one-line errors.

use std::process::Command;

fn issuer() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_issuer"));
    // The tests' own environment must not leak settings in.
    for (k, _) in std::env::vars() {
        if k.starts_with("ISSUER_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

#[test]
fn bad_settings_exit_64_with_one_line_naming_the_setting() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["serve", "--access-token-ttl", "abc"],
            "--access-token-ttl",
        ),
        (&["serve", "--signing-alg", "HS256"], "--signing-alg"),
        (&["serve", "--listen", "nowhere"], "--listen"),
        (&["serve", "--database-url", "mysql://x"], "--database-url"),
    ];
    for (args, setting) in cases {
        let out = issuer().args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(setting), "{stderr}");
    }
    let out = issuer()
        .args(["serve"])
        .env("ISSUER_ARGON2_MEMORY_KIB", "lots")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--argon2-memory-kib"));
}

#[test]
fn config_file_values_apply_and_are_validated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("issuer.yaml");
    std::fs::write(&config, "access-token-ttl: 1\n").expect("write");
    let out = issuer()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--access-token-ttl"));
    // The command line wins over the file.
    let out = issuer()
        .args(["serve", "--access-token-ttl", "not-a-number", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not-a-number"));
}

#[test]
fn migrate_and_users_create_work_on_a_fresh_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/cli.db", dir.path().display());
    let out = issuer()
        .args(["migrate", "--database-url", &url])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = issuer()
        .args([
            "users",
            "create",
            "--email",
            "Admin@Example.com",
            "--admin",
            "--database-url",
            &url,
        ])
        .env("ISSUER_NEW_USER_PASSWORD", "a strong admin passphrase")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("admin@example.com") && stdout.contains("role admin"),
        "{stdout}"
    );
    let out = issuer()
        .args([
            "users",
            "create",
            "--email",
            "admin@example.com",
            "--database-url",
            &url,
        ])
        .env("ISSUER_NEW_USER_PASSWORD", "a strong admin passphrase")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}

#[test]
fn a_public_listener_needs_a_feed_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/x.db", dir.path().display());
    let out = issuer()
        .args(["serve", "--listen", "0.0.0.0:0", "--database-url", &url])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("ISSUER_FEED_TOKEN"), "{stderr}");
    assert!(
        !dir.path().join("x.db").exists(),
        "refused before touching the database"
    );
}

#[test]
fn config_files_reach_nested_subcommands_and_switches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/cfg.db", dir.path().display());
    let config = dir.path().join("issuer.yaml");
    // A switch (`admin: true`) and a setting of the innermost subcommand.
    std::fs::write(
        &config,
        format!("database-url: {url}\nadmin: true\nname: Ada\n"),
    )
    .expect("write");
    let out = issuer()
        .args(["users", "create", "--email", "ada@example.com", "--config"])
        .arg(&config)
        .env("ISSUER_NEW_USER_PASSWORD", "a strong admin passphrase")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("role admin"), "{stdout}");
    // Two levels down: `keys list` reads the same database from the file.
    let out = issuer()
        .args(["keys", "list", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A name no subcommand knows is a typo, refused with exit 64.
    std::fs::write(&config, format!("database-url: {url}\ncolour: red\n")).expect("write");
    let out = issuer()
        .args(["keys", "list", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("colour"));
    // `false` leaves a switch off.
    std::fs::write(&config, format!("database-url: {url}\nadmin: false\n")).expect("write");
    let out = issuer()
        .args(["users", "create", "--email", "bob@example.com", "--config"])
        .arg(&config)
        .env("ISSUER_NEW_USER_PASSWORD", "a strong admin passphrase")
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("role admin"));
}

#[tokio::test]
async fn a_lost_kek_is_never_silently_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/issuer.db", dir.path().display());
    let mut args = issuer::testing::test_args(&url, dir.path());
    args.keys.kek_file = None;
    let t = issuer::testing::start(
        args,
        std::sync::Arc::new(issuer::domain::clock::SystemClock),
    )
    .await
    .expect("issuer");
    t.stop().await;
    let kek = dir.path().join("issuer.kek");
    std::fs::remove_file(&kek).expect("KEK was generated beside the database");
    // Listing needs no KEK and must not make one.
    let out = issuer()
        .args(["keys", "list", "--database-url", &url])
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(!kek.exists(), "keys list generated a KEK");
    for args in [vec!["keys", "rotate"], vec!["keys", "rotate", "--now"]] {
        let out = issuer()
            .args(&args)
            .args(["--database-url", &url])
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("missing"), "{stderr}");
        assert!(!kek.exists(), "{args:?} generated a second KEK");
    }
    let mut args = issuer::testing::test_args(&url, dir.path());
    args.keys.kek_file = None;
    let err = issuer::build(
        args,
        std::sync::Arc::new(issuer::domain::clock::SystemClock),
    )
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("missing"), "{err}");
    assert!(!kek.exists());
}

/// Run by `test_settings_ignore_the_developers_environment` in a child
/// process with ISSUER_* set; ignored on its own.
#[test]
#[ignore]
fn probe_test_settings_under_a_polluted_environment() {
    assert_eq!(std::env::var("ISSUER_AUDIENCE").as_deref(), Ok("polluted"));
    let args = issuer::config::ServeArgs::with_database("sqlite::memory:");
    assert_eq!(args.audience, "devmentor");
    assert_eq!(args.keys.access_token_ttl, 900);
}

#[test]
fn test_settings_ignore_the_developers_environment() {
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--ignored",
            "--exact",
            "cli::probe_test_settings_under_a_polluted_environment",
        ])
        .env("ISSUER_AUDIENCE", "polluted")
        .env("ISSUER_ACCESS_TOKEN_TTL", "20")
        .output()
        .expect("run probe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("1 passed"), "{stdout}");
}

/// The admin operations from a shell, on SQLite (the store's behaviour on
/// both backends is covered by the HTTP tests): each prints what it did and
/// exits 1 with one line when refused.
#[test]
fn users_roles_and_teams_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}/cli.db", dir.path().display());
    let run = |args: &[&str]| {
        let out = issuer()
            .args(args)
            .args(["--database-url", &db])
            .env("ISSUER_NEW_USER_PASSWORD", "correct horse battery staple")
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ok = |args: &[&str]| {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        stdout
    };
    ok(&[
        "users",
        "create",
        "--email",
        "Ada@Example.com",
        "--name",
        "Ada Lovelace",
    ]);
    ok(&["users", "create", "--email", "grace@example.com"]);
    let listed = ok(&["users", "list", "--query", "lovelace"]);
    assert!(
        listed.contains("ada@example.com") && listed.contains("1 user(s)"),
        "{listed}"
    );
    assert!(!listed.contains("grace@"));

    let set = ok(&[
        "users",
        "set-roles",
        "--user",
        "ada@example.com",
        "--roles",
        "editor,admin",
    ]);
    assert!(set.contains("roles=[admin,editor]"), "{set}");
    let roles = ok(&[
        "roles",
        "set",
        "editor",
        "--permissions",
        "docs.write,docs.read",
    ]);
    assert!(roles.contains("docs.read, docs.write"), "{roles}");
    let listed = ok(&["roles", "list"]);
    assert!(listed.contains("editor: docs.read, docs.write"), "{listed}");

    ok(&[
        "teams",
        "create",
        "blue",
        "--name",
        "Blue",
        "--owner",
        "ada@example.com",
    ]);
    ok(&[
        "teams",
        "set-member",
        "blue",
        "--user",
        "grace@example.com",
        "--role",
        "member",
    ]);
    let members = ok(&["teams", "members", "blue"]);
    assert!(
        members.contains("ada@example.com  owner") && members.contains("grace@example.com  member"),
        "{members}"
    );
    let shown = ok(&["users", "show", "--user", "grace@example.com"]);
    assert!(shown.contains("team blue: member"), "{shown}");

    // Refusals: one line, exit 1, nothing changed.
    for (args, why) in [
        (
            &[
                "teams",
                "remove-member",
                "blue",
                "--user",
                "ada@example.com",
            ][..],
            "at least one owner",
        ),
        (&["teams", "create", "Bad Slug", "--name", "x"][..], "slug"),
        (
            &["teams", "create", "blue", "--name", "again"][..],
            "exists",
        ),
        (
            &["roles", "set", "bad role", "--permissions", "x"][..],
            "role",
        ),
        (
            &["users", "show", "--user", "-no-such-id"][..],
            "no such user",
        ),
        (
            &[
                "users",
                "set-roles",
                "--user",
                "grace@example.com",
                "--roles",
                "has space",
            ][..],
            "role",
        ),
    ] {
        let (code, _, stderr) = run(args);
        assert_eq!(code, Some(1), "{args:?}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }

    ok(&["users", "disable", "--user", "grace@example.com"]);
    assert!(ok(&["users", "show", "--user", "grace@example.com"]).contains("DISABLED"));
    ok(&["users", "enable", "--user", "grace@example.com"]);
    assert!(
        ok(&["users", "logout-all", "--user", "grace@example.com"]).contains("0 session(s) ended")
    );
    ok(&["users", "delete", "--user", "grace@example.com"]);
    assert!(!ok(&["teams", "members", "blue"]).contains("grace@"));
    ok(&["teams", "delete", "blue"]);
    ok(&["roles", "delete", "editor"]);
    assert!(!ok(&["roles", "list"]).contains("editor"));
    // Each change from the shell is audited, with the CLI as the actor.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let events = rt.block_on(async {
        let store = issuer::store::Store::connect(&db, 1).await.expect("db");
        store.recent_audit_events(100).await.expect("audit")
    });
    for e in [
        "user_changed",
        "role_set",
        "team_created",
        "team_member_set",
        "user_deleted",
        "team_deleted",
        "role_deleted",
    ] {
        assert!(events.contains(&e.to_string()), "{e} in {events:?}");
    }
}

#[test]
fn oauth_clients_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}/cli.db", dir.path().display());
    let run = |args: &[&str]| {
        let out = issuer()
            .args(args)
            .args(["--database-url", &db])
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, added, err) = run(&[
        "clients",
        "add",
        "grafana",
        "--name",
        "Grafana",
        "--redirect-uri",
        "https://grafana.example/login/generic_oauth",
        "--scope",
        "openid",
        "--scope",
        "email",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(added.contains("grafana  confidential  Grafana"), "{added}");
    let secret = added
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .expect("secret printed once");
    assert!(secret.starts_with("cs_"));
    // The same checks as the admin API: a redirect URI in doubt is refused.
    let (code, _, err) = run(&[
        "clients",
        "add",
        "bad",
        "--name",
        "Bad",
        "--redirect-uri",
        "http://example.com/cb",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("http only on 127.0.0.1"), "{err}");
    // Grant types and lifetimes, checked the same way.
    let kiosk = |ttl: &str| {
        run(&[
            "clients",
            "add",
            "kiosk",
            "--name",
            "Kiosk",
            "--redirect-uri",
            "https://kiosk.example/cb",
            "--grant-type",
            "authorization_code",
            "--access-token-ttl",
            ttl,
            "--refresh-token-ttl",
            "28800",
        ])
    };
    let (code, _, err) = kiosk("30");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("access_token_ttl: 60 to 86400"), "{err}");
    let (code, _, err) = kiosk("300");
    assert_eq!(code, Some(0), "{err}");
    // Clients that sign nobody in through a browser need no redirect URI:
    // a CLI (the device code) and a service acting for users, as the
    // guide registers them.
    let (code, added, err) = run(&[
        "clients",
        "add",
        "devmentor-cli",
        "--name",
        "DevMentor CLI",
        "--public",
        "--first-party",
        "--grant-type",
        "urn:ietf:params:oauth:grant-type:device_code",
        "--grant-type",
        "refresh_token",
        "--scope",
        "openid",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(added.contains("devmentor-cli  public"), "{added}");
    let (code, _, err) = run(&[
        "clients",
        "add",
        "ai-gateway",
        "--name",
        "AI gateway",
        "--grant-type",
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "--scope",
        "memory:read",
        "--audience",
        "https://memory.devmentor.local",
        "--subject-client",
        "devmentor-auth",
    ]);
    assert_eq!(code, Some(0), "{err}");
    // Changed in place: the whole description, checked the same way.
    let update = |ttl: &str| {
        run(&[
            "clients",
            "update",
            "kiosk",
            "--name",
            "Lobby kiosk",
            "--redirect-uri",
            "https://kiosk.example/cb",
            "--grant-type",
            "authorization_code",
            "--access-token-ttl",
            ttl,
            "--refresh-token-ttl",
            "28800",
        ])
    };
    let (code, _, err) = update("5");
    assert_eq!(code, Some(1), "{err}");
    let (code, updated, err) = update("300");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        updated.contains("Lobby kiosk") && updated.contains("0 session(s) ended"),
        "{updated}"
    );
    let (code, listed, _) = run(&["clients", "list"]);
    assert_eq!(code, Some(0));
    assert!(
        listed.contains("grafana") && !listed.contains("cs_"),
        "{listed}"
    );
    assert!(
        listed
            .contains("grants=[authorization_code]  access_token_ttl=300  refresh_token_ttl=28800"),
        "{listed}"
    );
    let (code, rotated, _) = run(&["clients", "rotate-secret", "grafana", "--immediate"]);
    assert_eq!(code, Some(0));
    assert!(!rotated.contains(secret), "{rotated}");

    // private_key_jwt: public keys from a file, and no secret at all.
    let alg = auth_types::SigningAlg::ES256;
    let pkcs8 = issuer::domain::keys::generate_pkcs8(alg).expect("key");
    let jwk = issuer::domain::keys::SigningKey::from_pkcs8("k1", alg, &pkcs8)
        .expect("load")
        .public_jwk();
    let mut jwk = serde_json::to_value(jwk).expect("jwk");
    let keys = dir.path().join("keys.json");
    std::fs::write(
        &keys,
        serde_json::json!({"keys": [jwk.clone()]}).to_string(),
    )
    .expect("write");
    let keys = keys.display().to_string();
    let add_batch = |file: &str| {
        run(&[
            "clients",
            "add",
            "batch",
            "--name",
            "Batch",
            "--redirect-uri",
            "https://batch.example/cb",
            "--jwks-file",
            file,
        ])
    };
    jwk["d"] = serde_json::json!("c2VjcmV0");
    let private = dir.path().join("private.json");
    std::fs::write(&private, serde_json::json!({"keys": [jwk]}).to_string()).expect("write");
    let (code, _, err) = add_batch(&private.display().to_string());
    assert_eq!(code, Some(1));
    assert!(err.contains("public keys only"), "{err}");
    let (code, added, err) = add_batch(&keys);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        added.contains("auth=private_key_jwt") && !added.contains("client_secret"),
        "{added}"
    );
    let (code, _, err) = run(&["clients", "set-keys", "batch", "--jwks-file", &keys]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = run(&["clients", "set-keys", "grafana", "--jwks-file", &keys]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no such private_key_jwt client"), "{err}");
    let (code, deleted, _) = run(&["clients", "delete", "grafana"]);
    assert_eq!(code, Some(0));
    assert!(deleted.contains("deleted client grafana"), "{deleted}");
    let (code, _, err) = run(&["clients", "delete", "grafana"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no such client"), "{err}");
}
