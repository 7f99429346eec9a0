//! The catch-up protocol's messages and their encoding.
//!
//! Every message travels as one frame: a 4-byte big-endian length, then the
//! body: a version byte ([`VERSION`]), a tag byte, and the fields in a fixed
//! order (big-endian integers, `u16`-length-prefixed paths and strings,
//! `u32`-length-prefixed byte strings, `u16` item counts). Every length and
//! count is bounded before anything is allocated; trailing bytes, unknown
//! versions and unknown tags are refused. Signed objects (certificates,
//! caps, revocations, tombstones) travel as their canonical `kith-caps`
//! encodings and are verified by the receiver.

use kith_store::BlobHash;
use kith_store::automerge::ChangeHash;
use kith_types::{DeviceId, Path, Timestamp};

use super::addr::Addr;
use super::codec::{Dec, Enc};

/// The ALPN of the catch-up protocol.
pub const ALPN: &[u8] = b"kith/sync/1";
/// Version byte of every message body.
pub const VERSION: u8 = 1;
/// Largest frame body accepted: a document delta of up to 16 MiB plus room.
pub const MAX_FRAME_LEN: usize = (16 << 20) + (64 << 10);
/// Most items in one batched message.
pub const MAX_BATCH: usize = 1024;
/// Most heads of one document in a message.
pub const MAX_HEADS: usize = 1024;
/// Longest signed object carried inside a message.
pub const MAX_SIGNED_LEN: usize = 32 << 10;
/// Most signed objects of one kind in a message.
pub const MAX_SIGNED_ITEMS: usize = 4096;
/// Longest human-readable reason.
pub const MAX_REASON_LEN: usize = 1024;
/// Most devices in an `Addresses` message.
pub const MAX_ADDRESSED_DEVICES: usize = 64;
/// Size of the blob chunks a server sends.
pub const BLOB_CHUNK: usize = 1 << 20;

pub use super::codec::WireError;

/// What kind of content an entry holds, as sent to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireKind {
    /// An Automerge document.
    Document {
        /// Its creation time (part of its identity).
        created: Timestamp,
        /// Its creator (part of its identity).
        creator: DeviceId,
        /// Its heads on the sender.
        heads: Vec<ChangeHash>,
    },
    /// A blob reference.
    Blob {
        /// BLAKE3 hash of the content.
        hash: BlobHash,
        /// Size in bytes.
        size: u64,
        /// Media type.
        media_type: String,
    },
}

/// An entry's metadata, as sent to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireEntry {
    /// Where it sits.
    pub path: Path,
    /// The device of its latest write.
    pub device: DeviceId,
    /// The time of its latest write.
    pub timestamp: Timestamp,
    /// Its content.
    pub kind: WireKind,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalCode {
    /// The requester did not identify itself first, or broke the sequence.
    Protocol = 1,
    /// The requester's device certificate is invalid or not for this peer.
    BadCertificate = 2,
    /// The requester is not a friend, or the request is not covered by a
    /// valid read capability.
    Unauthorized = 3,
    /// The requested thing does not exist here.
    NotFound = 4,
    /// A per-peer limit was exceeded.
    RateLimited = 5,
    /// The request was malformed.
    Malformed = 6,
    /// Something failed on the serving side.
    Internal = 7,
}

impl RefusalCode {
    fn from_u8(v: u8) -> Result<Self, WireError> {
        Ok(match v {
            1 => Self::Protocol,
            2 => Self::BadCertificate,
            3 => Self::Unauthorized,
            4 => Self::NotFound,
            5 => Self::RateLimited,
            6 => Self::Malformed,
            7 => Self::Internal,
            _ => return Err(WireError("unknown refusal code")),
        })
    }
}

