//! GitHub as an OAuth 2.0 provider: the authorize URL (with PKCE), the code
//! exchange, and the few REST calls sign-in needs. The `oauth2` crate builds
//! the URL and makes the exchange; the REST calls are plain `reqwest` with a
//! timeout per call, a size cap per answer, and no redirects followed.

use std::time::Duration;

use anyhow::Context;
use oauth2::basic::BasicClient;
use oauth2::url::Url;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use serde::Deserialize;

use crate::config::GithubArgs;

/// Larger answers than this from GitHub are refused, not buffered.
const MAX_BODY_BYTES: usize = 1 << 20;
/// Lists (emails, orgs, teams) are followed for at most this many pages.
const MAX_PAGES: usize = 10;

pub struct GitHub {
    client_id: String,
    client_secret: String,
    web_url: String,
    api_url: String,
    redirect_uri: String,
    allowed_orgs: Vec<String>,
    allowed_teams: Vec<String>,
    http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// GitHub refused the code (bad, reused or expired code, PKCE mismatch,
    /// wrong client credentials): the sign-in cannot go on.
    #[error("GitHub refused the authorization code: {0}")]
    Rejected(String),
    /// GitHub could not be reached, was too slow, or answered nonsense.
    #[error("GitHub unavailable: {0}")]
    Unavailable(String),
}

/// Who GitHub says signed in.
#[derive(Debug, Clone)]
pub struct Profile {
    /// GitHub's numeric user id: stable across renames.
    pub id: u64,
    pub login: String,
    pub name: Option<String>,
    /// The primary address, if GitHub has verified it.
    pub verified_email: Option<String>,
    pub avatar_url: Option<String>,
}

/// The start of a sign-in: where to send the browser, and what to remember.
pub struct Authorize {
    pub url: String,
    pub state: String,
    pub pkce_verifier: String,
}

