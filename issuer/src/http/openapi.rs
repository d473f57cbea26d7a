//! The OpenAPI 3.1 document, generated from the handlers' own
//! `#[utoipa::path]` attributes: the router is built from the same
//! attributes (utoipa-axum), so a route cannot exist undocumented or be
//! documented without existing. Served at `/openapi.json`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "DevMentor Auth issuer",
        description = "Accounts, sessions, signing keys, GitHub sign-in, MFA, teams and roles. \
Every error is JSON: `{\"error\": code, \"message\": text}`; a 401 carries `WWW-Authenticate`, \
a 429 `Retry-After`.",
        license(name = "Apache-2.0")
    ),
    components(schemas(ErrorBody, OAuthErrorBody, AnyObject, FeedEvent)),
    modifiers(&Security),
    tags(
        (name = "auth", description = "Accounts and password sign-in"),
        (name = "sessions", description = "Refresh rotation and sessions"),
        (name = "tokens", description = "Personal access tokens"),
        (name = "email", description = "Verification and password reset"),
        (name = "mfa", description = "TOTP, recovery codes, step-up"),
        (name = "passkeys", description = "WebAuthn"),
        (name = "github", description = "GitHub sign-in and linking"),
        (name = "profile", description = "The caller's profile"),
        (name = "teams", description = "Teams and members"),
        (name = "admin", description = "User administration"),
        (name = "keys", description = "Signing keys"),
        (name = "audit", description = "Audit trail and reports"),
        (name = "roles", description = "Roles and permissions"),
        (name = "discovery", description = "Keys and metadata for verifiers"),
        (name = "internal", description = "For sidecars (feed token)"),
        (name = "ops", description = "Health, readiness, metrics, this document"),
        (name = "pages", description = "Hosted pages (HTML forms; session in cookies)"),
    )
)]
pub struct ApiDoc;

/// Every error body.
#[derive(ToSchema)]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `invalid_credentials`.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
}

/// The OAuth endpoints' errors (RFC 6749 §5.2): `error` and
/// `error_description`. What the shared layers refuse before the endpoint
/// runs (size, rate) comes as the other error bodies do, with `message`.
#[derive(ToSchema)]
pub struct OAuthErrorBody {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, ...
    pub error: String,
    pub error_description: Option<String>,
    pub message: Option<String>,
}

/// A JSON object (its fields are described in README).
#[derive(ToSchema)]
pub struct AnyObject(pub BTreeMap<String, serde_json::Value>);

/// One server-sent event of the revocation feed: its name, and its data, a
/// JSON object (`RevocationEvent` in `auth-types`) tagged with the same
/// `type`.
#[derive(ToSchema)]
pub struct FeedEvent {
    #[schema(pattern = "^(snapshot|revoked|keys_changed|permissions_changed|heartbeat)$")]
    pub event: String,
    /// JSON.
    pub data: String,
    pub id: Option<String>,
    pub retry: Option<u64>,
}

/// The refresh token comes in the body or, for browsers, in the
/// `__Host-refresh_token` cookie (then the body may be empty).
#[derive(ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: Option<String>,
}

/// Optional: the algorithm of the new key, and whether it signs at once
/// (else it is published first and signs after the publish lead).
#[derive(ToSchema)]
pub struct RotateBody {
    /// `ES256`, `EdDSA` or `RS256`.
    pub alg: Option<String>,
    pub now: Option<bool>,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            let mut scheme = HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build();
            scheme.description = Some(description.to_string());
            SecurityScheme::Http(scheme)
        };
        components.add_security_scheme("bearer", bearer("An access token from this issuer."));
        components.add_security_scheme(
            "admin",
            bearer("An access token whose roles include `admin`."),
        );
        components.add_security_scheme(
            "feed_token",
            bearer("The feed token shared with the sidecars (`--feed-token-file`)."),
        );
        components.add_security_scheme(
            "refresh_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "__Host-refresh_token",
                "The refresh token, set by sign-in (HttpOnly, Secure, SameSite=Strict).",
            ))),
        );
    }
}

