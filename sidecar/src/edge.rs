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

impl Authorizer {
    /// The credential (header or cookie, never an ambiguous pair), the
    /// cookie's cross-site rule, then the policy.
    pub async fn decide(&self, request: &ProxyRequest<'_>, now_ms: i64) -> Decision {
        let cookie = self.settings.token_cookie.as_deref();
        let token = crate::grpc::bearer_token(request.headers, cookie);
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
            return self.refuse(DenyReason::CrossSiteRequest);
        }
        let attrs = RequestAttrs {
            method: request.method,
            host: request.host,
            path: request.path,
        };
        self.check(attrs, token, now_ms).await
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
}
