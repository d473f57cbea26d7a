//! The identities (GitHub) linked to an account, as its owner sees them.

use serde::Serialize;

use crate::service::context::Authenticated;
use crate::service::error::Result as ApiResult;
use crate::AppState;

#[derive(Serialize)]
pub struct IdentityView {
    pub provider: String,
    pub subject: String,
    pub login: String,
    pub email: Option<String>,
    pub linked_at: i64,
    pub last_used_at: i64,
}

/// The caller's linked identities.
pub async fn list(state: &AppState, auth: &Authenticated) -> ApiResult<Vec<IdentityView>> {
    let list = state.store.identities_of(&auth.user.id).await?;
    Ok(list
        .into_iter()
        .map(|i| IdentityView {
            provider: i.provider,
            subject: i.subject,
            login: i.login,
            email: i.email,
            linked_at: i.linked_at,
            last_used_at: i.last_used_at,
        })
        .collect())
}