/// Any request can meet the shared layers (body limits, JSON and control
/// character checks, CSRF, rate limits) and the one error map, so every
/// operation documents these answers, all with [`ErrorBody`].
struct CommonErrors;

const COMMON: &[(&str, &str)] = &[
    (
        "400",
        "Malformed request (bad JSON, a control character, an invalid value)",
    ),
    ("401", "Not authenticated, or the credentials are wrong"),
    (
        "403",
        "Authenticated but not allowed (or a cross-site request refused)",
    ),
    ("404", "No such resource"),
    ("405", "Method not allowed on this path"),
    ("408", "The request body arrived too slowly"),
    ("409", "Conflicts with the current state"),
    ("413", "Body too large"),
    ("415", "Unsupported content type"),
    ("422", "Well-formed but invalid (e.g. a weak password)"),
    ("429", "Rate limited; see Retry-After"),
    ("500", "Internal error (no details)"),
    ("502", "An upstream (GitHub, SMTP) failed"),
    (
        "503",
        "Temporarily unavailable (database, hashing queue full)",
    ),
];

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // Each answer is described once, under components/responses; the
        // operations refer to it.
        let components = openapi.components.get_or_insert_with(Default::default);
        for (status, description) in COMMON {
            for kind in [Kind::Json, Kind::Form, Kind::OAuth] {
                components.responses.insert(
                    response_name(status, kind),
                    error_response(description, kind).into(),
                );
            }
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            // The hosted pages answer a person with a page, and anything
            // the shared layers refuse with JSON: both. The OAuth
            // endpoints answer in RFC 6749's words.
            let page = path.starts_with("/auth/ui/");
            let oauth = path.starts_with("/auth/oauth2/");
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                add_errors(op, page, oauth);
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Json,
    Form,
    OAuth,
}

fn response_name(status: &str, kind: Kind) -> String {
    match kind {
        Kind::Json => format!("Error{status}"),
        Kind::Form => format!("Error{status}Form"),
        Kind::OAuth => format!("Error{status}OAuth"),
    }
}

/// A form posted by a browser (the mailed links' pages) or a hosted page
/// gets its errors as a page; a JSON client gets JSON.
fn error_response(description: &str, kind: Kind) -> utoipa::openapi::Response {
    let schema = match kind {
        Kind::OAuth => "OAuthErrorBody",
        Kind::Json | Kind::Form => "ErrorBody",
    };
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(schema)))
            .build(),
    );
    if matches!(kind, Kind::Form) {
        response = response.content(
            "text/html",
            ContentBuilder::new()
                .schema(Some(utoipa::openapi::Object::with_type(
                    utoipa::openapi::Type::String,
                )))
                .build(),
        );
    }
    response.build()
}

fn add_errors(op: &mut Operation, page: bool, oauth: bool) {
    let form = page
        || matches!(
            op.request_body.as_ref(),
            Some(utoipa::openapi::RefOr::T(b))
                if b.content.contains_key("application/x-www-form-urlencoded")
        );
    let kind = match (oauth, form) {
        (true, _) => Kind::OAuth,
        (false, true) => Kind::Form,
        (false, false) => Kind::Json,
    };
    for (status, _) in COMMON {
        op.responses
            .responses
            .entry((*status).to_string())
            .or_insert_with(|| {
                Ref::new(format!(
                    "#/components/responses/{}",
                    response_name(status, kind)
                ))
                .into()
            });
    }
}

/// What the router's routes need once they are all in: the shared error
/// answers on every operation.
pub fn finish(doc: &mut utoipa::openapi::OpenApi) {
    CommonErrors.modify(doc);
}

static DOCUMENT: OnceLock<String> = OnceLock::new();

/// Keeps the document the router was built with (the same for every
/// issuer: it depends on code, not settings).
pub fn publish(doc: &utoipa::openapi::OpenApi) {
    DOCUMENT.get_or_init(|| doc.to_json().unwrap_or_else(|_| "{}".to_string()));
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi_document",
    tag = "ops",
    summary = "This document (OpenAPI 3.1)",
    responses((status = 200, description = "The OpenAPI document", body = AnyObject)),
)]
pub async fn document() -> Response {
    let body = DOCUMENT.get().cloned().unwrap_or_default();
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
