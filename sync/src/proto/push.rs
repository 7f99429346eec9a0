//! Live push: what a device publishes into a scope's gossip topic, and how a
//! member notices that it missed something.
//!
//! A published message is a [`PushBody`] inside a `kith-caps`
//! [`SignedPush`](kith_caps::SignedPush) (signed by the writing device),
//! sealed with the scope's payload key. Every body carries the publisher's
//! *session* (random per start of a node) and a *counter* that grows by one
//! with each data message it publishes into that scope; heartbeats repeat
//! the latest counter. A member that sees a counter jump, or a heartbeat
//! ahead of what it received, knows it missed something and catches up
//! over the direct channel ([`Sequencer`]). A publisher whose own change feed
//! lagged skips a counter value on purpose, so that members catch up.
//!
//! Encoding of a body: version `01` ‖ session `u64` ‖ counter `u64` ‖ tag,
//! then per tag (integers big-endian, paths and strings with a `u16`
//! length, byte strings with a `u32` length):
//! - `1` document: path ‖ created `u64` ‖ creator 32 ‖ timestamp `u64` ‖
//!   heads (`u16` count, 32 each) ‖ changes (empty: heads only, pull the rest)
//! - `2` blob: path ‖ timestamp `u64` ‖ hash 32 ‖ size `u64` ‖ media type
//! - `3` tombstone: the signed tombstone's encoding
//! - `4` heartbeat: nothing more.

use std::collections::HashMap;

use kith_store::BlobHash;
use kith_store::automerge::ChangeHash;
use kith_types::{DeviceId, MAX_ENCODED_PATH_LEN, Path, Timestamp};

use super::wire::{MAX_HEADS, WireError};

const VERSION: u8 = 1;
const TAG_DOC: u8 = 1;
const TAG_BLOB: u8 = 2;
const TAG_TOMBSTONE: u8 = 3;
const TAG_HEARTBEAT: u8 = 4;
/// Longest media type accepted.
const MAX_MEDIA_TYPE_LEN: usize = 255;
/// Longest body (a [`SignedPush`](kith_caps::SignedPush) body).
pub const MAX_BODY_LEN: usize = u16::MAX as usize;

/// What a push message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushKind {
    /// Changes to a document (or, with no changes, its new heads only).
    Doc {
        /// Where.
        path: Path,
        /// The document's creation time (part of its identity).
        created: Timestamp,
        /// Its creator.
        creator: DeviceId,
        /// Time of the write.
        timestamp: Timestamp,
        /// The document's heads after the changes.
        heads: Vec<ChangeHash>,
        /// Automerge changes since the previously published heads; empty
        /// when they did not fit (the receiver pulls them).
        changes: Vec<u8>,
    },
    /// A blob was written.
    Blob {
        /// Where.
        path: Path,
        /// Time of the write.
        timestamp: Timestamp,
        /// BLAKE3 hash of the content.
        hash: BlobHash,
        /// Size in bytes.
        size: u64,
        /// Media type.
        media_type: String,
    },
    /// A signed deletion request.
    Tombstone {
        /// Its `kith-caps` encoding.
        bytes: Vec<u8>,
    },
    /// "I am here, and my latest counter is this."
    Heartbeat,
}

/// A push message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushBody {
    /// Random per start of the publishing node.
    pub session: u64,
    /// The publisher's counter in this scope (for heartbeats: the latest).
    pub counter: u64,
    /// The content.
    pub kind: PushKind,
}

