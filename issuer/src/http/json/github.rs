//! Sign in with GitHub over `service::github`: `/auth/github/login` →
//! GitHub → `/auth/github/callback`, explicit linking of an existing
//! account, and the user's linked identities. This file speaks HTTP: the
//! state cookie, redirects or JSON, and the pages' answer when they started.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use oauth2::url::Url;
use serde::Deserialize;
use serde_json::json;

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{cookie_value, ApiJson, Authenticated, Client};
use crate::http::github_state::{state_cookie, GITHUB_COOKIE};
use crate::service::github::{self, Callback, Started, Success, PROVIDER};
use crate::service::grant::SignIn;
use crate::AppState;

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json") && !v.contains("text/html"))
}

/// A started sign-in: 302 to GitHub, or `{authorize_url}` as JSON for
/// clients that asked for JSON; the sealed state in its cookie either way.
fn started(started: Started, json_answer: bool) -> ApiResult<Response> {
    let mut response = if json_answer {
        Json(json!({"authorize_url": started.authorize_url})).into_response()
    } else {
        redirect(&started.authorize_url)?
    };
    let headers = response.headers_mut();
    headers.insert(
        header::SET_COOKIE,
        state_cookie(&started.sealed, github::PENDING_TTL_SECS)?,
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LoginQuery {
    return_to: Option<String>,
}

#[utoipa::path(
    get,
    path = "/auth/github/login",
    operation_id = "github_login",
    tag = "github",
    summary = "Sign in with GitHub",
    params(LoginQuery),
    responses(
        (status = 302, description = "To GitHub's authorisation page"),
    ),
)]
pub async fn login(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> ApiResult<Response> {
    let start = github::start_sign_in(&state, &client, q.return_to.as_deref(), false)?;
    started(start, wants_json(&headers))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// The account's password, proving it is the owner asking (a stolen
    /// access token alone must not attach a stranger's GitHub).
    password: String,
    #[serde(default)]
    return_to: Option<String>,
}

/// Starts linking GitHub to the signed-in account. Answers
/// `{authorize_url}` and the state cookie; the browser goes on to GitHub.
#[utoipa::path(
    post,
    path = "/auth/github/link",
    operation_id = "github_link",
    tag = "github",
    summary = "Link GitHub to this account",
    request_body = LinkRequest,
    responses(
        (status = 200, description = "The URL to send the browser to", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn link(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    ApiJson(req): ApiJson<LinkRequest>,
) -> ApiResult<Response> {
    let start = github::start_link(
        &state,
        &client,
        &auth,
        req.password,
        req.return_to.as_deref(),
        false,
    )
    .await?;
    started(start, true)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

#[utoipa::path(
    get,
    path = "/auth/github/callback",
    operation_id = "github_callback",
    tag = "github",
    summary = "GitHub's redirect back",
    params(CallbackQuery),
    responses(
        (status = 302, description = "Back to the allowed `return_to`, signed in or with an error"),
        (status = 200, description = "Signed in (no `return_to`)", body = crate::http::tokens::TokenResponse),
    ),
)]
pub async fn callback(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> ApiResult<Response> {
    let answer = Callback {
        code: q.code,
        state: q.state,
        error: q.error,
    };
    let sealed = cookie_value(&headers, GITHUB_COOKIE);
    let finished = github::finish(&state, &client, sealed.as_deref(), &answer).await?;
    let return_to = finished.return_to;
    let json_answer = wants_json(&headers) || return_to.is_none();
    let mut response = if finished.pages {
        let outcome = match finished.outcome {
            Ok(Success::SignedIn(tokens)) => crate::http::pages::GitHubOutcome::SignedIn(tokens),
            Ok(Success::Linked) => crate::http::pages::GitHubOutcome::Linked,
            Err(failure) => crate::http::pages::GitHubOutcome::Failed(*failure.error),
        };
        crate::http::pages::after_github(&state, outcome, return_to.as_deref()).await
    } else {
        match finished.outcome {
            Ok(Success::SignedIn(tokens)) => match (&return_to, json_answer) {
                // A second factor is due: back to the page with the ticket in
                // the fragment (never sent to a server, so never in a log).
                // (mfa_required, or mfa_enrollment_required for a role that needs one.)
                (Some(to), false) if !matches!(tokens, SignIn::Tokens(_)) => {
                    let (error, ticket) = match &tokens {
                        SignIn::Enrol { ticket, .. } => ("mfa_enrollment_required", ticket),
                        SignIn::SecondFactor { ticket, .. } => ("mfa_required", ticket),
                        SignIn::Tokens(_) => ("mfa_required", &String::new()),
                    };
                    let to = with_param(to, "error", error);
                    let to = match Url::parse(&to) {
                        Ok(mut u) => {
                            u.set_fragment(Some(&format!("mfa_ticket={ticket}")));
                            u.to_string()
                        }
                        Err(_) => to,
                    };
                    redirect(&to)?
                }
                (Some(to), false) => redirect_carrying_cookies(to, &tokens.into_response())?,
                _ => tokens.into_response(),
            },
            Ok(Success::Linked) => match (&return_to, json_answer) {
                (Some(to), false) => redirect(&with_param(to, "linked", PROVIDER))?,
                _ => Json(json!({"linked": PROVIDER})).into_response(),
            },
            Err(failure) => match (&return_to, json_answer) {
                // Only the error code goes into the URL.
                (Some(to), false) => redirect(&with_param(to, "error", failure.error.code))?,
                _ => (*failure.error).into_response(),
            },
        }
    };
    // The state is spent whatever happened: the cookie goes.
    response
        .headers_mut()
        .append(header::SET_COOKIE, state_cookie("", 0)?);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn with_param(url: &str, key: &str, value: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            u.query_pairs_mut().append_pair(key, value);
            u.to_string()
        }
        Err(_) => url.to_string(),
    }
}

fn redirect(to: &str) -> ApiResult<Response> {
    let mut r = StatusCode::FOUND.into_response();
    r.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(to).map_err(ApiError::internal)?,
    );
    Ok(r)
}

/// A browser sign-in ends on `return_to` with the refresh cookie set; the
/// tokens themselves never go into a URL (the page asks `/auth/refresh`).
fn redirect_carrying_cookies(to: &str, tokens: &Response) -> ApiResult<Response> {
    let mut r = redirect(to)?;
    for cookie in tokens.headers().get_all(header::SET_COOKIE) {
        r.headers_mut().append(header::SET_COOKIE, cookie.clone());
    }
    Ok(r)
}

#[utoipa::path(
    get,
    path = "/auth/identities",
    operation_id = "github_identities",
    tag = "github",
    summary = "Linked identities",
    responses(
        (status = 200, description = "Linked identities", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn identities(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<Json<serde_json::Value>> {
    let views = crate::service::identities::list(&state, &auth).await?;
    Ok(Json(json!({
        "identities": views,
        "has_password": auth.user.has_password(),
    })))
}

#[utoipa::path(
    delete,
    path = "/auth/identities/{provider}",
    operation_id = "github_unlink",
    tag = "github",
    summary = "Unlink an identity",
    params(("provider" = String, Path, description = "The provider (github)")),
    responses(
        (status = 204, description = "Unlinked"),
    ),
    security(("bearer" = [])),
)]
pub async fn unlink(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    Path(provider): Path<String>,
) -> ApiResult<Response> {
    github::unlink(&state, &client, &auth, &provider).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
