//! The store's error type.

use kith_types::{NamespaceId, ParseError, Path, Timestamp};

use crate::BlobHash;

/// A limit from [`Limits`](crate::Limits) that a write exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// [`Limits::max_document_size`](crate::Limits::max_document_size).
    DocumentSize,
    /// [`Limits::max_change_size`](crate::Limits::max_change_size).
    ChangeSize,
    /// [`Limits::max_pending_size`](crate::Limits::max_pending_size).
    PendingSize,
    /// [`Limits::max_blob_size`](crate::Limits::max_blob_size).
    BlobSize,
    /// [`Limits::max_record_size`](crate::Limits::max_record_size).
    RecordSize,
    /// Length of a record id ([`MAX_RECORD_ID_LEN`](crate::MAX_RECORD_ID_LEN)).
    RecordId,
    /// Length of a media type ([`MAX_MEDIA_TYPE_LEN`](crate::MAX_MEDIA_TYPE_LEN)).
    MediaType,
    /// Length of an index key ([`MAX_INDEX_KEY_LEN`](crate::MAX_INDEX_KEY_LEN)).
    IndexKey,
    /// Length of an index value ([`MAX_INDEX_VALUE_LEN`](crate::MAX_INDEX_VALUE_LEN)).
    IndexValue,
}

/// Everything that can go wrong in the store.
///
/// The recoverable cases a caller acts on ([`Error::Tombstoned`],
/// [`Error::Superseded`], [`Error::TooLarge`], [`Error::NotFound`], …) are
/// distinct from storage failures ([`Error::Storage`], [`Error::Io`],
/// [`Error::Corrupt`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A path or id was malformed.
    #[error("invalid path or id: {0}")]
    Invalid(#[from] ParseError),
    /// Entries live below the root; `/` itself cannot hold one.
    #[error("an entry needs a path with at least one component; '/' cannot hold data")]
    RootPath,
    /// Nothing is stored at this path.
    #[error("nothing at {path} in namespace {namespace}")]
    NotFound {
        /// The namespace.
        namespace: NamespaceId,
        /// The path.
        path: Path,
    },
    /// The entry at this path is not of the kind the call needs.
    #[error("{path} holds a {found}, not a {expected}")]
    WrongKind {
        /// The path.
        path: Path,
        /// What the call needed.
        expected: &'static str,
        /// What is stored.
        found: &'static str,
    },
    /// A deletion (tombstone) covers this path and the write is not newer
    /// than it: the data was deleted and must not come back.
    #[error("{path} was deleted by a tombstone at {tombstone}; this write ({write}) is not newer")]
    Tombstoned {
        /// The path written.
        path: Path,
        /// The time of the covering tombstone.
        tombstone: Timestamp,
        /// The timestamp (or document creation time) of the refused write.
        write: Timestamp,
    },
    /// A newer entry already sits at this path (a later document or blob
    /// replaced the one this write belongs to).
    #[error("{path} already holds a newer entry; this write belongs to an older one")]
    Superseded {
        /// The path written.
        path: Path,
    },
    /// A configured limit was exceeded.
    #[error("{limit:?} limit exceeded: {size} bytes, the maximum is {max}")]
    TooLarge {
        /// Which limit.
        limit: Limit,
        /// The size seen (or at least this large).
        size: u64,
        /// The configured maximum.
        max: u64,
    },
    /// Blob content did not hash to the expected value.
    #[error("blob content hashes to {actual}, expected {expected}")]
    HashMismatch {
        /// The hash that was expected.
        expected: BlobHash,
        /// The hash of the bytes received.
        actual: BlobHash,
    },
    /// Group hashes offered for a blob are not its own (see
    /// [`groups`](crate::groups)).
    #[error("the group hashes offered for blob {0} do not match its hash")]
    BadGroups(BlobHash),
    /// A group of a blob's bytes does not match its group hash: refused as
    /// it arrived (or found damaged among the bytes kept).
    #[error("bytes from offset {offset} of blob {hash} do not match its hash")]
    GroupMismatch {
        /// The blob.
        hash: BlobHash,
        /// Where the group starts.
        offset: u64,
    },
    /// The document's content was purged from this store (friends' data is
    /// a cache); its entry stays, and its owner's devices serve it again.
    #[error(
        "the content of {path} of {namespace} is not stored here (purged from the cache); fetch it from its owner"
    )]
    NotHere {
        /// The namespace.
        namespace: NamespaceId,
        /// The path.
        path: Path,
    },
    /// The blob's bytes are not in this store (never fetched, or purged).
    #[error("blob {0} is not stored locally")]
    BlobMissing(BlobHash),
    /// No entry references this blob, so its content is not kept.
    #[error("no entry references blob {0}; write the entry first")]
    Unreferenced(BlobHash),
    /// A byte range is outside the blob.
    #[error("range {start}..{end} is outside the blob of {size} bytes")]
    BadRange {
        /// Start of the requested range.
        start: u64,
        /// End of the requested range.
        end: u64,
        /// Size of the blob.
        size: u64,
    },
    /// Automerge refused the bytes (not a document or change, or corrupt).
    #[error("automerge: {0}")]
    Automerge(Box<automerge::AutomergeError>),
    /// A stored value could not be decoded: the data folder is damaged.
    #[error("stored {what} is damaged ({why}); the data folder may be corrupt")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// Why it was refused.
        why: &'static str,
    },
    /// Another download of this blob stayed open for a minute while this
    /// one waited its turn ([`Store::resume_import`](crate::Store::resume_import)).
    #[error("blob {0} is being downloaded by another caller; try again once it is done")]
    Busy(BlobHash),
    /// Another process (or another store in this one) has the folder open;
    /// it is free again once that one closes it.
    #[error("the store in {0} is open in another process")]
    Locked(std::path::PathBuf),
    /// fjall failed.
    #[error("storage: {0}")]
    Storage(#[from] fjall::Error),
    /// A file operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl From<automerge::AutomergeError> for Error {
    fn from(e: automerge::AutomergeError) -> Self {
        Error::Automerge(Box::new(e))
    }
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