/// A protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Requester → owner, first: who I am (my device certificate) and the
    /// certificates of my namespace's other devices.
    Hello {
        /// The requester's `DeviceCert` for the device it connects with.
        cert: Vec<u8>,
        /// Certificates of the requester's other devices.
        other_certs: Vec<Vec<u8>>,
    },
    /// Owner → requester, after `Hello`: the requester's current read caps
    /// and the revocations of caps it held, and the owner's device
    /// certificates and device revocations.
    Welcome {
        /// Read caps granted to the requester (or, for an own device, all).
        caps: Vec<Vec<u8>>,
        /// Revocations of caps the requester held.
        revocations: Vec<Vec<u8>>,
        /// The owner's device certificates.
        owner_certs: Vec<Vec<u8>>,
        /// The owner's device revocations.
        device_revocations: Vec<Vec<u8>>,
    },
    /// Owner → one of its own devices, after `Welcome`: the owner's friends'
    /// tickets, so that every device of a namespace serves the same friends.
    Friends {
        /// Ticket texts.
        tickets: Vec<Vec<u8>>,
    },
    /// Requester → owner: what changed under each prefix after each
    /// sequence number (of the serving device's change log).
    Sync {
        /// (prefix, last sequence number seen) per prefix.
        cursors: Vec<(Path, u64)>,
    },
    /// Owner → requester: signed deletion requests under the requested
    /// prefixes.
    Tombstones {
        /// Signed tombstones.
        items: Vec<Vec<u8>>,
    },
    /// Owner → requester: changed entries under the requested prefixes.
    Entries {
        /// Entry metadata.
        items: Vec<WireEntry>,
    },
    /// Owner → requester: the end of a `Sync` answer, with the cursors to
    /// send next time.
    SyncDone {
        /// (prefix, sequence number now) per requested prefix.
        cursors: Vec<(Path, u64)>,
    },
    /// Requester → owner: send the changes of these documents that a holder
    /// of these heads lacks.
    WantDocs {
        /// (path, heads held).
        items: Vec<(Path, Vec<ChangeHash>)>,
    },
    /// Owner → requester: one document's missing changes.
    Doc {
        /// Its path.
        path: Path,
        /// Its creation time.
        created: Timestamp,
        /// Its creator.
        creator: DeviceId,
        /// The device of its latest write.
        device: DeviceId,
        /// The time of its latest write.
        timestamp: Timestamp,
        /// Automerge changes.
        changes: Vec<u8>,
    },
    /// Owner → requester: every wanted document has been answered.
    DocsDone,
    /// Requester → owner: stream this blob from `offset`.
    WantBlob {
        /// A path referencing the blob that the requester may read.
        path: Path,
        /// The blob's hash.
        hash: BlobHash,
        /// Where to start.
        offset: u64,
        /// Whether the blob's group hashes are wanted (`BlobGroups` after
        /// `BlobStart`), to verify each group as it arrives. Sent as its own
        /// tag (24), so an older owner refuses it rather than misreading it.
        groups: bool,
    },
    /// Owner → requester: blob bytes follow: `size` bytes from `offset`, as
    /// `BlobChunk`s, then `BlobEnd`.
    BlobStart {
        /// Total size of the blob.
        size: u64,
        /// Where the following chunks start.
        offset: u64,
    },
    /// Owner → requester, right after `BlobStart` when the requester asked
    /// for them: the blob's group hashes (`kith_store::groups`), 32 bytes
    /// each, none for a blob of one group.
    BlobGroups {
        /// The encoded group hashes.
        hashes: Vec<u8>,
    },
    /// Owner → requester: a piece of blob content.
    BlobChunk {
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Owner → requester: the blob is complete.
    BlobEnd,
    /// Requester → owner: signed receipts of deletions this device applied.
    Receipts {
        /// Signed receipts.
        items: Vec<Vec<u8>>,
    },
    /// Owner → requester: these receipts (by tombstone id) were recorded.
    ReceiptsAck {
        /// Tombstone ids of the recorded receipts.
        tombstones: Vec<Vec<u8>>,
    },
    /// Owner → requester, after `Welcome`: the live-push scopes the
    /// requester belongs to, each as a `kith-caps` `Scope` encoding (its
    /// secret) with the signed `Roster` of its epoch.
    Scopes {
        /// (scope, roster) encodings.
        items: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// Owner → member, alone on a stream, when a scope moved to a new epoch
    /// or its roster grew: the member's scopes as in `Scopes` (the complete
    /// set), with the live pushes the owner published so far into each new
    /// epoch's topic (sealed as on gossip, from the epoch's first), which
    /// reached no one while the topic was forming. The member checks and
    /// stores the scopes, receives the pushes as if from gossip, and
    /// answers `ScopesAck`; no catch-up is needed.
    Rekey {
        /// (scope, roster) encodings.
        items: Vec<(Vec<u8>, Vec<u8>)>,
        /// (index into `items`, sealed push) in the order published.
        recent: Vec<(u16, Vec<u8>)>,
    },
    /// Member → owner, on the stream of a `Rekey`: the scopes were verified
    /// and stored.
    ScopesAck,
    /// Owner → friend (or own device), alone on a stream: something is owed
    /// to you (a new scope epoch, a deletion); sync with me now.
    Poke,
    /// Either way, alone on a stream: I have just started (or moved to
    /// another network), and this connection shows where I am now. The
    /// receiver re-joins the gossip topics it joined through the sender
    /// (their state led to the old process) and catches up with the
    /// sender's namespace.
    Back,
    /// Owner → requester, after `Welcome`: where the owner's devices can be
    /// reached (the serving device's own addresses, and what it learnt of
    /// the others), so that the requester reaches another of them when
    /// this one is away. Hints only: the requester keeps those of devices
    /// the `Welcome` certified, and iroh authenticates whoever answers.
    Addresses {
        /// (device, its addresses, most recent first).
        devices: Vec<(DeviceId, Vec<Addr>)>,
    },
    /// Either way: a request (or one item of it) was refused.
    Refused {
        /// Why.
        code: RefusalCode,
        /// The path concerned, if any.
        path: Option<Path>,
        /// A human-readable reason.
        reason: String,
    },
}

const TAG_HELLO: u8 = 1;
const TAG_WELCOME: u8 = 2;
const TAG_SYNC: u8 = 3;
const TAG_TOMBSTONES: u8 = 4;
const TAG_ENTRIES: u8 = 5;
const TAG_SYNC_DONE: u8 = 6;
const TAG_WANT_DOCS: u8 = 7;
const TAG_DOC: u8 = 8;
const TAG_DOCS_DONE: u8 = 9;
const TAG_WANT_BLOB: u8 = 10;
const TAG_BLOB_START: u8 = 11;
/// Tag of `BlobChunk`, for readers that stream its payload directly.
pub const TAG_BLOB_CHUNK: u8 = 12;
const TAG_BLOB_END: u8 = 13;
const TAG_REFUSED: u8 = 14;
const TAG_FRIENDS: u8 = 15;
const TAG_RECEIPTS: u8 = 16;
const TAG_RECEIPTS_ACK: u8 = 17;
const TAG_SCOPES: u8 = 18;
const TAG_POKE: u8 = 19;
const TAG_ADDRESSES: u8 = 20;
const TAG_BACK: u8 = 21;
const TAG_SCOPES_ACK: u8 = 22;
const TAG_REKEY: u8 = 23;
const TAG_WANT_BLOB_GROUPS: u8 = 24;
const TAG_BLOB_GROUPS: u8 = 25;
/// Most bytes of group hashes in `BlobGroups`.
pub const MAX_BLOB_GROUPS_LEN: usize = 32 * kith_store::groups::MAX_GROUPS as usize;
/// Longest scope or roster encoding carried in `Scopes`: a full roster on
/// the longest prefix (a scope's encoding is far shorter).
pub const MAX_SCOPE_ITEM_LEN: usize = kith_caps::Roster::MAX_ENCODED_LEN;
/// Most recent pushes in a `Rekey`.
pub const MAX_REKEY_RECENT: usize = 64;
/// Longest recent push in a `Rekey` (a gossip message).
pub const MAX_RECENT_PUSH_LEN: usize = 64 << 10;
const _: () = assert!(kith_caps::Scope::MAX_ENCODED_LEN <= MAX_SCOPE_ITEM_LEN);

impl Message {
    /// A refusal.
    pub fn refused(code: RefusalCode, path: Option<Path>, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        if reason.len() > MAX_REASON_LEN {
            let mut cut = MAX_REASON_LEN;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        Self::Refused { code, path, reason }
    }

    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "Hello",
            Message::Welcome { .. } => "Welcome",
            Message::Friends { .. } => "Friends",
            Message::Sync { .. } => "Sync",
            Message::Tombstones { .. } => "Tombstones",
            Message::Entries { .. } => "Entries",
            Message::SyncDone { .. } => "SyncDone",
            Message::WantDocs { .. } => "WantDocs",
            Message::Doc { .. } => "Doc",
            Message::DocsDone => "DocsDone",
            Message::WantBlob { .. } => "WantBlob",
            Message::BlobStart { .. } => "BlobStart",
            Message::BlobGroups { .. } => "BlobGroups",
            Message::BlobChunk { .. } => "BlobChunk",
            Message::BlobEnd => "BlobEnd",
            Message::Receipts { .. } => "Receipts",
            Message::ReceiptsAck { .. } => "ReceiptsAck",
            Message::Scopes { .. } => "Scopes",
            Message::Poke => "Poke",
            Message::Back => "Back",
            Message::ScopesAck => "ScopesAck",
            Message::Rekey { .. } => "Rekey",
            Message::Addresses { .. } => "Addresses",
            Message::Refused { .. } => "Refused",
        }
    }

    /// The frame body (without the length prefix).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_after(Vec::with_capacity(64))
    }

    /// The whole frame: a 4-byte big-endian length, then the body.
    pub fn encode_frame(&self) -> Vec<u8> {
        let capacity = match self {
            Message::BlobChunk { bytes } => bytes.len() + 16,
            Message::Doc { changes, .. } => changes.len() + 128,
            _ => 128,
        };
        let mut buf = Vec::with_capacity(capacity);
        buf.extend_from_slice(&[0; 4]);
        let mut frame = self.encode_after(buf);
        let len = u32::try_from(frame.len() - 4).unwrap_or(u32::MAX);
        frame[..4].copy_from_slice(&len.to_be_bytes());
        frame
    }

    /// Appends the body to `buf`.
    fn encode_after(&self, buf: Vec<u8>) -> Vec<u8> {
        let mut w = Enc(buf);
        w.u8(VERSION);
        match self {
            Message::Hello { cert, other_certs } => {
                w.u8(TAG_HELLO);
                w.bytes(cert);
                w.list(other_certs, |w, c| w.bytes(c));
            }
            Message::Welcome {
                caps,
                revocations,
                owner_certs,
                device_revocations,
            } => {
                w.u8(TAG_WELCOME);
                for list in [caps, revocations, owner_certs, device_revocations] {
                    w.list(list, |w, c| w.bytes(c));
                }
            }
            Message::Friends { tickets } => {
                w.u8(TAG_FRIENDS);
                w.list(tickets, |w, t| w.bytes(t));
            }
            Message::Sync { cursors } => {
                w.u8(TAG_SYNC);
                w.list(cursors, |w, (p, s)| {
                    w.path(p);
                    w.u64(*s);
                });
            }
            Message::Tombstones { items } => {
                w.u8(TAG_TOMBSTONES);
                w.list(items, |w, t| w.bytes(t));
            }
            Message::Entries { items } => {
                w.u8(TAG_ENTRIES);
                w.list(items, |w, e| w.entry(e));
            }
            Message::SyncDone { cursors } => {
                w.u8(TAG_SYNC_DONE);
                w.list(cursors, |w, (p, s)| {
                    w.path(p);
                    w.u64(*s);
                });
            }
            Message::WantDocs { items } => {
                w.u8(TAG_WANT_DOCS);
                w.list(items, |w, (p, heads)| {
                    w.path(p);
                    w.heads(heads);
                });
            }
            Message::Doc {
                path,
                created,
                creator,
                device,
                timestamp,
                changes,
            } => {
                w.u8(TAG_DOC);
                w.path(path);
                w.u64(created.as_micros());
                w.raw(creator.as_bytes());
                w.raw(device.as_bytes());
                w.u64(timestamp.as_micros());
                w.bytes(changes);
            }
            Message::DocsDone => w.u8(TAG_DOCS_DONE),
            Message::WantBlob {
                path,
                hash,
                offset,
                groups,
            } => {
                w.u8(if *groups {
                    TAG_WANT_BLOB_GROUPS
                } else {
                    TAG_WANT_BLOB
                });
                w.path(path);
                w.raw(hash.as_bytes());
                w.u64(*offset);
            }
            Message::BlobStart { size, offset } => {
                w.u8(TAG_BLOB_START);
                w.u64(*size);
                w.u64(*offset);
            }
            Message::BlobGroups { hashes } => {
                w.u8(TAG_BLOB_GROUPS);
                w.bytes(hashes);
            }
            Message::BlobChunk { bytes } => {
                w.u8(TAG_BLOB_CHUNK);
                w.bytes(bytes);
            }
            Message::BlobEnd => w.u8(TAG_BLOB_END),
            Message::Receipts { items } => {
                w.u8(TAG_RECEIPTS);
                w.list(items, |w, r| w.bytes(r));
            }
            Message::ReceiptsAck { tombstones } => {
                w.u8(TAG_RECEIPTS_ACK);
                w.list(tombstones, |w, t| w.bytes(t));
            }
            Message::Scopes { items } => {
                w.u8(TAG_SCOPES);
                w.list(items, |w, (scope, roster)| {
                    w.bytes(scope);
                    w.bytes(roster);
                });
            }
            Message::Poke => w.u8(TAG_POKE),
            Message::Back => w.u8(TAG_BACK),
            Message::ScopesAck => w.u8(TAG_SCOPES_ACK),
            Message::Rekey { items, recent } => {
                w.u8(TAG_REKEY);
                w.list(items, |w, (scope, roster)| {
                    w.bytes(scope);
                    w.bytes(roster);
                });
                w.list(recent, |w, (index, push)| {
                    w.u16(*index);
                    w.bytes(push);
                });
            }
            Message::Addresses { devices } => {
                w.u8(TAG_ADDRESSES);
                w.list(devices, |w, (device, addrs)| {
                    w.raw(device.as_bytes());
                    Addr::encode_list(addrs, w);
                });
            }
            Message::Refused { code, path, reason } => {
                w.u8(TAG_REFUSED);
                w.u8(*code as u8);
                match path {
                    Some(p) => {
                        w.u8(1);
                        w.path(p);
                    }
                    None => w.u8(0),
                }
                w.str(reason);
            }
        }
        w.0
    }

    /// Decodes a frame body.
    ///
    /// # Errors
    /// [`WireError`] for anything that is not exactly one valid message.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() > MAX_FRAME_LEN {
            return Err(WireError("frame too large"));
        }
        let mut r = Dec(bytes);
        if r.u8()? != VERSION {
            return Err(WireError("unknown version"));
        }
        let tag = r.u8()?;
        let msg = match tag {
            TAG_HELLO => Message::Hello {
                cert: r.signed()?,
                other_certs: r.list(MAX_SIGNED_ITEMS, Dec::signed)?,
            },
            TAG_WELCOME => Message::Welcome {
                caps: r.list(MAX_SIGNED_ITEMS, Dec::signed)?,
                revocations: r.list(MAX_SIGNED_ITEMS, Dec::signed)?,
                owner_certs: r.list(MAX_SIGNED_ITEMS, Dec::signed)?,
                device_revocations: r.list(MAX_SIGNED_ITEMS, Dec::signed)?,
            },
            TAG_FRIENDS => Message::Friends {
                tickets: r.list(MAX_SIGNED_ITEMS, Dec::signed)?,
            },
            TAG_SYNC => Message::Sync {
                cursors: r.list(MAX_BATCH, |r| Ok((r.path()?, r.u64()?)))?,
            },
            TAG_TOMBSTONES => Message::Tombstones {
                items: r.list(MAX_SIGNED_ITEMS, Dec::signed)?,
            },
            TAG_ENTRIES => Message::Entries {
                items: r.list(MAX_BATCH, Dec::entry)?,
            },
            TAG_SYNC_DONE => Message::SyncDone {
                cursors: r.list(MAX_BATCH, |r| Ok((r.path()?, r.u64()?)))?,
            },
            TAG_WANT_DOCS => Message::WantDocs {
                items: r.list(MAX_BATCH, |r| Ok((r.path()?, r.heads()?)))?,
            },
            TAG_DOC => Message::Doc {
                path: r.path()?,
                created: Timestamp::from_micros(r.u64()?),
                creator: DeviceId::from_bytes(r.array()?),
                device: DeviceId::from_bytes(r.array()?),
                timestamp: Timestamp::from_micros(r.u64()?),
                changes: r.bytes(MAX_FRAME_LEN)?.to_vec(),
            },
            TAG_DOCS_DONE => Message::DocsDone,
            TAG_WANT_BLOB | TAG_WANT_BLOB_GROUPS => Message::WantBlob {
                path: r.path()?,
                hash: BlobHash::from_bytes(r.array()?),
                offset: r.u64()?,
                groups: tag == TAG_WANT_BLOB_GROUPS,
            },
            TAG_BLOB_GROUPS => Message::BlobGroups {
                hashes: r.bytes(MAX_BLOB_GROUPS_LEN)?.to_vec(),
            },
            TAG_BLOB_START => Message::BlobStart {
                size: r.u64()?,
                offset: r.u64()?,
            },
            TAG_BLOB_CHUNK => Message::BlobChunk {
                bytes: r.bytes(BLOB_CHUNK)?.to_vec(),
            },
            TAG_BLOB_END => Message::BlobEnd,
            TAG_RECEIPTS => Message::Receipts {
                items: r.list(MAX_SIGNED_ITEMS, Dec::signed)?,
            },
            TAG_RECEIPTS_ACK => Message::ReceiptsAck {
                tombstones: r.list(MAX_SIGNED_ITEMS, Dec::signed)?,
            },
            TAG_SCOPES => Message::Scopes {
                items: r.list(MAX_SIGNED_ITEMS, |r| {
                    Ok((
                        r.bytes(MAX_SCOPE_ITEM_LEN)?.to_vec(),
                        r.bytes(MAX_SCOPE_ITEM_LEN)?.to_vec(),
                    ))
                })?,
            },
            TAG_POKE => Message::Poke,
            TAG_BACK => Message::Back,
            TAG_SCOPES_ACK => Message::ScopesAck,
            TAG_REKEY => {
                let items = r.list(MAX_SIGNED_ITEMS, |r| {
                    Ok((
                        r.bytes(MAX_SCOPE_ITEM_LEN)?.to_vec(),
                        r.bytes(MAX_SCOPE_ITEM_LEN)?.to_vec(),
                    ))
                })?;
                let recent = r.list(MAX_REKEY_RECENT, |r| {
                    let index = r.u16()?;
                    if usize::from(index) >= items.len() {
                        return Err(WireError("a recent push for a scope not sent"));
                    }
                    Ok((index, r.bytes(MAX_RECENT_PUSH_LEN)?.to_vec()))
                })?;
                Message::Rekey { items, recent }
            }
            TAG_ADDRESSES => Message::Addresses {
                devices: r.list(MAX_ADDRESSED_DEVICES, |r| {
                    Ok((DeviceId::from_bytes(r.array()?), Addr::decode_list(r)?))
                })?,
            },
            TAG_REFUSED => Message::Refused {
                code: RefusalCode::from_u8(r.u8()?)?,
                path: match r.u8()? {
                    0 => None,
                    1 => Some(r.path()?),
                    _ => return Err(WireError("bad option tag")),
                },
                reason: r.str(MAX_REASON_LEN)?,
            },
            _ => return Err(WireError("unknown message tag")),
        };
        if !r.0.is_empty() {
            return Err(WireError("trailing bytes"));
        }
        Ok(msg)
    }
}