impl PushBody {
    /// The encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(VERSION);
        out.extend_from_slice(&self.session.to_be_bytes());
        out.extend_from_slice(&self.counter.to_be_bytes());
        let path = |out: &mut Vec<u8>, p: &Path| {
            out.extend_from_slice(&(p.encoded().len() as u16).to_be_bytes());
            out.extend_from_slice(p.encoded());
        };
        match &self.kind {
            PushKind::Doc {
                path: p,
                created,
                creator,
                timestamp,
                heads,
                changes,
            } => {
                out.push(TAG_DOC);
                path(&mut out, p);
                out.extend_from_slice(&created.as_micros().to_be_bytes());
                out.extend_from_slice(creator.as_bytes());
                out.extend_from_slice(&timestamp.as_micros().to_be_bytes());
                out.extend_from_slice(&(heads.len() as u16).to_be_bytes());
                for h in heads {
                    out.extend_from_slice(&h.0);
                }
                out.extend_from_slice(&(changes.len() as u32).to_be_bytes());
                out.extend_from_slice(changes);
            }
            PushKind::Blob {
                path: p,
                timestamp,
                hash,
                size,
                media_type,
            } => {
                out.push(TAG_BLOB);
                path(&mut out, p);
                out.extend_from_slice(&timestamp.as_micros().to_be_bytes());
                out.extend_from_slice(hash.as_bytes());
                out.extend_from_slice(&size.to_be_bytes());
                out.extend_from_slice(&(media_type.len() as u16).to_be_bytes());
                out.extend_from_slice(media_type.as_bytes());
            }
            PushKind::Tombstone { bytes } => {
                out.push(TAG_TOMBSTONE);
                out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
                out.extend_from_slice(bytes);
            }
            PushKind::Heartbeat => out.push(TAG_HEARTBEAT),
        }
        out
    }

    /// Decodes a body.
    ///
    /// # Errors
    /// [`WireError`] for anything but exactly one valid body.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() > MAX_BODY_LEN {
            return Err(WireError("push body too large"));
        }
        let mut r = Cursor(bytes);
        if r.u8()? != VERSION {
            return Err(WireError("unknown push version"));
        }
        let session = r.u64()?;
        let counter = r.u64()?;
        let kind = match r.u8()? {
            TAG_DOC => {
                let path = r.path()?;
                let created = Timestamp::from_micros(r.u64()?);
                let creator = DeviceId::from_bytes(r.array()?);
                let timestamp = Timestamp::from_micros(r.u64()?);
                let n = usize::from(r.u16()?);
                if n > MAX_HEADS {
                    return Err(WireError("too many heads"));
                }
                let mut heads = Vec::with_capacity(n);
                for _ in 0..n {
                    heads.push(ChangeHash(r.array()?));
                }
                let len = r.u32()? as usize;
                let changes = r.take(len)?.to_vec();
                PushKind::Doc {
                    path,
                    created,
                    creator,
                    timestamp,
                    heads,
                    changes,
                }
            }
            TAG_BLOB => {
                let path = r.path()?;
                let timestamp = Timestamp::from_micros(r.u64()?);
                let hash = BlobHash::from_bytes(r.array()?);
                let size = r.u64()?;
                let len = usize::from(r.u16()?);
                if len > MAX_MEDIA_TYPE_LEN {
                    return Err(WireError("media type too long"));
                }
                let media_type = String::from_utf8(r.take(len)?.to_vec())
                    .map_err(|_| WireError("media type is not UTF-8"))?;
                PushKind::Blob {
                    path,
                    timestamp,
                    hash,
                    size,
                    media_type,
                }
            }
            TAG_TOMBSTONE => {
                let len = r.u32()? as usize;
                PushKind::Tombstone {
                    bytes: r.take(len)?.to_vec(),
                }
            }
            TAG_HEARTBEAT => PushKind::Heartbeat,
            _ => return Err(WireError("unknown push tag")),
        };
        if !r.0.is_empty() {
            return Err(WireError("trailing bytes"));
        }
        Ok(Self {
            session,
            counter,
            kind,
        })
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError("truncated push body"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn path(&mut self) -> Result<Path, WireError> {
        let len = usize::from(self.u16()?);
        if len > MAX_ENCODED_PATH_LEN {
            return Err(WireError("path too long"));
        }
        Path::from_encoded(self.take(len)?).map_err(|_| WireError("invalid path"))
    }
}

/// What a member should do after a push message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// In order (or a harmless repeat): nothing more to do.
    InOrder,
    /// Something was missed: catch up with the owner.
    Gap,
}

/// Per publishing device, the latest counter seen in one scope.
#[derive(Debug, Default)]
pub struct Sequencer {
    seen: HashMap<DeviceId, (u64, u64)>,
}

