//! The pure core of the sidecar: given the request, the route policy, the
//! token (already signature-checked), the revocation set and `now`, decide.
//! No I/O, no gRPC types, no clock reads.

use std::sync::Arc;

use auth_types::{AccessClaims, ClaimError, Expectations, JwsError, PermissionMap};

use crate::path::PathError;
use crate::policy::{substitute, team_role_rank, Policy, Requirement, Route};
use crate::revocations::RevocationSet;

#[derive(Debug, Clone, Copy)]
pub struct RequestAttrs<'a> {
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
}

/// What became of the token by the time the decision is made.
#[derive(Debug, Clone)]
pub enum TokenInput {
    Missing,
    Invalid(DenyReason),
    Verified(Arc<AccessClaims>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    MissingToken,
    MalformedToken,
    BadSignature,
    UnknownKey,
    UnsupportedToken,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    Revoked,
    NoMatchingRule,
    MissingRole,
    MissingPermission,
    /// Not a member of the route's team, or below the role it needs.
    NotTeamMember,
    /// The token says its user is in more teams than it could list, and
    /// this team is not listed: refused rather than guessed.
    TeamClaimsOverflow,
    /// An unsafe request whose token came from a cookie, sent by a page of
    /// another origin (CSRF).
    CrossSiteRequest,
    /// Keys or revocations are older than the configured maximum: fail closed.
    StaleState,
    /// A path an upstream could rewrite into another route (`crate::path`).
    NonCanonicalPath,
    /// The route exists but no rule for it allows the method.
    MethodNotAllowed,
    /// A host or method no rule could be safely judged against.
    MalformedRequest,
    /// The rule asks for a verified email and the token does not say so.
    EmailNotVerified,
    /// The user spent the rule's quota (429, with Retry-After).
    QuotaExceeded,
    /// The rule needs a second factor the token does not show (401 with an
    /// RFC 9470 challenge: step up).
    MfaRequired,
    /// The rule needs a more recent authentication than the token's
    /// `auth_time` (401 with an RFC 9470 challenge: step up).
    AuthenticationTooOld,
    /// An application's token lacks a scope the rule needs (403, RFC 6750
    /// `insufficient_scope` naming them).
    InsufficientScope,
    /// The token's OAuth client is not one the rule admits.
    ClientNotAllowed,
    /// The token acts for a user by a service the rule does not name (or
    /// the rule needs such a token and it is not one).
    ActorNotAllowed,
    /// A DPoP-bound token without a valid, fresh, unreplayed proof by its
    /// key for this request (or an unbound one under the DPoP scheme).
    InvalidDpopProof,
    /// The rule takes only DPoP-bound tokens (`dpop: required`).
    DpopRequired,
}

impl DenyReason {
    pub fn code(self) -> &'static str {
        match self {
            DenyReason::MissingToken => "missing_token",
            DenyReason::MalformedToken => "malformed_token",
            DenyReason::BadSignature => "bad_signature",
            DenyReason::UnknownKey => "unknown_key",
            DenyReason::UnsupportedToken => "unsupported_token",
            DenyReason::Expired => "token_expired",
            DenyReason::NotYetValid => "token_not_yet_valid",
            DenyReason::WrongIssuer => "wrong_issuer",
            DenyReason::WrongAudience => "wrong_audience",
            DenyReason::Revoked => "token_revoked",
            DenyReason::NoMatchingRule => "no_matching_rule",
            DenyReason::MissingRole => "missing_role",
            DenyReason::MissingPermission => "missing_permission",
            DenyReason::NotTeamMember => "not_team_member",
            DenyReason::CrossSiteRequest => "cross_site_request",
            DenyReason::TeamClaimsOverflow => "team_claims_overflow",
            DenyReason::StaleState => "authorization_state_stale",
            DenyReason::NonCanonicalPath => "non_canonical_path",
            DenyReason::MethodNotAllowed => "method_not_allowed",
            DenyReason::MalformedRequest => "malformed_request",
            DenyReason::EmailNotVerified => "email_not_verified",
            DenyReason::QuotaExceeded => "quota_exceeded",
            DenyReason::MfaRequired => "mfa_required",
            DenyReason::AuthenticationTooOld => "authentication_too_old",
            DenyReason::InsufficientScope => "insufficient_scope",
            DenyReason::ClientNotAllowed => "client_not_allowed",
            DenyReason::ActorNotAllowed => "actor_not_allowed",
            DenyReason::InvalidDpopProof => "invalid_dpop_proof",
            DenyReason::DpopRequired => "dpop_required",
        }
    }

