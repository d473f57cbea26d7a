//! What every front end shares: one HTTP request as a proxy sees it, the
//! decision, and what the proxy then does (set and remove headers, or reply
//! locally). The gRPC server, the forward-auth endpoint and the Envoy
//! dynamic module are adapters around this, so they cannot drift apart.

use std::collections::HashMap;

use crate::authz::Authorizer;
use crate::config::Settings;
use crate::decision::{render_denial, Decision, DenyReason, RequestAttrs};

/// A request as the proxy saw it. `headers`: lower-case names, repeated
/// headers joined with ',' (as Envoy's ext_authz sends them).
pub struct ProxyRequest<'a> {
    pub method: &'a str,
    pub scheme: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub headers: &'a HashMap<String, String>,
}

/// The credential (header or cookie, never an ambiguous pair), the
/// cookie's cross-site rule, then the policy.
pub async fn decide(authz: &Authorizer, request: &ProxyRequest<'_>, now_ms: i64) -> Decision {
    {
        let cookie = authz.settings.token_cookie.as_deref();
        let token = bearer_token(request.headers, cookie);
        let from_cookie =
            token.is_some() && !request.headers.contains_key("authorization") && cookie.is_some();
        if from_cookie
            && !crate::csrf::cookie_use_allowed(
                request.method,
                request.scheme,
                request.host,
                request.headers,
            )
        {
            return authz.refuse(DenyReason::CrossSiteRequest);
        }
        let attrs = RequestAttrs {
            method: request.method,
            host: request.host,
            path: request.path,
        };
        let scheme = request
            .headers
            .get("authorization")
            .and_then(|v| v.split_once(' '))
            .is_some_and(|(s, _)| s.eq_ignore_ascii_case("dpop"));
        let credential = crate::authz::Credential {
            token,
            dpop: crate::dpop::Presented {
                scheme,
                proof: request.headers.get("dpop").map(String::as_str),
            },
            target: crate::dpop::Target {
                origin: authz.settings.public_origin.as_deref(),
                scheme: request.scheme,
                host: request.host,
                path: request.path,
            },
        };
        authz.check(attrs, credential, now_ms).await
    }
}

/// Stands for a credential that is present but ambiguous: it fails
/// verification like any malformed token (401).
const AMBIGUOUS: &str = "";

/// Envoy lower-cases header names in CheckRequest (and joins repeated
/// headers with ','). Where the client offers more than one candidate — the
/// cookie twice, or a cookie and a header that differ — no token is chosen:
/// an upstream reading the other one would act on a credential never checked.
pub fn bearer_token<'a>(
    headers: &'a HashMap<String, String>,
    cookie: Option<&str>,
) -> Option<&'a str> {
    let from_header = match headers.get("authorization") {
        Some(value) => {
            let (scheme, token) = value.split_once(' ')?;
            // DPoP (RFC 9449) carries a token as Bearer does; its proof is
            // checked once the token says it is bound.
            let ok = (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("dpop"))
                && !token.trim().is_empty();
            Some(if ok { token.trim() } else { AMBIGUOUS })
        }
        None => None,
    };
    let from_cookie = cookie.and_then(|name| {
        let mut found = headers
            .get("cookie")?
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.trim());
        let first = found.next()?;
        Some(if found.next().is_some() {
            AMBIGUOUS
        } else {
            first
        })
    });
    match (from_header, from_cookie) {
        (Some(h), Some(c)) if h != c => Some(AMBIGUOUS),
        (Some(h), _) => Some(h),
        (None, c) => c,
    }
}

/// What the proxy does with a decision.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Forward upstream with these headers set (replacing every client
    /// copy) and these removed.
    Allow {
        set: Vec<(String, String)>,
        remove: Vec<String>,
    },
    /// Reply locally.
    Deny {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
}

/// `headers`: the request's, as in [`ProxyRequest`] (its `cookie` is
/// rewritten without the issuer's cookies).
pub fn answer(
    settings: &Settings,
    decision: &Decision,
    headers: &HashMap<String, String>,
) -> Answer {
    match decision {
        Decision::Allow { identity, .. } => {
            let mut set = Vec::new();
            let mut remove = Vec::new();
            match without_issuer_cookies(&settings.strip_cookies, headers) {
                Some(rest) if rest.is_empty() => remove.push("cookie".into()),
                Some(rest) => set.push(("cookie".into(), rest)),
                None => {}
            }
            match identity {
                Some(claims) => {
                    set.push((settings.user_id_header.clone(), claims.sub.clone()));
                    set.push((settings.session_header.clone(), claims.sid.clone()));
                    if claims.client_id.is_empty() {
                        remove.push(settings.client_id_header.clone());
                    } else {
                        set.push((settings.client_id_header.clone(), claims.client_id.clone()));
                    }
                    match &claims.act {
                        Some(act) => {
                            set.push((settings.actor_id_header.clone(), act.client_id.clone()))
                        }
                        None => remove.push(settings.actor_id_header.clone()),
                    }
                    if claims.roles.is_empty() {
                        // No empty value: the client's copies go instead.
                        remove.push(settings.roles_header.clone());
                    } else {
                        set.push((settings.roles_header.clone(), claims.roles.join(",")));
                    }
                }
                // A public route: nobody is vouched for, so no client copy stays.
                None => remove.extend([
                    settings.user_id_header.clone(),
                    settings.roles_header.clone(),
                    settings.session_header.clone(),
                    settings.client_id_header.clone(),
                    settings.actor_id_header.clone(),
                ]),
            }
            if settings.strip_authorization {
                remove.push("authorization".into());
            }
            Answer::Allow { set, remove }
        }
        Decision::Deny {
            reason,
            allow,
            retry_after,
            step_up,
            ..
        } => {
            let d = render_denial(*reason, allow.as_deref(), *retry_after, *step_up);
            Answer::Deny {
                status: d.status,
                headers: d
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                body: d.body,
            }
        }
    }
}

