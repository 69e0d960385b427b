//! The SDK's error type.

/// Everything a call through [`crate::CairnClient`] can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node address is not a valid URL.
    #[error("invalid node address {url:?}: {reason}")]
    InvalidUrl {
        /// The address given.
        url: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The node could not be reached.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The address tried.
        url: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The token cannot be sent (not printable ASCII).
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// An answer exceeded a client-side bound.
    #[error("{0}")]
    TooLarge(String),
    /// The node sent something that does not check out (e.g. snapshot parts that do not hash to the snapshot).
    #[error("{0}")]
    Malformed(String),
    /// The node answered with an error status (INVALID_ARGUMENT, NOT_FOUND, ...).
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Status(tonic::Status),
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        Error::Status(s)
    }
}

impl Error {
    /// The gRPC status code, when the node answered with one.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Status(s) => Some(s.code()),
            _ => None,
        }
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "ok",
        Cancelled => "cancelled",
        Unknown => "unknown error",
        InvalidArgument => "invalid argument",
        DeadlineExceeded => "deadline exceeded",
        NotFound => "not found",
        AlreadyExists => "already exists",
        PermissionDenied => "permission denied",
        ResourceExhausted => "resource exhausted",
        FailedPrecondition => "failed precondition",
        Aborted => "aborted",
        OutOfRange => "out of range",
        Unimplemented => "unimplemented",
        Internal => "internal error",
        Unavailable => "unavailable",
        DataLoss => "data loss",
        Unauthenticated => "unauthenticated",
    }
}
