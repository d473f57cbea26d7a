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
//!   when decoded once more (`%2F`, `%5C`, `%25`, `%3B`, control bytes);
//! - percent-encodes non-ASCII only as valid, shortest-form UTF-8 (no
//!   overlong `%C0%AE`) and never as a character that Unicode compatibility
//!   normalisation or Windows best-fit mapping turns into ASCII (fullwidth
//!   and small forms, dot leaders, odd spaces);
//! - has no segment ending in `.` or white space (`admin.`, `admin%20`),
//!   which Windows-style path handling strips.
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
    #[error("segment ending in a dot or white space")]
    TrailingDotOrSpace,
    #[error("lower-case or extension-less spellings of the path reach another rule")]
    Ambiguous,
    #[error("not a valid host")]
    BadHost,
    #[error("not an upper-case HTTP method")]
    BadMethod,
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
        if segment.ends_with('.') || segment.ends_with("%20") || segment.ends_with("%09") {
            return Err(PathError::TrailingDotOrSpace);
        }
    }
    Ok(())
}

fn check_segment(bytes: &[u8]) -> Result<(), PathError> {
    let mut i = 0;
    // Escaped bytes >= 0x80 of the current run, checked as UTF-8 when it ends.
    let mut high: Vec<u8> = Vec::new();
    while i < bytes.len() {
        if bytes[i] != b'%' && !high.is_empty() {
            check_non_ascii(&high)?;
            high.clear();
        }
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
            if decoded >= 0x80 {
                high.push(decoded);
            } else if !high.is_empty() {
                check_non_ascii(&high)?;
                high.clear();
            }
            i += 3;
            continue;
        }
        if !(is_unreserved(b) || b"!$&'()*+,=:@".contains(&b)) {
            return Err(PathError::BadCharacter);
        }
        i += 1;
    }
    if !high.is_empty() {
        check_non_ascii(&high)?;
    }
    Ok(())
}

/// Valid shortest-form UTF-8 (Rust's decoder refuses overlong forms and
/// surrogates), and no character that folds into ASCII under NFKC or
/// Windows best-fit mapping.
fn check_non_ascii(bytes: &[u8]) -> Result<(), PathError> {
    let text = std::str::from_utf8(bytes).map_err(|_| PathError::BadEscape)?;
    let folds_to_ascii = |c: char| {
        matches!(c as u32,
            0x00A0 | 0x00AD | 0x2000..=0x200F | 0x2024..=0x2026 | 0x2028..=0x202F
            | 0x2044 | 0x205F..=0x206F | 0x2215 | 0x2216 | 0x3000 | 0xFE50..=0xFE6F
            | 0xFEFF | 0xFF00..=0xFFEF)
    };
    if text.chars().any(folds_to_ascii) {
        return Err(PathError::BadEscape);
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
/// without a trailing dot (`API.Example.com.:443` → `api.example.com`);
/// `None` unless it is a plain host name or IP literal with an optional
/// numeric port (no user info, commas, spaces, …).
pub fn host(authority: &str) -> Option<String> {
    let (name, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if inside.is_empty()
            || !inside
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        let port = match after {
            "" => None,
            more => Some(more.strip_prefix(':')?),
        };
        (&authority[..inside.len() + 2], port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if !name.starts_with('[') {
        let labels_ok = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !labels_ok {
            return None;
        }
    }
    Some(name.to_ascii_lowercase())
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
        assert_eq!(
            host("API.Example.com.:443").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(host("api.example.com").as_deref(), Some("api.example.com"));
        assert_eq!(host("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(host("[::1]").as_deref(), Some("[::1]"));
        assert_eq!(host("10.0.0.1:80").as_deref(), Some("10.0.0.1"));
        for bad in [
            "h:abc",
            "x@admin.example.com",
            "a.com,admin.example.com",
            "a b",
            "",
            ".",
            "a..b",
            "h:",
            "h:123456",
            "[::1]x",
            "[zz]",
            "admin.example.com:80:80",
        ] {
            assert_eq!(host(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn spellings_that_windows_or_unicode_folding_rewrite_are_refused() {
        for (path, want) in [
            ("/ai/admin./settings", PathError::TrailingDotOrSpace),
            ("/ai/admin.", PathError::TrailingDotOrSpace),
            ("/ai/admin%20/settings", PathError::TrailingDotOrSpace),
            ("/ai/admin%09", PathError::BadEscape),
            ("/ai/x/%C0%AE%C0%AE/admin", PathError::BadEscape),
            ("/ai/x%C0%AF..%C0%AFadmin", PathError::BadEscape),
            ("/ai/x/%EF%BC%8E%EF%BC%8E/admin", PathError::BadEscape),
            ("/ai/%EF%BD%81dmin", PathError::BadEscape),
            ("/ai/%E2%80%A4%E2%80%A4/admin", PathError::BadEscape),
            ("/ai/%C3", PathError::BadEscape),
            ("/ai/%ED%A0%80", PathError::BadEscape),
        ] {
            assert_eq!(canonical(path), Err(want), "{path:?}");
        }
        // Real non-ASCII text and dotted names stay fine.
        for ok in [
            "/docs/%C3%A9t%C3%A9",
            "/docs/%E6%97%A5%E6%9C%AC",
            "/static/app.js",
            "/v1.2/x",
        ] {
            assert_eq!(canonical(ok), Ok(ok), "{ok:?}");
        }
    }
}
