//! The one error of the rules: what kind of refusal (or failure) it is, a
//! stable code and a message for the client. `http::error` turns it into a
//! response (`{"error": code, "message": text}`); a page shows its message.
//! An internal failure logs its cause here and carries none of it.

/// What went wrong, as a class: the adapters map it (HTTP status, exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Timeout,
    Conflict,
    TooLarge,
    UnsupportedMedia,
    Unprocessable,
    TooMany,
    Internal,
    BadGateway,
    Unavailable,
}

#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for `Retry-After` on 503/429.
    pub retry_after: Option<u64>,
    /// A `WWW-Authenticate` value other than RFC 6750's `invalid_token`
    /// (RFC 9470 step-up challenges).
    pub challenge: Option<String>,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: Kind, code: &'static str, message: impl Into<String>) -> Self {
        Error {
            kind,
            code,
            message: message.into(),
            retry_after: None,
            challenge: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Kind::BadRequest, code, message)
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Kind::Unauthorized, code, message)
    }

    /// A client that failed to authenticate at the token endpoint: 401
    /// with the `Basic` challenge RFC 6749 5.2 asks for.
    pub fn invalid_client(message: &str) -> Self {
        let mut e = Self::unauthorized("invalid_client", message);
        e.challenge = Some("Basic realm=\"token\"".into());
        e
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(Kind::Forbidden, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Kind::NotFound, "not_found", message)
    }

    /// Logs the cause; the error says only that something went wrong.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(Kind::Internal, "internal_error", "internal error")
    }

    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "service unavailable");
        Self::new(
            Kind::Unavailable,
            "unavailable",
            "service temporarily unavailable",
        )
    }
}

/// A database failure is internal: its text stays in the log.
impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::internal(e)
    }
}

/// Any other failure (keys, encoding) is internal too.
impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        Error::internal(e)
    }
}

impl From<crate::domain::password::HashError> for Error {
    fn from(e: crate::domain::password::HashError) -> Self {
        match e {
            crate::domain::password::HashError::Busy => {
                let mut busy = Error::new(
                    Kind::Unavailable,
                    "busy",
                    "too many sign-ins at once; retry shortly",
                );
                busy.retry_after = Some(1);
                busy
            }
            other => Error::internal(other),
        }
    }
}
