//! The issuer as the CLI talks to it: discovery, the device authorization
//! grant and refreshes by the `oauth2` crate, revocation (RFC 7009) and
//! `userinfo` by plain requests.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use oauth2::basic::BasicClient;
use oauth2::{
    AsyncHttpClient, ClientId, DeviceAuthorizationUrl, EndpointNotSet, EndpointSet,
    HttpClientError, HttpRequest, RefreshToken, Scope, StandardDeviceAuthorizationResponse,
    TokenResponse, TokenUrl,
};
use serde::Deserialize;

use crate::credentials::Credentials;

/// The discovery document's fields the CLI uses.
#[derive(Debug, Deserialize)]
pub struct Provider {
    pub issuer: String,
    pub token_endpoint: String,
    pub device_authorization_endpoint: Option<String>,
    pub revocation_endpoint: Option<String>,
    pub userinfo_endpoint: Option<String>,
}

type Client = BasicClient<EndpointNotSet, EndpointSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

pub fn http() -> Result<reqwest::Client> {
    // Redirects are not followed: a token request answered by a redirect
    // would carry the code or the refresh token elsewhere.
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// https, or http on loopback only (a refresh token is not sent in clear).
fn safe_origin(url: &str) -> Result<String> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("{url:?}: not a URL"))?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => bail!("{url}: https only (http on loopback)"),
    }
    Ok(parsed.origin().ascii_serialization())
}

/// The provider at `issuer`, which must name itself `issuer` (a document
/// served for another issuer is refused: a mix-up), with every endpoint
/// on the issuer's own origin.
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Provider> {
    let issuer = issuer.trim_end_matches('/');
    let origin = safe_origin(issuer)?;
    let url = format!("{issuer}/.well-known/openid-configuration");
    let r = http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("reaching {url}"))?;
    if !r.status().is_success() {
        bail!("{url}: {}", r.status());
    }
    let provider: Provider = r
        .json()
        .await
        .with_context(|| format!("{url}: not discovery metadata"))?;
    if provider.issuer.trim_end_matches('/') != issuer {
        bail!(
            "{url} names the issuer {:?}, not {issuer:?}: refusing to sign in there",
            provider.issuer
        );
    }
    let endpoints = [
        Some(&provider.token_endpoint),
        provider.device_authorization_endpoint.as_ref(),
        provider.revocation_endpoint.as_ref(),
        provider.userinfo_endpoint.as_ref(),
    ];
    for endpoint in endpoints.into_iter().flatten() {
        if safe_origin(endpoint)? != origin {
            bail!("{url}: {endpoint} is not on the issuer's origin {origin}: refusing");
        }
    }
    Ok(provider)
}

fn client(provider: &Provider, client_id: &str) -> Result<Client> {
    let device = provider
        .device_authorization_endpoint
        .as_deref()
        .context("the issuer offers no device authorization endpoint")?;
    Ok(BasicClient::new(ClientId::new(client_id.to_string()))
        .set_token_uri(TokenUrl::new(provider.token_endpoint.clone())?)
        .set_device_authorization_url(DeviceAuthorizationUrl::new(device.to_string())?))
}

