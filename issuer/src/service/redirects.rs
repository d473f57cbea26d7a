//! Where a finished flow may send the browser: only an allowed origin.

use oauth2::url::Url;

use crate::service::error::{Error as ApiError, Result as ApiResult};
use crate::AppState;

/// `return_to` must be an absolute http(s) URL on an allow-listed origin.
/// What is checked is the parsed form, and that is what the redirect uses.
pub fn allowed_return_to(state: &AppState, raw: &str) -> ApiResult<String> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_return_to",
            "return_to must be a URL on an allowed origin (--allowed-return-origins)",
        )
    };
    let url = Url::parse(raw).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(invalid());
    }
    let origin = url.origin().ascii_serialization();
    let allowed = state.settings.allowed_return_origins.iter().any(|o| {
        Url::parse(o).is_ok_and(|allowed| allowed.origin().ascii_serialization() == origin)
    });
    if !allowed {
        return Err(invalid());
    }
    Ok(url.to_string())
}

/// Where the hosted pages may go after a sign-in: as [`allowed_return_to`],
/// and also the authorization endpoint's own continuation (a relative
/// `/auth/ui/authorize?…`, which only the pages can follow) and the device
/// verification page (`/auth/ui/device?user_code=…`).
pub fn allowed_page_return_to(state: &AppState, raw: &str) -> ApiResult<String> {
    if let Some(query) = raw.strip_prefix(crate::service::oauth::authorize::AUTHORIZE_PATH) {
        if query.starts_with('?')
            && !query.contains(['#', '\\'])
            && !query.chars().any(char::is_control)
        {
            return Ok(raw.to_string());
        }
    }
    // The device verification page, with a user code or without.
    if let Some(rest) = raw.strip_prefix(crate::service::oauth::device::DEVICE_PATH) {
        let code = rest.strip_prefix("?user_code=");
        if rest.is_empty()
            || code.is_some_and(|c| {
                c.len() <= 16 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
        {
            return Ok(raw.to_string());
        }
    }
    allowed_return_to(state, raw)
}