impl GitHub {
    /// `None` when GitHub sign-in is not configured.
    pub fn from_settings(args: &GithubArgs, issuer_url: &str) -> anyhow::Result<Option<GitHub>> {
        let Some(client_id) = args.github_client_id.clone() else {
            return Ok(None);
        };
        let client_secret = match (&args.github_client_secret_file, &args.github_client_secret) {
            (Some(path), _) => std::fs::read_to_string(path)
                .with_context(|| format!("--github-client-secret-file {}", path.display()))?
                .trim()
                .to_string(),
            (None, Some(secret)) => secret.0.clone(),
            (None, None) => anyhow::bail!(
                "--github-client-id is set but no client secret: give --github-client-secret-file \
                 (or ISSUER_GITHUB_CLIENT_SECRET)"
            ),
        };
        if client_secret.is_empty() {
            anyhow::bail!("the GitHub client secret is empty");
        }
        let timeout = Duration::from_millis(args.github_timeout_ms);
        let http = reqwest::Client::builder()
            // Following redirects from a token endpoint invites SSRF.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("devmentor-auth/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Some(GitHub {
            client_id,
            client_secret,
            web_url: args.github_web_url.clone(),
            api_url: args.github_api_url.clone(),
            redirect_uri: format!("{issuer_url}/auth/github/callback"),
            allowed_orgs: args
                .github_allowed_orgs
                .iter()
                .map(|o| o.to_ascii_lowercase())
                .collect(),
            allowed_teams: args
                .github_allowed_teams
                .iter()
                .map(|t| t.to_ascii_lowercase())
                .collect(),
            http,
        }))
    }

    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    fn gated(&self) -> bool {
        !self.allowed_orgs.is_empty() || !self.allowed_teams.is_empty()
    }

    pub fn scopes(&self) -> Vec<&'static str> {
        let mut scopes = vec!["read:user", "user:email"];
        if self.gated() {
            scopes.push("read:org");
        }
        scopes
    }

    fn oauth_client(
        &self,
    ) -> anyhow::Result<
        BasicClient<
            oauth2::EndpointSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointSet,
        >,
    > {
        Ok(BasicClient::new(ClientId::new(self.client_id.clone()))
            .set_client_secret(ClientSecret::new(self.client_secret.clone()))
            .set_auth_uri(AuthUrl::new(format!(
                "{}/login/oauth/authorize",
                self.web_url
            ))?)
            .set_token_uri(TokenUrl::new(format!(
                "{}/login/oauth/access_token",
                self.web_url
            ))?)
            .set_redirect_uri(RedirectUrl::new(self.redirect_uri.clone())?)
            // GitHub takes the client credentials in the form body.
            .set_auth_type(AuthType::RequestBody))
    }

    pub fn authorize(&self) -> anyhow::Result<Authorize> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = self.oauth_client()?;
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .set_pkce_challenge(challenge);
        for scope in self.scopes() {
            request = request.add_scope(Scope::new(scope.to_string()));
        }
        let (url, state) = request.url();
        Ok(Authorize {
            url: url.to_string(),
            state: state.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Trades the code for GitHub's access token (used here, then dropped).
    pub async fn exchange(&self, code: &str, verifier: &str) -> Result<String, GitHubError> {
        let client = self
            .oauth_client()
            .map_err(|e| GitHubError::Unavailable(e.to_string()))?;
        let result = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()))
            .request_async(&self.http)
            .await;
        match result {
            Ok(token) => Ok(token.access_token().secret().clone()),
            // GitHub answers a bad or reused code with HTTP 200 and an
            // `error` field, which does not parse as a token: a refusal.
            Err(RequestTokenError::Parse(_, body)) => {
                match serde_json::from_slice::<OAuthErrorBody>(&body) {
                    Ok(e) => Err(GitHubError::Rejected(e.error)),
                    Err(_) => Err(GitHubError::Unavailable(
                        "token endpoint answered neither a token nor an error".into(),
                    )),
                }
            }
            Err(RequestTokenError::ServerResponse(e)) => {
                Err(GitHubError::Rejected(e.error().to_string()))
            }
            Err(RequestTokenError::Request(e)) => Err(GitHubError::Unavailable(e.to_string())),
            Err(RequestTokenError::Other(e)) => Err(GitHubError::Unavailable(e)),
        }
    }

    pub async fn profile(&self, token: &str) -> Result<Profile, GitHubError> {
        let user: GhUser = self.get_one(token, "/user").await?;
        let emails: Vec<GhEmail> = self.get_all(token, "/user/emails").await?;
        let verified_email = emails
            .into_iter()
            .find(|e| e.primary && e.verified)
            .map(|e| e.email);
        Ok(Profile {
            id: user.id,
            login: user.login,
            name: user.name,
            verified_email,
            // Only an https address is kept (it is shown to other users).
            avatar_url: user
                .avatar_url
                .filter(|u| u.starts_with("https://") && u.len() <= 2048),
        })
    }

    /// `Ok(true)` if org/team gating is off or the user passes it.
    pub async fn allowed(&self, token: &str) -> Result<bool, GitHubError> {
        if !self.gated() {
            return Ok(true);
        }
        if !self.allowed_orgs.is_empty() {
            let orgs: Vec<GhOrg> = self.get_all(token, "/user/orgs").await?;
            if orgs
                .iter()
                .any(|o| self.allowed_orgs.contains(&o.login.to_ascii_lowercase()))
            {
                return Ok(true);
            }
        }
        if !self.allowed_teams.is_empty() {
            let teams: Vec<GhTeam> = self.get_all(token, "/user/teams").await?;
            if teams.iter().any(|t| {
                let name = format!("{}/{}", t.organization.login, t.slug).to_ascii_lowercase();
                self.allowed_teams.contains(&name)
            }) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn get_one<T: for<'de> Deserialize<'de>>(
        &self,
        token: &str,
        path: &str,
    ) -> Result<T, GitHubError> {
        let (body, _) = self.get(token, &format!("{}{path}", self.api_url)).await?;
        serde_json::from_slice(&body)
            .map_err(|e| GitHubError::Unavailable(format!("GET {path}: unexpected answer: {e}")))
    }

    /// Every page of a list, following `Link: rel="next"` only within the
    /// API's own address.
    async fn get_all<T: for<'de> Deserialize<'de>>(
        &self,
        token: &str,
        path: &str,
    ) -> Result<Vec<T>, GitHubError> {
        let mut url = format!("{}{path}?per_page=100", self.api_url);
        let mut all = Vec::new();
        for _ in 0..MAX_PAGES {
            let (body, next) = self.get(token, &url).await?;
            let page: Vec<T> = serde_json::from_slice(&body).map_err(|e| {
                GitHubError::Unavailable(format!("GET {path}: unexpected answer: {e}"))
            })?;
            all.extend(page);
            match next {
                Some(next) if within(&next, &self.api_url) => url = next,
                Some(_) => {
                    return Err(GitHubError::Unavailable(format!(
                        "GET {path}: next page points outside the API"
                    )))
                }
                None => return Ok(all),
            }
        }
        Ok(all)
    }

    async fn get(&self, token: &str, url: &str) -> Result<(Vec<u8>, Option<String>), GitHubError> {
        let unavailable = |e: String| GitHubError::Unavailable(e);
        let mut response = self
            .http
            .get(url)
            .bearer_auth(token)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .send()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(unavailable(format!("{} answered {status}", path_of(url))));
        }
        let next = response
            .headers()
            .get_all("link")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(next_link);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(unavailable(format!("{}: answer too large", path_of(url))));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, next))
    }
}

