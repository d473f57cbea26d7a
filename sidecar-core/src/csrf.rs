//! Cookie-carried tokens and cross-site requests: when the token comes from
//! a cookie (`--token-cookie`), an unsafe request must come from a page of
//! the same origin. Browsers send `Origin` on such requests, and
//! `Sec-Fetch-Site`; a request with neither is not a browser's, and no page
//! can forge it.

use std::collections::HashMap;

/// Whether a request whose token came from a cookie may be judged.
/// `headers` as Envoy sends them (lower-case names, repeats joined by ',').
pub fn cookie_use_allowed(
    method: &str,
    scheme: &str,
    host: &str,
    headers: &HashMap<String, String>,
) -> bool {
    if matches!(method, "GET" | "HEAD" | "OPTIONS") {
        return true;
    }
    // `Origin: null` (a page with `Referrer-Policy: no-referrer`, or an
    // opaque context) proves nothing: `Sec-Fetch-Site` decides, and without
    // it the request is refused. The issuer applies the same rule.
    let opaque = headers.get("origin").is_some_and(|o| o.trim() == "null");
    if let Some(origin) = headers.get("origin").filter(|_| !opaque) {
        // A joined repeat is ambiguous: refused.
        return !origin.contains(',') && same_origin(origin, scheme, host);
    }
    match headers.get("sec-fetch-site").map(String::as_str) {
        Some(site) => matches!(site, "same-origin" | "none"),
        None => !opaque,
    }
}

fn default_port(scheme: &str) -> &'static str {
    if scheme.eq_ignore_ascii_case("https") {
        "443"
    } else {
        "80"
    }
}

/// `origin` (scheme://host[:port]) names the same origin as the request.
fn same_origin(origin: &str, scheme: &str, host: &str) -> bool {
    let Some((o_scheme, o_authority)) = origin.trim().split_once("://") else {
        return false;
    };
    let split = |authority: &str, scheme: &str| {
        let authority = authority.to_ascii_lowercase();
        match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                (h.to_string(), p.to_string())
            }
            _ => (authority.clone(), default_port(scheme).to_string()),
        }
    };
    let scheme = if scheme.is_empty() { "http" } else { scheme };
    o_scheme.eq_ignore_ascii_case(scheme) && split(o_authority, o_scheme) == split(host, scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn unsafe_cookie_requests_must_come_from_the_same_origin() {
        let ok = |method, pairs: &[(&str, &str)]| {
            cookie_use_allowed(method, "https", "app.example", &h(pairs))
        };
        assert!(
            ok("GET", &[("origin", "https://evil.example")]),
            "safe methods pass"
        );
        assert!(ok("POST", &[("origin", "https://app.example")]));
        assert!(ok("POST", &[("origin", "https://APP.example:443")]));
        assert!(
            !ok("POST", &[("origin", "http://app.example")]),
            "scheme differs"
        );
        assert!(!ok("POST", &[("origin", "https://app.example:8443")]));
        assert!(!ok("POST", &[("origin", "https://evil.example")]));
        assert!(!ok("DELETE", &[("origin", "null")]));
        assert!(!ok(
            "DELETE",
            &[("origin", "null"), ("sec-fetch-site", "cross-site")]
        ));
        assert!(ok(
            "DELETE",
            &[("origin", "null"), ("sec-fetch-site", "same-origin")]
        ));
        assert!(!ok(
            "POST",
            &[("origin", "https://app.example,https://evil.example")]
        ));
        assert!(ok("POST", &[("sec-fetch-site", "same-origin")]));
        assert!(!ok("POST", &[("sec-fetch-site", "cross-site")]));
        assert!(!ok("PUT", &[("sec-fetch-site", "same-site")]));
        assert!(ok("POST", &[]), "not a browser");
    }
}
