//! Route policy: ordered rules from a YAML file; the first rule that matches a
//! request decides what it requires. No matching rule: deny.
//!
//! Semantics (README "Route policy"):
//! - Paths are judged only when canonical (`crate::path`); otherwise 400.
//!   The query string never takes part.
//! - `prefix` matches whole segments: `/ai/admin/` covers `/ai/admin` and
//!   everything below it, not `/ai/administrator`.
//! - `host` ignores case, port and a trailing dot.
//! - The first rule whose host and path match claims the request. If it does
//!   not list the method, a later rule with the same host and path may take
//!   it; otherwise 405. Broader rules below are never consulted.
//!
//! ```yaml
//! rules:
//!   - name: login
//!     prefix: /auth/
//!     allow: public
//!   - pattern: /teams/{team}/settings/**
//!     team: "{team}"          # a member of the team named by the path…
//!     team_role: owner        # …at least this role there (default member)
//!     roles: [admin]          # …or any of these global roles
//!   - pattern: /docs/{team}/**
//!     methods: [GET]
//!     roles: ["reader:{team}", admin]   # any of; {team} from the path
//!   - prefix: /admin/
//!     permissions: [admin.read, admin.write]  # all of
//!   - prefix: /
//!     host: api.example.com
//!     allow: authenticated
//!     email_verified: true    # the token must say the email is verified
//!     mfa: true               # signed in with a second factor (else 401, RFC 9470)
//!     max_auth_age: 300       # authenticated at most 5 minutes ago (else 401, RFC 9470)
//!     quota: 60/60            # per user, at most 60 requests a minute (429 beyond)
//!   - prefix: /notes/
//!     allow: authenticated
//!     scopes: [notes:read]    # an application's token must carry all of these
//!     clients: [notes-web]    # only tokens of these OAuth clients (client_id)
//!     audiences: [https://notes.example]  # only tokens asked for this resource (RFC 8707)
//!   - prefix: /memory/
//!     audiences: [https://memory.example]
//!     scopes: [memory:read]
//!     actors: [ai-gateway]    # only on behalf of a user, by one of these services (RFC 8693);
//!                             # `actors: []` refuses every delegated token
//! ```

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    /// Whole segments: `/ai/admin` (stored without a trailing slash) matches
    /// `/ai/admin` and `/ai/admin/...`, never `/ai/administrator`.
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
    /// Expanded through the issuer's role → permission map at decision time.
    AllPermissions(Vec<String>),
    /// A member of `team` (a `{capture}` or a slug) with at least
    /// `min_role` there, or any of the global `or_roles`.
    Team {
        team: String,
        min_role: String,
        or_roles: Vec<String>,
    },
}

pub use auth_types::{team_role_rank, TEAM_ROLES};

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// Lower case, without a trailing dot; compared without the port.
    pub host: Option<String>,
    /// Upper-case; empty means any method.
    pub methods: Vec<String>,
    pub path: PathMatch,
    /// `path` in lower case, for the case-variant check in `route`.
    folded: PathMatch,
    pub requirement: Requirement,
    /// The token must carry `email_verified: true`.
    pub email_verified: bool,
    /// Requests per user on this rule, counted by this sidecar.
    pub quota: Option<Quota>,
    /// The token must show a second factor (`mfa` in `amr`).
    pub mfa: bool,
    /// The token's `auth_time` must be at most this many seconds old.
    pub max_auth_age: Option<u64>,
    /// An application's token (one with a `scope` claim) must carry all of
    /// these, and reaches only rules that name scopes or clients. The
    /// issuer's own tokens carry no `scope`: they are the user acting
    /// directly, not an application acting for them (`clients` excludes
    /// them where that matters).
    pub scopes: Vec<String>,
    /// If not empty, the token's `client_id` must be one of these.
    pub clients: Vec<String>,
    /// If not empty, the token's `aud` must be one of these resources (RFC
    /// 8707) instead of the mesh's audience: tokens an application asked
    /// for this resource, and no others.
    pub audiences: Vec<String>,
    /// Delegated tokens (RFC 8693 `act`): a list takes only tokens a
    /// service in it got for a user (`[]`: none); `None` none either, but
    /// takes any other token.
    pub actors: Option<Vec<String>>,
    /// `dpop: required`: only DPoP-bound tokens (RFC 9449), each with its
    /// proof; a bound token needs its proof on every rule anyway.
    pub dpop: bool,
}

