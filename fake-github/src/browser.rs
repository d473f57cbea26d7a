//! A cookie-keeping client that walks a redirect dance the way a browser
//! does, for tests of sign-in flows. Public origins (the issuer's configured
//! URL, say `https://issuer.test`) can be aliased to the real loopback
//! address serving them; cookies are kept per public origin. `Secure` is
//! honoured as a browser on TLS would (the alias stands in for the TLS
//! front), so `__Host-` cookies work.

use std::collections::HashMap;

use reqwest::header::{HeaderMap, ACCEPT, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode, Url};

/// One answer on the way.
#[derive(Debug, Clone)]
pub struct Visit {
    /// The (public) URL that answered.
    pub url: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    /// Where a redirect pointed.
    pub location: Option<String>,
}

impl Visit {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Default)]
pub struct Browser {
    http: reqwest::Client,
    aliases: Vec<(String, String)>,
    jar: HashMap<String, HashMap<String, String>>,
    /// Send `Accept: application/json` (an API client, not a page).
    pub accept_json: bool,
    /// Every URL visited, in order.
    pub history: Vec<String>,
}

fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

impl Browser {
    pub fn new() -> Self {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    /// Requests to `public` (an origin) go to `real` (a base URL).
    pub fn alias(&mut self, public: &str, real: &str) {
        self.aliases.push((
            public.trim_end_matches('/').into(),
            real.trim_end_matches('/').into(),
        ));
    }

    fn reachable(&self, url: &Url) -> Option<String> {
        let o = origin(url);
        if let Some((_, real)) = self.aliases.iter().find(|(p, _)| *p == o) {
            let rest = &url.as_str()[o.len()..];
            return Some(format!("{real}{rest}"));
        }
        (url.host_str() == Some("127.0.0.1")).then(|| url.to_string())
    }

    pub fn cookie(&self, origin: &str, name: &str) -> Option<String> {
        self.jar.get(origin).and_then(|c| c.get(name)).cloned()
    }

    pub fn set_cookie(&mut self, origin: &str, name: &str, value: &str) {
        self.jar
            .entry(origin.to_string())
            .or_default()
            .insert(name.to_string(), value.to_string());
    }

    pub fn forget_cookies(&mut self) {
        self.jar.clear();
    }

    /// One request; cookies stored. Panics on an unreachable URL (a test bug).
    pub async fn request(
        &mut self,
        method: Method,
        url: &str,
        body: Option<serde_json::Value>,
        bearer: Option<&str>,
    ) -> Visit {
        let parsed = Url::parse(url).unwrap_or_else(|e| panic!("bad URL {url}: {e}"));
        let real = self
            .reachable(&parsed)
            .unwrap_or_else(|| panic!("{url} is not reachable from this test browser"));
        let o = origin(&parsed);
        let mut req = self.http.request(method, &real);
        if let Some(cookies) = self.jar.get(&o).filter(|c| !c.is_empty()) {
            let line: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header(COOKIE, line.join("; "));
        }
        if self.accept_json {
            req = req.header(ACCEPT, "application/json");
        } else {
            req = req.header(ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8");
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let response = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        self.history.push(url.to_string());
        let status = response.status();
        let headers = response.headers().clone();
        for value in headers.get_all(SET_COOKIE) {
            let Ok(line) = value.to_str() else { continue };
            let mut parts = line.split(';');
            let Some((name, value)) = parts.next().and_then(|p| p.trim().split_once('=')) else {
                continue;
            };
            let expired = parts.any(|p| p.trim().eq_ignore_ascii_case("max-age=0"));
            let cookies = self.jar.entry(o.clone()).or_default();
            if expired {
                cookies.remove(name);
            } else {
                cookies.insert(name.to_string(), value.to_string());
            }
        }
        let location = headers
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| parsed.join(l).ok())
            .map(|u| u.to_string());
        let body = response.text().await.unwrap_or_default();
        Visit {
            url: url.to_string(),
            status,
            headers,
            body,
            location,
        }
    }

    pub async fn get(&mut self, url: &str) -> Visit {
        self.request(Method::GET, url, None, None).await
    }

    /// Follows redirects while they point somewhere this browser can reach;
    /// returns the last answer (a redirect elsewhere, or a page).
    pub async fn follow(&mut self, url: &str) -> Visit {
        let mut visit = self.get(url).await;
        for _ in 0..10 {
            let Some(next) = visit
                .location
                .clone()
                .filter(|_| visit.status.is_redirection())
            else {
                return visit;
            };
            let reachable = Url::parse(&next).ok().and_then(|u| self.reachable(&u));
            if reachable.is_none() {
                return visit;
            }
            visit = self.get(&next).await;
        }
        panic!("redirect loop from {url}: {:?}", self.history)
    }
}
