//! The node's error type.

use kith_types::NamespaceId;

use crate::proto::wire::{RefusalCode, WireError};

/// Everything that can go wrong in the node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store refused or failed.
    #[error(transparent)]
    Store(Box<kith_store::Error>),
    /// A signed object was invalid or a decision denied.
    #[error(transparent)]
    Caps(Box<kith_caps::Error>),
    /// A path or id was malformed.
    #[error("invalid path or id: {0}")]
    Invalid(#[from] kith_types::ParseError),
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
    /// [`Node::delete`](crate::Node::delete) was given the root: that
    /// would delete the whole namespace, here and on every friend's device.
    #[error(
        "deleting / would delete your whole namespace, here and on every friend's device; \
         give a path below it, or call delete_everything to mean it"
    )]
    WholeNamespace,
    /// A ticket could not be read.
    #[error("invalid ticket: {0}")]
    InvalidTicket(String),
    /// The namespace is not a friend of this node.
    #[error("{0} is not a friend; add their ticket first")]
    NotFriend(NamespaceId),
    /// No device of the owner could be reached.
    #[error("no device of {namespace} could be reached: {last_error}")]
    Unreachable {
        /// The namespace.
        namespace: NamespaceId,
        /// The last connection error.
        last_error: String,
    },
    /// A network operation failed.
    #[error("network: {0}")]
    Network(String),
    /// The operation took too long.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The identity files in the data folder are missing or damaged.
    #[error("identity: {0}")]
    Identity(String),
    /// This device cannot do that (for example, issue grants without the
    /// namespace key).
    #[error("not allowed on this device: {0}")]
    NotAllowed(&'static str),
    /// The node was shut down.
    #[error("the node has shut down")]
    Shutdown,
    /// A file operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// The node's result type.
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

impl From<crate::proto::Error> for Error {
    fn from(e: crate::proto::Error) -> Self {
        use crate::proto::Error as P;
        match e {
            P::Store(e) => Error::Store(e),
            P::Caps(e) => Error::Caps(e),
            P::Wire(e) => Error::Wire(e),
            P::Protocol(why) => Error::Protocol(why),
            P::Refused { code, reason } => Error::Refused { code, reason },
            P::Local(e) => match e.downcast::<Error>() {
                Ok(e) => *e,
                Err(e) => Error::Protocol(e.to_string()),
            },
        }
    }
}

impl From<Error> for crate::proto::Error {
    fn from(e: Error) -> Self {
        use crate::proto::Error as P;
        match e {
            Error::Store(e) => P::Store(e),
            Error::Caps(e) => P::Caps(e),
            Error::Wire(e) => P::Wire(e),
            Error::Protocol(why) => P::Protocol(why),
            Error::Refused { code, reason } => P::Refused { code, reason },
            other => P::Local(Box::new(other)),
        }
    }
}

impl Error {
    /// The store error inside, if this is one.
    pub fn as_store(&self) -> Option<&kith_store::Error> {
        match self {
            Error::Store(e) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn network(e: impl std::fmt::Display) -> Self {
        Error::Network(e.to_string())
    }
}