/// `limit` requests per `period_secs`, per user (GCRA: a burst of `limit`,
/// then one every `period_secs / limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub period_secs: u32,
}

impl std::str::FromStr for Quota {
    type Err = String;
    fn from_str(s: &str) -> Result<Quota, String> {
        let bad = || format!("quota must be REQUESTS/SECONDS (e.g. 60/60), not {s:?}");
        let (n, p) = s.split_once('/').ok_or_else(bad)?;
        let limit: u32 = n.trim().parse().map_err(|_| bad())?;
        let period_secs: u32 = p.trim().parse().map_err(|_| bad())?;
        if limit == 0 || period_secs == 0 || period_secs > 86_400 || limit > 1_000_000 {
            return Err(format!(
                "quota: 1 to 1000000 requests per 1 to 86400 seconds, not {s:?}"
            ));
        }
        // Counted in whole milliseconds: more than 1,000 a second would be
        // rounded to 1,000 a second.
        if u64::from(limit) > u64::from(period_secs) * 1000 {
            return Err(format!("quota: at most 1000 requests a second, not {s:?}"));
        }
        Ok(Quota { limit, period_secs })
    }
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

/// Where a request lands in the policy.
#[derive(Debug)]
pub enum Route<'a> {
    Matched(Matched<'a>),
    /// No rule's host and path match: default deny.
    NoRule,
    /// A rule claims the path but no rule for it allows the method.
    MethodNotAllowed {
        rule: &'a Rule,
        allowed: String,
    },
    /// Not a canonical path (see `crate::path`): refused, never judged.
    BadPath(crate::path::PathError),
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
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    team_role: Option<String>,
    #[serde(default)]
    email_verified: bool,
    #[serde(default)]
    quota: Option<String>,
    #[serde(default)]
    mfa: bool,
    #[serde(default)]
    max_auth_age: Option<u64>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    clients: Vec<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    actors: Option<Vec<String>>,
    #[serde(default)]
    dpop: Option<String>,
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
        let raw: RawPolicy = yaml_serde::from_str(text).map_err(|e| {
            let line = e.location().map_or(0, |l| l.line());
            fail(line, e.to_string())
        })?;
        let lines = rule_start_lines(text);
        let mut rules = Vec::with_capacity(raw.rules.len());
        for (i, r) in raw.rules.into_iter().enumerate() {
            let line = lines.get(i).copied().unwrap_or(0);
            let rule = build_rule(i, r)
                .map_err(|reason| fail(line, format!("rule {}: {reason}", i + 1)))?;
            // A quota's budget is kept under its rule's name: two rules
            // sharing one would share a budget.
            if rule.quota.is_some() && rules.iter().any(|o: &Rule| o.name == rule.name) {
                return Err(fail(
                    line,
                    format!(
                        "rule {}: a rule with a quota needs a unique name, and {:?} is taken",
                        i + 1,
                        rule.name
                    ),
                ));
            }
            if rules
                .iter()
                .any(|o: &Rule| o.quota.is_some() && o.name == rule.name)
            {
                return Err(fail(
                    line,
                    format!(
                        "rule {}: {:?} names a rule with a quota already",
                        i + 1,
                        rule.name
                    ),
                ));
            }
            rules.push(rule);
        }
        Ok(Policy { rules })
    }

