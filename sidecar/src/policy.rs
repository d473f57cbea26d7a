//! Route policy: ordered rules from a YAML file; the first rule that matches a
//! request decides what it requires. No matching rule: deny.
//!
//! ```yaml
//! rules:
//!   - name: login
//!     prefix: /auth/
//!     allow: public
//!   - pattern: /teams/{team}/**
//!     methods: [GET]
//!     roles: ["team:{team}:member", admin]   # any of; {team} from the path
//!   - prefix: /admin/
//!     permissions: [admin.read, admin.write]  # all of
//!   - prefix: /
//!     host: api.example.com
//!     allow: authenticated
//! ```

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
    Pattern(Vec<Segment>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Named(String),
    AnyOne,
    /// `**`: zero or more segments; only last.
    Rest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Public,
    Authenticated,
    AnyRole(Vec<String>),
    AllPermissions(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub host: Option<String>,
    /// Upper-case; empty means any method.
    pub methods: Vec<String>,
    pub path: PathMatch,
    pub requirement: Requirement,
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

/// The rule a request matched, with the path segments it captured.
#[derive(Debug)]
pub struct Matched<'a> {
    pub rule: &'a Rule,
    pub captures: HashMap<&'a str, &'a str>,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    allow: Option<String>,
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
];

impl Policy {
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            file: path.display().to_string(),
            line: 0,
            reason: e.to_string(),
        })?;
        Policy::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, file: &str) -> Result<Policy, PolicyError> {
        let fail = |line: usize, reason: String| PolicyError {
            file: file.to_string(),
            line,
            reason,
        };
        let raw: RawPolicy = serde_yaml::from_str(text).map_err(|e| {
            let line = e.location().map_or(0, |l| l.line());
            fail(line, e.to_string())
        })?;
        let lines = rule_start_lines(text);
        let mut rules = Vec::with_capacity(raw.rules.len());
        for (i, r) in raw.rules.into_iter().enumerate() {
            let line = lines.get(i).copied().unwrap_or(0);
            let rule = build_rule(i, r)
                .map_err(|reason| fail(line, format!("rule {}: {reason}", i + 1)))?;
            rules.push(rule);
        }
        Ok(Policy { rules })
    }

    /// First matching rule, if any.
    pub fn find<'a>(&'a self, host: &str, method: &str, path: &'a str) -> Option<Matched<'a>> {
        // Query strings and fragments are not part of the route.
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let host = host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        self.rules.iter().find_map(|rule| {
            if rule
                .host
                .as_deref()
                .is_some_and(|h| !h.eq_ignore_ascii_case(host))
            {
                return None;
            }
            if !rule.methods.is_empty() && !rule.methods.iter().any(|m| m == method) {
                return None;
            }
            let captures = match_path(&rule.path, path)?;
            Some(Matched { rule, captures })
        })
    }
}

fn build_rule(index: usize, r: RawRule) -> Result<Rule, String> {
    let path = match (r.path, r.prefix, r.pattern) {
        (Some(p), None, None) => PathMatch::Exact(check_path(p)?),
        (None, Some(p), None) => PathMatch::Prefix(check_path(p)?),
        (None, None, Some(p)) => PathMatch::Pattern(parse_pattern(&check_path(p)?)?),
        _ => return Err("give exactly one of path, prefix, pattern".into()),
    };
    let requirement = match (r.allow.as_deref(), r.roles, r.permissions) {
        (Some("public"), None, None) => Requirement::Public,
        (Some("authenticated"), None, None) => Requirement::Authenticated,
        (Some(other), None, None) => {
            return Err(format!(
                "allow must be public or authenticated, not {other:?}"
            ))
        }
        (None, Some(roles), None) if !roles.is_empty() => Requirement::AnyRole(roles),
        (None, None, Some(perms)) if !perms.is_empty() => Requirement::AllPermissions(perms),
        _ => {
            return Err(
                "give exactly one of allow, roles (non-empty), permissions (non-empty)".into(),
            )
        }
    };
    let mut methods = Vec::new();
    for m in r.methods {
        let upper = m.to_ascii_uppercase();
        if !METHODS.contains(&upper.as_str()) {
            return Err(format!("unknown method {m:?}"));
        }
        methods.push(upper);
    }
    if let PathMatch::Pattern(segments) = &path {
        let names: Vec<&str> = segments
            .iter()
            .filter_map(|s| match s {
                Segment::Named(n) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        let wanted: Vec<&String> = match &requirement {
            Requirement::AnyRole(v) | Requirement::AllPermissions(v) => v.iter().collect(),
            _ => Vec::new(),
        };
        for value in wanted {
            for name in placeholders(value) {
                if !names.contains(&name) {
                    return Err(format!(
                        "{value:?} uses {{{name}}}, which the pattern does not capture"
                    ));
                }
            }
        }
    }
    Ok(Rule {
        name: r.name.unwrap_or_else(|| format!("rule-{}", index + 1)),
        host: r.host,
        methods,
        path,
        requirement,
    })
}

fn check_path(p: String) -> Result<String, String> {
    if p.starts_with('/') {
        Ok(p)
    } else {
        Err(format!("path {p:?} must start with /"))
    }
}

fn parse_pattern(p: &str) -> Result<Vec<Segment>, String> {
    let parts: Vec<&str> = p.trim_start_matches('/').split('/').collect();
    let mut segments = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let segment = if *part == "**" {
            if i + 1 != parts.len() {
                return Err(format!("pattern {p:?}: ** must be the last segment"));
            }
            Segment::Rest
        } else if *part == "*" {
            Segment::AnyOne
        } else if let Some(name) = part.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("pattern {p:?}: bad segment name {part:?}"));
            }
            Segment::Named(name.to_string())
        } else if part.contains(['{', '}', '*']) {
            return Err(format!("pattern {p:?}: bad segment {part:?}"));
        } else {
            Segment::Literal((*part).to_string())
        };
        segments.push(segment);
    }
    Ok(segments)
}

