//! The opaque `after` cursor of paged lists (users, audit): the last
//! item's key, base64url so clients do not build or edit it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::service::error::{Error, Result};

/// The cursor that continues after `key`.
pub fn next(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

/// The key a presented cursor continues after; none for the first page.
pub fn after(cursor: Option<&str>) -> Result<Option<String>> {
    match cursor {
        None | Some("") => Ok(None),
        Some(c) => URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(Some)
            .ok_or_else(not_a_cursor),
    }
}

pub fn not_a_cursor() -> Error {
    Error::bad_request("invalid_request", "after: not a cursor")
}