    /// Routes a request. The first rule whose host and path match claims
    /// it; if that rule does not list the method, only later rules with the
    /// same host and path may take it (method-split routes), never a broader
    /// rule further down, so a method restriction cannot be walked around.
    pub fn route<'a>(&'a self, authority: &str, method: &str, target: &'a str) -> Route<'a> {
        let path = match crate::path::canonical(target) {
            Ok(p) => p,
            Err(e) => return Route::BadPath(e),
        };
        let Some(host) = crate::path::host(authority) else {
            return Route::BadPath(crate::path::PathError::BadHost);
        };
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            // `delete` would miss a `DELETE` rule here and run as DELETE
            // upstream (many frameworks upper-case the method).
            return Route::BadPath(crate::path::PathError::BadMethod);
        }
        let first = self.rules.iter().enumerate().find_map(|(i, rule)| {
            if !rule.host_matches(&host) {
                return None;
            }
            match_path(&rule.path, path).map(|c| (i, rule, c))
        });
        // Every spelling a lenient upstream could take for this path must be
        // claimed by the same rule (or by none): `/ai/Admin` or
        // `/ai/admin.json` must not slip past an admin rule to a broader one.
        let index = first.as_ref().map(|(i, _, _)| *i);
        // An exact `path:` rule names its resource, extension included.
        let exact = first
            .as_ref()
            .is_some_and(|(_, r, _)| matches!(r.path, PathMatch::Exact(_)));
        for (variant, folded, stem) in variants(path) {
            if stem && exact {
                continue;
            }
            let other = self.rules.iter().position(|rule| {
                let m = if folded { &rule.folded } else { &rule.path };
                rule.host_matches(&host) && match_path(m, &variant).is_some()
            });
            if other.is_some() && other != index {
                return Route::BadPath(crate::path::PathError::Ambiguous);
            }
        }
        let Some((index, rule, captures)) = first else {
            return Route::NoRule;
        };
        if rule.allows(method) {
            return Route::Matched(Matched { rule, captures });
        }
        let same_route = self.rules[index + 1..]
            .iter()
            .filter(|r| r.host == rule.host && r.path == rule.path);
        let mut allowed = rule.methods.clone();
        for other in same_route {
            if other.allows(method) {
                return Route::Matched(Matched {
                    rule: other,
                    captures,
                });
            }
            allowed.extend(other.methods.iter().cloned());
        }
        allowed.sort_unstable();
        allowed.dedup();
        Route::MethodNotAllowed {
            rule,
            allowed: allowed.join(", "),
        }
    }
}

impl Rule {
    fn host_matches(&self, host: &str) -> bool {
        self.host.as_deref().is_none_or(|h| h == host)
    }

    fn allows(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == method)
    }
}

