//! Who may administer: the `admin` role, proved once per request into an
//! [`Admin`] that every admin rule takes, so none can forget the check.

use crate::service::context::Authenticated;
use crate::service::error::{Error, Result};
use crate::AppState;

/// A caller holding the `admin` role. Only [`require_admin`] makes one.
#[derive(Clone)]
pub struct Admin(Authenticated);

/// The caller, if they hold the `admin` role (exactly that role).
pub fn require_admin(auth: Authenticated) -> Result<Admin> {
    if auth.user.roles.iter().any(|r| r == "admin") {
        Ok(Admin(auth))
    } else {
        Err(Error::forbidden("the admin role is required"))
    }
}

impl Admin {
    /// The admin as a caller (for reads, and the audit trail).
    pub fn auth(&self) -> &Authenticated {
        &self.0
    }

    /// The admin, if they authenticated recently, with their second factor
    /// when they have one (RFC 9470 challenge otherwise): a stolen or
    /// forgotten admin token alone must not disable users, reset factors,
    /// grant roles or touch keys. Reads need only the role.
    pub async fn recent(&self, state: &AppState) -> Result<&Authenticated> {
        crate::service::factors::require_recent_for(state, &self.0, state.now(), "an admin action")
            .await?;
        Ok(&self.0)
    }
}
