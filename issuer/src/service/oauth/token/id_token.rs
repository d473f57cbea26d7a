//! What a signed-in client's session answers: the ID token with the
//! access token, and `userinfo`.

use serde::Serialize;

use super::types::TokenResponse;
use crate::domain::clock::Now;
use crate::domain::oauth::{at_hash, mint_id_token};
use crate::service::context::Authenticated;
use crate::service::error::{Error, Result};
use crate::service::grant::Tokens;
use crate::store::{OAuthClient, User};
use crate::AppState;

/// What the ID token tells of the session.
#[derive(Clone, Copy)]
pub(super) struct Issued<'a> {
    pub(super) session_id: &'a str,
    pub(super) amr: &'a str,
    pub(super) auth_time: i64,
    pub(super) nonce: Option<&'a str>,
}

pub(super) async fn respond(
    state: &AppState,
    oauth_client: &OAuthClient,
    user: &User,
    issued: Issued<'_>,
    scope: &str,
    tokens: Tokens,
    now: Now,
) -> Result<TokenResponse> {
    let id_token = if has_scope(scope, "openid") {
        Some(
            id_token(
                state,
                oauth_client,
                user,
                issued,
                scope,
                (&tokens.access_token, tokens.expires_in),
                now,
            )
            .await?,
        )
    } else {
        None
    };
    Ok(TokenResponse {
        access_token: tokens.access_token,
        token_type: "Bearer",
        expires_in: tokens.expires_in,
        // A third-party application stays signed in only if allowed to
        // (`offline_access`, which its consent page names), and a client
        // registered without the refresh grant never holds a refresh token.
        refresh_token: tokens
            .refresh
            .filter(|_| oauth_client.may_use("refresh_token"))
            .filter(|_| oauth_client.first_party || has_scope(scope, "offline_access"))
            .map(|r| r.token),
        scope: scope.to_string(),
        id_token,
        issued_token_type: None,
    })
}

fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split(' ').any(|s| s == wanted)
}

#[derive(Serialize)]
struct IdClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    acr: &'a str,
    amr: Vec<&'a str>,
    sid: &'a str,
    at_hash: String,
    #[serde(flatten)]
    profile: Profile<'a>,
}

/// The claims `profile` and `email` scopes release (ID token, userinfo).
#[derive(Serialize, Default)]
pub struct Profile<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    picture: Option<&'a str>,
}

fn profile<'a>(user: &'a User, scope: &str) -> Profile<'a> {
    let mut p = Profile::default();
    if has_scope(scope, "email") {
        p.email = Some(&user.email);
        p.email_verified = Some(user.email_verified_at.is_some());
    }
    if has_scope(scope, "profile") {
        p.name = user.name.as_deref();
        p.picture = user.avatar_url.as_deref();
    }
    p
}

async fn id_token(
    state: &AppState,
    oauth_client: &OAuthClient,
    user: &User,
    issued: Issued<'_>,
    scope: &str,
    (access_token, lifetime): (&str, i64),
    now: Now,
) -> Result<String> {
    let key = crate::service::keys::id_token_key(state).await?;
    let claims = IdClaims {
        iss: &state.settings.issuer_url,
        sub: &user.id,
        aud: &oauth_client.id,
        // No longer than the access token it comes with (the client's
        // lifetime, when it set a shorter one).
        exp: now.secs() + lifetime,
        iat: now.secs(),
        auth_time: issued.auth_time,
        nonce: issued.nonce,
        acr: crate::domain::mfa::acr_of(issued.amr),
        amr: issued.amr.split_whitespace().collect(),
        sid: issued.session_id,
        at_hash: at_hash(key.alg, access_token),
        profile: profile(user, scope),
    };
    Ok(mint_id_token(&key, &claims)?)
}

/// `userinfo` (OIDC Core §5.3): the subject and what the token's scope
/// releases. Needs `openid`.
pub fn userinfo(auth: &Authenticated) -> Result<serde_json::Value> {
    let scope = auth.session.scope.as_deref().unwrap_or("");
    if !has_scope(scope, "openid") {
        let mut e = Error::forbidden("the token's scope lacks openid");
        e.code = "insufficient_scope";
        return Err(e);
    }
    let mut body = serde_json::to_value(profile(&auth.user, scope)).map_err(Error::internal)?;
    if let Some(map) = body.as_object_mut() {
        map.insert("sub".into(), auth.user.id.clone().into());
    }
    Ok(body)
}
