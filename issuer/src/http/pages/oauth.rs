//! The authorization endpoint (OAuth 2.1 §4.1.1, OIDC Core §3.1.2) as a
//! hosted page: the browser's session decides, the sign-in and consent
//! pages stand in between, and the answer goes back to the client.

use axum::extract::RawQuery;
use axum::http::Uri;

use super::*;
use crate::service::oauth::authorize::{self, Answer, AuthorizeRequest, Refusal, Valid};

/// The request's parameters; each at most once (RFC 6749 §3.1).
fn parse(raw: &str) -> Result<AuthorizeRequest, ApiError> {
    let mut req = AuthorizeRequest::default();
    for (k, v) in oauth2::url::form_urlencoded::parse(raw.as_bytes()) {
        let slot = match k.as_ref() {
            "response_type" => &mut req.response_type,
            "client_id" => &mut req.client_id,
            "redirect_uri" => &mut req.redirect_uri,
            "scope" => &mut req.scope,
            "state" => &mut req.state,
            "nonce" => &mut req.nonce,
            "code_challenge" => &mut req.code_challenge,
            "code_challenge_method" => &mut req.code_challenge_method,
            "prompt" => &mut req.prompt,
            "max_age" => &mut req.max_age,
            "response_mode" => &mut req.response_mode,
            "request" => &mut req.request,
            "request_uri" => &mut req.request_uri,
            // One resource per request (RFC 8707 allows several; a token
            // here is for one audience).
            "resource" => &mut req.resource,
            "acr_values" => &mut req.acr_values,
            "auth_after" => &mut req.auth_after,
            // Unknown parameters are ignored (RFC 6749 §3.1); `decision`
            // is the consent form's own.
            _ => continue,
        };
        if slot.is_some() {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("{k} is given more than once"),
            ));
        }
        *slot = Some(v.into_owned());
    }
    Ok(req)
}

/// `form`: the consent form's post, whose redirects `form-action 'self'`
/// would block: a page goes on to the client instead.
async fn validated(state: &AppState, raw: &str, form: bool) -> Result<Valid, Response> {
    let req = match parse(raw) {
        Ok(r) => r,
        Err(e) => return Err(error_page("Sign-in request refused", e).await),
    };
    match authorize::validate(state, &req).await {
        Ok(v) => Ok(v),
        Err(Refusal::Shown(e)) => Err(error_page("Sign-in request refused", e).await),
        Err(Refusal::Redirect(to)) if form => Err(back_to_client(&to)),
        Err(Refusal::Redirect(to)) => Err(Redirect::to(&to).into_response()),
    }
}

#[utoipa::path(get, path = "/auth/ui/authorize", operation_id = "pages_authorize", tag = "pages",
    summary = "OAuth 2.1 / OpenID Connect authorization endpoint",
    description = "Authorization code flow with PKCE (S256). A signed-in browser goes back to the client's redirect URI with `code`, `state` and `iss`; otherwise through the sign-in page (and a consent page for third-party clients).",
    responses(
        (status = 200, description = "A consent page, or a page that moves on by itself", content_type = "text/html", body = String),
        (status = 303, description = "To the client's redirect URI, or to the sign-in page"),
        (status = 400, description = "Unknown client or redirect URI: shown, never redirected", content_type = "text/html", body = String),
    ))]
