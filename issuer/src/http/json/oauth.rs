//! The OAuth token and userinfo endpoints, and `/admin/clients`, over
//! `service::oauth`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::json;

use crate::http::error::{oauth_error, ApiError, ApiResult};
use crate::http::extract::{ApiJson, Authenticated, Client};
use crate::http::openapi::OAuthErrorBody;
use crate::service::admin::{require_admin, Admin};
use crate::service::oauth::client_auth::Credentials;
use crate::service::oauth::clients::{self, ClientView, NewClient, Registered};
use crate::service::oauth::consent::{self, Connected};
use crate::service::oauth::device;
use crate::service::oauth::introspect::{self, Introspection};
use crate::service::oauth::token::{self, TokenRequest, TokenResponse};
use crate::AppState;

/// The token endpoint's form (RFC 6749 §4.1.3 and §6). Client credentials
/// come here or in `Authorization: Basic`.
#[derive(utoipa::ToSchema)]
pub struct TokenForm {
    pub grant_type: GrantType,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
    /// RFC 8707: the resource the access token is for (one).
    pub resource: Option<String>,
    /// Token exchange (RFC 8693): the user's access token the client acts for.
    pub subject_token: Option<String>,
    /// `urn:ietf:params:oauth:token-type:access_token` (or `…:jwt`).
    pub subject_token_type: Option<String>,
    /// Token exchange: the target, as `resource` (one of the two).
    pub audience: Option<String>,
    /// Token exchange: `urn:ietf:params:oauth:token-type:access_token`, if given.
    pub requested_token_type: Option<String>,
    /// The device authorization grant (RFC 8628): the device's code.
    pub device_code: Option<String>,
    /// The JWT bearer grant (RFC 7523): a workload's service-account token
    /// from a trusted cluster.
    pub assertion: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
    /// (`private_key_jwt`, with `client_assertion`).
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(non_camel_case_types)]
pub enum GrantType {
    authorization_code,
    refresh_token,
    client_credentials,
    #[serde(rename = "urn:ietf:params:oauth:grant-type:token-exchange")]
    token_exchange,
    #[serde(rename = "urn:ietf:params:oauth:grant-type:device_code")]
    device_code,
    #[serde(rename = "urn:ietf:params:oauth:grant-type:jwt-bearer")]
    jwt_bearer,
}

/// The device authorization request (RFC 8628 §3.1).
#[derive(utoipa::ToSchema)]
pub struct DeviceForm {
    pub client_id: Option<String>,
    /// By spaces; left out: every scope the client may ask for.
    pub scope: Option<String>,
    /// RFC 8707: the resource the tokens are to be for (one).
    pub resource: Option<String>,
    pub client_secret: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
}

/// The revocation and introspection form (RFC 7009 §2.1, RFC 7662 §2.1).
#[derive(utoipa::ToSchema)]
pub struct TokenTypeForm {
    pub token: String,
    /// `refresh_token` or `access_token`.
    pub token_type_hint: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
}

/// `Authorization: Basic` credentials, each part form-decoded (RFC 6749
/// §2.3.1). `None` without the header; an error when it is malformed.
fn basic(headers: &HeaderMap) -> Result<Option<(String, String)>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || crate::service::Error::invalid_client("malformed Basic credentials");
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, encoded) = value.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(malformed());
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let text = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = text.split_once(':').ok_or_else(malformed)?;
    let decode = |s: &str| -> String {
        oauth2::url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((decode(id), decode(secret))))
}

/// The form's fields, each at most once (RFC 6749 §3.2); others ignored.
fn form(
    headers: &HeaderMap,
    body: &str,
    known: &[&'static str],
) -> Result<HashMap<&'static str, String>, ApiError> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(ApiError::bad_request(
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let mut fields = HashMap::new();
    for (k, v) in oauth2::url::form_urlencoded::parse(body.as_bytes()) {
        let Some(name) = known.iter().find(|n| **n == k) else {
            continue;
        };
        if fields.insert(*name, v.into_owned()).is_some() {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("{k} is given more than once"),
            ));
        }
    }
    Ok(fields)
}

const CLIENT_FIELDS: [&str; 4] = [
    "client_id",
    "client_secret",
    "client_assertion_type",
    "client_assertion",
];