impl Sequencer {
    /// Records a data message (`heartbeat == false`) or a heartbeat with
    /// `counter` from `device`'s `session`.
    ///
    /// Counters of a session start at 1 (heartbeats before any data carry
    /// 0). A data counter more than one ahead of the last seen, or a
    /// heartbeat counter ahead of it, is a gap. So is the first message of
    /// a session when it is not the session's first: a member whose gossip
    /// links formed after the publisher started cannot know that what came
    /// before reached it through its last catch-up.
    pub fn observe(
        &mut self,
        device: DeviceId,
        session: u64,
        counter: u64,
        heartbeat: bool,
    ) -> Verdict {
        match self.seen.get_mut(&device) {
            Some((s, last)) if *s == session => {
                let expected = if heartbeat {
                    *last
                } else {
                    last.saturating_add(1)
                };
                let verdict = if counter > expected {
                    Verdict::Gap
                } else {
                    Verdict::InOrder
                };
                *last = (*last).max(counter);
                verdict
            }
            _ => {
                self.seen.insert(device, (session, counter));
                let first = if heartbeat { 0 } else { 1 };
                if counter > first {
                    Verdict::Gap
                } else {
                    Verdict::InOrder
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::*;

    fn kind() -> impl Strategy<Value = PushKind> {
        let path = prop::collection::vec("[a-z]{1,6}", 1..4)
            .prop_map(|c| Path::parse(&format!("/{}", c.join("/"))).unwrap());
        prop_oneof![
            (
                path.clone(),
                any::<u64>(),
                any::<[u8; 32]>(),
                any::<u64>(),
                prop::collection::vec(any::<[u8; 32]>(), 0..3),
                prop::collection::vec(any::<u8>(), 0..50)
            )
                .prop_map(|(path, c, cr, t, heads, changes)| PushKind::Doc {
                    path,
                    created: Timestamp::from_micros(c),
                    creator: DeviceId::from_bytes(cr),
                    timestamp: Timestamp::from_micros(t),
                    heads: heads.into_iter().map(ChangeHash).collect(),
                    changes,
                }),
            (
                path,
                any::<u64>(),
                any::<[u8; 32]>(),
                any::<u64>(),
                "[a-z/]{0,20}"
            )
                .prop_map(|(path, t, h, size, media_type)| PushKind::Blob {
                    path,
                    timestamp: Timestamp::from_micros(t),
                    hash: BlobHash::from_bytes(h),
                    size,
                    media_type,
                }),
            prop::collection::vec(any::<u8>(), 0..80)
                .prop_map(|bytes| PushKind::Tombstone { bytes }),
            Just(PushKind::Heartbeat),
        ]
    }

    proptest! {
        #[test]
        fn bodies_round_trip(session in any::<u64>(), counter in any::<u64>(), kind in kind()) {
            let body = PushBody { session, counter, kind };
            let bytes = body.encode();
            prop_assert_eq!(PushBody::decode(&bytes).unwrap(), body);
            for cut in 0..bytes.len() {
                prop_assert!(PushBody::decode(&bytes[..cut]).is_err());
            }
            let mut long = bytes;
            long.push(0);
            prop_assert!(PushBody::decode(&long).is_err());
        }
    }

    #[test]
    fn sequencer_finds_gaps_from_data_and_heartbeats() {
        let d = DeviceId::from_bytes([1; 32]);
        let mut s = Sequencer::default();
        assert_eq!(s.observe(d, 7, 5, false), Verdict::Gap); // joined late: 1..=4 unseen
        assert_eq!(s.observe(d, 7, 6, false), Verdict::InOrder);
        assert_eq!(s.observe(d, 7, 6, true), Verdict::InOrder); // heartbeat, nothing new
        assert_eq!(s.observe(d, 7, 6, false), Verdict::InOrder); // a repeat
        assert_eq!(s.observe(d, 7, 8, false), Verdict::Gap); // 7 was lost
        assert_eq!(s.observe(d, 7, 9, true), Verdict::Gap); // 9 was lost
        assert_eq!(s.observe(d, 7, 10, false), Verdict::InOrder);
        assert_eq!(s.observe(d, 8, 1, false), Verdict::InOrder); // restarted publisher
        assert_eq!(s.observe(d, 8, 1, true), Verdict::InOrder);
        assert_eq!(s.observe(d, 9, 0, true), Verdict::InOrder); // a quiet new session
        assert_eq!(s.observe(d, 9, 1, false), Verdict::InOrder);
        assert_eq!(s.observe(d, 10, 2, true), Verdict::Gap); // restarted, 1 unseen
    }
}
