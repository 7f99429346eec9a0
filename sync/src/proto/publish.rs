//! Live push, the publishing half: the message for one local change, read
//! through the same [`Source`] a catch-up serves from, signed by this device
//! and sealed with a scope's key.
//!
//! Only the device that wrote a change publishes it. A document goes out as
//! its Automerge changes since the heads this device last published (the
//! driver keeps those; a new document goes whole, as stored), or by its
//! heads alone when the changes do not fit one gossip message; members then
//! pull the rest. A blob is announced
//! (path, hash, size, media type); its content travels on a direct stream.
//! A deletion goes out as the signed tombstone the owner stored.

use kith_caps::{CryptoRng, DeviceKey, Scope, SealedEnvelope, SignedPush};
use kith_store::automerge::ChangeHash;
use kith_store::{ChangeKind, EntryKind};
use kith_types::{DeviceId, Path};

use super::error::{Error, Result};
use super::push::{PushBody, PushKind};
use super::serve::Source;

/// Bytes of the gossip frame around a sealed envelope (topic, message id,
/// framing), kept free of the configured message size.
pub const GOSSIP_FRAME_OVERHEAD: usize = 256;

/// Room for a push body in one gossip message of `max_message_size` bytes.
pub fn body_budget(max_message_size: usize) -> usize {
    max_message_size.saturating_sub(
        GOSSIP_FRAME_OVERHEAD + SealedEnvelope::OVERHEAD + SignedPush::OVERHEAD + 64,
    )
}

/// A push message built for one local change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The path (or the tombstone's prefix) it is about.
    pub path: Path,
    /// The message.
    pub kind: PushKind,
    /// The document heads it publishes, if a document.
    pub heads: Option<Vec<ChangeHash>>,
    /// Whether a document went out by its heads only.
    pub heads_only: bool,
}

/// The push message for one local change, if device `me` wrote it and it
/// still exists. `since`: the heads this device last published for the
/// path (`None`: not since it started). `budget`: [`body_budget`].
pub fn build(
    source: &impl Source,
    me: DeviceId,
    change: &ChangeKind,
    since: Option<Vec<ChangeHash>>,
    budget: usize,
) -> Result<Option<Built>> {
    match change {
        ChangeKind::Put { path, entry } => {
            if entry.device != me {
                return Ok(None); // the writing device publishes
            }
            match &entry.kind {
                EntryKind::Document {
                    created,
                    creator,
                    heads,
                    ..
                } => {
                    // Not published since this node started: send the latest
                    // change(s), whose dependencies members already hold (or
                    // will pull).
                    let since = match since {
                        Some(s) => s,
                        None => match source.doc_head_deps(path) {
                            Ok(deps) => deps,
                            Err(e) if not_found(&e) => return Ok(None),
                            Err(e) => return Err(e),
                        },
                    };
                    // A new document goes whole, as stored (Automerge's
                    // compressed document: smaller than its changes, and
                    // not loaded here), as a catch-up serves it.
                    let changes = match source.doc_for(path, &since) {
                        Ok(c) => c,
                        Err(e) if not_found(&e) => return Ok(None),
                        Err(e) => return Err(e),
                    };
                    let heads_now = source.doc_heads(path).unwrap_or_else(|_| heads.clone());
                    let fits =
                        changes.len() + 128 + 32 * heads_now.len() + path.encoded().len() <= budget;
                    Ok(Some(Built {
                        path: path.clone(),
                        kind: PushKind::Doc {
                            path: path.clone(),
                            created: *created,
                            creator: *creator,
                            timestamp: entry.timestamp,
                            heads: heads_now.clone(),
                            changes: if fits { changes } else { Vec::new() },
                        },
                        heads: Some(heads_now),
                        heads_only: !fits,
                    }))
                }
                EntryKind::Blob {
                    hash,
                    size,
                    media_type,
                } => Ok(Some(Built {
                    path: path.clone(),
                    kind: PushKind::Blob {
                        path: path.clone(),
                        timestamp: entry.timestamp,
                        hash: *hash,
                        size: *size,
                        media_type: media_type.clone(),
                    },
                    heads: None,
                    heads_only: false,
                })),
            }
        }
        ChangeKind::Tombstone { prefix, timestamp } => {
            let bytes = source.tombstone(prefix, *timestamp)?;
            Ok(bytes.map(|bytes| Built {
                path: prefix.clone(),
                kind: PushKind::Tombstone { bytes },
                heads: None,
                heads_only: false,
            }))
        }
    }
}

/// Signs `body` with `key` and seals it with `scope`'s key; `None` if the
/// result does not fit one gossip message of `max_message_size` bytes (or
/// the body exceeds what a push may carry).
pub fn seal<R: CryptoRng + ?Sized>(
    key: &DeviceKey,
    scope: &Scope,
    body: &PushBody,
    max_message_size: usize,
    rng: &mut R,
) -> Option<Vec<u8>> {
    let signed = SignedPush::sign(key, scope.namespace(), body.encode()).ok()?;
    let sealed = scope.seal(&signed.encode(), rng).ok()?;
    let bytes = sealed.encode();
    (bytes.len() + GOSSIP_FRAME_OVERHEAD <= max_message_size).then_some(bytes)
}

fn not_found(e: &Error) -> bool {
    matches!(e, Error::Store(e) if matches!(**e, kith_store::Error::NotFound { .. }))
}