pub async fn authorize(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> Response {
    let raw = raw.unwrap_or_default();
    let valid = match validated(&state, &raw, false).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let who = page_auth(&state, &headers).await.ok();
    // Arriving from the client's site, the browser withheld the SameSite=
    // Strict cookies: go on once from our own page, which sends them.
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site");
    if who.is_none() && cross_site {
        let again = uri
            .path_and_query()
            .map_or_else(|| authorize::AUTHORIZE_PATH.to_string(), |p| p.to_string());
        return landing("Signing in", "Continuing to sign in.", &again);
    }
    answer(&state, &client, &valid, who.as_ref()).await
}

async fn answer(
    state: &AppState,
    client: &Client,
    valid: &Valid,
    who: Option<&Authenticated>,
) -> Response {
    match authorize::decide(state, client, valid, who).await {
        Ok(Answer::Redirect(to)) => Redirect::to(&to).into_response(),
        Ok(Answer::SignIn { continue_at }) => {
            let mut q = oauth2::url::form_urlencoded::Serializer::new(String::new());
            q.append_pair("return_to", &continue_at);
            Redirect::to(&format!("/auth/ui/login?{}", q.finish())).into_response()
        }
        Ok(Answer::Consent {
            client_name,
            scope,
            token,
        }) => consent_page(valid, &client_name, &scope, &token),
        Err(e) => error_page("Sign-in request failed", e).await,
    }
}

/// What a scope lets an application do, in words.
pub(super) fn describe(scope: &str) -> String {
    match scope {
        "openid" => "Know who you are".into(),
        "profile" => "See your name and picture".into(),
        "email" => "See your email address".into(),
        "offline_access" => "Stay signed in when you are away".into(),
        other => format!("Use {other}"),
    }
}

fn consent_page(valid: &Valid, client_name: &str, scope: &[String], token: &str) -> Response {
    let fields = valid.request.pairs();
    page(
        "Allow access?",
        html! {
            p { strong { (client_name) } " (" code { (valid.client.id) } ") asks to:" }
            ul {
                @for s in scope { li { (describe(s)) } }
            }
            p { "It will be sent back to " code { (valid.redirect_uri) } "." }
            form method="post" action="/auth/ui/authorize" {
                @for (k, v) in &fields {
                    input type="hidden" name=(k) value=(v);
                }
                input type="hidden" name="consent_token" value=(token);
                button type="submit" name="decision" value="allow" { "Allow" }
                " "
                button type="submit" name="decision" value="deny" { "Deny" }
            }
        },
    )
}

#[utoipa::path(post, path = "/auth/ui/authorize", operation_id = "pages_authorize_consent", tag = "pages",
    summary = "The consent page's answer",
    responses(
        (status = 200, description = "A page that moves on to the client by itself", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: to the sign-in page"),
        (status = 400, description = "Unknown client or redirect URI", content_type = "text/html", body = String),
    ))]
pub async fn authorize_consent(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    body: String,
) -> Response {
    let valid = match validated(&state, &body, true).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let field = |name: &str| {
        oauth2::url::form_urlencoded::parse(body.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let decision = field("decision");
    let token = field("consent_token").unwrap_or_default();
    let allow = match decision.as_deref() {
        Some("allow") => true,
        Some("deny") => false,
        _ => {
            let e = ApiError::bad_request("invalid_request", "decision: allow or deny");
            return error_page("Sign-in request refused", e).await;
        }
    };
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    match authorize::consented(&state, &client, &valid, &auth, allow, &token).await {
        Ok(to) => back_to_client(&to),
        Err(e) => error_page("Sign-in request failed", e).await,
    }
}

/// The pages' CSP (`form-action 'self'`) holds a form's redirects to our
/// origin: a page moves on to the client instead.
fn back_to_client(to: &str) -> Response {
    landing(
        "Returning to the application",
        "Returning to the application.",
        to,
    )
}

#[utoipa::path(get, path = "/auth/ui/logout/end", operation_id = "pages_end_session_rp",
    tag = "pages", summary = "RP-initiated logout (OpenID Connect)",
    description = "Ends the application's session that `id_token_hint` names; back to a registered `post_logout_redirect_uri` with `state`, or a page offering to sign out of the issuer too.",
    responses(
        (status = 303, description = "To the registered post-logout URI"),
        (status = 200, description = "Signed out of the application", content_type = "text/html", body = String),
        (status = 400, description = "A hint, client or URI the issuer does not know", content_type = "text/html", body = String),
    ))]
pub async fn end_session_rp(
    State(state): State<AppState>,
    client: Client,
    Query(req): Query<crate::service::oauth::logout::EndSession>,
) -> Response {
    use crate::service::oauth::logout::{end_session, Ended};
    match end_session(&state, &client, &req).await {
        Ok(Ended::Redirect(to)) => Redirect::to(&to).into_response(),
        Ok(Ended::Page { client_name }) => page(
            "Signed out",
            html! {
                @if let Some(name) = client_name {
                    p { "You are signed out of " strong { (name) } "." }
                } @else {
                    p { "You are signed out of the application." }
                }
                form method="post" action="/auth/ui/logout" {
                    button type="submit" { "Also sign out of DevMentor" }
                }
            },
        ),
        Err(e) => error_page("Sign-out refused", e).await,
    }
}
