//! The node's error type and its mapping to gRPC status codes.

use cairn_index::validate::{ValidationError, Violation};
use tonic::{Code, Status};

use crate::blobs::BlobError;
use crate::embed::EmbedError;
use crate::store::StoreError;

/// Everything a node operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A request field broke a rule (INVALID_ARGUMENT or RESOURCE_EXHAUSTED).
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// A namespace or memory does not exist (NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// The node's state forbids the call (FAILED_PRECONDITION).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The state database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blob store failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// The embedder failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The data dir's disk is below the free-space floor: writes are refused, reads go on (RESOURCE_EXHAUSTED).
    #[error("{0}")]
    DiskFull(String),
    /// The node cannot take the call now, e.g. while shutting down (UNAVAILABLE).
    #[error("{0}")]
    Unavailable(String),
    /// A background task died.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl NodeError {
    /// Shorthand for an INVALID_ARGUMENT on `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        NodeError::Validation(ValidationError::invalid(field, reason))
    }

    /// Shorthand for a RESOURCE_EXHAUSTED on `field`.
    pub fn too_large(field: impl Into<String>, reason: impl Into<String>) -> Self {
        NodeError::Validation(ValidationError::too_large(field, reason))
    }
}

impl From<tokio::task::JoinError> for NodeError {
    fn from(e: tokio::task::JoinError) -> Self {
        NodeError::Task(e.to_string())
    }
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Self {
        let code = match &e {
            NodeError::Validation(v) => match v.violation {
                Violation::Invalid => Code::InvalidArgument,
                Violation::TooLarge => Code::ResourceExhausted,
            },
            NodeError::NotFound(_) => Code::NotFound,
            NodeError::DiskFull(_) => Code::ResourceExhausted,
            NodeError::FailedPrecondition(_) => Code::FailedPrecondition,
            NodeError::Embed(EmbedError::Stopped) | NodeError::Unavailable(_) => Code::Unavailable,
            NodeError::Store(_) | NodeError::Blob(_) | NodeError::Embed(_) | NodeError::Task(_) => {
                tracing::error!(error = %e, "request failed");
                Code::Internal
            }
        };
        Status::new(code, e.to_string())
    }
}
