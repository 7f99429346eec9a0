//! What sits at a path: entry metadata and its stored encoding.

use std::fmt;
use std::str::FromStr;

use automerge::ChangeHash;
use kith_types::{DeviceId, Timestamp};

use crate::codec::{Reader, Writer};
use crate::{Error, Result};

/// Longest media type accepted for a blob, in bytes.
pub const MAX_MEDIA_TYPE_LEN: usize = 255;
/// Most heads a stored document may have (concurrent branches).
const MAX_HEADS: usize = 4096;

const ENTRY_VERSION: u8 = 1;
const KIND_DOCUMENT: u8 = 0;
const KIND_BLOB: u8 = 1;

/// The BLAKE3 hash of a blob's content, its address in the store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobHash([u8; 32]);

impl BlobHash {
    /// Wraps 32 hash bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw hash bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The hash of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

impl From<blake3::Hash> for BlobHash {
    fn from(h: blake3::Hash) -> Self {
        Self(*h.as_bytes())
    }
}

impl fmt::Display for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobHash({})", &self.to_hex()[..10])
    }
}

impl FromStr for BlobHash {
    type Err = kith_types::ParseError;

    /// Parses 64 hex characters.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        blake3::Hash::from_hex(s.trim())
            .map(Self::from)
            .map_err(|_| {
                kith_types::ParseError::MalformedEncoding("a blob hash is 64 hex characters")
            })
    }
}

/// The metadata of what sits at a (namespace, path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Document or blob, with their specific metadata.
    pub kind: EntryKind,
    /// The device that made the latest write.
    pub device: DeviceId,
    /// Hybrid-logical-clock time of the latest write.
    pub timestamp: Timestamp,
    /// This namespace's local sequence number of the latest write.
    pub seq: u64,
}

/// The kind-specific part of an [`Entry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// An Automerge document.
    Document {
        /// When the document was created. With `creator`, its identity: a
        /// tombstone at time `T` kills every document created at or before
        /// `T`, including changes to it that arrive later.
        created: Timestamp,
        /// The device that created the document.
        creator: DeviceId,
        /// The document's current heads.
        heads: Vec<ChangeHash>,
        /// Bytes the document occupies in the store.
        size: u64,
        /// Whether changes with missing dependencies are queued.
        pending: bool,
    },
    /// A reference to content-addressed bytes.
    Blob {
        /// BLAKE3 hash of the content.
        hash: BlobHash,
        /// Size of the content in bytes.
        size: u64,
        /// Media type, such as `image/jpeg`.
        media_type: String,
    },
}

/// Identity of what sits at a path, for deciding which of two writes wins:
/// the later-created document or blob replaces the earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Identity {
    pub(crate) time: Timestamp,
    pub(crate) device: DeviceId,
}

