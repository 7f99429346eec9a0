//! Live push, the receiving half: open, verify, sequence and apply one
//! message from a scope's topic, through the same [`Replica`] door as a
//! catch-up.
//!
//! An [`Inbox`] is one member's view of one scope's topic. For each message
//! it checks, in order, before anything reaches the replica:
//! 1. the envelope opens with the scope's key and the push inside carries a
//!    valid signature (`verify_strict`);
//! 2. the push is about the scope's namespace;
//! 3. the signing device acts for that namespace: it holds a certificate the
//!    namespace signed with the write right (the right to be heard, for a
//!    heartbeat), not revoked ([`kith_caps::may_act`]). A member of the
//!    scope who is only a reader cannot write into the owner's namespace;
//! 4. the body decodes, and its path (or a tombstone's prefix) lies inside
//!    the scope;
//! 5. a tombstone is signed by the namespace or one of its write devices.
//!
//! The [`Sequencer`] then tells a gap (recover by catching up), and what is
//! left is applied. The store itself refuses what a tombstone killed, so a
//! replayed push of deleted data changes nothing.

use kith_caps::{Rights, Scope, SealedEnvelope, SignedPush, Tombstone};
use kith_store::DocIdentity;
use kith_store::RemoteWrite;
use kith_types::{DeviceId, Path, Timestamp};

use super::error::Error;
use super::fetch::{Replica, is_expected_refusal};
use super::push::{PushBody, PushKind, Sequencer, Verdict};
use super::wire::{WireEntry, WireKind};

/// What handling one received message asks of the driver.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Changes applied.
    pub applied: u64,
    /// The message was dropped (see the log line for why).
    pub rejected: bool,
    /// Catch up: something was missed.
    pub recover: bool,
    /// Sync with the owner (to deliver a receipt).
    pub sync: bool,
    /// Fetch this announced small blob.
    pub fetch: Option<Path>,
    /// The device that signed the message, once it passed the checks.
    pub from: Option<DeviceId>,
}

impl Outcome {
    fn rejected(why: &str) -> Self {
        tracing::info!(why, "dropped a live message");
        Self {
            rejected: true,
            ..Self::default()
        }
    }
}

/// How long each stage of receiving one message took, in nanoseconds of
/// the driver's clock.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StageTimes {
    /// Decoding and opening the envelope, verifying the signature.
    pub open: u64,
    /// The namespace, the signer's right, the scope, the sequence.
    pub check: u64,
    /// Applying the change through the replica (the store's write).
    pub apply: u64,
}

/// When the stages of one receive ended, by the driver's clock.
struct Marks {
    start: u64,
    opened: Option<u64>,
    checked: Option<u64>,
}

/// One member's receiving side of one scope's topic.
#[derive(Debug)]
pub struct Inbox {
    scope: Scope,
    me: DeviceId,
    eager_blob_size: u64,
    sequencer: Sequencer,
}

impl Inbox {
    /// The inbox of device `me` for `scope`; blobs up to `eager_blob_size`
    /// bytes are asked to be fetched as soon as they are announced.
    pub fn new(scope: Scope, me: DeviceId, eager_blob_size: u64) -> Self {
        Self {
            scope,
            me,
            eager_blob_size,
            sequencer: Sequencer::default(),
        }
    }

    /// The scope this inbox receives.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Opens, verifies and applies one message received at `now`.
    pub fn receive(&mut self, replica: &impl Replica, bytes: &[u8], now: Timestamp) -> Outcome {
        self.receive_timed(replica, bytes, now, &|| 0).0
    }

    /// [`Inbox::receive`], also telling how long each stage took by
    /// `clock` (nanoseconds of any monotonic clock the driver chooses: this
    /// module reads none itself).
    pub fn receive_timed(
        &mut self,
        replica: &impl Replica,
        bytes: &[u8],
        now: Timestamp,
        clock: &dyn Fn() -> u64,
    ) -> (Outcome, StageTimes) {
        let mut marks = Marks {
            start: clock(),
            opened: None,
            checked: None,
        };
        let outcome = self.receive_marked(replica, bytes, now, clock, &mut marks);
        let end = clock();
        let opened = marks.opened.unwrap_or(end);
        let checked = marks.checked.unwrap_or(end).max(opened);
        let times = StageTimes {
            open: opened.saturating_sub(marks.start),
            check: checked.saturating_sub(opened),
            apply: end.saturating_sub(checked),
        };
        (outcome, times)
    }