fn credentials(
    headers: &HeaderMap,
    fields: &mut HashMap<&'static str, String>,
) -> Result<Credentials, ApiError> {
    Ok(Credentials {
        basic: basic(headers)?,
        client_id: fields.remove("client_id"),
        client_secret: fields.remove("client_secret"),
        assertion_type: fields.remove("client_assertion_type"),
        assertion: fields.remove("client_assertion"),
    })
}

/// `Authorization: DPoP <token>` and its proof, if the request uses the
/// DPoP scheme.
fn dpop_credential(
    parts: &axum::http::request::Parts,
) -> Result<Option<(&str, String)>, crate::service::error::Error> {
    let Some((scheme, token)) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
    else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("dpop") {
        return Ok(None);
    }
    let proof = dpop_header(&parts.headers)?
        .ok_or_else(|| crate::service::oauth::dpop::invalid_proof("no DPoP proof"))?;
    Ok(Some((token.trim(), proof)))
}

/// The `DPoP` header (RFC 9449 §4.3: exactly one), if sent.
fn dpop_header(headers: &HeaderMap) -> Result<Option<String>, crate::service::error::Error> {
    let mut all = headers.get_all("dpop").iter();
    let (Some(first), None) = (all.next(), all.next()) else {
        return match headers.contains_key("dpop") {
            true => Err(crate::service::oauth::dpop::invalid_proof(
                "one DPoP header at most",
            )),
            false => Ok(None),
        };
    };
    first
        .to_str()
        .map(|v| Some(v.to_string()))
        .map_err(|_| crate::service::oauth::dpop::invalid_proof("the DPoP header is not text"))
}

fn no_store(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

#[utoipa::path(
    post,
    path = "/auth/oauth2/token",
    operation_id = "oauth_token",
    tag = "oauth",
    summary = "Token endpoint",
    description = "`authorization_code` (with the PKCE `code_verifier`), `refresh_token`, `client_credentials` (a service as itself) and token exchange (RFC 8693: a service acting for the user whose `subject_token` it holds, for one `resource` or `audience` it is registered for), the device code (RFC 8628) and the JWT bearer grant (RFC 7523: a workload's service-account token from a trusted cluster, for the client its account maps to). Confidential clients authenticate with `client_secret_basic`, `client_secret_post` or `private_key_jwt` (RFC 7523); public clients send `client_id` alone.",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Tokens", body = TokenResponse),
        (status = 400, description = "`invalid_request`, `invalid_grant`, `unsupported_grant_type`, `invalid_scope`", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client`", body = OAuthErrorBody),
    ),
)]
pub async fn token(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    body: String,
) -> Response {
    let result = async {
        let known = [
            "grant_type",
            "code",
            "redirect_uri",
            "code_verifier",
            "refresh_token",
            "scope",
            "resource",
            "subject_token",
            "subject_token_type",
            "actor_token",
            "actor_token_type",
            "audience",
            "requested_token_type",
            "device_code",
            "assertion",
            CLIENT_FIELDS[0],
            CLIENT_FIELDS[1],
            CLIENT_FIELDS[2],
            CLIENT_FIELDS[3],
        ];
        let mut f = form(&headers, &body, &known)?;
        let creds = credentials(&headers, &mut f)?;
        let req = TokenRequest {
            grant_type: f.remove("grant_type"),
            code: f.remove("code"),
            redirect_uri: f.remove("redirect_uri"),
            code_verifier: f.remove("code_verifier"),
            refresh_token: f.remove("refresh_token"),
            scope: f.remove("scope"),
            resource: f.remove("resource"),
            subject_token: f.remove("subject_token"),
            subject_token_type: f.remove("subject_token_type"),
            actor_token: f.remove("actor_token"),
            audience: f.remove("audience"),
            requested_token_type: f.remove("requested_token_type"),
            device_code: f.remove("device_code"),
            assertion: f.remove("assertion"),
            dpop: dpop_header(&headers)?,
        };
        token::token(&state, &client, creds, req).await
    }
    .await;
    match result {
        Ok(tokens) => no_store(Json(tokens).into_response()),
        Err(e) => oauth_error(e),
    }
}

#[utoipa::path(
    post,
    path = "/auth/oauth2/device_authorization",
    operation_id = "oauth_device_authorization",
    tag = "oauth",
    summary = "Device authorization (RFC 8628)",
    description = "A device without a browser (a CLI) asks for a device code and a user code; its user enters the code at `verification_uri`, signs in and approves, while the device polls the token endpoint with `grant_type=urn:ietf:params:oauth:grant-type:device_code`. The client must be registered for that grant; public clients send `client_id` alone.",
    request_body(content = DeviceForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The codes", body = device::DeviceAuthorization),
        (status = 400, description = "`invalid_request`, `unauthorized_client`, `invalid_scope`, `invalid_target`", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client`", body = OAuthErrorBody),
    ),
)]
pub async fn device_authorization(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    body: String,
) -> Response {
    let result = async {
        let known = [
            "scope",
            "resource",
            CLIENT_FIELDS[0],
            CLIENT_FIELDS[1],
            CLIENT_FIELDS[2],
            CLIENT_FIELDS[3],
        ];
        let mut f = form(&headers, &body, &known)?;
        let creds = credentials(&headers, &mut f)?;
        device::authorize(
            &state,
            &client,
            &creds,
            f.get("scope").map(String::as_str),
            f.get("resource").map(String::as_str),
        )
        .await
    }
    .await;
    match result {
        Ok(codes) => no_store(Json(codes).into_response()),
        Err(e) => oauth_error(e),
    }
}

