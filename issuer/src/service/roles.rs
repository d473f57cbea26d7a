//! Role and permission names, and the roles a user may hold.

use crate::service::error::{Error as ApiError, Kind, Result as ApiResult};

/// The longest role or permission name.
pub const MAX_NAME_LEN: usize = 128;
/// How many roles a user may hold.
pub const MAX_ROLES: usize = 64;

/// A role or permission name: 1 to 128 of A-Z a-z 0-9 - _ . :
/// Role and permission names: matched literally by sidecar policies.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

pub fn check_roles(roles: &[String]) -> ApiResult<()> {
    let unprocessable = |m: String| ApiError::new(Kind::Unprocessable, "invalid_roles", m);
    if roles.len() > MAX_ROLES {
        return Err(unprocessable(format!("at most {MAX_ROLES} roles")));
    }
    for role in roles {
        // At least one letter or digit: `.` or `::` names nothing.
        let ok = role.bytes().any(|b| b.is_ascii_alphanumeric())
            && role.len() <= MAX_NAME_LEN
            && role
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if !ok {
            return Err(unprocessable(format!(
                "role {role:?}: 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 - _ . : with a letter or digit"
            )));
        }
    }
    Ok(())
}
