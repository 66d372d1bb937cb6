//! The one error type of Kubernetes API calls, with a fixed category.

use std::time::Duration;

use super::fence::NotLeader;

/// A Kubernetes API call that failed, took too long, or was refused before it was sent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("the API call timed out after {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    NotLeader(#[from] NotLeader),
    #[error("building the request: {0}")]
    Encode(String),
}

impl Error {
    /// The HTTP status of an API answer (404, 409, ...), if it was one.
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Api(kube::Error::Api(s)) => Some(s.code),
            _ => None,
        }
    }

    /// A fixed CamelCase word for the kind of failure: the `category` label of the
    /// operator's metrics, the reason of a condition and of an Event.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Api(kube::Error::Api(s)) => match s.code {
                400 => "BadRequest",
                401 => "Unauthorized",
                403 => "Forbidden",
                404 => "NotFound",
                409 => "Conflict",
                410 => "Gone",
                422 => "Invalid",
                429 => "TooManyRequests",
                500..=599 => "ServerError",
                _ => "ApiError",
            },
            Error::Api(_) => "Unreachable",
            Error::Timeout(_) => "Timeout",
            Error::NotLeader(_) => "NotLeader",
            Error::Encode(_) => "Encode",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> Error {
        Error::Api(kube::Error::Api(
            kube::core::Status::failure("x", "Reason")
                .with_code(code)
                .boxed(),
        ))
    }

    #[test]
    fn every_failure_has_a_fixed_category() {
        assert_eq!(api(404).category(), "NotFound");
        assert_eq!(api(409).category(), "Conflict");
        assert_eq!(api(403).category(), "Forbidden");
        assert_eq!(api(422).category(), "Invalid");
        assert_eq!(api(503).category(), "ServerError");
        assert_eq!(api(418).category(), "ApiError");
        assert_eq!(api(404).code(), Some(404));
        assert_eq!(Error::Timeout(Duration::from_secs(1)).category(), "Timeout");
        assert_eq!(Error::Timeout(Duration::from_secs(1)).code(), None);
        assert_eq!(Error::NotLeader(NotLeader).category(), "NotLeader");
        assert_eq!(Error::Encode("x".into()).category(), "Encode");
    }
}