const TOKEN_FIELDS: [&str; 6] = [
    "token",
    "token_type_hint",
    CLIENT_FIELDS[0],
    CLIENT_FIELDS[1],
    CLIENT_FIELDS[2],
    CLIENT_FIELDS[3],
];

#[utoipa::path(
    post,
    path = "/auth/oauth2/revoke",
    operation_id = "oauth_revoke",
    tag = "oauth",
    summary = "Token revocation (RFC 7009)",
    description = "The client's own refresh or access token: its session ends, and the edge refuses its tokens. Unknown tokens get the same 200.",
    request_body(content = TokenTypeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke"),
        (status = 401, description = "`invalid_client`", body = OAuthErrorBody),
    ),
)]
pub async fn revoke(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    body: String,
) -> Response {
    let result = async {
        let mut f = form(&headers, &body, &TOKEN_FIELDS)?;
        let creds = credentials(&headers, &mut f)?;
        let hint = f.get("token_type_hint").map(String::as_str);
        introspect::revoke(
            &state,
            &client,
            &creds,
            f.get("token").map(String::as_str),
            hint,
        )
        .await
    }
    .await;
    match result {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(e) => oauth_error(e),
    }
}

#[utoipa::path(
    post,
    path = "/auth/oauth2/introspect",
    operation_id = "oauth_introspect",
    tag = "oauth",
    summary = "Token introspection (RFC 7662)",
    description = "For confidential clients (resource servers among them).",
    request_body(content = TokenTypeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "`active`, and what an active token stands for", body = Introspection),
        (status = 401, description = "`invalid_client`", body = OAuthErrorBody),
    ),
)]
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let result = async {
        let mut f = form(&headers, &body, &TOKEN_FIELDS)?;
        let creds = credentials(&headers, &mut f)?;
        let hint = f.get("token_type_hint").map(String::as_str);
        introspect::introspect(&state, &creds, f.get("token").map(String::as_str), hint).await
    }
    .await;
    match result {
        Ok(answer) => no_store(Json(answer).into_response()),
        Err(e) => oauth_error(e),
    }
}

