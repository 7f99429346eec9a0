//! The app's error type: node and store errors plus what the app itself
//! refuses. The HTTP layer maps it to status codes in one place
//! ([`crate::http`]).

/// Everything that can go wrong in the app.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The node (or the store under it) refused or failed.
    #[error(transparent)]
    Node(#[from] kith::Error),
    /// The request or its arguments are malformed.
    #[error("{0}")]
    BadInput(String),
    /// No friend has this name or namespace id.
    #[error("unknown friend {0:?}")]
    UnknownFriend(String),
    /// Nothing of that kind exists.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what exists (for example a friend name
    /// already in use).
    #[error("{0}")]
    Conflict(String),
    /// The operation is not possible here (for example a network command
    /// without a running daemon).
    #[error("{0}")]
    Unavailable(String),
    /// A running daemon answered with an error.
    #[error("{message}")]
    Remote {
        /// The HTTP status.
        status: u16,
        /// The error code (see `API.md`).
        code: String,
        /// The daemon's one-line reason.
        message: String,
    },
    /// A file operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// The app's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<kith::store::Error> for Error {
    fn from(e: kith::store::Error) -> Self {
        Error::Node(e.into())
    }
}

impl From<kith_types::ParseError> for Error {
    fn from(e: kith_types::ParseError) -> Self {
        Error::BadInput(format!("invalid path or id: {e}"))
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Io(std::io::Error::other(format!(
            "background task failed: {e}"
        )))
    }
}

/// Runs blocking store work on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await?
}