fn path_of(url: &str) -> String {
    Url::parse(url).map_or_else(|_| "GitHub".into(), |u| u.path().to_string())
}

/// Whether `url` lies under the API base: same origin and path prefix, so
/// on GitHub Enterprise (`https://ghe/api/v3`) the token never goes to
/// another path of the same host.
fn within(url: &str, base: &str) -> bool {
    match (Url::parse(url), Url::parse(&format!("{base}/"))) {
        (Ok(u), Ok(b)) => u.origin() == b.origin() && u.path().starts_with(b.path()),
        _ => false,
    }
}

/// The `rel="next"` target of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}

#[derive(Deserialize)]
struct OAuthErrorBody {
    error: String,
}

#[derive(Deserialize)]
struct GhUser {
    id: u64,
    login: String,
    name: Option<String>,
    #[serde(default)]
    avatar_url: Option<String>,
}

#[derive(Deserialize)]
struct GhEmail {
    email: String,
    primary: bool,
    verified: bool,
}

#[derive(Deserialize)]
struct GhOrg {
    login: String,
}

#[derive(Deserialize)]
struct GhTeamOrg {
    login: String,
}

#[derive(Deserialize)]
struct GhTeam {
    slug: String,
    organization: GhTeamOrg,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_next() {
        let h = "<https://api.github.com/user/emails?page=2&per_page=1>; rel=\"next\", \
                 <https://api.github.com/user/emails?page=3&per_page=1>; rel=\"last\"";
        assert_eq!(
            next_link(h).as_deref(),
            Some("https://api.github.com/user/emails?page=2&per_page=1")
        );
        assert_eq!(next_link("<https://x/y?page=1>; rel=\"first\""), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn pages_are_followed_only_within_the_api() {
        assert!(within(
            "https://api.github.com/user/emails?page=2",
            "https://api.github.com"
        ));
        assert!(!within(
            "https://evil.example/user/emails?page=2",
            "https://api.github.com"
        ));
        assert!(!within("http://api.github.com/x", "https://api.github.com"));
        assert!(within(
            "https://ghe.example/api/v3/user/emails?page=2",
            "https://ghe.example/api/v3"
        ));
        assert!(!within(
            "https://ghe.example/login/x?page=2",
            "https://ghe.example/api/v3"
        ));
        assert!(!within(
            "https://ghe.example/api/v30/x",
            "https://ghe.example/api/v3"
        ));
    }
}
