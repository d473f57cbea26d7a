//! What a sign-in or a refresh leads to, as values: the grant path
//! (`grant.rs`) makes them, the adapters write them.

/// Tokens for a session: a new access token, and the refresh token that
/// now stands for the session (none for a step-up, which keeps it).
#[derive(Debug)]
pub struct Tokens {
    pub access_token: String,
    /// Seconds.
    pub expires_in: i64,
    pub session_id: String,
    pub refresh: Option<Refresh>,
}

#[derive(Debug)]
pub struct Refresh {
    pub token: String,
    pub delivery: Delivery,
    /// The cookie's lifetime: the session's idle timeout, in seconds.
    pub max_age: i64,
}

/// What a proved first factor (or a completed second) leads to.
#[derive(Debug)]
pub enum SignIn {
    Tokens(Tokens),
    /// The user has a second factor: prove it with this ticket.
    SecondFactor {
        ticket: String,
        methods: Vec<&'static str>,
        expires_in: i64,
    },
    /// A role of the user needs a second factor they do not have yet: set
    /// one up with this ticket.
    Enrol {
        ticket: String,
        expires_in: i64,
    },
}

/// Where the refresh token goes besides the cookie. A sign-in from a
/// browser (it sends `Origin` or fetch metadata, which no page can remove)
/// and a refresh that presented the cookie get it in the `HttpOnly` cookie
/// alone, so one injected script on the origin cannot read it; API clients,
/// and a refresh that sent it in the body, get it in the body too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    CookieOnly,
    CookieAndBody,
    /// An OAuth client's token response: the body alone, never a cookie
    /// (the client is not the issuer's origin).
    Body,
}
