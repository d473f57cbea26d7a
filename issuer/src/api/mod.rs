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
pub mod ops;
pub mod passkeys;
pub mod profile;
pub mod ratelimit;
pub mod roles;
pub mod sessions;
pub mod teams;
pub mod users;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, patch, post, put};
use axum::Router;

use crate::AppState;

pub fn router(state: AppState) -> Router {
    let body_limit = usize::try_from(state.settings.max_body_bytes).unwrap_or(16 * 1024);
    let router = Router::new()
        .route("/auth/register", post(auth::register))
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(sessions::refresh))
        .route("/auth/logout", post(sessions::logout))
        .route("/auth/logout-all", post(sessions::logout_all))
        .route("/auth/me", get(sessions::me))
        .route("/auth/password", post(auth::change_password))
        .route("/auth/password/forgot", post(email::forgot))
        .route(
            "/auth/password/reset",
            get(email::reset_page).post(email::reset),
        )
        .route(
            "/auth/email/verify",
            get(email::verify_page).post(email::verify),
        )
        .route("/auth/email/verify/resend", post(email::resend))
        .route("/auth/mfa", get(mfa::status))
        .route(
            "/auth/mfa/totp",
            post(mfa::enrol_totp).delete(mfa::remove_totp),
        )
        .route("/auth/mfa/totp/confirm", post(mfa::confirm_totp))
        .route("/auth/mfa/recovery-codes", post(mfa::regenerate_codes))
        .route("/auth/mfa/verify", post(mfa::verify))
        .route("/auth/passkeys", get(passkeys::list))
        .route(
            "/auth/passkeys/{id}",
            patch(passkeys::rename).delete(passkeys::delete),
        )
        .route(
            "/auth/passkeys/register/start",
            post(passkeys::register_start),
        )
        .route(
            "/auth/passkeys/register/finish",
            post(passkeys::register_finish),
        )
        .route("/auth/passkeys/login/start", post(passkeys::login_start))
        .route("/auth/passkeys/login/finish", post(passkeys::login_finish))
        .route("/auth/mfa/enrol", post(mfa::enrol_with_ticket))
        .route("/auth/mfa/enrol/confirm", post(mfa::confirm_with_ticket))
        .route("/auth/mfa/step-up", post(mfa::step_up))
        .route("/admin/users/{id}/mfa", delete(mfa::admin_reset))
        .route("/auth/sessions", get(sessions::sessions))
        .route("/auth/sessions/{id}", delete(sessions::delete_session))
        .route("/auth/github/login", get(github::login))
        .route("/auth/github/callback", get(github::callback))
        .route("/auth/github/link", post(github::link))
        .route("/auth/identities", get(github::identities))
        .route("/auth/identities/{provider}", delete(github::unlink))
        .route("/admin/keys", get(admin::list))
        .route("/admin/keys/rotate", post(admin::rotate))
        .route("/admin/keys/{kid}/revoke", post(admin::revoke))
        .route("/admin/users", get(users::list))
        .route(
            "/admin/users/{id}",
            get(users::get).patch(users::change).delete(users::delete),
        )
        .route("/admin/users/{id}/logout-all", post(users::logout_all))
        .route(
            "/admin/users/{id}/login-delay",
            delete(users::clear_login_delay),
        )
        .route("/auth/profile", get(profile::get).patch(profile::update))
        .route("/admin/audit", get(audit::list))
        .route("/admin/audit/export", get(audit::export))
        .route("/admin/reports/daily", get(audit::daily))
        .route("/admin/roles", get(roles::list))
        .route("/admin/roles/{role}", put(roles::set).delete(roles::delete))
        .route("/admin/teams", get(teams::list).post(teams::create))
        .route("/admin/teams/{slug}", delete(teams::delete))
        .route("/auth/teams", get(teams::mine))
        .route("/auth/teams/{slug}/members", get(teams::members))
        .route(
            "/auth/teams/{slug}/members/{user_id}",
            put(teams::put_member).delete(teams::delete_member),
        )
        .route("/internal/permissions", get(roles::internal_map))
        .route("/.well-known/jwks.json", get(ops::jwks))
        .route(
            "/.well-known/openid-configuration",
            get(ops::openid_configuration),
        )
        .route("/internal/revocations", get(feed::list))
        .route("/internal/revocations/stream", get(feed::stream))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
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