    /// 401 for anything wrong with the credential, 403 for policy, 503 when
    /// the sidecar cannot vouch for its own state; 400 and 405 for requests
    /// that are refused before any credential is looked at.
    pub fn http_status(self) -> u16 {
        match self {
            DenyReason::NonCanonicalPath | DenyReason::MalformedRequest => 400,
            DenyReason::MethodNotAllowed => 405,
            DenyReason::NoMatchingRule
            | DenyReason::MissingRole
            | DenyReason::MissingPermission
            | DenyReason::NotTeamMember
            | DenyReason::TeamClaimsOverflow
            | DenyReason::CrossSiteRequest
            | DenyReason::EmailNotVerified
            | DenyReason::InsufficientScope
            | DenyReason::ClientNotAllowed
            | DenyReason::ActorNotAllowed => 403,
            DenyReason::QuotaExceeded => 429,
            DenyReason::StaleState => 503,
            _ => 401,
        }
    }

    pub fn from_jws(e: &JwsError) -> Self {
        match e {
            JwsError::TooLarge
            | JwsError::Malformed
            | JwsError::BadClaims
            | JwsError::MissingKid => DenyReason::MalformedToken,
            JwsError::UnsupportedAlg | JwsError::UnsupportedCritical | JwsError::WrongType => {
                DenyReason::UnsupportedToken
            }
            JwsError::UnknownKid(_) => DenyReason::UnknownKey,
            JwsError::AlgMismatch | JwsError::BadSignature => DenyReason::BadSignature,
        }
    }

    fn from_claims(e: ClaimError) -> Self {
        match e {
            ClaimError::Expired => DenyReason::Expired,
            ClaimError::NotYetValid | ClaimError::IssuedInFuture => DenyReason::NotYetValid,
            ClaimError::WrongIssuer => DenyReason::WrongIssuer,
            ClaimError::WrongAudience => DenyReason::WrongAudience,
            ClaimError::MissingSubject => DenyReason::MalformedToken,
        }
    }
}

/// The authentication a rule needs and the token lacks (RFC 9470).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepUp {
    /// `acr_values` to ask for: a second factor.
    pub mfa: bool,
    /// `max_age` to ask for.
    pub max_age: Option<u64>,
}

/// `acr` of a session proved with two factors (the issuer's value).
pub const ACR_TWO_FACTORS: &str = "aal2";

#[derive(Debug, Clone)]
pub enum Decision {
    Allow {
        rule: String,
        /// `None` on public routes.
        identity: Option<Arc<AccessClaims>>,
    },
    Deny {
        rule: Option<String>,
        reason: DenyReason,
        /// The route's methods, for the `Allow` header of a 405.
        allow: Option<String>,
        /// Seconds, for the `Retry-After` of a 429.
        retry_after: Option<u64>,
        /// What a step-up must achieve, for the RFC 9470 challenge.
        step_up: Option<StepUp>,
    },
}

impl Decision {
    pub fn deny(rule: Option<String>, reason: DenyReason) -> Decision {
        Decision::Deny {
            rule,
            reason,
            allow: None,
            retry_after: None,
            step_up: None,
        }
    }
}

/// `token` is only called when the matched rule needs a token.
pub fn decide(
    policy: &Policy,
    request: RequestAttrs<'_>,
    token: impl FnOnce() -> TokenInput,
    revocations: &RevocationSet,
    permissions: &PermissionMap,
    expect: &Expectations,
    now: i64,
) -> Decision {
    let route = policy.route(request.host, request.method, request.path);
    decide_routed(route, token, revocations, permissions, expect, now)
}

