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
use kith_types::{DeviceId, Path, Timestamp};

use super::codec::{Dec, Enc, WireError};

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
        let mut e = Enc::versioned(VERSION);
        e.u64(self.session);
        e.u64(self.counter);
        match &self.kind {
            PushKind::Doc {
                path,
                created,
                creator,
                timestamp,
                heads,
                changes,
            } => {
                e.u8(TAG_DOC);
                e.path(path);
                e.u64(created.as_micros());
                e.raw(creator.as_bytes());
                e.u64(timestamp.as_micros());
                e.u16(heads.len() as u16);
                for h in heads {
                    e.raw(&h.0);
                }
                e.bytes(changes);
            }
            PushKind::Blob {
                path,
                timestamp,
                hash,
                size,
                media_type,
            } => {
                e.u8(TAG_BLOB);
                e.path(path);
                e.u64(timestamp.as_micros());
                e.raw(hash.as_bytes());
                e.u64(*size);
                e.str(media_type);
            }
            PushKind::Tombstone { bytes } => {
                e.u8(TAG_TOMBSTONE);
                e.bytes(bytes);
            }
            PushKind::Heartbeat => e.u8(TAG_HEARTBEAT),
        }
        e.finish()
    }

    /// Decodes a body.
    ///
    /// # Errors
    /// [`WireError`] for anything but exactly one valid body.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() > MAX_BODY_LEN {
            return Err(WireError("push body too large"));
        }
        let mut r = Dec::versioned(bytes, VERSION)?;
        let session = r.u64()?;
        let counter = r.u64()?;
        let kind = match r.u8()? {
            TAG_DOC => {
                let path = r.path()?;
                let created = Timestamp::from_micros(r.u64()?);
                let creator = DeviceId::from_bytes(r.array()?);
                let timestamp = Timestamp::from_micros(r.u64()?);
                let heads = r.heads()?;
                let changes = r.bytes(MAX_BODY_LEN)?.to_vec();
                PushKind::Doc {
                    path,
                    created,
                    creator,
                    timestamp,
                    heads,
                    changes,
                }
            }
            TAG_BLOB => PushKind::Blob {
                path: r.path()?,
                timestamp: Timestamp::from_micros(r.u64()?),
                hash: BlobHash::from_bytes(r.array()?),
                size: r.u64()?,
                media_type: r.str(MAX_MEDIA_TYPE_LEN)?,
            },
            TAG_TOMBSTONE => PushKind::Tombstone {
                bytes: r.bytes(MAX_BODY_LEN)?.to_vec(),
            },
            TAG_HEARTBEAT => PushKind::Heartbeat,
            _ => return Err(WireError("unknown push tag")),
        };
        r.end()?;
        Ok(Self {
            session,
            counter,
            kind,
        })
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
    /// Sessions grow with each start of the publishing node; a message of
    /// an older session than the one seen is a replay and changes nothing.
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
            // An older session (sessions grow with each start of a node):
            // a replay, which must not move the publisher's state.
            Some((s, _)) if session < *s => Verdict::InOrder,
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

    /// A message of an earlier session (captured, and replayed by a member
    /// or a stale peer) starts no catch-up and does not make the next
    /// message of the current session look like a gap.
    #[test]
    fn replays_of_an_earlier_session_start_no_catch_up() {
        let d = DeviceId::from_bytes([3; 32]);
        let mut s = Sequencer::default();
        assert_eq!(s.observe(d, 20, 1, false), Verdict::InOrder);
        assert_eq!(s.observe(d, 20, 2, false), Verdict::InOrder);
        for old in [(19, 40, false), (3, 7, true), (19, 1, false)] {
            assert_eq!(s.observe(d, old.0, old.1, old.2), Verdict::InOrder);
        }
        assert_eq!(s.observe(d, 20, 3, false), Verdict::InOrder);
        assert_eq!(s.observe(d, 20, 3, true), Verdict::InOrder);
    }
}