#[utoipa::path(
    get,
    path = "/auth/oauth2/userinfo",
    operation_id = "oauth_userinfo",
    tag = "oauth",
    summary = "UserInfo endpoint (OpenID Connect Core §5.3)",
    responses(
        (status = 200, description = "`sub` and the claims the token's scope releases", body = crate::http::openapi::AnyObject),
        (status = 401, description = "No valid application token", body = OAuthErrorBody),
        (status = 403, description = "`insufficient_scope`: the token lacks `openid`", body = OAuthErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn userinfo(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let (parts, _) = request.into_parts();
    let result = async {
        let (token, proven) = match dpop_credential(&parts)? {
            // RFC 9449 §7: a bound token under the DPoP scheme, with a
            // proof for this request.
            Some((token, proof)) => {
                let method = parts.method.as_str();
                let path = "/auth/oauth2/userinfo";
                let jkt =
                    crate::service::oauth::dpop::check(&state, &proof, method, path, Some(token))
                        .await?;
                (token, Some(jkt))
            }
            None => (crate::http::extract::bearer_token(&parts)?, None),
        };
        let auth = crate::service::context::authenticate_client_token(
            &state,
            token,
            proven.as_deref(),
            state.now(),
        )
        .await?;
        token::userinfo(&auth)
    }
    .await;
    match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => oauth_error(e),
    }
}

#[utoipa::path(
    post,
    path = "/admin/clients",
    operation_id = "clients_create",
    tag = "oauth",
    summary = "Register an OAuth client",
    description = "A confidential client's `client_secret` is answered this once; only its hash is kept.",
    request_body = NewClient,
    responses(
        (status = 201, description = "The client (and its secret)", body = Registered),
        (status = 409, description = "`client_exists`", body = crate::http::openapi::ErrorBody),
        (status = 422, description = "`invalid_client_metadata`", body = crate::http::openapi::ErrorBody),
    ),
    security(("admin" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    ApiJson(req): ApiJson<NewClient>,
) -> ApiResult<Response> {
    let admin = require_admin(auth)?;
    let registered = clients::register(&state, &admin, &client, &req).await?;
    Ok((StatusCode::CREATED, Json(registered)).into_response())
}

#[utoipa::path(
    get,
    path = "/admin/clients",
    operation_id = "clients_list",
    tag = "oauth",
    summary = "OAuth clients",
    responses(
        (status = 200, description = "Every registered client", body = Vec<ClientView>),
    ),
    security(("admin" = [])),
)]
pub async fn list(State(state): State<AppState>, admin: Admin) -> ApiResult<Json<Vec<ClientView>>> {
    Ok(Json(clients::list(&state, &admin).await?))
}

#[utoipa::path(
    get,
    path = "/admin/clients/{client_id}",
    operation_id = "clients_get",
    tag = "oauth",
    summary = "One OAuth client",
    description = "Its description (never its secret), when it last used a service grant, and its uses per day (the last 30 days with any), as last written (every `--usage-flush-secs`).",
    params(("client_id" = String, Path, description = "The client")),
    responses(
        (status = 200, description = "The client", body = ClientView),
        (status = 404, description = "No such client", body = crate::http::openapi::ErrorBody),
    ),
    security(("admin" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    admin: Admin,
    Path(client_id): Path<String>,
) -> ApiResult<Json<ClientView>> {
    Ok(Json(clients::get(&state, &admin, &client_id).await?))
}

#[utoipa::path(
    delete,
    path = "/admin/clients/{client_id}",
    operation_id = "clients_delete",
    tag = "oauth",
    summary = "Delete an OAuth client",
    description = "Every session opened for it ends, and the edge refuses its tokens.",
    params(("client_id" = String, Path, description = "The client")),
    responses(
        (status = 200, description = "Deleted", body = crate::http::openapi::AnyObject),
        (status = 404, description = "No such client", body = crate::http::openapi::ErrorBody),
    ),
    security(("admin" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    client: Client,
    admin: Admin,
    Path(client_id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let ended = clients::delete(&state, &admin, &client, &client_id).await?;
    Ok(Json(json!({"deleted": client_id, "sessions_ended": ended})))
}

#[utoipa::path(
    put,
    path = "/admin/clients/{client_id}",
    operation_id = "clients_update",
    tag = "oauth",
    summary = "Change an OAuth client",
    description = "The whole description, as at registration; its id, type and authentication method stay (secrets and keys change by rotation). Sessions holding a scope or resource the client may no longer ask for end, and the edge refuses their tokens.",
    params(("client_id" = String, Path, description = "The client")),
    request_body = NewClient,
    responses(
        (status = 200, description = "The client as changed", body = clients::Updated),
        (status = 404, description = "No such client", body = crate::http::openapi::ErrorBody),
        (status = 422, description = "`invalid_client_metadata`", body = crate::http::openapi::ErrorBody),
    ),
    security(("admin" = [])),
)]
pub async fn update(
    State(state): State<AppState>,
    client: Client,
    admin: Admin,
    Path(client_id): Path<String>,
    ApiJson(req): ApiJson<NewClient>,
) -> ApiResult<Json<clients::Updated>> {
    Ok(Json(
        clients::update(&state, &admin, &client, &client_id, &req).await?,
    ))
}

#[derive(serde::Deserialize)]
pub struct RotateQuery {
    immediate: Option<bool>,
}

#[utoipa::path(
    post,
    path = "/admin/clients/{client_id}/secret",
    operation_id = "clients_rotate_secret",
    tag = "oauth",
    summary = "Rotate a confidential client's secret",
    description = "The new secret is answered this once; the old one keeps working for a day, or stops at once with `immediate=true` (a leaked secret).",
    params(
        ("client_id" = String, Path, description = "The client"),
        ("immediate" = Option<bool>, Query, description = "The old secret stops at once"),
    ),
    responses(
        (status = 200, description = "The new secret", body = crate::http::openapi::AnyObject),
        (status = 404, description = "No such confidential client", body = crate::http::openapi::ErrorBody),
        (status = 409, description = "`rotation_in_progress`: the secret before still works; rotate with `immediate=true` or wait", body = crate::http::openapi::ErrorBody),
    ),
    security(("admin" = [])),
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    client: Client,
    admin: Admin,
    Path(client_id): Path<String>,
    Query(q): Query<RotateQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let immediate = q.immediate.unwrap_or(false);
    let secret = clients::rotate_secret(&state, &admin, &client, &client_id, immediate).await?;
    Ok(Json(json!({
        "client_id": client_id,
        "client_secret": secret,
        "previous_valid_for": if immediate { 0 } else { clients::SECRET_OVERLAP_SECS },
    })))
}

