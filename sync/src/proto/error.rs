//! The protocol's own error type.

use super::wire::{RefusalCode, WireError};

/// What can go wrong while the protocol decides.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store refused or failed (through a `Source` or `Replica`).
    #[error(transparent)]
    Store(Box<kith_store::Error>),
    /// A signed object was invalid or a decision denied.
    #[error(transparent)]
    Caps(Box<kith_caps::Error>),
    /// A peer sent bytes that are not a valid message.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A peer broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The peer refused the request.
    #[error("refused by the peer ({code:?}): {reason}")]
    Refused {
        /// Why.
        code: RefusalCode,
        /// The peer's explanation.
        reason: String,
    },
    /// A `Source` or `Replica` failed for a reason of its own.
    #[error(transparent)]
    Local(Box<dyn std::error::Error + Send + Sync>),
}

/// The protocol's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<kith_store::Error> for Error {
    fn from(e: kith_store::Error) -> Self {
        Error::Store(Box::new(e))
    }
}

impl From<kith_caps::Error> for Error {
    fn from(e: kith_caps::Error) -> Self {
        Error::Caps(Box::new(e))
    }
}
