//! Team names and what a membership change means for the caller.

use crate::service::error::{Error as ApiError, Kind, Result as ApiResult};
use crate::store::MembershipChange;

/// A team slug: lower-case letters, digits and inner dashes, 1 to 63.
/// Slugs name teams in paths and policies: lower-case letters, digits and
/// inner hyphens, at most 63.
pub fn valid_slug(slug: &str) -> bool {
    let b = slug.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first() != Some(&b'-')
        && b.last() != Some(&b'-')
}

/// A membership change's outcome as the API (and the CLI) answers it.
pub fn membership_result(change: MembershipChange) -> ApiResult<Vec<auth_types::RevocationRecord>> {
    match change {
        MembershipChange::Done(records) => Ok(records),
        MembershipChange::NoSuchTeam => Err(ApiError::not_found("no such team")),
        MembershipChange::NoSuchUser => Err(ApiError::not_found("no such user")),
        MembershipChange::NotAMember => Err(ApiError::not_found("not a member of this team")),
        MembershipChange::LastOwner => Err(ApiError::new(
            Kind::Conflict,
            "last_owner",
            "a team keeps at least one owner; make another owner first",
        )),
    }
}