/// A `private_key_jwt` client's new public keys.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientKeys {
    /// A JWK Set of 1 to 8 public keys, each with a `kid`.
    #[schema(value_type = Object)]
    pub jwks: serde_json::Value,
}

#[utoipa::path(
    put,
    path = "/admin/clients/{client_id}/jwks",
    operation_id = "clients_set_keys",
    tag = "oauth",
    summary = "Replace a private_key_jwt client's public keys",
    description = "To roll a key over, send the old and new keys together, move the client to the new one, then send the new one alone. Assertions signed by a key no longer listed are refused at once.",
    params(("client_id" = String, Path, description = "The client")),
    request_body = ClientKeys,
    responses(
        (status = 200, description = "The client as it now is", body = ClientView),
        (status = 404, description = "No such private_key_jwt client", body = crate::http::openapi::ErrorBody),
        (status = 422, description = "`invalid_client_metadata`", body = crate::http::openapi::ErrorBody),
    ),
    security(("admin" = [])),
)]
pub async fn set_keys(
    State(state): State<AppState>,
    client: Client,
    admin: Admin,
    Path(client_id): Path<String>,
    ApiJson(req): ApiJson<ClientKeys>,
) -> ApiResult<Json<ClientView>> {
    Ok(Json(
        clients::set_keys(&state, &admin, &client, &client_id, &req.jwks).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/auth/apps",
    operation_id = "oauth_connected_apps",
    tag = "oauth",
    summary = "Applications the caller let in",
    responses(
        (status = 200, description = "Connected applications", body = Vec<Connected>),
    ),
    security(("bearer" = [])),
)]
pub async fn apps(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<Json<Vec<Connected>>> {
    Ok(Json(consent::connected(&state, &auth).await?))
}

#[utoipa::path(
    delete,
    path = "/auth/apps/{client_id}",
    operation_id = "oauth_disconnect_app",
    tag = "oauth",
    summary = "Disconnect an application",
    description = "Withdraws the consent and ends the application's sessions; the edge refuses their tokens within the feed's lag.",
    params(("client_id" = String, Path, description = "The application")),
    responses(
        (status = 200, description = "Disconnected", body = crate::http::openapi::AnyObject),
        (status = 404, description = "Not connected", body = crate::http::openapi::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn disconnect(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    Path(client_id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let ended = consent::disconnect(&state, &client, &auth, &client_id).await?;
    Ok(Json(
        json!({"client_id": client_id, "sessions_ended": ended}),
    ))
}
