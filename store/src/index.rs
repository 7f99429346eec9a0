//! Derived indexes: an ordered keyspace of opaque keys and values that
//! applications keep beside the data, such as a timeline ordered by time.
//!
//! The store does not interpret them and does not keep them consistent with
//! the entries itself: an index is derived from the change log
//! ([`Store::changes_since`](crate::Store::changes_since)), and its owner
//! records how far it has read the log in the same atomic batch as the index
//! updates ([`Store::write_index`](crate::Store::write_index)), so after a
//! crash it resumes from the last batch that committed. Keys and values are
//! bounded; a scan returns at most the number of items asked for.

/// Longest index key, bytes (room for a namespace, a tag and the longest
/// encoded path; far below fjall's 65,535-byte limit).
pub const MAX_INDEX_KEY_LEN: usize = 17 * 1024;
/// Largest index value, bytes.
pub const MAX_INDEX_VALUE_LEN: usize = 64 * 1024;

/// One write to the index keyspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexOp {
    /// Store `value` under `key`, replacing what was there.
    Put {
        /// The key (at most [`MAX_INDEX_KEY_LEN`] bytes, not empty).
        key: Vec<u8>,
        /// The value (at most [`MAX_INDEX_VALUE_LEN`] bytes).
        value: Vec<u8>,
    },
    /// Remove `key` (nothing happens if it is absent).
    Remove {
        /// The key.
        key: Vec<u8>,
    },
}

impl IndexOp {
    /// The key written or removed.
    pub fn key(&self) -> &[u8] {
        match self {
            IndexOp::Put { key, .. } | IndexOp::Remove { key } => key,
        }
    }
}