/// `http` with a fresh DPoP proof on every request when `key` is given
/// (the device code's polls and refreshes): the token endpoint then binds
/// the tokens to the key, and a bound refresh token needs it.
fn with_proof<'a>(
    http: &'a reqwest::Client,
    key: Option<&'a str>,
) -> impl Fn(HttpRequest) -> <reqwest::Client as AsyncHttpClient<'a>>::Future + 'a {
    move |mut req: HttpRequest| {
        if let Some(key) = key {
            let proof =
                crate::dpop::proof(key, req.method().as_str(), &req.uri().to_string(), None)
                    .map_err(|e| e.to_string())
                    .and_then(|p| {
                        oauth2::http::HeaderValue::from_str(&p).map_err(|e| e.to_string())
                    });
            match proof {
                Ok(value) => {
                    req.headers_mut().insert("dpop", value);
                }
                Err(e) => {
                    return Box::pin(async move { Err(HttpClientError::Other(e)) })
                        as <reqwest::Client as AsyncHttpClient<'a>>::Future;
                }
            }
        }
        http.call(req)
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn credentials<T: TokenResponse>(
    issuer: &str,
    client_id: &str,
    answer: &T,
    old_refresh: Option<String>,
) -> Credentials {
    let expires_in = answer.expires_in().map_or(300, |d| d.as_secs());
    Credentials {
        issuer: issuer.trim_end_matches('/').to_string(),
        client_id: client_id.to_string(),
        access_token: answer.access_token().secret().clone(),
        expires_at: now().saturating_add(i64::try_from(expires_in).unwrap_or(300)),
        // A refresh answered without a new one keeps the one it used.
        refresh_token: answer
            .refresh_token()
            .map(|r| r.secret().clone())
            .or(old_refresh),
        scope: answer
            .scopes()
            .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
        dpop_key: None,
    }
}

/// The device flow: the codes, `show` tells the user where to go, then
/// the polls (the crate keeps the interval and obeys `slow_down`).
pub async fn device_login(
    http: &reqwest::Client,
    provider: &Provider,
    client_id: &str,
    scopes: &[String],
    dpop_key: Option<String>,
    show: impl FnOnce(&StandardDeviceAuthorizationResponse),
) -> Result<Credentials> {
    let client = client(provider, client_id)?;
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scopes(scopes.iter().map(|s| Scope::new(s.clone())))
        .request_async(http)
        .await
        .map_err(|e| anyhow::anyhow!("device authorization: {}", describe(&e)))?;
    show(&details);
    let answer = client
        .exchange_device_access_token(&details)
        .request_async(
            &with_proof(http, dpop_key.as_deref()),
            tokio::time::sleep,
            None,
        )
        .await
        .map_err(|e| anyhow::anyhow!("signing in: {}", describe(&e)))?;
    let mut creds = credentials(&provider.issuer, client_id, &answer, None);
    creds.dpop_key = dpop_key;
    Ok(creds)
}

/// A new access token from the refresh token (rotated: the new one is kept).
pub async fn refresh(
    http: &reqwest::Client,
    provider: &Provider,
    creds: &Credentials,
) -> Result<Credentials> {
    let Some(refresh) = &creds.refresh_token else {
        bail!("the access token has expired and there is no refresh token: run `devmentor login`");
    };
    let client = client(provider, &creds.client_id)?;
    let answer = client
        .exchange_refresh_token(&RefreshToken::new(refresh.clone()))
        .request_async(&with_proof(http, creds.dpop_key.as_deref()))
        .await
        .map_err(|e| anyhow::anyhow!("refreshing: {} (run `devmentor login`)", describe(&e)))?;
    let mut renewed = credentials(
        &creds.issuer,
        &creds.client_id,
        &answer,
        Some(refresh.clone()),
    );
    renewed.dpop_key = creds.dpop_key.clone();
    Ok(renewed)
}

/// Whether the access token still has `margin` seconds to live.
pub fn fresh(creds: &Credentials, margin: i64) -> bool {
    creds.expires_at > now().saturating_add(margin)
}

/// RFC 7009: the refresh token (the session with it), else the access
/// token. The `oauth2` crate refuses revocation URLs that are not https;
/// the issuer on loopback in development is http, so this is by hand.
pub async fn revoke(
    http: &reqwest::Client,
    provider: &Provider,
    creds: &Credentials,
) -> Result<()> {
    let url = provider
        .revocation_endpoint
        .as_deref()
        .context("the issuer offers no revocation endpoint")?;
    let (token, hint) = match &creds.refresh_token {
        Some(r) => (r.as_str(), "refresh_token"),
        None => (creds.access_token.as_str(), "access_token"),
    };
    let r = http
        .post(url)
        .form(&[
            ("token", token),
            ("token_type_hint", hint),
            ("client_id", creds.client_id.as_str()),
        ])
        .send()
        .await
        .with_context(|| format!("reaching {url}"))?;
    if !r.status().is_success() {
        bail!("revocation: {}", r.status());
    }
    Ok(())
}

/// A personal access token exchanged for an access token (RFC 8693 with
/// the issuer's token type; the personal access token is the credential).
pub async fn exchange_pat(
    http: &reqwest::Client,
    provider: &Provider,
    pat: &str,
    scopes: &[String],
) -> Result<String> {
    let scope = scopes.join(" ");
    let mut form = vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("subject_token", pat.trim()),
        (
            "subject_token_type",
            "urn:devmentor:params:oauth:token-type:personal_access_token",
        ),
    ];
    if !scope.is_empty() {
        form.push(("scope", &scope));
    }
    let url = &provider.token_endpoint;
    let r = http
        .post(url)
        .form(&form)
        .send()
        .await
        .with_context(|| format!("reaching {url}"))?;
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    if !status.is_success() {
        let field = |k: &str| {
            body.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        bail!(
            "the personal access token was refused: {} {}",
            field("error"),
            field("error_description")
        );
    }
    body.get("access_token")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .context("the answer carries no access_token")
}

/// OpenID Connect `userinfo` for the access token.
pub async fn userinfo(
    http: &reqwest::Client,
    provider: &Provider,
    creds: &Credentials,
) -> Result<serde_json::Value> {
    let url = provider
        .userinfo_endpoint
        .as_deref()
        .context("the issuer offers no userinfo endpoint")?;
    let access = &creds.access_token;
    let req = match &creds.dpop_key {
        Some(key) => http
            .get(url)
            .header("authorization", format!("DPoP {access}"))
            .header("dpop", crate::dpop::proof(key, "GET", url, Some(access))?),
        None => http.get(url).bearer_auth(access),
    };
    let r = req
        .send()
        .await
        .with_context(|| format!("reaching {url}"))?;
    if !r.status().is_success() {
        bail!("userinfo: {} (was the openid scope asked for?)", r.status());
    }
    Ok(r.json().await?)
}

/// An error of the `oauth2` crate with the issuer's error code and
/// description, where there is one.
fn describe<RE, T>(e: &oauth2::RequestTokenError<RE, T>) -> String
where
    RE: std::error::Error + 'static,
    T: oauth2::ErrorResponse + 'static,
{
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => r.to_string(),
        other => other.to_string(),
    }
}
