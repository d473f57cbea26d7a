//! The device verification page (RFC 8628 §3.3): the user enters the code
//! a device shows, signed in as ever, sees which application asks for
//! what, and approves or denies. Always asked, first-party or not: a code
//! someone else sends you is how a device grant is phished (§5.4).

use super::*;
use crate::domain::oauth::normalize_user_code;
use crate::service::oauth::device::{self, DEVICE_PATH};

const TITLE: &str = "Sign in on a device";

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceQuery {
    /// The code the device shows (from `verification_uri_complete`).
    user_code: Option<String>,
}

fn code_form(code: Option<&str>, error: Option<&str>) -> Response {
    with_status(
        page(
            TITLE,
            html! {
                @if let Some(e) = error { p.error role="alert" { (e) } }
                p { "Enter the code your device (a command line, a TV) shows." }
                form method="post" action=(DEVICE_PATH) {
                    label for="user_code" { "Code" }
                    input id="user_code" name="user_code" required maxlength="16" autocomplete="off"
                        autocapitalize="characters" spellcheck="false" placeholder="BCDF-GHJK" value=[code];
                    button type="submit" { "Continue" }
                }
            },
        ),
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
    )
}

#[utoipa::path(get, path = "/auth/ui/device", operation_id = "pages_device", tag = "pages",
    summary = "Device verification page (RFC 8628)", params(DeviceQuery),
    responses(
        (status = 200, description = "The code form (filled in from `user_code`)", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: to the sign-in page, and back"),
    ))]
pub async fn device(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<DeviceQuery>,
) -> Response {
    // From a link on another site the code is not filled in: a code sent
    // by someone else is how this grant is phished (RFC 8628 §5.4), so the
    // user types the one their own device shows. Only a code that could be
    // one comes back through the sign-in.
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site");
    let code = q
        .user_code
        .as_deref()
        .filter(|_| !cross_site)
        .and_then(normalize_user_code)
        .map(|c| crate::domain::oauth::display_user_code(&c));
    let here = match &code {
        Some(c) => format!("{DEVICE_PATH}?user_code={c}"),
        None => DEVICE_PATH.to_string(),
    };
    if page_auth(&state, &headers).await.is_err() {
        // From a link on another site the browser withheld the SameSite=
        // Strict cookies: go on once from our own page, which sends them.
        if cross_site {
            return landing(TITLE, "Continuing.", &here);
        }
        let mut q = oauth2::url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("return_to", &here);
        return Redirect::to(&format!("/auth/ui/login?{}", q.finish())).into_response();
    }
    code_form(code.as_deref(), None)
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct DeviceCodeForm {
    user_code: String,
}

#[utoipa::path(post, path = "/auth/ui/device", operation_id = "pages_device_code", tag = "pages",
    summary = "The code entered: what the device asks for",
    request_body(content = DeviceCodeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The question: approve or deny", content_type = "text/html", body = String),
        (status = 400, description = "Not a code that waits for an answer", content_type = "text/html", body = String),
        (status = 429, description = "Too many codes entered by this account (10 per 10 minutes)", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: to the sign-in page"),
    ))]
pub async fn device_code(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Form(form): Form<DeviceCodeForm>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    let req = match device::lookup(&state, &client, &auth, &form.user_code).await {
        Ok(req) => req,
        Err(e) if e.code == "invalid_user_code" => {
            return code_form(Some(form.user_code.trim()), Some(&e.message))
        }
        Err(e) => return error_page(TITLE, e).await,
    };
    page(
        TITLE,
        html! {
            p { strong { (req.client_name) } " (" code { (req.client_id) } ") on a device asks to sign in as "
                strong { (auth.user.email) } " and to:" }
            ul { @for s in &req.scope { li { (super::oauth::describe(s)) } } }
            @if let Some(r) = &req.resource { p { "Its tokens are for " code { (r) } "." } }
            p { "Asked " (crate::store::rfc3339_ms(req.requested_at * 1000))
                @if let Some(ip) = &req.requested_ip { " from " code #requested-ip { (ip) } }
                "." }
            p { "Code " strong #user-code { (req.user_code) } ". Approve only if you started this yourself, on a device in front of you, and it shows this code. "
                "If someone sent you this code, deny." }
            form method="post" action={ (DEVICE_PATH) "/answer" } {
                input type="hidden" name="user_code" value=(req.user_code);
                input type="hidden" name="answer_token" value=(req.token);
                button type="submit" name="decision" value="allow" { "Approve" }
                " "
                button type="submit" name="decision" value="deny" { "Deny" }
            }
        },
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct DeviceAnswerForm {
    user_code: String,
    answer_token: String,
    /// `allow` or `deny`.
    decision: String,
}

#[utoipa::path(post, path = "/auth/ui/device/answer", operation_id = "pages_device_answer", tag = "pages",
    summary = "The user's answer to a device's request",
    request_body(content = DeviceAnswerForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Done: back to the device", content_type = "text/html", body = String),
        (status = 400, description = "A form the issuer did not show, or a request no longer waiting", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: to the sign-in page"),
    ))]
pub async fn device_answer(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Form(form): Form<DeviceAnswerForm>,
) -> Response {
    let allow = match form.decision.as_str() {
        "allow" => true,
        "deny" => false,
        _ => {
            let e = ApiError::bad_request("invalid_request", "decision: allow or deny");
            return error_page(TITLE, e).await;
        }
    };
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    match device::answer(
        &state,
        &client,
        &auth,
        &form.user_code,
        allow,
        &form.answer_token,
    )
    .await
    {
        Ok(()) if allow => page(
            "Device signed in",
            html! { p #device-done { "Approved. Go back to your device: it is signed in." } },
        ),
        Ok(()) => page(
            "Device refused",
            html! { p #device-done { "Denied. The device was not signed in." } },
        ),
        Err(e) => error_page(TITLE, e).await,
    }
}
