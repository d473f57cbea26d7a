//! The pages' one script (WebAuthn ceremonies) and the JSON endpoints it
//! calls with the page session.

use super::*;

/// The one script: passkey ceremonies (WebAuthn has no form equivalent).
const SCRIPT: &str = r#"'use strict';
(() => {
  const b64u = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)))
    .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  const bytes = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
  const post = async (path, body) => {
    const r = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body ?? {}), credentials: 'same-origin' });
    const json = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(json.message || ('HTTP ' + r.status));
    return json;
  };
  const fail = (e) => {
    const p = document.getElementById('passkey-error');
    if (p) { p.textContent = e.message || String(e); p.hidden = false; }
  };
  // Passwordless, or (with the sign-in's ticket) as the second factor.
  const signIn = async (ticket) => {
    const { ceremony_id, options } = await post('/auth/passkeys/login/start');
    const pk = options.publicKey;
    pk.challenge = bytes(pk.challenge);
    (pk.allowCredentials || []).forEach((c) => { c.id = bytes(c.id); });
    const c = await navigator.credentials.get({ publicKey: pk });
    const credential = { id: c.id, rawId: b64u(c.rawId), type: c.type, extensions: {},
      response: { authenticatorData: b64u(c.response.authenticatorData),
        clientDataJSON: b64u(c.response.clientDataJSON), signature: b64u(c.response.signature),
        userHandle: c.response.userHandle ? b64u(c.response.userHandle) : null } };
    const to = document.querySelector('[data-return-to]')?.dataset.returnTo;
    const finish = '/auth/ui/passkeys/login/finish' + (to ? '?return_to=' + encodeURIComponent(to) : '');
    const done = await post(finish, ticket ? { ceremony_id, credential, mfa_ticket: ticket }
      : { ceremony_id, credential });
    location.assign(done.redirect);
  };
  const add = async () => {
    const { ceremony_id, options } = await post('/auth/ui/passkeys/register/start');
    const pk = options.publicKey;
    pk.challenge = bytes(pk.challenge);
    pk.user.id = bytes(pk.user.id);
    (pk.excludeCredentials || []).forEach((c) => { c.id = bytes(c.id); });
    const c = await navigator.credentials.create({ publicKey: pk });
    const credential = { id: c.id, rawId: b64u(c.rawId), type: c.type, extensions: {},
      response: { attestationObject: b64u(c.response.attestationObject),
        clientDataJSON: b64u(c.response.clientDataJSON) } };
    await post('/auth/ui/passkeys/register/finish', { ceremony_id, credential });
    location.reload();
  };
  if (!window.PublicKeyCredential) return;
  for (const button of document.querySelectorAll('button[data-passkey]')) {
    button.hidden = false;
    button.addEventListener('click', () => {
      (button.dataset.passkey === 'add' ? add() : signIn(button.dataset.ticket)).catch(fail);
    });
  }
})();
"#;

#[utoipa::path(get, path = "/auth/ui/passkeys.js", operation_id = "pages_script", tag = "pages",
    summary = "The pages' one script (passkeys)",
    responses((status = 200, description = "JavaScript", content_type = "text/javascript", body = String)))]
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        SCRIPT,
    )
        .into_response()
}

#[utoipa::path(post, path = "/auth/ui/passkeys/register/start", operation_id = "pages_passkey_register_start",
    tag = "pages", summary = "Start adding a passkey (page session)",
    responses((status = 200, description = "Creation options", body = crate::http::openapi::AnyObject)))]
pub async fn passkey_register_start(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match page_auth(&state, &headers).await {
        Ok(auth) => crate::service::passkeys::register_start(&state, &auth)
            .await
            .map(|started| axum::Json(started).into_response())
            .unwrap_or_else(IntoResponse::into_response),
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(post, path = "/auth/ui/passkeys/register/finish", operation_id = "pages_passkey_register_finish",
    tag = "pages", summary = "Finish adding a passkey (page session)",
    request_body = crate::service::passkeys::RegisterFinish,
    responses((status = 201, description = "Added", body = crate::http::openapi::AnyObject)))]
pub async fn passkey_register_finish(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    ApiJson(req): ApiJson<crate::service::passkeys::RegisterFinish>,
) -> Response {
    let auth = match page_auth(&state, &headers).await {
        Ok(auth) => auth,
        Err(e) => return e.into_response(),
    };
    let added = crate::service::passkeys::register_finish(
        &state,
        &client,
        &auth,
        &req.ceremony_id,
        &req.credential,
        req.name.as_deref(),
    )
    .await;
    match added {
        Ok(view) => crate::http::answers::passkey_added(&view),
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(post, path = "/auth/ui/passkeys/login/finish", operation_id = "pages_passkey_login",
    tag = "pages", summary = "Sign in with a passkey (sets the page session)",
    request_body = crate::service::passkeys::LoginFinish,
    params(ReturnQuery),
    responses((status = 200, description = "Signed in: where to go", body = crate::http::openapi::AnyObject)))]
pub async fn passkey_login(
    State(state): State<AppState>,
    client: Client,
    Query(q): Query<ReturnQuery>,
    ApiJson(req): ApiJson<crate::service::passkeys::LoginFinish>,
) -> Response {
    let to = match destination(&state, q.return_to.as_deref().filter(|r| !r.is_empty())) {
        Ok(to) => to,
        Err(e) => return e.into_response(),
    };
    let outcome = crate::service::passkeys::login_finish(
        &state,
        &client,
        &req.ceremony_id,
        &req.credential,
        req.mfa_ticket.as_deref(),
    )
    .await;
    match outcome {
        Ok(SignIn::Tokens(tokens)) => with_cookies_of(
            json_answer(StatusCode::OK, serde_json::json!({"redirect": to})),
            &signed_in(&state, &tokens, &to),
        ),
        // A second factor or an enrolment is due: the script shows it.
        Ok(other) => other.into_response(),
        Err(e) => e.into_response(),
    }
}
