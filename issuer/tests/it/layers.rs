//! The architecture test: the issuer's layers point one way
//! (docs/design/architecture.md). It reads the source files and fails on a
//! forbidden reference, so the rule stays true as code is added.
//!
//! `http`, `cli`, `jobs` → `service` → `store`, `domain`. Never
//! `service → http`, `pages → json`, `store → service`, `http → the
//! database` (`state.store`); no HTTP framework below `http`. What the restructuring has not yet moved is listed in
//! `NOT_YET` by file: a new violation fails, and so does a listed one that
//! is gone (the list only shrinks).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// (file under src/, forbidden reference) pairs still to move.
const NOT_YET: &[(&str, &str)] = &[];

/// Which references each part of the source may not make.
fn forbidden(file: &str) -> Vec<&'static str> {
    const UPWARD_FROM_SERVICE: &[&str] =
        &["crate::http", "crate::jobs", "crate::cli", "crate::app"];
    const FRAMEWORKS: &[&str] = &[
        "axum::",
        "maud::",
        "tower_http::",
        "http_server::",
        "utoipa_axum::",
    ];
    let mut rules: Vec<&'static str> = Vec::new();
    if file.starts_with("domain/") {
        rules.extend(["crate::store", "crate::service", "AppState"]);
        rules.extend(UPWARD_FROM_SERVICE);
        rules.extend(FRAMEWORKS);
    } else if file.starts_with("store/") {
        rules.extend(["crate::service", "AppState"]);
        rules.extend(UPWARD_FROM_SERVICE);
        rules.extend(FRAMEWORKS);
    } else if file.starts_with("service/") {
        rules.extend(UPWARD_FROM_SERVICE);
        rules.extend(FRAMEWORKS);
    } else if file.starts_with("jobs/") {
        rules.extend(["crate::http", "crate::cli", "axum::", "maud::"]);
    } else if file.starts_with("cli/") {
        // The one thing the CLI takes from http: the OpenAPI document it prints.
        rules.extend([
            "crate::http::json",
            "crate::http::pages",
            "crate::http::extract",
        ]);
        rules.extend(["crate::jobs", "axum::"]);
    } else if file.starts_with("http/") {
        // Handlers and pages reach the database only through a service (they
        // may name the store's record types, such as `User`).
        rules.push("state.store");
        if file.starts_with("http/pages/") {
            rules.push("crate::http::json");
        }
    }
    rules
}

fn sources(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&path).expect("read source");
            out.push((rel, text));
        }
    }
}

/// The code of a file without its comments (a doc comment may name a layer).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn violations() -> BTreeSet<(String, &'static str)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    assert!(
        files.len() > 50,
        "read the issuer's sources ({})",
        files.len()
    );
    let mut found = BTreeSet::new();
    for (file, text) in &files {
        let code = code(text);
        // Also without whitespace: `state\n        .store` is `state.store`.
        let squeezed: String = code.split_whitespace().collect();
        for rule in forbidden(file) {
            if code.contains(rule) || squeezed.contains(rule) {
                found.insert((file.clone(), rule));
            }
        }
    }
    found
}

#[test]
fn layers_point_one_way() {
    let found = violations();
    let known: BTreeSet<(String, &str)> =
        NOT_YET.iter().map(|(f, r)| (f.to_string(), *r)).collect();
    let new: Vec<_> = found.difference(&known).collect();
    assert!(
        new.is_empty(),
        "references against the layering (docs/design/architecture.md): {new:?}"
    );
    let gone: Vec<_> = known.difference(&found).collect();
    assert!(
        gone.is_empty(),
        "moved to the service layer: take these out of NOT_YET: {gone:?}"
    );
}

/// The rule can fail: a service file that reached into a handler is caught.
#[test]
fn a_forbidden_reference_is_caught() {
    assert!(forbidden("service/sessions.rs").contains(&"crate::http"));
    assert!(forbidden("http/pages/signin.rs").contains(&"crate::http::json"));
    assert!(forbidden("store/users.rs").contains(&"crate::service"));
    assert!(forbidden("http/json/users.rs").contains(&"state.store"));
    assert!(code("use crate::http::json; // x").contains("crate::http::json"));
    assert!(!code("// crate::http::json").contains("crate::http"));
}