fn build_rule(index: usize, mut r: RawRule) -> Result<Rule, String> {
    let path = match (r.path, r.prefix, r.pattern) {
        // Stored without a trailing slash: `/ai/settings/` names the same
        // resource to most routers (see `match_path`).
        (Some(p), None, None) => PathMatch::Exact(without_trailing_slash(&check_path(p)?).into()),
        (None, Some(p), None) => {
            let p = check_path(p)?;
            let trimmed = p.trim_end_matches('/');
            PathMatch::Prefix(if trimmed.is_empty() {
                "/".into()
            } else {
                trimmed.into()
            })
        }
        // Without a trailing slash, as requests are matched (`match_path`).
        (None, None, Some(p)) => {
            PathMatch::Pattern(parse_pattern(without_trailing_slash(&check_path(p)?))?)
        }
        _ => return Err("give exactly one of path, prefix, pattern".into()),
    };
    if r.team_role.is_some() && r.team.is_none() {
        return Err("team_role needs team".into());
    }
    if let Some(team) = r.team {
        if r.allow.is_some() || r.permissions.is_some() {
            return Err(
                "team combines only with roles (an alternative), not allow or permissions".into(),
            );
        }
        let min_role = r.team_role.unwrap_or_else(|| "member".into());
        if team_role_rank(&min_role).is_none() {
            return Err(format!(
                "team_role must be owner, maintainer or member, not {min_role:?}"
            ));
        }
        if team.is_empty() {
            return Err("team must name a team or a {capture}".into());
        }
        r.allow = Some("team".into());
        r.roles = Some(r.roles.unwrap_or_default());
        r.permissions = None;
        r.team = Some(team);
        r.team_role = Some(min_role);
    }
    let requirement = match (r.allow.as_deref(), r.roles, r.permissions) {
        (Some("team"), Some(or_roles), None) => Requirement::Team {
            team: r.team.unwrap_or_default(),
            min_role: r.team_role.unwrap_or_default(),
            or_roles,
        },
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
    let names: Vec<&str> = match &path {
        PathMatch::Pattern(segments) => segments
            .iter()
            .filter_map(|s| match s {
                Segment::Named(n) => Some(n.as_str()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let wanted: Vec<&String> = match &requirement {
        Requirement::AnyRole(v) | Requirement::AllPermissions(v) => v.iter().collect(),
        Requirement::Team { team, or_roles, .. } => {
            std::iter::once(team).chain(or_roles.iter()).collect()
        }
        _ => Vec::new(),
    };
    // Every {name} must be captured by this rule's pattern; on other rules
    // it would silently stay literal and match nothing.
    for value in wanted {
        for name in placeholders(value) {
            if !names.contains(&name) {
                return Err(format!(
                    "{value:?} uses {{{name}}}, which the pattern does not capture"
                ));
            }
        }
    }
    let quota = r.quota.as_deref().map(str::parse::<Quota>).transpose()?;
    if requirement == Requirement::Public
        && (quota.is_some() || r.email_verified || r.mfa || r.max_auth_age.is_some())
    {
        return Err(
            "quota, email_verified, mfa and max_auth_age need a token (not allow: public)".into(),
        );
    }
    if requirement == Requirement::Public
        && !(r.scopes.is_empty()
            && r.clients.is_empty()
            && r.audiences.is_empty()
            && r.actors.is_none())
    {
        return Err(
            "scopes, clients, audiences and actors need a token (not allow: public)".into(),
        );
    }
    for a in &r.audiences {
        if !a.contains(':') || a.contains(char::is_whitespace) {
            return Err(format!("audiences: {a:?} is not an absolute URI"));
        }
    }
    for s in &r.scopes {
        if s.is_empty() || s.contains(char::is_whitespace) {
            return Err(format!("scopes: {s:?} is not a scope"));
        }
    }
    for c in &r.clients {
        if c.is_empty() || c.contains(char::is_whitespace) {
            return Err(format!("clients: {c:?} is not a client_id"));
        }
    }
    for c in r.actors.iter().flatten() {
        if c.is_empty() || c.contains(char::is_whitespace) {
            return Err(format!("actors: {c:?} is not a client_id"));
        }
    }
    let dpop = match r.dpop.as_deref() {
        None => false,
        Some("required") => true,
        Some(other) => return Err(format!("dpop: required is the one value, not {other:?}")),
    };
    if dpop && requirement == Requirement::Public {
        return Err("dpop needs a token (not allow: public)".into());
    }
    if r.max_auth_age.is_some_and(|a| a == 0 || a > 31_536_000) {
        return Err("max_auth_age: 1 to 31536000 seconds".into());
    }
    Ok(Rule {
        dpop,
        scopes: r.scopes,
        clients: r.clients,
        audiences: r.audiences,
        actors: r.actors,
        mfa: r.mfa,
        max_auth_age: r.max_auth_age,
        email_verified: r.email_verified,
        quota,
        name: r.name.unwrap_or_else(|| format!("rule-{}", index + 1)),
        host: match r.host {
            Some(h) => Some(
                crate::path::host(&h)
                    .ok_or_else(|| format!("host {h:?} is not a valid host name"))?,
            ),
            None => None,
        },
        methods,
        folded: fold(&path),
        path,
        requirement,
    })
}

/// Rule paths must be canonical themselves, or they could never match.
fn check_path(p: String) -> Result<String, String> {
    // Pattern syntax (`{name}`, `*`, `**`) is checked by `parse_pattern`.
    let plain: String = p
        .chars()
        .map(|c| if matches!(c, '{' | '}' | '*') { 'x' } else { c })
        .collect();
    match crate::path::check(&plain) {
        Ok(()) => Ok(p),
        Err(e) => Err(format!("path {p:?} is not canonical: {e}")),
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
            // Two captures of one name: which one a role names would be a guess.
            if segments
                .iter()
                .any(|s| matches!(s, Segment::Named(n) if n == name))
            {
                return Err(format!("pattern {p:?}: {{{name}}} appears twice"));
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

fn fold(path: &PathMatch) -> PathMatch {
    match path {
        PathMatch::Exact(p) => PathMatch::Exact(p.to_ascii_lowercase()),
        PathMatch::Prefix(p) => PathMatch::Prefix(p.to_ascii_lowercase()),
        PathMatch::Pattern(segments) => PathMatch::Pattern(
            segments
                .iter()
                .map(|s| match s {
                    Segment::Literal(l) => Segment::Literal(l.to_ascii_lowercase()),
                    other => other.clone(),
                })
                .collect(),
        ),
    }
}

/// Spellings a lenient upstream may treat as the same resource: the path in
/// lower case (case-insensitive routers) and without a file extension on its
/// last segment (suffix pattern matching), and both. Each with whether it is
/// compared case-folded and whether it drops the extension.
fn variants(path: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    let lower = path.bytes().any(|b| b.is_ascii_uppercase());
    let last = path.rsplit('/').next().unwrap_or_default();
    let stem = last
        .rfind('.')
        .filter(|dot| *dot > 0)
        .map(|dot| &path[..path.len() - last.len() + dot]);
    if lower {
        out.push((path.to_ascii_lowercase(), true, false));
    }
    if let Some(stem) = stem {
        out.push((stem.to_string(), false, true));
        if lower {
            out.push((stem.to_ascii_lowercase(), true, true));
        }
    }
    out
}

fn without_trailing_slash(path: &str) -> &str {
    match path.strip_suffix('/') {
        Some(rest) if !rest.is_empty() => rest,
        _ => path,
    }
}

fn match_path<'a>(m: &'a PathMatch, path: &'a str) -> Option<HashMap<&'a str, &'a str>> {
    match m {
        // A trailing slash is not a variant: most routers take `/x/` for `/x`.
        PathMatch::Exact(p) => (p == without_trailing_slash(path)).then(HashMap::new),
        PathMatch::Prefix(p) => {
            let within = p == "/"
                || path
                    .strip_prefix(p.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            within.then(HashMap::new)
        }
        PathMatch::Pattern(segments) => {
            // `/users/7/` is `/users/7` to most routers, as for exact paths.
            let mut parts = without_trailing_slash(path)
                .trim_start_matches('/')
                .split('/');
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

    fn name<'a>(route: Route<'a>) -> Option<&'a str> {
        match route {
            Route::Matched(m) => Some(m.rule.name.as_str()),
            _ => None,
        }
    }

    #[test]
    fn first_matching_rule_wins_and_captures_segments() {
        let p = Policy::parse(POLICY, "p.yaml").expect("valid");
        assert_eq!(name(p.route("x", "POST", "/auth/login")), Some("login"));
        let Route::Matched(m) = p.route("x", "GET", "/teams/blue/docs/1?x=y") else {
            panic!("matched")
        };
        assert_eq!(m.rule.name, "rule-2");
        assert_eq!(m.captures.get("team"), Some(&"blue"));
        assert_eq!(
            substitute("team:{team}:member", &m.captures),
            "team:blue:member"
        );
        assert!(
            name(p.route("x", "GET", "/teams/blue")).is_some(),
            "** matches zero segments"
        );
        assert!(name(p.route("x", "GET", "/admin/keys")).is_some());
        assert!(
            name(p.route("x", "GET", "/admin/keys/1")).is_none(),
            "exact means exact"
        );
        assert!(name(p.route("api.example.com:443", "GET", "/other")).is_some());
        assert!(matches!(
            p.route("other.example.com", "GET", "/other"),
            Route::NoRule
        ));
    }

    #[test]
    fn a_trailing_slash_names_the_same_exact_path() {
        // Review finding: `/ai/settings/` fell through to the broader rule.
        let p = Policy::parse(
            "rules:\n  - {name: settings, path: /ai/settings, roles: [admin]}\n  - {name: slash, path: /ai/x/, roles: [admin]}\n  - {name: ai, prefix: /ai/, allow: authenticated}\n",
            "p.yaml",
        )
        .expect("valid");
        for (path, rule) in [
            ("/ai/settings", "settings"),
            ("/ai/settings/", "settings"),
            ("/ai/settings/?q", "settings"),
            ("/ai/x", "slash"),
            ("/ai/x/", "slash"),
        ] {
            assert_eq!(name(p.route("h", "GET", path)), Some(rule), "{path}");
        }
        assert_eq!(name(p.route("h", "GET", "/ai/settings/a")), Some("ai"));
        // The same for a pattern's last segment (found by the review).
        let p = Policy::parse(
            "rules:\n  - {name: user, pattern: \"/ai/users/{id}\", roles: [admin]}\n  - {name: ai, prefix: /ai/, allow: authenticated}\n",
            "p.yaml",
        )
        .expect("valid");
        for path in ["/ai/users/7", "/ai/users/7/"] {
            assert_eq!(name(p.route("h", "GET", path)), Some("user"), "{path}");
        }
        // And a pattern written with one (found by the second review).
        let p = Policy::parse(
            "rules:\n  - {name: user, pattern: \"/ai/users/{id}/\", roles: [admin]}\n  - {name: ai, prefix: /ai/, allow: authenticated}\n",
            "p.yaml",
        )
        .expect("valid");
        for path in ["/ai/users/7", "/ai/users/7/"] {
            assert_eq!(name(p.route("h", "GET", path)), Some("user"), "{path}");
        }
        assert_eq!(name(p.route("h", "GET", "/ai/users/7/x")), Some("ai"));
    }

    #[test]
    fn prefixes_cover_whole_segments_only() {
        let p = Policy::parse(
            "rules:\n  - {name: admin, prefix: /ai/admin/, roles: [admin]}\n  - {name: keys, prefix: /keys, allow: public}\n  - {name: all, prefix: /, allow: authenticated}\n",
            "p.yaml",
        )
        .expect("valid");
        for path in ["/ai/admin", "/ai/admin/", "/ai/admin/x/y", "/ai/admin?x"] {
            assert_eq!(name(p.route("h", "GET", path)), Some("admin"), "{path}");
        }
        assert_eq!(name(p.route("h", "GET", "/ai/administrator")), Some("all"));
        assert_eq!(name(p.route("h", "GET", "/keys")), Some("keys"));
        assert_eq!(name(p.route("h", "GET", "/keys/1")), Some("keys"));
        assert_eq!(name(p.route("h", "GET", "/keysmith")), Some("all"));
        assert_eq!(name(p.route("h", "GET", "/")), Some("all"));
    }

    #[test]
    fn a_method_mismatch_never_falls_through_to_a_broader_rule() {
        let p = Policy::parse(
            r#"
rules:
  - {name: read, prefix: /ai/admin/, methods: [GET], roles: [admin, auditor]}
  - {name: other-path, prefix: /ai/admin/x, methods: [POST], allow: public}
  - {name: write, prefix: /ai/admin/, methods: [POST, DELETE], roles: [admin]}
  - {name: app, prefix: /ai/, allow: authenticated}
"#,
            "p.yaml",
        )
        .expect("valid");
        assert_eq!(name(p.route("h", "GET", "/ai/admin/x")), Some("read"));
        assert_eq!(
            name(p.route("h", "DELETE", "/ai/admin/x")),
            Some("write"),
            "a later rule for the same route may take other methods"
        );
        assert_eq!(
            name(p.route("h", "POST", "/ai/admin/x")),
            Some("write"),
            "a rule for another path below the claiming rule does not"
        );
        match p.route("h", "PUT", "/ai/admin/x") {
            Route::MethodNotAllowed { rule, allowed } => {
                assert_eq!(rule.name, "read");
                assert_eq!(allowed, "DELETE, GET, POST");
            }
            other => panic!("expected 405, got {other:?}"),
        }
        assert_eq!(name(p.route("h", "PUT", "/ai/chat")), Some("app"));
    }

    #[test]
    fn case_and_suffix_spellings_must_land_on_the_same_rule() {
        let p = Policy::parse(
            r#"
rules:
  - {name: admin, prefix: /ai/admin/, roles: [admin]}
  - {name: report, path: /files/report.pdf, allow: public}
  - {name: app, prefix: /ai/, allow: authenticated}
  - {name: files, prefix: /files/, allow: authenticated}
"#,
            "p.yaml",
        )
        .expect("valid");
        for path in [
            "/ai/Admin/x",
            "/ai/ADMIN",
            "/ai/admin.json",
            "/ai/Admin.json",
        ] {
            assert!(
                matches!(
                    p.route("h", "GET", path),
                    Route::BadPath(crate::path::PathError::Ambiguous)
                ),
                "{path}"
            );
        }
        // Spellings that stay on their rule are judged as usual.
        assert_eq!(name(p.route("h", "GET", "/ai/Chat")), Some("app"));
        assert_eq!(name(p.route("h", "GET", "/ai/chat.json")), Some("app"));
        assert_eq!(
            name(p.route("h", "GET", "/files/report.pdf")),
            Some("report")
        );
        assert_eq!(name(p.route("h", "GET", "/files/other.pdf")), Some("files"));
    }

    #[test]
    fn methods_and_hosts_must_be_well_formed() {
        let p = Policy::parse(POLICY, "p.yaml").expect("valid");
        for method in ["get", "Post", "", "G ET"] {
            assert!(
                matches!(
                    p.route("x", method, "/auth/login"),
                    Route::BadPath(crate::path::PathError::BadMethod)
                ),
                "{method:?}"
            );
        }
        for host in ["x@api.example.com", "a.com,api.example.com", "a b"] {
            assert!(
                matches!(
                    p.route(host, "GET", "/auth/login"),
                    Route::BadPath(crate::path::PathError::BadHost)
                ),
                "{host:?}"
            );
        }
        assert!(
            Policy::parse("rules:\n  - {host: 'a b', prefix: /, allow: public}\n", "p").is_err()
        );
    }

    #[test]
    fn hosts_ignore_case_port_and_trailing_dot() {
        let p = Policy::parse(
            "rules:\n  - {name: api, host: API.example.com., prefix: /, allow: public}\n",
            "p.yaml",
        )
        .expect("valid");
        for host in [
            "api.example.com",
            "API.EXAMPLE.COM",
            "api.example.com.",
            "Api.Example.Com.:8443",
        ] {
            assert_eq!(name(p.route(host, "GET", "/")), Some("api"), "{host}");
        }
        assert!(matches!(
            p.route("api.example.com.evil", "GET", "/"),
            Route::NoRule
        ));
    }

    #[test]
    fn non_canonical_paths_are_refused_before_any_rule() {
        let p = Policy::parse(POLICY, "p.yaml").expect("valid");
        for path in [
            "/auth/../teams/red/x",
            "/teams/blue/../red/x",
            "/teams//x",
            "/teams/blue%2F..%2Fred/x",
            "/auth/login;x",
        ] {
            assert!(
                matches!(p.route("x", "GET", path), Route::BadPath(_)),
                "{path}"
            );
        }
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

        for bad in ["/a/**/b", "/a/{}", "/a/b*", "/a/../b", "/a//b", "/a;b"] {
            let text = format!("rules:\n  - pattern: {bad}\n    allow: public\n");
            assert!(Policy::parse(&text, "p.yaml").is_err(), "{bad}");
        }
        let e = Policy::parse(
            "rules:\n  - prefix: /a/%2e%2e/b\n    allow: public\n",
            "p.yaml",
        )
        .expect_err("non-canonical prefix");
        assert!(e.to_string().contains("not canonical"), "{e}");
    }

    #[test]
    fn quota_and_email_verified_parse_and_check() {
        let p = Policy::parse(
            "rules:\n  - {prefix: /ai/, allow: authenticated, quota: 60/60, email_verified: true}\n",
            "q",
        )
        .expect("policy");
        assert_eq!(
            p.rules[0].quota,
            Some(Quota {
                limit: 60,
                period_secs: 60
            })
        );
        assert!(p.rules[0].email_verified);
        for (bad, why) in [
            ("{prefix: /a/, allow: public, quota: 1/1}", "need a token"),
            (
                "{prefix: /a/, allow: public, email_verified: true}",
                "need a token",
            ),
            (
                "{prefix: /a/, allow: authenticated, quota: 0/60}",
                "quota: 1 to",
            ),
            (
                "{prefix: /a/, allow: authenticated, quota: 5/0}",
                "quota: 1 to",
            ),
            (
                "{prefix: /a/, allow: authenticated, quota: 5/90000}",
                "quota: 1 to",
            ),
            (
                "{prefix: /a/, allow: authenticated, quota: lots}",
                "REQUESTS/SECONDS",
            ),
            (
                "{prefix: /a/, allow: authenticated, quota: -1/60}",
                "REQUESTS/SECONDS",
            ),
            (
                "{prefix: /a/, allow: authenticated, quota: 1001/1}",
                "at most 1000",
            ),
        ] {
            let e = Policy::parse(&format!("rules:\n  - {bad}\n"), "q").expect_err(bad);
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
        let e = Policy::parse(
            "rules:\n  - {name: a, prefix: /a/, allow: authenticated}\n  - {name: a, prefix: /b/, allow: authenticated, quota: 1/1}\n",
            "q",
        )
        .expect_err("shared name");
        assert!(e.to_string().contains("unique name"), "{e}");
    }

    #[test]
    fn team_rules_parse_and_check_their_keys() {
        let p = Policy::parse(
            "rules:\n  - {pattern: '/t/{team}/**', team: '{team}', team_role: owner, roles: [admin]}\n",
            "t",
        )
        .expect("policy");
        assert_eq!(
            p.rules[0].requirement,
            Requirement::Team {
                team: "{team}".into(),
                min_role: "owner".into(),
                or_roles: vec!["admin".into()],
            }
        );
        for (bad, why) in [
            (
                "{pattern: '/t/{team}/**', team: '{team}', team_role: boss}",
                "team_role must be",
            ),
            (
                "{pattern: '/t/{team}/**', team_role: owner, allow: authenticated}",
                "team_role needs team",
            ),
            (
                "{pattern: '/t/{team}/**', team: '{team}', allow: public}",
                "combines only with roles",
            ),
            (
                "{pattern: '/t/{team}/**', team: '{team}', permissions: [x]}",
                "combines only with roles",
            ),
            ("{pattern: '/t/{x}/**', team: '{team}'}", "does not capture"),
            ("{pattern: '/t/{team}/**', team: ''}", "must name a team"),
            ("{prefix: /t/, team: '{team}'}", "does not capture"),
            (
                "{prefix: /t/, roles: ['reader:{team}']}",
                "does not capture",
            ),
            ("{pattern: '/t/{a}/x/{a}', allow: public}", "appears twice"),
        ] {
            let text = format!("rules:\n  - {bad}\n");
            let e = Policy::parse(&text, "t").expect_err(bad);
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }
}
