//! The user's own profile: display name, avatar and metadata. The metadata
//! is a size-bounded JSON object the user may edit; `admin_metadata` is set
//! only by admins and shown to the user read-only.

use serde_json::{json, Value};

use crate::service::context::{Authenticated, Client};
use crate::service::error::{Error as ApiError, Kind, Result as ApiResult};
use crate::store::AuditEvent;
use crate::store::{ProfileChange, User};
use crate::AppState;

/// Serialized size of a metadata object at most.
pub const MAX_METADATA_BYTES: usize = 4096;
const MAX_NAME_CHARS: usize = 200;
const MAX_AVATAR_URL: usize = 2048;

fn unprocessable(code: &'static str, message: String) -> ApiError {
    ApiError::new(Kind::Unprocessable, code, message)
}

/// A JSON object of bounded size, stored compact.
pub fn checked_metadata(value: &Value) -> ApiResult<String> {
    if !value.is_object() {
        return Err(unprocessable(
            "invalid_metadata",
            "metadata must be a JSON object".into(),
        ));
    }
    let text = value.to_string();
    if text.len() > MAX_METADATA_BYTES {
        return Err(unprocessable(
            "invalid_metadata",
            format!("metadata is at most {MAX_METADATA_BYTES} bytes as JSON"),
        ));
    }
    Ok(text)
}

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| json!({}))
}

pub fn view(user: &User) -> Value {
    json!({
        "id": user.id,
        "email": user.email,
        "email_verified": user.email_verified_at.is_some(),
        "name": user.name,
        "avatar_url": user.avatar_url,
        "metadata": parsed(&user.metadata),
        "admin_metadata": parsed(&user.admin_metadata),
    })
}

/// Changes the caller's profile: absent fields stay, `Some(None)` clears
/// name and avatar. The profile as it now is.
pub async fn update(
    state: &AppState,
    client: &Client,
    auth: &Authenticated,
    name: Option<Option<String>>,
    avatar_url: Option<Option<String>>,
    metadata_in: Option<Value>,
) -> ApiResult<Value> {
    let name = name.map(|n| n.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()));
    if let Some(Some(n)) = &name {
        if n.chars().count() > MAX_NAME_CHARS || n.chars().any(char::is_control) {
            return Err(unprocessable(
                "invalid_name",
                format!("name: at most {MAX_NAME_CHARS} characters, no control characters"),
            ));
        }
    }
    if let Some(Some(url)) = &avatar_url {
        let ok = url.len() <= MAX_AVATAR_URL
            && oauth2::url::Url::parse(url)
                .is_ok_and(|u| u.scheme() == "https" && u.host().is_some());
        if !ok {
            return Err(unprocessable(
                "invalid_avatar_url",
                format!("avatar_url: an https URL of at most {MAX_AVATAR_URL} bytes"),
            ));
        }
    }
    let metadata = metadata_in.as_ref().map(checked_metadata).transpose()?;
    let changed: Vec<&str> = [
        ("name", name.is_some()),
        ("avatar_url", avatar_url.is_some()),
        ("metadata", metadata.is_some()),
    ]
    .iter()
    .filter(|(_, c)| *c)
    .map(|(f, _)| *f)
    .collect();
    let change = ProfileChange {
        name,
        avatar_url,
        metadata,
        admin_metadata: None,
    };
    let user = state
        .store
        .update_profile(&auth.user.id, &change)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    state
        .audit(
            AuditEvent::new(state.now().ms, "profile_updated")
                .user(&user)
                .client(client)
                .meta(serde_json::json!({"changed": changed})),
        )
        .await;
    Ok(view(&user))
}