impl Enc {
    fn heads(&mut self, heads: &[ChangeHash]) {
        self.u16(heads.len().min(MAX_HEADS) as u16);
        for h in heads.iter().take(MAX_HEADS) {
            self.raw(&h.0);
        }
    }
    fn entry(&mut self, e: &WireEntry) {
        self.path(&e.path);
        self.raw(e.device.as_bytes());
        self.u64(e.timestamp.as_micros());
        match &e.kind {
            WireKind::Document {
                created,
                creator,
                heads,
            } => {
                self.u8(0);
                self.u64(created.as_micros());
                self.raw(creator.as_bytes());
                self.heads(heads);
            }
            WireKind::Blob {
                hash,
                size,
                media_type,
            } => {
                self.u8(1);
                self.raw(hash.as_bytes());
                self.u64(*size);
                self.str(media_type);
            }
        }
    }
}

impl Dec<'_> {
    fn signed(&mut self) -> Result<Vec<u8>, WireError> {
        Ok(self.bytes(MAX_SIGNED_LEN)?.to_vec())
    }
    /// At most [`MAX_HEADS`] change hashes with a `u16` count.
    pub(super) fn heads(&mut self) -> Result<Vec<ChangeHash>, WireError> {
        let n = usize::from(self.u16()?);
        if n > MAX_HEADS {
            return Err(WireError("too many heads"));
        }
        (0..n).map(|_| Ok(ChangeHash(self.array()?))).collect()
    }
    fn entry(&mut self) -> Result<WireEntry, WireError> {
        let path = self.path()?;
        let device = DeviceId::from_bytes(self.array()?);
        let timestamp = Timestamp::from_micros(self.u64()?);
        let kind = match self.u8()? {
            0 => WireKind::Document {
                created: Timestamp::from_micros(self.u64()?),
                creator: DeviceId::from_bytes(self.array()?),
                heads: self.heads()?,
            },
            1 => WireKind::Blob {
                hash: BlobHash::from_bytes(self.array()?),
                size: self.u64()?,
                media_type: self.str(kith_store::MAX_MEDIA_TYPE_LEN)?,
            },
            _ => return Err(WireError("unknown entry kind")),
        };
        Ok(WireEntry {
            path,
            device,
            timestamp,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn path() -> impl Strategy<Value = Path> {
        prop::collection::vec("[a-z0-9\u{e9}]{1,6}", 0..4)
            .prop_map(|c| Path::from_components(c).unwrap())
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..max)
    }

    fn heads() -> impl Strategy<Value = Vec<ChangeHash>> {
        prop::collection::vec(any::<[u8; 32]>().prop_map(ChangeHash), 0..3)
    }

    fn entry() -> impl Strategy<Value = WireEntry> {
        let doc = (any::<u64>(), any::<[u8; 32]>(), heads()).prop_map(|(c, cr, heads)| {
            WireKind::Document {
                created: Timestamp::from_micros(c),
                creator: DeviceId::from_bytes(cr),
                heads,
            }
        });
        let blob =
            (any::<[u8; 32]>(), any::<u64>(), "[a-z/]{0,20}").prop_map(|(h, size, media_type)| {
                WireKind::Blob {
                    hash: BlobHash::from_bytes(h),
                    size,
                    media_type,
                }
            });
        (
            path(),
            any::<[u8; 32]>(),
            any::<u64>(),
            prop_oneof![doc, blob],
        )
            .prop_map(|(path, d, t, kind)| WireEntry {
                path,
                device: DeviceId::from_bytes(d),
                timestamp: Timestamp::from_micros(t),
                kind,
            })
    }

    fn message() -> impl Strategy<Value = Message> {
        let cursors = || prop::collection::vec((path(), any::<u64>()), 0..4);
        prop_oneof![
            (bytes(200), prop::collection::vec(bytes(50), 0..3))
                .prop_map(|(cert, other_certs)| Message::Hello { cert, other_certs }),
            (
                prop::collection::vec(bytes(50), 0..3),
                prop::collection::vec(bytes(50), 0..3),
                prop::collection::vec(bytes(50), 0..3),
                prop::collection::vec(bytes(50), 0..3)
            )
                .prop_map(|(caps, revocations, owner_certs, device_revocations)| {
                    Message::Welcome {
                        caps,
                        revocations,
                        owner_certs,
                        device_revocations,
                    }
                }),
            cursors().prop_map(|cursors| Message::Sync { cursors }),
            prop::collection::vec(bytes(60), 0..3).prop_map(|tickets| Message::Friends { tickets }),
            prop::collection::vec(bytes(50), 0..3).prop_map(|items| Message::Tombstones { items }),
            prop::collection::vec(entry(), 0..4).prop_map(|items| Message::Entries { items }),
            cursors().prop_map(|cursors| Message::SyncDone { cursors }),
            prop::collection::vec((path(), heads()), 0..4)
                .prop_map(|items| Message::WantDocs { items }),
            (
                path(),
                any::<u64>(),
                any::<[u8; 32]>(),
                any::<[u8; 32]>(),
                any::<u64>(),
                bytes(100)
            )
                .prop_map(|(path, c, cr, d, t, changes)| Message::Doc {
                    path,
                    created: Timestamp::from_micros(c),
                    creator: DeviceId::from_bytes(cr),
                    device: DeviceId::from_bytes(d),
                    timestamp: Timestamp::from_micros(t),
                    changes,
                }),
            Just(Message::DocsDone),
            (path(), any::<[u8; 32]>(), any::<u64>(), any::<bool>()).prop_map(
                |(path, h, offset, groups)| Message::WantBlob {
                    path,
                    hash: BlobHash::from_bytes(h),
                    offset,
                    groups,
                }
            ),
            bytes(96).prop_map(|hashes| Message::BlobGroups { hashes }),
            (any::<u64>(), any::<u64>())
                .prop_map(|(size, offset)| Message::BlobStart { size, offset }),
            bytes(300).prop_map(|bytes| Message::BlobChunk { bytes }),
            Just(Message::BlobEnd),
            prop::collection::vec(bytes(40), 0..3).prop_map(|items| Message::Receipts { items }),
            prop::collection::vec(bytes(16), 0..3)
                .prop_map(|tombstones| Message::ReceiptsAck { tombstones }),
            prop::collection::vec((bytes(60), bytes(80)), 0..3)
                .prop_map(|items| Message::Scopes { items }),
            Just(Message::Poke),
            Just(Message::Back),
            Just(Message::ScopesAck),
            (
                prop::collection::vec((bytes(40), bytes(40)), 1..3),
                prop::collection::vec((any::<u16>(), bytes(80)), 0..3)
            )
                .prop_map(|(items, recent)| {
                    let n = items.len() as u16;
                    let recent = recent.into_iter().map(|(i, p)| (i % n, p)).collect();
                    Message::Rekey { items, recent }
                }),
            prop::collection::vec(
                (
                    any::<[u8; 32]>(),
                    prop::collection::vec(any::<core::net::SocketAddr>(), 0..3)
                ),
                0..3
            )
            .prop_map(|devices| Message::Addresses {
                devices: devices
                    .into_iter()
                    .map(|(d, a)| (
                        DeviceId::from_bytes(d),
                        a.into_iter()
                            .map(|a| Addr::Ip(core::net::SocketAddr::new(a.ip(), a.port())))
                            .chain([Addr::Relay("https://relay.example/".into())])
                            .collect()
                    ))
                    .collect()
            }),
            (prop::option::of(path()), ".{0,40}").prop_map(|(path, reason)| Message::refused(
                RefusalCode::Unauthorized,
                path,
                reason
            )),
        ]
    }

    proptest! {
        #[test]
        fn every_message_round_trips(msg in message()) {
            prop_assert_eq!(Message::decode(&msg.encode()).unwrap(), msg.clone());
            let frame = msg.encode_frame();
            prop_assert_eq!(&frame[4..], &msg.encode()[..]);
            prop_assert_eq!(u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize, frame.len() - 4);
        }

        #[test]
        fn arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = Message::decode(&raw);
        }

        #[test]
        fn damaged_messages_are_refused_or_different(msg in message(), cut in 1usize..16, flip in any::<usize>()) {
            let mut raw = msg.encode();
            let truncated = &raw[..raw.len().saturating_sub(cut)];
            prop_assert_ne!(Message::decode(truncated).ok(), Some(msg.clone()));
            let i = flip % raw.len();
            raw[i] ^= 0x55;
            if let Ok(other) = Message::decode(&raw) {
                prop_assert_ne!(other, msg);
            }
        }
    }

    /// A scope whose roster is full, on the longest prefix, reaches its
    /// member: its item is as long as a roster can be.
    #[test]
    fn a_full_roster_on_the_longest_prefix_fits_a_scopes_message() {
        let mut rng = rand::rng();
        let key = kith_caps::NamespaceKey::generate(&mut rng);
        let component = "x".repeat(kith_types::MAX_COMPONENT_LEN);
        let prefix = Path::parse(&format!(
            "/{}",
            vec![component; kith_types::MAX_COMPONENTS].join("/")
        ))
        .unwrap();
        let members = (0..kith_caps::Roster::MAX_MEMBERS)
            .map(|_| kith_caps::DeviceKey::generate(&mut rng).id());
        let roster = kith_caps::Roster::issue(&key, prefix.clone(), 0, members).unwrap();
        let scope = kith_caps::Scope::generate(key.id(), prefix, &mut rng);
        let msg = Message::Scopes {
            items: vec![(scope.encode(), roster.encode())],
        };
        assert_eq!(Message::decode(&msg.encode()).unwrap(), msg);
    }

    #[test]
    fn counts_larger_than_the_input_are_refused_before_allocating() {
        // A Sync claiming 1,000 cursors in a 6-byte body.
        let raw = [VERSION, TAG_SYNC, 0x03, 0xE8, 0, 0];
        assert_eq!(Message::decode(&raw), Err(WireError("truncated")));
        let raw = [VERSION, TAG_ENTRIES, 0xFF, 0xFF];
        assert_eq!(Message::decode(&raw), Err(WireError("too many items")));
        assert_eq!(
            Message::decode(&[2, TAG_DOCS_DONE]),
            Err(WireError("unknown version"))
        );
        assert_eq!(
            Message::decode(&[VERSION, TAG_DOCS_DONE, 0]),
            Err(WireError("trailing bytes"))
        );
    }
}
