//! The HTTP adapter: JSON handlers (`json`), hosted pages (`pages`), the
//! layers every request passes (limits, CSRF, rate limits, metrics,
//! security headers) and the one place service errors become responses
//! (`error`).

pub mod answers;
pub mod browser;
pub mod error;
pub mod extract;
pub mod github_state;
pub mod json;
pub mod limits;
pub mod openapi;
pub mod pages;
pub mod ratelimit;
pub mod tokens;
pub mod track;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use json::ops;

/// Every route with its OpenAPI description, from the handlers' own
/// `#[utoipa::path]` attributes: one list, so neither can drift.
fn documented_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::<AppState>::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(json::auth::register))
        .routes(routes!(json::auth::login))
        .routes(routes!(json::sessions::refresh))
        .routes(routes!(json::sessions::logout))
        .routes(routes!(json::sessions::logout_all))
        .routes(routes!(json::sessions::me))
        .routes(routes!(json::auth::change_password))
        .routes(routes!(json::email::forgot))
        .routes(routes!(json::email::reset_page, json::email::reset))
        .routes(routes!(json::email::verify_page, json::email::verify))
        .routes(routes!(json::email::resend))
        .routes(routes!(json::mfa::status))
        .routes(routes!(json::mfa::enrol_totp, json::mfa::remove_totp))
        .routes(routes!(json::mfa::confirm_totp))
        .routes(routes!(json::mfa::regenerate_codes))
        .routes(routes!(json::mfa::verify))
        .routes(routes!(json::mfa::enrol_with_ticket))
        .routes(routes!(json::mfa::confirm_with_ticket))
        .routes(routes!(json::mfa::step_up))
        .routes(routes!(json::mfa::admin_reset))
        .routes(routes!(json::passkeys::list))
        .routes(routes!(json::passkeys::rename, json::passkeys::delete))
        .routes(routes!(json::passkeys::register_start))
        .routes(routes!(json::passkeys::register_finish))
        .routes(routes!(json::passkeys::login_start))
        .routes(routes!(json::passkeys::login_finish))
        .routes(routes!(json::sessions::sessions))
        .routes(routes!(json::sessions::delete_session))
        .routes(routes!(json::pats::list, json::pats::create))
        .routes(routes!(json::pats::revoke))
        .routes(routes!(json::github::login))
        .routes(routes!(json::github::callback))
        .routes(routes!(json::github::link))
        .routes(routes!(json::github::identities))
        .routes(routes!(json::github::unlink))
        .routes(routes!(json::admin::list))
        .routes(routes!(json::admin::rotate))
        .routes(routes!(json::admin::revoke))
        .routes(routes!(json::users::list))
        .routes(routes!(
            json::users::get,
            json::users::change,
            json::users::delete
        ))
        .routes(routes!(json::users::logout_all))
        .routes(routes!(json::users::clear_login_delay))
        .routes(routes!(json::profile::get, json::profile::update))
        .routes(routes!(json::audit::list))
        .routes(routes!(json::audit::export))
        .routes(routes!(json::audit::daily))
        .routes(routes!(json::roles::list))
        .routes(routes!(json::roles::set, json::roles::delete))
        .routes(routes!(json::teams::list, json::teams::create))
        .routes(routes!(json::teams::delete))
        .routes(routes!(json::teams::mine))
        .routes(routes!(json::teams::invitations))
        .routes(routes!(
            json::teams::accept_invitation,
            json::teams::decline_invitation
        ))
        .routes(routes!(json::teams::members))
        .routes(routes!(json::teams::put_member, json::teams::delete_member))
        .routes(routes!(json::roles::internal_map))
        .routes(routes!(json::oauth::token))
        .routes(routes!(json::oauth::device_authorization))
        .routes(routes!(json::oauth::userinfo))
        .routes(routes!(json::oauth::revoke))
        .routes(routes!(json::oauth::introspect))
        .routes(routes!(json::oauth::list, json::oauth::create))
        .routes(routes!(
            json::oauth::get,
            json::oauth::delete,
            json::oauth::update
        ))
        .routes(routes!(json::oauth::rotate_secret))
        .routes(routes!(json::oauth::set_keys))
        .routes(routes!(json::oauth::apps))
        .routes(routes!(json::oauth::disconnect))
        .routes(routes!(json::ops::jwks))
        .routes(routes!(json::ops::openid_configuration))
        .routes(routes!(json::feed::list))
        .routes(routes!(json::feed::stream))
        .routes(routes!(json::ops::health))
        .routes(routes!(json::ops::ready))
        .routes(routes!(json::ops::metrics))
        .routes(routes!(openapi::document))
        .routes(routes!(pages::style))
        .routes(routes!(pages::login_page, pages::login))
        .routes(routes!(pages::mfa))
        .routes(routes!(pages::mfa_enrol))
        .routes(routes!(pages::resume))
        .routes(routes!(pages::account))
        .routes(routes!(pages::logout))
        .routes(routes!(pages::end_session))
        .routes(routes!(pages::totp))
        .routes(routes!(pages::totp_confirm))
        .routes(routes!(pages::admin))
        .routes(routes!(pages::admin_user))
        .routes(routes!(pages::admin_user_page))
        .routes(routes!(pages::admin_user_team))
        .routes(routes!(pages::admin_teams, pages::admin_team_create))
        .routes(routes!(pages::admin_team))
        .routes(routes!(pages::admin_team_delete))
        .routes(routes!(pages::admin_team_remove))
        .routes(routes!(pages::admin_clients, pages::admin_client_create))
        .routes(routes!(pages::admin_client, pages::admin_client_update))
        .routes(routes!(pages::admin_client_rotate))
        .routes(routes!(pages::admin_client_delete))
        .routes(routes!(pages::device, pages::device_code))
        .routes(routes!(pages::device_answer))
        .routes(routes!(pages::script))
        .routes(routes!(pages::passkey_register_start))
        .routes(routes!(pages::passkey_register_finish))
        .routes(routes!(pages::passkey_login))
        .routes(routes!(pages::passkey_delete))
        .routes(routes!(pages::password))
        .routes(routes!(pages::forgot))
        .routes(routes!(pages::profile))
        .routes(routes!(pages::passkey_rename))
        .routes(routes!(pages::token_create))
        .routes(routes!(pages::token_revoke))
        .routes(routes!(pages::github_sign_in))
        .routes(routes!(pages::github_link))
        .routes(routes!(pages::unlink))
        .routes(routes!(pages::register_page, pages::register))
        .routes(routes!(pages::authorize, pages::authorize_consent))
        .routes(routes!(pages::disconnect_app))
        .routes(routes!(pages::end_session_rp))
        .split_for_parts();
    openapi::finish(&mut doc);
    (router, doc)
}

/// The OpenAPI document (what `/openapi.json` serves).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    documented_routes().1
}

pub fn router(state: AppState) -> Router {
    let body_limit = usize::try_from(state.settings.max_body_bytes).unwrap_or(16 * 1024);
    let (router, doc) = documented_routes();
    openapi::publish(&doc);
    let router = router
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::buffer_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ratelimit::limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            track::track,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            browser::csrf,
        ))
        .layer(axum::middleware::from_fn(limits::no_control_characters))
        .layer(axum::middleware::from_fn(limits::json_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            browser::security_headers,
        ));
    let router = match browser::cors(&state) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.with_state(state)
}