fn match_path<'a>(m: &'a PathMatch, path: &'a str) -> Option<HashMap<&'a str, &'a str>> {
    match m {
        PathMatch::Exact(p) => (p == path).then(HashMap::new),
        PathMatch::Prefix(p) => path.starts_with(p.as_str()).then(HashMap::new),
        PathMatch::Pattern(segments) => {
            let mut parts = path.trim_start_matches('/').split('/');
            let mut captures = HashMap::new();
            for segment in segments {
                match segment {
                    Segment::Rest => return Some(captures),
                    Segment::Literal(l) => {
                        if parts.next()? != l {
                            return None;
                        }
                    }
                    Segment::AnyOne => {
                        if parts.next()?.is_empty() {
                            return None;
                        }
                    }
                    Segment::Named(name) => {
                        let value = parts.next()?;
                        if value.is_empty() {
                            return None;
                        }
                        captures.insert(name.as_str(), value);
                    }
                }
            }
            parts.next().is_none().then_some(captures)
        }
    }
}

fn placeholders(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push(&rest[start + 1..start + len]);
        rest = &rest[start + len + 1..];
    }
    out
}

/// `team:{team}:member` with `team = blue` → `team:blue:member`.
pub fn substitute(value: &str, captures: &HashMap<&str, &str>) -> String {
    let mut out = value.to_string();
    for (name, captured) in captures {
        out = out.replace(&format!("{{{name}}}"), captured);
    }
    out
}

/// Lines (1-based) where each item of the `rules:` list starts.
fn rule_start_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut indent: Option<usize> = None;
    let mut in_rules = false;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        let depth = line.len() - trimmed.len();
        if depth == 0 {
            in_rules = trimmed.starts_with("rules:");
            continue;
        }
        if in_rules && (trimmed.starts_with("- ") || trimmed == "-") {
            if indent.is_none() {
                indent = Some(depth);
            }
            if indent == Some(depth) {
                lines.push(n + 1);
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
rules:
  - name: login
    prefix: /auth/
    allow: public
  - pattern: /teams/{team}/**
    methods: [get, POST]
    roles: ["team:{team}:member", admin]
  - path: /admin/keys
    permissions: [keys.read, keys.write]
  - prefix: /
    host: api.example.com
    allow: authenticated
"#;

    #[test]
    fn first_matching_rule_wins_and_captures_segments() {
        let p = Policy::parse(POLICY, "p.yaml").expect("valid");
        assert_eq!(
            p.find("x", "POST", "/auth/login").expect("m").rule.name,
            "login"
        );
        let m = p.find("x", "GET", "/teams/blue/docs/1?x=y").expect("m");
        assert_eq!(m.rule.name, "rule-2");
        assert_eq!(m.captures.get("team"), Some(&"blue"));
        assert_eq!(
            substitute("team:{team}:member", &m.captures),
            "team:blue:member"
        );
        assert!(
            p.find("x", "GET", "/teams/blue").is_some(),
            "** matches zero segments"
        );
        assert!(
            p.find("x", "GET", "/teams//x").is_none(),
            "named segments are non-empty"
        );
        assert!(p.find("x", "DELETE", "/teams/blue/x").is_none());
        assert!(p.find("x", "GET", "/admin/keys").is_some());
        assert!(
            p.find("x", "GET", "/admin/keys/1").is_none(),
            "exact means exact"
        );
        assert!(p.find("api.example.com:443", "GET", "/other").is_some());
        assert!(
            p.find("other.example.com", "GET", "/other").is_none(),
            "default deny"
        );
    }

    #[test]
    fn invalid_policies_name_file_line_and_reason() {
        let bad_rule =
            "rules:\n  - prefix: /a\n    allow: public\n  - prefix: b\n    allow: public\n";
        let e = Policy::parse(bad_rule, "p.yaml").expect_err("bad path");
        assert_eq!(e.line, 4, "{e}");
        assert!(e.to_string().starts_with("p.yaml:4: rule 2:"), "{e}");

        let e = Policy::parse("rules:\n  - prefix: /a\n", "p.yaml").expect_err("no access");
        assert!(e.to_string().contains("exactly one of allow"), "{e}");

        let e = Policy::parse(
            "rules:\n  - pattern: /t/{x}\n    roles: ['{y}']\n",
            "p.yaml",
        )
        .expect_err("unknown capture");
        assert!(e.to_string().contains("{y}"), "{e}");

        let e = Policy::parse(
            "rules:\n  - prefix: /a\n    allow: public\n    colour: red\n",
            "p.yaml",
        )
        .expect_err("unknown field");
        assert!(e.line >= 2 && e.to_string().contains("colour"), "{e}");

        let e = Policy::parse("rules: [\n", "p.yaml").expect_err("syntax");
        assert!(e.line > 0, "{e}");

        for bad in ["/a/**/b", "/a/{}", "/a/b*"] {
            let text = format!("rules:\n  - pattern: {bad}\n    allow: public\n");
            assert!(Policy::parse(&text, "p.yaml").is_err(), "{bad}");
        }
    }
}