/// `decide` for a caller that has already routed the request.
pub fn decide_routed(
    route: Route<'_>,
    token: impl FnOnce() -> TokenInput,
    revocations: &RevocationSet,
    permissions: &PermissionMap,
    expect: &Expectations,
    now: i64,
) -> Decision {
    let matched = match route {
        Route::Matched(m) => m,
        Route::NoRule => return Decision::deny(None, DenyReason::NoMatchingRule),
        Route::BadPath(PathError::BadHost | PathError::BadMethod) => {
            return Decision::deny(None, DenyReason::MalformedRequest)
        }
        Route::BadPath(_) => return Decision::deny(None, DenyReason::NonCanonicalPath),
        Route::MethodNotAllowed { rule, allowed } => {
            return Decision::Deny {
                rule: Some(rule.name.clone()),
                reason: DenyReason::MethodNotAllowed,
                allow: Some(allowed),
                retry_after: None,
                step_up: None,
            }
        }
    };
    let rule = &matched.rule.name;
    let deny = |reason| Decision::deny(Some(rule.clone()), reason);
    if matched.rule.requirement == Requirement::Public {
        return Decision::Allow {
            rule: rule.clone(),
            identity: None,
        };
    }
    let claims = match token() {
        TokenInput::Missing => return deny(DenyReason::MissingToken),
        TokenInput::Invalid(reason) => return deny(reason),
        TokenInput::Verified(claims) => claims,
    };
    if let Err(e) = claims.validate_except_audience(expect, now) {
        return deny(DenyReason::from_claims(e));
    }
    // RFC 8707: a token for the mesh (the configured audience) serves the
    // rules that name no audiences; a rule naming audiences takes only a
    // token minted for one of them, so a token for a resource serves only
    // the rules written for that resource.
    let audience_ok = if matched.rule.audiences.is_empty() {
        claims.aud.contains(&expect.audience)
    } else {
        matched
            .rule
            .audiences
            .iter()
            .any(|a| claims.aud.contains(a))
    };
    if !audience_ok {
        return deny(DenyReason::WrongAudience);
    }
    if revocations.is_revoked(&claims) {
        return deny(DenyReason::Revoked);
    }
    let any_role = |roles: &[String]| {
        roles
            .iter()
            .map(|r| substitute(r, &matched.captures))
            .any(|r| claims.roles.contains(&r))
    };
    let refusal = match &matched.rule.requirement {
        Requirement::Public | Requirement::Authenticated => None,
        Requirement::AnyRole(roles) => (!any_role(roles)).then_some(DenyReason::MissingRole),
        Requirement::AllPermissions(perms) => {
            let all = perms
                .iter()
                .map(|p| substitute(p, &matched.captures))
                .all(|p| permissions.grants(&claims.roles, &p));
            (!all).then_some(DenyReason::MissingPermission)
        }
        Requirement::Team {
            team,
            min_role,
            or_roles,
        } => {
            let team = substitute(team, &matched.captures);
            let needed = team_role_rank(min_role);
            let held = claims.teams.get(&team).and_then(|r| team_role_rank(r));
            if any_role(or_roles) || matches!((held, needed), (Some(h), Some(n)) if h >= n) {
                None
            } else if held.is_none() && claims.teams_overflow {
                Some(DenyReason::TeamClaimsOverflow)
            } else {
                Some(DenyReason::NotTeamMember)
            }
        }
    };
    if let Some(reason) = refusal {
        return deny(reason);
    }
    if matched.rule.email_verified && !claims.email_verified {
        return deny(DenyReason::EmailNotVerified);
    }
    if !matched.rule.clients.is_empty() && !matched.rule.clients.contains(&claims.client_id) {
        return deny(DenyReason::ClientNotAllowed);
    }
    // Delegation is opt-in: a token a service got for a user reaches only
    // rules naming that service in `actors`; `actors: []` takes only
    // tokens in which nobody acts for another.
    let admitted = match (&matched.rule.actors, &claims.act) {
        (None, None) => true,
        (None, Some(_)) => false,
        (Some(actors), Some(act)) => actors.contains(&act.client_id),
        (Some(actors), None) => actors.is_empty(),
    };
    if !admitted {
        return deny(DenyReason::ActorNotAllowed);
    }
    if let Some(granted) = claims.scope.as_deref() {
        // An application's token reaches only rules written for
        // applications (naming scopes or clients): a rule written before
        // applications existed must not hand them the user's full power.
        let for_apps = !matched.rule.scopes.is_empty() || !matched.rule.clients.is_empty();
        let has = |s: &String| granted.split(' ').any(|g| g == s);
        if !for_apps || !matched.rule.scopes.iter().all(has) {
            return deny(DenyReason::InsufficientScope);
        }
    }
    // Step-up last: only a caller the rule would otherwise admit is told to
    // authenticate again. A token without `auth_time` is as old as can be.
    let rule_ref = matched.rule;
    let lacks_mfa = rule_ref.mfa && !claims.amr.iter().any(|a| a == "mfa");
    let too_old = rule_ref.max_auth_age.is_some_and(|max| {
        claims
            .auth_time
            .is_none_or(|t| now.saturating_sub(t) > i64::try_from(max).unwrap_or(i64::MAX))
    });
    if lacks_mfa || too_old {
        return Decision::Deny {
            rule: Some(rule.clone()),
            reason: if lacks_mfa {
                DenyReason::MfaRequired
            } else {
                DenyReason::AuthenticationTooOld
            },
            allow: None,
            retry_after: None,
            step_up: Some(StepUp {
                mfa: rule_ref.mfa,
                max_age: rule_ref.max_auth_age,
            }),
        };
    }
    Decision::Allow {
        rule: rule.clone(),
        identity: Some(claims),
    }
}