/// The request's `cookie` header without the cookies named in `strip`
/// (names compared without case, as browsers compare the `__Host-`
/// prefix), or `None` when it holds none of them and may go on as it came.
/// Envoy joins repeated `cookie` headers with ',', so a name may also follow
/// a comma inside what looks like one pair's value.
pub fn without_issuer_cookies(
    strip: &[String],
    headers: &HashMap<String, String>,
) -> Option<String> {
    let value = headers.get("cookie")?;
    let stripped = |piece: &str| {
        let name = piece.split_once('=').map_or(piece, |(k, _)| k).trim();
        strip.iter().any(|s| s.eq_ignore_ascii_case(name))
    };
    if !value.split([';', ',']).any(stripped) {
        return None;
    }
    // Pairs split on ';' only: browsers do put ',' in values, and splitting
    // there would turn `pref=en,session=x` into two cookies. Within a pair,
    // only a piece that names an issuer cookie after a ',' goes.
    // On every allow for a browser: two buffers, no allocation per pair.
    let mut out = String::with_capacity(value.len());
    let mut pair_buf = String::new();
    for pair in value.split(';') {
        pair_buf.clear();
        for piece in pair.split(',').filter(|p| !stripped(p)) {
            if !pair_buf.is_empty() {
                pair_buf.push(',');
            }
            pair_buf.push_str(piece);
        }
        let kept = pair_buf.trim();
        if !kept.is_empty() {
            if !out.is_empty() {
                out.push_str("; ");
            }
            out.push_str(kept);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn strip(cookie: &str) -> Option<String> {
        let names = [
            "__Host-refresh_token".to_string(),
            "__Secure-page_token".to_string(),
        ];
        let headers = HashMap::from([("cookie".to_string(), cookie.to_string())]);
        without_issuer_cookies(&names, &headers)
    }

    #[test]
    fn issuer_cookies_are_removed_and_others_kept() {
        assert_eq!(strip("a=1; b=2"), None);
        assert_eq!(
            strip("a=1; __Host-refresh_token=r; b=2").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(strip("__Host-refresh_token=r").as_deref(), Some(""));
        // Case, spacing, a repeated header joined with ',' and a bare name.
        assert_eq!(
            strip(" __host-REFRESH_token = r ;a=1,__Secure-page_token=p; __Secure-page_token")
                .as_deref(),
            Some("a=1")
        );
        // A ',' inside a value stays one value (no cookie is made of it).
        assert_eq!(
            strip("a=x,y; __Host-refresh_token=r").as_deref(),
            Some("a=x,y")
        );
        assert_eq!(
            strip("pref=en,session=x; __Host-refresh_token=r").as_deref(),
            Some("pref=en,session=x")
        );
        // A longer name is another cookie.
        assert_eq!(strip("__Host-refresh_token2=r"), None);
    }

    #[test]
    fn one_credential_or_none() {
        let c = Some("token");
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Bearer a.b.c")]), c),
            Some("a.b.c")
        );
        assert_eq!(
            bearer_token(&headers(&[("cookie", "x=1; token=a.b.c")]), c),
            Some("a.b.c")
        );
        assert_eq!(
            bearer_token(
                &headers(&[("authorization", "Bearer a.b.c"), ("cookie", "token=a.b.c")]),
                c
            ),
            Some("a.b.c"),
            "the same token twice is one credential"
        );
        for ambiguous in [
            headers(&[("cookie", "token=a.b.c; token=d.e.f")]),
            headers(&[("authorization", "Bearer a.b.c"), ("cookie", "token=d.e.f")]),
            headers(&[("authorization", "Basic dXNlcjpwYXNz")]),
        ] {
            assert_eq!(
                bearer_token(&ambiguous, c),
                Some(AMBIGUOUS),
                "{ambiguous:?}"
            );
        }
        assert_eq!(
            bearer_token(&headers(&[("cookie", "token=a.b.c")]), None),
            None
        );
        assert_eq!(bearer_token(&headers(&[]), c), None);
    }
}
