//! HTTP routes.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod browser;
pub mod email;
pub mod extract;
pub mod feed;
pub mod github;
pub mod grant;
pub mod limits;
pub mod mfa;
pub mod openapi;
pub mod ops;
pub mod pages;
pub mod passkeys;
pub mod password_check;
pub mod profile;
pub mod ratelimit;
pub mod roles;
pub mod sessions;
pub mod teams;
pub mod users;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

/// Every route with its OpenAPI description, from the handlers' own
/// `#[utoipa::path]` attributes: one list, so neither can drift.
fn documented_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::<AppState>::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(sessions::refresh))
        .routes(routes!(sessions::logout))
        .routes(routes!(sessions::logout_all))
        .routes(routes!(sessions::me))
        .routes(routes!(auth::change_password))
        .routes(routes!(email::forgot))
        .routes(routes!(email::reset_page, email::reset))
        .routes(routes!(email::verify_page, email::verify))
        .routes(routes!(email::resend))
        .routes(routes!(mfa::status))
        .routes(routes!(mfa::enrol_totp, mfa::remove_totp))
        .routes(routes!(mfa::confirm_totp))
        .routes(routes!(mfa::regenerate_codes))
        .routes(routes!(mfa::verify))
        .routes(routes!(mfa::enrol_with_ticket))
        .routes(routes!(mfa::confirm_with_ticket))
        .routes(routes!(mfa::step_up))
        .routes(routes!(mfa::admin_reset))
        .routes(routes!(passkeys::list))
        .routes(routes!(passkeys::rename, passkeys::delete))
        .routes(routes!(passkeys::register_start))
        .routes(routes!(passkeys::register_finish))
        .routes(routes!(passkeys::login_start))
        .routes(routes!(passkeys::login_finish))
        .routes(routes!(sessions::sessions))
        .routes(routes!(sessions::delete_session))
        .routes(routes!(github::login))
        .routes(routes!(github::callback))
        .routes(routes!(github::link))
        .routes(routes!(github::identities))
        .routes(routes!(github::unlink))
        .routes(routes!(admin::list))
        .routes(routes!(admin::rotate))
        .routes(routes!(admin::revoke))
        .routes(routes!(users::list))
        .routes(routes!(users::get, users::change, users::delete))
        .routes(routes!(users::logout_all))
        .routes(routes!(users::clear_login_delay))
        .routes(routes!(profile::get, profile::update))
        .routes(routes!(audit::list))
        .routes(routes!(audit::export))
        .routes(routes!(audit::daily))
        .routes(routes!(roles::list))
        .routes(routes!(roles::set, roles::delete))
        .routes(routes!(teams::list, teams::create))
        .routes(routes!(teams::delete))
        .routes(routes!(teams::mine))
        .routes(routes!(teams::invitations))
        .routes(routes!(teams::accept_invitation, teams::decline_invitation))
        .routes(routes!(teams::members))
        .routes(routes!(teams::put_member, teams::delete_member))
        .routes(routes!(roles::internal_map))
        .routes(routes!(ops::jwks))
        .routes(routes!(ops::openid_configuration))
        .routes(routes!(feed::list))
        .routes(routes!(feed::stream))
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics))
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
        .routes(routes!(pages::script))
        .routes(routes!(pages::passkey_register_start))
        .routes(routes!(pages::passkey_register_finish))
        .routes(routes!(pages::passkey_login))
        .routes(routes!(pages::passkey_delete))
        .routes(routes!(pages::password))
        .routes(routes!(pages::forgot))
        .routes(routes!(pages::profile))
        .routes(routes!(pages::passkey_rename))
        .routes(routes!(pages::github_sign_in))
        .routes(routes!(pages::github_link))
        .routes(routes!(pages::unlink))
        .routes(routes!(pages::register_page, pages::register))
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
            crate::metrics::track,
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