/// A deny as an HTTP answer: status, headers and the JSON body. One
/// rendering for every front end (gRPC ext_authz, HTTP forward-auth).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

pub fn render_denial(
    reason: DenyReason,
    allow: Option<&str>,
    retry_after: Option<u64>,
    step_up: Option<StepUp>,
) -> Denial {
    let status = reason.http_status();
    let mut headers = vec![("content-type", "application/json".to_string())];
    let challenge = match status {
        // RFC 9470: the token is fine; the authentication behind it is not enough.
        401 if step_up.is_some() => step_up.map(|s| {
            let mut c = format!(
                "Bearer error=\"insufficient_user_authentication\", error_description=\"{}\"",
                reason.code()
            );
            if s.mfa {
                c.push_str(&format!(", acr_values=\"{ACR_TWO_FACTORS}\""));
            }
            if let Some(age) = s.max_age {
                c.push_str(&format!(", max_age={age}"));
            }
            c
        }),
        401 if reason == DenyReason::MissingToken => Some("Bearer".to_string()),
        // RFC 9449 §7.1: the DPoP scheme's challenge, with the algorithms.
        401 if reason == DenyReason::InvalidDpopProof => Some(format!(
            "DPoP error=\"invalid_dpop_proof\", algs=\"{}\"",
            auth_types::dpop::ALGS.join(" ")
        )),
        401 if reason == DenyReason::DpopRequired => Some(format!(
            "DPoP algs=\"{}\"",
            auth_types::dpop::ALGS.join(" ")
        )),
        401 => Some(format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            reason.code()
        )),
        403 => Some("Bearer error=\"insufficient_scope\"".to_string()),
        _ => None,
    };
    if let Some(c) = challenge {
        headers.push(("www-authenticate", c));
    }
    if let Some(secs) = retry_after {
        headers.push(("retry-after", secs.to_string()));
    }
    if let Some(methods) = allow {
        headers.push(("allow", methods.to_string()));
    }
    let message = match status {
        400 if reason == DenyReason::MalformedRequest => "malformed host or method",
        400 => "request path is not in canonical form",
        401 if step_up.is_some() => "authenticate again: step up (POST /auth/mfa/step-up)",
        401 => "authentication required",
        403 => "not allowed",
        405 => "method not allowed on this route",
        429 => "request quota spent; retry later",
        _ => "authorization temporarily unavailable",
    };
    let body = serde_json::json!({"error": reason.code(), "message": message}).to_string();
    Denial {
        status,
        headers,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auth_types::{Audience, RevocationKind, RevocationRecord};

    const NOW: i64 = 1_700_000_000;

    fn policy() -> Policy {
        Policy::parse(
            r#"
rules:
  - { name: public, prefix: /auth/, allow: public }
  - { name: teams, pattern: "/teams/{team}/**", roles: ["team:{team}", admin] }
  - { name: keys, prefix: /admin/keys, permissions: [keys.read, keys.write] }
  - { name: team-settings, pattern: "/org/{team}/settings/**", team: "{team}", team_role: maintainer, roles: [admin] }
  - { name: team-any, pattern: "/org/{team}/**", team: "{team}" }
  - { name: models, prefix: /models/, permissions: [models.manage] }
  - { name: payments, prefix: /ai/pay/, allow: authenticated, mfa: true, max_auth_age: 300 }
  - { name: ops, prefix: /ai/ops/, roles: [admin], mfa: true }
  - { name: app, prefix: /ai/, allow: authenticated }
"#,
            "test",
        )
        .expect("policy")
    }

    fn expect() -> Expectations {
        Expectations {
            issuer: "https://issuer".into(),
            audience: "mesh".into(),
            leeway_secs: 30,
        }
    }

    fn claims() -> AccessClaims {
        AccessClaims {
            iss: "https://issuer".into(),
            sub: "u1".into(),
            aud: Audience::One("mesh".into()),
            exp: NOW + 600,
            iat: NOW - 10,
            nbf: Some(NOW - 10),
            jti: "j1".into(),
            sid: "s1".into(),
            client_id: "c".into(),
            roles: vec!["team:blue".into()],
            permissions: vec!["keys.read".into()],
            amr: vec!["pwd".into()],
            email: None,
            user_gen: 0,
            teams: Default::default(),
            teams_overflow: false,
            email_verified: false,
            acr: None,
            auth_time: None,
            scope: None,
            act: None,
            cnf: None,
        }
    }

    fn run(path: &str, token: TokenInput, revocations: &RevocationSet) -> Decision {
        let req = RequestAttrs {
            method: "GET",
            host: "mesh.local",
            path,
        };
        decide(
            &policy(),
            req,
            || token,
            revocations,
            &PermissionMap::default(),
            &expect(),
            NOW,
        )
    }

    fn denied(d: &Decision) -> Option<DenyReason> {
        match d {
            Decision::Deny { reason, .. } => Some(*reason),
            Decision::Allow { .. } => None,
        }
    }

    fn verified(c: AccessClaims) -> TokenInput {
        TokenInput::Verified(Arc::new(c))
    }

    #[test]
    fn public_routes_never_look_at_the_token() {
        let none = RevocationSet::default();
        let d = decide(
            &policy(),
            RequestAttrs {
                method: "POST",
                host: "h",
                path: "/auth/login",
            },
            || panic!("token must not be evaluated"),
            &none,
            &PermissionMap::default(),
            &expect(),
            NOW,
        );
        assert!(matches!(d, Decision::Allow { identity: None, .. }));
    }

    #[test]
    fn credentials_problems_are_401_and_policy_problems_403() {
        let none = RevocationSet::default();
        assert_eq!(
            denied(&run("/ai/x", TokenInput::Missing, &none)),
            Some(DenyReason::MissingToken)
        );
        assert_eq!(
            denied(&run(
                "/ai/x",
                TokenInput::Invalid(DenyReason::BadSignature),
                &none
            )),
            Some(DenyReason::BadSignature)
        );
        let mut expired = claims();
        expired.exp = NOW - 31;
        assert_eq!(
            denied(&run("/ai/x", verified(expired), &none)),
            Some(DenyReason::Expired)
        );
        let mut within_leeway = claims();
        within_leeway.exp = NOW - 29;
        assert_eq!(denied(&run("/ai/x", verified(within_leeway), &none)), None);
        let mut future = claims();
        future.nbf = Some(NOW + 120);
        assert_eq!(
            denied(&run("/ai/x", verified(future), &none)),
            Some(DenyReason::NotYetValid)
        );
        let mut foreign = claims();
        foreign.aud = Audience::One("elsewhere".into());
        assert_eq!(
            denied(&run("/ai/x", verified(foreign), &none)),
            Some(DenyReason::WrongAudience)
        );

        assert_eq!(
            denied(&run("/nowhere", verified(claims()), &none)),
            Some(DenyReason::NoMatchingRule)
        );
        assert_eq!(DenyReason::NoMatchingRule.http_status(), 403);
        assert_eq!(DenyReason::Expired.http_status(), 401);
    }

    #[test]
    fn roles_come_from_path_captures_and_permissions_are_all_of() {
        let none = RevocationSet::default();
        assert_eq!(
            denied(&run("/teams/blue/docs", verified(claims()), &none)),
            None
        );
        assert_eq!(
            denied(&run("/teams/red/docs", verified(claims()), &none)),
            Some(DenyReason::MissingRole)
        );
        let mut admin = claims();
        admin.roles = vec!["admin".into()];
        assert_eq!(
            denied(&run("/teams/red/docs", verified(admin), &none)),
            None
        );
        assert_eq!(
            denied(&run("/admin/keys", verified(claims()), &none)),
            Some(DenyReason::MissingPermission)
        );
        // A token's own `permissions` claim grants nothing: only the map.
        let mut claimed = claims();
        claimed.permissions = vec!["keys.read".into(), "keys.write".into()];
        assert_eq!(
            denied(&run("/admin/keys", verified(claimed), &none)),
            Some(DenyReason::MissingPermission)
        );
        // All of: one of the two is not enough.
        let mut map = PermissionMap {
            version: 3,
            ..Default::default()
        };
        map.roles.insert("keeper".into(), vec!["keys.read".into()]);
        let mut keeper = claims();
        keeper.roles = vec!["keeper".into()];
        assert_eq!(
            decide_with("/admin/keys", keeper.clone(), &map),
            Some(DenyReason::MissingPermission)
        );
        map.roles.insert(
            "keeper".into(),
            vec!["keys.read".into(), "keys.write".into()],
        );
        assert_eq!(decide_with("/admin/keys", keeper, &map), None);
    }

    #[test]
    fn bad_paths_and_methods_are_refused_before_the_token_is_read() {
        let none = RevocationSet::default();
        let mut admin = claims();
        admin.roles = vec!["admin".into()];
        for path in ["/ai/../teams/red/x", "/teams/blue/%2e%2e/red", "/ai;x"] {
            let d = decide(
                &policy(),
                RequestAttrs {
                    method: "GET",
                    host: "h",
                    path,
                },
                || panic!("token must not be evaluated"),
                &none,
                &PermissionMap::default(),
                &expect(),
                NOW,
            );
            assert_eq!(denied(&d), Some(DenyReason::NonCanonicalPath), "{path}");
        }
        assert_eq!(DenyReason::NonCanonicalPath.http_status(), 400);
        let p = Policy::parse(
            "rules:\n  - {prefix: /a/, methods: [GET], allow: public}\n  - {prefix: /, allow: authenticated}\n",
            "t",
        )
        .expect("policy");
        let d = decide(
            &p,
            RequestAttrs {
                method: "POST",
                host: "h",
                path: "/a/b",
            },
            || verified(admin),
            &none,
            &PermissionMap::default(),
            &expect(),
            NOW,
        );
        match d {
            Decision::Deny { reason, allow, .. } => {
                assert_eq!(reason, DenyReason::MethodNotAllowed);
                assert_eq!(allow.as_deref(), Some("GET"));
                assert_eq!(reason.http_status(), 405);
            }
            Decision::Allow { .. } => panic!("POST must not fall through to the broader rule"),
        }
    }

    #[test]
    fn scopes_bind_application_tokens_and_clients_pick_applications() {
        let p = Policy::parse(
            "rules:\n  - {prefix: /notes/, allow: authenticated, scopes: [notes:read]}\n  - {prefix: /web/, allow: authenticated, clients: [notes-web]}\n",
            "t",
        )
        .expect("policy");
        let run = |path: &str, c: AccessClaims| {
            denied(&decide(
                &p,
                RequestAttrs {
                    method: "GET",
                    host: "h",
                    path,
                },
                || verified(c),
                &RevocationSet::default(),
                &PermissionMap::default(),
                &expect(),
                NOW,
            ))
        };
        let app = |scope: &str| {
            let mut c = claims();
            c.client_id = "notes-web".into();
            c.scope = Some(scope.into());
            c
        };
        assert_eq!(run("/notes/1", app("openid notes:read")), None);
        assert_eq!(
            run("/notes/1", app("openid notes:readx")),
            Some(DenyReason::InsufficientScope)
        );
        assert_eq!(
            run("/notes/1", app("")),
            Some(DenyReason::InsufficientScope)
        );
        // The issuer's own token (no scope claim): the user, not an app.
        assert_eq!(run("/notes/1", claims()), None);
        assert_eq!(run("/web/x", app("openid")), None);
        // A rule that names neither scopes nor clients is not for apps.
        assert_eq!(
            decide_with("/ai/x", app("openid notes:read"), &PermissionMap::default()),
            Some(DenyReason::InsufficientScope)
        );
        assert_eq!(
            decide_with("/ai/x", claims(), &PermissionMap::default()),
            None
        );
        assert_eq!(run("/web/x", claims()), Some(DenyReason::ClientNotAllowed));
        assert_eq!(DenyReason::InsufficientScope.http_status(), 403);
        assert!(
            Policy::parse("rules:\n  - {prefix: /, allow: public, scopes: [a]}\n", "t").is_err()
        );
        assert!(Policy::parse(
            "rules:\n  - {prefix: /, allow: authenticated, scopes: ['a b']}\n",
            "t"
        )
        .is_err());
    }

    #[test]
    fn actors_pick_who_may_act_for_a_user() {
        let p = Policy::parse(
            "rules:\n  - {prefix: /memory/, allow: authenticated, scopes: [memory:read], actors: [ai-gateway]}\n  - {prefix: /direct/, allow: authenticated, scopes: [memory:read], actors: []}\n  - {prefix: /any/, allow: authenticated, scopes: [memory:read]}\n",
            "t",
        )
        .expect("policy");
        let run = |path: &str, c: AccessClaims| {
            denied(&decide(
                &p,
                RequestAttrs {
                    method: "GET",
                    host: "h",
                    path,
                },
                || verified(c),
                &RevocationSet::default(),
                &PermissionMap::default(),
                &expect(),
                NOW,
            ))
        };
        let by = |actor: Option<&str>| {
            let mut c = claims();
            c.client_id = actor.unwrap_or("svc").into();
            c.scope = Some("memory:read".into());
            c.act = actor.map(|a| auth_types::Actor {
                sub: format!("client:{a}"),
                client_id: a.into(),
            });
            c
        };
        assert_eq!(run("/memory/1", by(Some("ai-gateway"))), None);
        assert_eq!(
            run("/memory/1", by(Some("other"))),
            Some(DenyReason::ActorNotAllowed)
        );
        // Not delegated: the service (or user) acting as itself.
        assert_eq!(
            run("/memory/1", by(None)),
            Some(DenyReason::ActorNotAllowed)
        );
        assert_eq!(
            run("/direct/1", by(Some("ai-gateway"))),
            Some(DenyReason::ActorNotAllowed)
        );
        assert_eq!(run("/direct/1", by(None)), None);
        // Without `actors`, no delegated token: delegation is opt-in.
        assert_eq!(
            run("/any/1", by(Some("ai-gateway"))),
            Some(DenyReason::ActorNotAllowed)
        );
        assert_eq!(run("/any/1", by(None)), None);
        assert_eq!(DenyReason::ActorNotAllowed.http_status(), 403);
        assert!(
            Policy::parse("rules:\n  - {prefix: /, allow: public, actors: []}\n", "t").is_err()
        );
        assert!(Policy::parse(
            "rules:\n  - {prefix: /, allow: authenticated, actors: ['a b']}\n",
            "t"
        )
        .is_err());
    }

    #[test]
    fn a_token_for_a_resource_serves_only_the_rules_naming_it() {
        let p = Policy::parse(
            "rules:\n  - {prefix: /vault/, allow: authenticated, scopes: [notes:read], audiences: [https://vault.example]}\n  - {prefix: /notes/, allow: authenticated, scopes: [notes:read]}\n",
            "t",
        )
        .expect("policy");
        let run = |path: &str, c: AccessClaims| {
            denied(&decide(
                &p,
                RequestAttrs {
                    method: "GET",
                    host: "h",
                    path,
                },
                || verified(c),
                &RevocationSet::default(),
                &PermissionMap::default(),
                &expect(),
                NOW,
            ))
        };
        let app = |aud: &str| {
            let mut c = claims();
            c.client_id = "notes-web".into();
            c.scope = Some("notes:read".into());
            c.aud = Audience::One(aud.into());
            c
        };
        assert_eq!(run("/vault/1", app("https://vault.example")), None);
        // Minted for the vault: not a token for the rest of the mesh.
        assert_eq!(
            run("/notes/1", app("https://vault.example")),
            Some(DenyReason::WrongAudience)
        );
        // A token for the mesh does not reach the vault's rule.
        assert_eq!(run("/notes/1", app("mesh")), None);
        assert_eq!(
            run("/vault/1", app("mesh")),
            Some(DenyReason::WrongAudience)
        );
        assert_eq!(run("/vault/1", claims()), Some(DenyReason::WrongAudience));
        assert_eq!(
            run("/vault/1", app("https://other.example")),
            Some(DenyReason::WrongAudience)
        );
        assert!(Policy::parse(
            "rules:\n  - {prefix: /, allow: public, audiences: [https://a.example]}\n",
            "t"
        )
        .is_err());
        assert!(Policy::parse(
            "rules:\n  - {prefix: /, allow: authenticated, audiences: [vault]}\n",
            "t"
        )
        .is_err());
    }

    #[test]
    fn revoked_tokens_are_denied_even_when_otherwise_valid() {
        let mut set = RevocationSet::default();
        set.apply(&RevocationRecord {
            seq: 1,
            kind: RevocationKind::Session,
            subject: "s1".into(),
            issued_before: 0,
            created_at_ms: 0,
            expires_at: NOW + 900,
        });
        assert_eq!(
            denied(&run("/ai/x", verified(claims()), &set)),
            Some(DenyReason::Revoked)
        );
        let mut other = claims();
        other.sid = "s2".into();
        assert_eq!(denied(&run("/ai/x", verified(other), &set)), None);
    }

    fn decide_with(path: &str, c: AccessClaims, map: &PermissionMap) -> Option<DenyReason> {
        let d = decide(
            &policy(),
            RequestAttrs {
                method: "GET",
                host: "h",
                path,
            },
            || verified(c),
            &RevocationSet::default(),
            map,
            &expect(),
            NOW,
        );
        denied(&d)
    }

    #[test]
    fn step_up_rules_ask_for_a_second_factor_and_a_recent_sign_in() {
        let none = PermissionMap::default();
        let step_up = |path: &str, c: AccessClaims| match decide(
            &policy(),
            RequestAttrs {
                method: "GET",
                host: "h",
                path,
            },
            || verified(c),
            &RevocationSet::default(),
            &none,
            &expect(),
            NOW,
        ) {
            Decision::Deny {
                reason, step_up, ..
            } => Some((reason, step_up)),
            Decision::Allow { .. } => None,
        };
        let mut fresh_mfa = claims();
        fresh_mfa.amr = vec!["pwd".into(), "otp".into(), "mfa".into()];
        fresh_mfa.auth_time = Some(NOW - 300);
        assert_eq!(
            step_up("/ai/pay/x", fresh_mfa.clone()),
            None,
            "300 s is still in"
        );
        let mut old = fresh_mfa.clone();
        old.auth_time = Some(NOW - 301);
        assert_eq!(
            step_up("/ai/pay/x", old),
            Some((
                DenyReason::AuthenticationTooOld,
                Some(StepUp {
                    mfa: true,
                    max_age: Some(300)
                })
            ))
        );
        let mut unknown_age = fresh_mfa.clone();
        unknown_age.auth_time = None;
        assert_eq!(
            step_up("/ai/pay/x", unknown_age).map(|d| d.0),
            Some(DenyReason::AuthenticationTooOld)
        );
        let mut one_factor = fresh_mfa.clone();
        one_factor.amr = vec!["pwd".into()];
        assert_eq!(
            step_up("/ai/pay/x", one_factor.clone()).map(|d| d.0),
            Some(DenyReason::MfaRequired)
        );
        assert_eq!(step_up("/ai/chat", one_factor.clone()), None);
        // The role comes first: step-up would not help a non-admin.
        assert_eq!(
            step_up("/ai/ops/x", one_factor.clone()).map(|d| d.0),
            Some(DenyReason::MissingRole)
        );
        one_factor.roles = vec!["admin".into()];
        assert_eq!(
            step_up("/ai/ops/x", one_factor).map(|d| d.0),
            Some(DenyReason::MfaRequired)
        );
        assert_eq!(DenyReason::MfaRequired.http_status(), 401);
    }

    #[test]
    fn team_routes_need_membership_at_the_route_role() {
        let none = PermissionMap::default();
        let mut member = claims();
        member.teams.insert("blue".into(), "member".into());
        assert_eq!(decide_with("/org/blue/docs", member.clone(), &none), None);
        assert_eq!(
            decide_with("/org/red/docs", member.clone(), &none),
            Some(DenyReason::NotTeamMember)
        );
        // Settings need maintainer or above.
        assert_eq!(
            decide_with("/org/blue/settings/x", member.clone(), &none),
            Some(DenyReason::NotTeamMember)
        );
        for role in ["maintainer", "owner"] {
            let mut c = claims();
            c.teams.insert("blue".into(), role.into());
            assert_eq!(
                decide_with("/org/blue/settings/x", c, &none),
                None,
                "{role}"
            );
        }
        // An unknown team role grants nothing.
        let mut odd = claims();
        odd.teams.insert("blue".into(), "superuser".into());
        assert_eq!(
            decide_with("/org/blue/docs", odd, &none),
            Some(DenyReason::NotTeamMember)
        );
        // The global alternative.
        let mut admin = claims();
        admin.roles = vec!["admin".into()];
        assert_eq!(decide_with("/org/red/settings/x", admin, &none), None);
        // Too many teams to list: refused, with its own reason, unless listed.
        let mut overflow = claims();
        overflow.teams_overflow = true;
        assert_eq!(
            decide_with("/org/blue/docs", overflow, &none),
            Some(DenyReason::TeamClaimsOverflow)
        );
        assert_eq!(DenyReason::TeamClaimsOverflow.http_status(), 403);
    }

    #[test]
    fn permissions_expand_from_roles_through_the_map() {
        let mut c = claims();
        c.roles = vec!["model-admin".into()];
        let empty = PermissionMap::default();
        assert_eq!(
            decide_with("/models/x", c.clone(), &empty),
            Some(DenyReason::MissingPermission)
        );
        let mut map = PermissionMap {
            version: 2,
            ..Default::default()
        };
        map.roles
            .insert("model-admin".into(), vec!["models.manage".into()]);
        assert_eq!(decide_with("/models/x", c.clone(), &map), None);
        // Another role's grant is not this role's.
        c.roles = vec!["viewer".into()];
        assert_eq!(
            decide_with("/models/x", c, &map),
            Some(DenyReason::MissingPermission)
        );
    }
}