impl Entry {
    /// `"document"` or `"blob"`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            EntryKind::Document { .. } => "document",
            EntryKind::Blob { .. } => "blob",
        }
    }

    /// The document heads, if this is a document.
    pub fn heads(&self) -> Option<&[ChangeHash]> {
        match &self.kind {
            EntryKind::Document { heads, .. } => Some(heads),
            EntryKind::Blob { .. } => None,
        }
    }

    /// The blob hash, if this is a blob.
    pub fn blob_hash(&self) -> Option<BlobHash> {
        match &self.kind {
            EntryKind::Blob { hash, .. } => Some(*hash),
            EntryKind::Document { .. } => None,
        }
    }

    /// For documents their creation, for blobs their write.
    pub(crate) fn identity(&self) -> Identity {
        match &self.kind {
            EntryKind::Document {
                created, creator, ..
            } => Identity {
                time: *created,
                device: *creator,
            },
            EntryKind::Blob { .. } => Identity {
                time: self.timestamp,
                device: self.device,
            },
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_version(ENTRY_VERSION);
        match &self.kind {
            EntryKind::Document { .. } => w.u8(KIND_DOCUMENT),
            EntryKind::Blob { .. } => w.u8(KIND_BLOB),
        };
        w.bytes32(self.device.as_bytes())
            .u64(self.timestamp.as_micros())
            .u64(self.seq);
        match &self.kind {
            EntryKind::Document {
                created,
                creator,
                heads,
                size,
                pending,
            } => {
                w.u64(created.as_micros())
                    .bytes32(creator.as_bytes())
                    .u64(*size)
                    .u8(u8::from(*pending));
                let n = heads.len().min(MAX_HEADS);
                w.u16(n as u16);
                for h in &heads[..n] {
                    w.bytes32(&h.0);
                }
            }
            EntryKind::Blob {
                hash,
                size,
                media_type,
            } => {
                w.bytes32(hash.as_bytes())
                    .u64(*size)
                    .short_bytes(media_type.as_bytes());
            }
        }
        w.finish()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "entry", ENTRY_VERSION)?;
        let kind_tag = r.u8()?;
        let device = DeviceId::from_bytes(r.bytes32()?);
        let timestamp = Timestamp::from_micros(r.u64()?);
        let seq = r.u64()?;
        let kind = match kind_tag {
            KIND_DOCUMENT => {
                let created = Timestamp::from_micros(r.u64()?);
                let creator = DeviceId::from_bytes(r.bytes32()?);
                let size = r.u64()?;
                let pending = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(r.corrupt("bad flag")),
                };
                let n = usize::from(r.u16()?);
                if n > MAX_HEADS {
                    return Err(r.corrupt("too many heads"));
                }
                let mut heads = Vec::with_capacity(n);
                for _ in 0..n {
                    heads.push(ChangeHash(r.bytes32()?));
                }
                EntryKind::Document {
                    created,
                    creator,
                    heads,
                    size,
                    pending,
                }
            }
            KIND_BLOB => {
                let hash = BlobHash(r.bytes32()?);
                let size = r.u64()?;
                let media_type = std::str::from_utf8(r.short_bytes(MAX_MEDIA_TYPE_LEN)?)
                    .map_err(|_| Error::Corrupt {
                        what: "entry",
                        why: "media type is not UTF-8",
                    })?
                    .to_string();
                EntryKind::Blob {
                    hash,
                    size,
                    media_type,
                }
            }
            _ => return Err(r.corrupt("unknown entry kind")),
        };
        r.finish()?;
        Ok(Self {
            kind,
            device,
            timestamp,
            seq,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry() -> impl Strategy<Value = Entry> {
        let doc = (
            any::<u64>(),
            any::<[u8; 32]>(),
            prop::collection::vec(any::<[u8; 32]>(), 0..4),
            any::<u64>(),
            any::<bool>(),
        )
            .prop_map(|(c, cr, heads, size, pending)| EntryKind::Document {
                created: Timestamp::from_micros(c),
                creator: DeviceId::from_bytes(cr),
                heads: heads.into_iter().map(ChangeHash).collect(),
                size,
                pending,
            });
        let blob =
            (any::<[u8; 32]>(), any::<u64>(), "[a-z/+.-]{0,40}").prop_map(|(h, size, mt)| {
                EntryKind::Blob {
                    hash: BlobHash(h),
                    size,
                    media_type: mt,
                }
            });
        (
            prop_oneof![doc, blob],
            any::<[u8; 32]>(),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(|(kind, d, t, seq)| Entry {
                kind,
                device: DeviceId::from_bytes(d),
                timestamp: Timestamp::from_micros(t),
                seq,
            })
    }

    proptest! {
        #[test]
        fn entry_round_trip(e in entry()) {
            prop_assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
        }

        #[test]
        fn damaged_entries_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = Entry::decode(&bytes);
        }

        #[test]
        fn truncated_entries_are_refused(e in entry(), cut in 1usize..40) {
            let bytes = e.encode();
            let cut = cut.min(bytes.len());
            prop_assert!(Entry::decode(&bytes[..bytes.len() - cut]).is_err());
        }
    }

    #[test]
    fn blob_hash_text_round_trip() {
        let h = BlobHash::of(b"hello");
        assert_eq!(h.to_string().parse::<BlobHash>().unwrap(), h);
        assert!("zz".parse::<BlobHash>().is_err());
    }
}