    fn receive_marked(
        &mut self,
        replica: &impl Replica,
        bytes: &[u8],
        now: Timestamp,
        clock: &dyn Fn() -> u64,
        marks: &mut Marks,
    ) -> Outcome {
        let scope = &self.scope;
        let opened = SealedEnvelope::decode(bytes)
            .and_then(|env| scope.open(&env))
            .and_then(|plain| SignedPush::decode(&plain))
            .and_then(|push| push.verify().map(|()| push));
        marks.opened = Some(clock());
        let push = match opened {
            Ok(p) => p,
            Err(e) => return Outcome::rejected(&format!("cannot open or verify: {e}")),
        };
        let ns = scope.namespace();
        if push.namespace() != ns {
            return Outcome::rejected("about another namespace than the scope's");
        }
        if push.device() == self.me {
            return Outcome::default();
        }
        let body = match PushBody::decode(push.body()) {
            Ok(b) => b,
            Err(e) => return Outcome::rejected(&format!("malformed body: {e}")),
        };
        let heartbeat = body.kind == PushKind::Heartbeat;
        let rights = if heartbeat {
            Rights::NONE
        } else {
            Rights::WRITE
        };
        let Some((certs, revocations)) = replica.devices(&ns) else {
            return Outcome::rejected("from a namespace that is not a friend");
        };
        if !kith_caps::may_act(&ns, &push.device(), rights, &certs, &revocations, now).is_allowed()
        {
            return Outcome::rejected("signed by a device without the right");
        }
        // What lies outside the scope is dropped before it is sequenced.
        let inside = match &body.kind {
            PushKind::Heartbeat => true,
            PushKind::Doc { path, .. } | PushKind::Blob { path, .. } => scope.covers(&ns, path),
            PushKind::Tombstone { .. } => true, // checked once decoded, below
        };
        if !inside {
            return Outcome::rejected("a path outside the scope");
        }
        let mut out = Outcome {
            from: Some(push.device()),
            ..Outcome::default()
        };
        if self
            .sequencer
            .observe(push.device(), body.session, body.counter, heartbeat)
            == Verdict::Gap
        {
            out.recover = true;
        }
        marks.checked = Some(clock());
        match body.kind {
            PushKind::Heartbeat => {}
            PushKind::Doc {
                path,
                created,
                creator,
                timestamp,
                heads,
                changes,
            } => {
                let identity = DocIdentity { created, creator };
                if changes.is_empty() {
                    // Announced by heads only: pull unless we have them all.
                    let have = match replica.doc_heads(&ns, &path, identity) {
                        Ok(h) => h.unwrap_or_default(),
                        Err(e) => {
                            tracing::warn!(%path, %e, "reading a document's heads failed");
                            Vec::new()
                        }
                    };
                    if !heads.iter().all(|h| have.contains(h)) {
                        out.recover = true;
                    }
                    return out;
                }
                let write = RemoteWrite {
                    device: push.device(),
                    timestamp,
                };
                match replica.apply_doc(&ns, &path, identity, write, &changes) {
                    Ok(o) => {
                        if o.changed {
                            out.applied += 1;
                        }
                        if !o.missing_deps.is_empty() {
                            out.recover = true;
                        }
                    }
                    Err(Error::Store(e)) if is_expected_refusal(&e) => {
                        tracing::info!(%path, %e, "live change not applied");
                        out.rejected = true;
                    }
                    Err(e) => {
                        tracing::warn!(%path, %e, "applying a live change failed");
                        out.recover = true;
                    }
                }
            }
            PushKind::Blob {
                path,
                timestamp,
                hash,
                size,
                media_type,
            } => {
                let entry = WireEntry {
                    path,
                    device: push.device(),
                    timestamp,
                    kind: WireKind::Blob {
                        hash,
                        size,
                        media_type,
                    },
                };
                match replica.put_blob_entry(&ns, &entry) {
                    Ok(true) => {
                        out.applied += 1;
                        if size <= self.eager_blob_size && !replica.has_blob(&hash) {
                            out.fetch = Some(entry.path);
                        }
                    }
                    Ok(false) => out.rejected = true,
                    Err(e) => {
                        tracing::warn!(path = %entry.path, %e, "storing a live blob entry failed");
                        out.recover = true;
                    }
                }
            }
            PushKind::Tombstone { bytes } => {
                let tombstone = match Tombstone::decode(&bytes) {
                    Ok(t) => t,
                    Err(e) => return Outcome::rejected(&format!("malformed tombstone: {e}")),
                };
                if tombstone.namespace() != ns || !scope.prefix().overlaps(tombstone.prefix()) {
                    return Outcome::rejected("a tombstone outside the scope");
                }
                if let Err(e) = kith_caps::tombstone_validity(&tombstone, &revocations, now) {
                    return Outcome::rejected(&format!("invalid tombstone: {e}"));
                }
                match replica.apply_tombstone(&ns, &tombstone) {
                    Ok(()) => {
                        out.applied += 1;
                        // Deliver the receipt now.
                        out.sync = true;
                    }
                    Err(e) => {
                        tracing::warn!(%e, "applying a live tombstone failed");
                        out.recover = true;
                    }
                }
            }
        }
        out
    }
}
