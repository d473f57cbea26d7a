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
