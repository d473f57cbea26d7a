//! Request paths as the policy judges them.
//!
//! Envoy is configured to normalise the path before ext_authz (dot segments,
//! merged slashes, escaped slashes rejected), so the path the sidecar sees is
//! the one the upstream receives. The sidecar does not rely on that: a path
//! that an upstream could still rewrite into a different route is refused
//! (400) rather than judged, so a mesh that forgot the Envoy settings fails
//! closed instead of open.
//!
//! A path is canonical when it
//! - starts with `/` and has no empty (`//`), `.` or `..` segments;
//! - holds only RFC 3986 path characters, except `;` (path parameters, which
//!   servlet containers strip) and `\` (which some servers treat as `/`);
//! - percent-encodes nothing that normalisation would decode (unreserved
//!   characters such as `%2E` or `%61`) and nothing that changes the route
//!   when decoded once more (`%2F`, `%5C`, `%25`, `%3B`, control bytes).
//!
//! The query string (after `?`) is never part of the route.

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path must start with /")]
    NotAbsolute,
    #[error("empty, . or .. path segment")]
    DotOrEmptySegment,
    #[error("character not allowed in a path")]
    BadCharacter,
    #[error("percent-encoding that would change the route when decoded")]
    BadEscape,
}

/// The route part of a request target (everything before `?`), if canonical.
pub fn canonical(target: &str) -> Result<&str, PathError> {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    check(path)?;
    Ok(path)
}

/// Checks a path without a query string.
pub fn check(path: &str) -> Result<(), PathError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::NotAbsolute);
    };
    if rest.is_empty() {
        return Ok(());
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        // A trailing slash (empty last segment) is a different resource, not a trick.
        if (segment.is_empty() && i != last) || *segment == "." || *segment == ".." {
            return Err(PathError::DotOrEmptySegment);
        }
        check_segment(segment.as_bytes())?;
    }
    Ok(())
}

fn check_segment(bytes: &[u8]) -> Result<(), PathError> {
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let decoded = match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(h), Some(l)) => hex(*h).zip(hex(*l)).map(|(h, l)| h << 4 | l),
                _ => None,
            };
            let Some(decoded) = decoded else {
                return Err(PathError::BadEscape);
            };
            if is_unreserved(decoded)
                || matches!(decoded, b'/' | b'\\' | b'%' | b';')
                || decoded < 0x20
                || decoded == 0x7f
            {
                return Err(PathError::BadEscape);
            }
            i += 3;
            continue;
        }
        if !(is_unreserved(b) || b"!$&'()*+,=:@".contains(&b)) {
            return Err(PathError::BadCharacter);
        }
        i += 1;
    }
    Ok(())
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The authority as the policy compares it: without port, lower case, and
/// without a trailing dot (`API.Example.com.:443` → `api.example.com`).
pub fn host(authority: &str) -> String {
    let without_port = if authority.starts_with('[') {
        // IPv6 literal: the port, if any, follows the closing bracket.
        authority
            .find(']')
            .map_or(authority, |end| &authority[..=end])
    } else {
        authority
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(authority, |(h, _)| h)
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_pass_and_lose_their_query() {
        for ok in [
            "/",
            "/ai/chat",
            "/ai/admin/",
            "/a/b.c/d..e/.f/~u/x-y_z",
            "/a/%C3%A9t%C3%A9",
            "/a/%20b",
            "/a:b@c/!$&'()*+,=",
        ] {
            assert_eq!(canonical(ok), Ok(ok), "{ok}");
        }
        assert_eq!(canonical("/ai/x?role=admin&p=../../y"), Ok("/ai/x"));
        assert_eq!(canonical("/ai/x?"), Ok("/ai/x"));
    }

    #[test]
    fn anything_an_upstream_could_rewrite_is_refused() {
        let cases = [
            ("ai/admin", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("//ai/admin", PathError::DotOrEmptySegment),
            ("/ai//admin", PathError::DotOrEmptySegment),
            ("/ai/./admin", PathError::DotOrEmptySegment),
            ("/ai/x/../admin", PathError::DotOrEmptySegment),
            ("/ai/..", PathError::DotOrEmptySegment),
            ("/ai/.", PathError::DotOrEmptySegment),
            ("/ai/%2E%2E/admin", PathError::BadEscape),
            ("/ai/%2e/admin", PathError::BadEscape),
            ("/ai%2Fadmin", PathError::BadEscape),
            ("/ai%2fadmin", PathError::BadEscape),
            ("/ai%5Cadmin", PathError::BadEscape),
            ("/ai/%252e%252e/admin", PathError::BadEscape),
            ("/ai/%61dmin", PathError::BadEscape),
            ("/ai/admin%3Bx", PathError::BadEscape),
            ("/ai/admin%00", PathError::BadEscape),
            ("/ai/admin%", PathError::BadEscape),
            ("/ai/admin%4", PathError::BadEscape),
            ("/ai/admin%zz", PathError::BadEscape),
            ("/ai/admin;x/settings", PathError::BadCharacter),
            ("/ai/admin\\settings", PathError::BadCharacter),
            ("/ai\\..\\admin", PathError::BadCharacter),
            ("/ai/admin#x", PathError::BadCharacter),
            ("/ai/ad min", PathError::BadCharacter),
            ("/ai/adm\u{e9}n", PathError::BadCharacter),
            ("/ai/\tadmin", PathError::BadCharacter),
        ];
        for (path, want) in cases {
            assert_eq!(canonical(path), Err(want), "{path:?}");
        }
        // The query never rescues a bad path, and never spoils a good one.
        assert!(canonical("/ai/../admin?x").is_err());
        assert!(canonical("/ai/x?a=%2F..;\\").is_ok());
    }

    #[test]
    fn hosts_compare_without_port_case_or_trailing_dot() {
        assert_eq!(host("API.Example.com.:443"), "api.example.com");
        assert_eq!(host("api.example.com"), "api.example.com");
        assert_eq!(host("[::1]:8080"), "[::1]");
        assert_eq!(host("[::1]"), "[::1]");
        assert_eq!(host("h:abc"), "h:abc");
    }
}
