//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): an
//! application signs the user out of the session it holds, and may send
//! the browser back to a post-logout URI it registered.

use auth_types::Audience;

use crate::service::context::Client;
use crate::service::error::{Error, Result};
use crate::store::{AuditEvent, OAuthClient};
use crate::AppState;

#[derive(Debug, Default, serde::Deserialize)]
pub struct EndSession {
    pub id_token_hint: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
    pub client_id: Option<String>,
}

#[derive(Debug)]
pub enum Ended {
    /// Back to the application's registered post-logout URI.
    Redirect(String),
    /// Nowhere to go back to: the issuer's page says so.
    Page { client_name: Option<String> },
}

fn bad(message: &str) -> Error {
    Error::bad_request("invalid_request", message)
}

/// Ends the application's session that `id_token_hint` names (its `sid`,
/// if the session is that client's and that user's). A post-logout URI
/// must be one the client registered, exactly; a hint the issuer did not
/// sign, or one for another client than `client_id`, is refused.
pub async fn end_session(state: &AppState, client: &Client, req: &EndSession) -> Result<Ended> {
    let hint = match req.id_token_hint.as_deref() {
        None => None,
        Some(t) => {
            let keys = state.keys.snapshot();
            let hint = auth_types::jws::verify_id_token(t, &keys.verifying)
                .map_err(|_| bad("id_token_hint is not an ID token of this issuer"))?;
            if hint.iss != state.settings.issuer_url {
                return Err(bad("id_token_hint is not an ID token of this issuer"));
            }
            Some(hint)
        }
    };
    let hinted_client = hint.as_ref().and_then(|h| match &h.aud {
        Audience::One(a) => Some(a.clone()),
        Audience::Many(list) if list.len() == 1 => list.first().cloned(),
        Audience::Many(_) => None,
    });
    let client_id = match (hinted_client, req.client_id.clone()) {
        (Some(a), Some(b)) if a != b => {
            return Err(bad("client_id differs from the id_token_hint's audience"))
        }
        (a, b) => a.or(b),
    };
    let oauth_client: Option<OAuthClient> = match &client_id {
        Some(id) => Some(
            state
                .store
                .client(id)
                .await?
                .ok_or_else(|| bad("unknown client"))?,
        ),
        None => None,
    };
    let back = match (&req.post_logout_redirect_uri, &oauth_client) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(bad(
                "post_logout_redirect_uri needs id_token_hint or client_id",
            ))
        }
        (Some(uri), Some(c)) => {
            if !c.post_logout_uris.iter().any(|u| u == uri) {
                return Err(bad(
                    "post_logout_redirect_uri is not registered for this client",
                ));
            }
            Some(uri.clone())
        }
    };
    if let (Some(hint), Some(c)) = (&hint, &oauth_client) {
        if let Some(sid) = &hint.sid {
            let session = state.store.session(sid).await?;
            let theirs = session.is_some_and(|s| {
                s.client_id.as_deref() == Some(c.id.as_str()) && s.user_id == hint.sub
            });
            if theirs {
                let now = state.now();
                let record = state
                    .store
                    .revoke_session(sid, "rp_logout", now.ms, state.revocation_expiry(now))
                    .await?;
                let event = AuditEvent::new(now.ms, "logout")
                    .actor(&hint.sub)
                    .session(sid)
                    .client(client)
                    .meta(serde_json::json!({"client_id": c.id, "by": "rp_logout"}));
                state
                    .sessions_ended(record.into_iter().collect(), event)
                    .await;
            }
        }
    }
    Ok(match back {
        Some(uri) => {
            let mut url = oauth2::url::Url::parse(&uri).map_err(Error::internal)?;
            if let Some(s) = &req.state {
                url.query_pairs_mut().append_pair("state", s);
            }
            Ended::Redirect(url.to_string())
        }
        None => Ended::Page {
            client_name: oauth_client.map(|c| c.name),
        },
    })
}
