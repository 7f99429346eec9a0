//! The owner's side of a catch-up stream: decides what a requester may see.
//!
//! A [`Serve`] session is fed the requester's messages and answers with
//! [`Output`]s. It reads the owner's data through a [`Source`] (the node
//! implements it over the store; tests and simulations may use anything) and
//! takes the current time as an argument. It never sends a byte of a path the
//! requester may not read: every entry, document and blob is checked against
//! the owner's current grants when it is about to be sent.

use std::sync::Arc;

use kith_caps::{
    DeviceCert, DeviceRevocation, Grants, ReadCap, Receipt, Revocation, Rights, Roster, Scope,
};
use kith_store::automerge::ChangeHash;
use kith_store::{BlobHash, Change, ChangeKind, Entry, EntryKind};
use kith_types::{DeviceId, NamespaceId, Path, Timestamp};

use super::addr::Addr;
use super::error::Result;
use super::wire::{MAX_ADDRESSED_DEVICES, MAX_BATCH, Message, RefusalCode, WireEntry, WireKind};

/// What a member device was last sent of a scope, as one number that grows
/// with every change the member must hear of: the epoch, then (within an
/// epoch, where rosters only grow) the roster's size. A member on an older
/// roster would refuse gossip links from the members added since.
pub(crate) fn roster_version(scope: &Scope, roster: &Roster) -> u64 {
    const SIZE_BITS: u32 = 24;
    let size = (roster.members().len() as u64).min((1 << SIZE_BITS) - 1);
    scope.epoch().saturating_mul(1 << SIZE_BITS) | size
}

/// Of the owner's `scopes`, those `device` (of `namespace`) is given the
/// secrets of: every scope for an own device; for a friend's device, those
/// whose roster lists it and whose prefix the friend may read now.
pub(crate) fn member_scopes(
    scopes: Vec<(Scope, Roster)>,
    grants: &Grants,
    device: &DeviceId,
    namespace: &NamespaceId,
    own_device: bool,
    now: Timestamp,
) -> Vec<(Scope, Roster)> {
    scopes
        .into_iter()
        .filter(|(scope, roster)| {
            own_device
                || (roster.contains(device)
                    && grants.may_read(scope.prefix(), namespace, now).is_allowed())
        })
        .collect()
}

/// The versions ([`roster_version`]) of these scopes, to record as sent.
pub(crate) fn scope_versions(scopes: &[(Scope, Roster)]) -> Vec<(Path, u64)> {
    scopes
        .iter()
        .map(|(s, r)| (s.prefix().clone(), roster_version(s, r)))
        .collect()
}

/// Changes read from the log per page while answering a `Sync`.
const LOG_PAGE: usize = 1024;

/// What the serving side reads. Every method may block.
pub trait Source {
    /// The owner's namespace.
    fn owner(&self) -> NamespaceId;
    /// The owner's grants (verified caps and revocations), as of now.
    fn grants(&self) -> Arc<Grants>;
    /// Revocations of caps granted to `grantee`, or of every cap (`None`).
    fn revocations_for(&self, grantee: Option<&NamespaceId>) -> Vec<Revocation>;
    /// The owner's device certificates and device revocations.
    fn owner_devices(&self) -> (Vec<DeviceCert>, Vec<DeviceRevocation>);
    /// The device revocations known for `namespace` (the owner's own, or a
    /// friend's as last received from them).
    fn device_revocations_of(&self, namespace: &NamespaceId) -> Vec<DeviceRevocation>;
    /// Whether `namespace` is a friend of the owner.
    fn is_friend(&self, namespace: &NamespaceId) -> bool;
    /// The owner's friends' tickets (sent to the owner's own devices only).
    fn friend_tickets(&self) -> Vec<Vec<u8>>;
    /// Where the owner's devices can be reached: this one's own addresses
    /// and what it learnt of the others.
    fn device_addresses(&self) -> Vec<(DeviceId, Vec<Addr>)>;
    /// The latest sequence number of the owner's namespace on this device.
    fn current_seq(&self) -> Result<u64>;
    /// Up to `limit` changes after `seq`.
    fn changes_since(&self, seq: u64, limit: usize) -> Result<Vec<Change>>;
    /// The entry at `path`.
    fn entry(&self, path: &Path) -> Result<Option<Entry>>;
    /// The changes of the document at `path` that a holder of `heads` lacks.
    fn doc_changes(&self, path: &Path, heads: &[ChangeHash]) -> Result<Vec<u8>>;
    /// The whole stored document at `path`, for a requester that has none of
    /// it (cheaper than computing changes).
    fn doc_bytes(&self, path: &Path) -> Result<Vec<u8>>;
    /// What a holder of `heads` of the document at `path` lacks: the
    /// whole document as stored ([`Source::doc_bytes`]) for a holder of
    /// none of it, else [`Source::doc_changes`].
    fn doc_for(&self, path: &Path, heads: &[ChangeHash]) -> Result<Vec<u8>> {
        if heads.is_empty() {
            self.doc_bytes(path)
        } else {
            self.doc_changes(path, heads)
        }
    }
    /// The heads of the document at `path`.
    fn doc_heads(&self, path: &Path) -> Result<Vec<ChangeHash>>;
    /// The dependencies of the changes at the heads of the document at
    /// `path` (what a member that holds all but the latest changes has);
    /// empty if there is no such document.
    fn doc_head_deps(&self, path: &Path) -> Result<Vec<ChangeHash>>;
    /// The signed tombstone stored for (`prefix`, `time`), if any.
    fn tombstone(&self, prefix: &Path, time: Timestamp) -> Result<Option<Vec<u8>>>;
    /// Records that `requester` was served `prefixes` (so that deletions
    /// under them are owed to it until it confirms them).
    fn record_served(&self, requester: &Requester, prefixes: &[Path]) -> Result<()>;
    /// Signed tombstones under prefixes `device` was ever served, that it has
    /// not confirmed with a receipt.
    fn owed_tombstones(&self, device: &DeviceId) -> Result<Vec<Vec<u8>>>;
    /// Stores a verified receipt of one of the owner's tombstones; `false`
    /// if the tombstone is unknown.
    fn store_receipt(&self, receipt: &Receipt) -> Result<bool>;
    /// The owner's live-push scopes with their current rosters.
    fn scopes(&self) -> Vec<(Scope, Roster)>;
    /// Records that `device` was sent these scopes as (prefix, version: the
    /// epoch and roster size), so that nothing more about them is owed to it.
    fn scopes_sent(&self, device: &DeviceId, versions: &[(Path, u64)]) -> Result<()>;
    /// Forgets what `device` was sent of the scopes; whether it had been
    /// sent any.
    fn forget_scopes_sent(&self, device: &DeviceId) -> Result<bool>;
}

/// What the session asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this message.
    Send(Message),
    /// Stream this blob's content from `offset` (the session checked that
    /// the requester may read it).
    StreamBlob {
        /// The blob.
        hash: BlobHash,
        /// Where to start.
        offset: u64,
        /// Whether to send its group hashes first.
        groups: bool,
    },
    /// Close the stream after sending what came before.
    Close,
}

/// Who is asking, once identified by `Hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requester {
    /// The requester's device (authenticated by the transport).
    pub device: DeviceId,
    /// The namespace its certificate names.
    pub namespace: NamespaceId,
    /// Whether it is one of the owner's own devices.
    pub own_device: bool,
}

/// Counters of one serving session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeStats {
    /// Entries sent.
    pub entries: u64,
    /// Documents sent.
    pub docs: u64,
    /// Requests refused.
    pub refused: u64,
}

/// One catch-up stream, owner side.
#[derive(Debug)]
pub struct Serve {
    remote: DeviceId,
    requester: Option<Requester>,
    /// Certificates the requester presented for its other devices (verified).
    learned_certs: Vec<DeviceCert>,
    /// The requester's own certificate, once verified.
    cert: Option<DeviceCert>,
    stats: ServeStats,
}

impl Serve {
    /// A session for a stream from `remote`, the device id the transport
    /// authenticated.
    pub fn new(remote: DeviceId) -> Self {
        Self {
            remote,
            requester: None,
            learned_certs: Vec::new(),
            cert: None,
            stats: ServeStats::default(),
        }
    }

    /// Who is asking, once known.
    pub fn requester(&self) -> Option<Requester> {
        self.requester
    }

    /// Verified certificates of the requester's other devices.
    pub fn take_learned_certs(&mut self) -> Vec<DeviceCert> {
        std::mem::take(&mut self.learned_certs)
    }

    /// Counters so far.
    pub fn stats(&self) -> ServeStats {
        self.stats
    }

    /// Handles one message from the requester.
    ///
    /// # Errors
    /// Only errors of the [`Source`] (storage); every refusal of the
    /// requester is an [`Output`].
    pub fn handle(
        &mut self,
        msg: Message,
        now: Timestamp,
        src: &impl Source,
    ) -> Result<Vec<Output>> {
        match (msg, self.requester) {
            (Message::Hello { cert, other_certs }, None) => {
                Ok(self.hello(&cert, &other_certs, now, src))
            }
            (Message::Hello { .. }, Some(_)) => {
                Ok(self.refuse(RefusalCode::Protocol, None, "Hello sent twice", true))
            }
            (_, None) => Ok(self.refuse(RefusalCode::Protocol, None, "send Hello first", true)),
            (Message::Sync { cursors }, Some(req)) => self.sync(req, cursors, now, src),
            (Message::WantDocs { items }, Some(req)) => self.docs(req, items, now, src),
            (Message::Receipts { items }, Some(req)) => Ok(self.receipts(req, &items, src)?),
            (
                Message::WantBlob {
                    path,
                    hash,
                    offset,
                    groups,
                },
                Some(req),
            ) => self.blob(req, path, hash, offset, groups, now, src),
            (other, Some(_)) => Ok(self.refuse(
                RefusalCode::Protocol,
                None,
                &format!("{} is not a request", other.name()),
                true,
            )),
        }
    }

    fn refuse(
        &mut self,
        code: RefusalCode,
        path: Option<Path>,
        reason: &str,
        close: bool,
    ) -> Vec<Output> {
        self.stats.refused += 1;
        tracing::debug!(remote = %self.remote.fmt_short(), ?code, ?path, reason, "refusing");
        let mut out = vec![Output::Send(Message::refused(code, path, reason))];
        if close {
            out.push(Output::Close);
        }
        out
    }

    fn hello(
        &mut self,
        cert: &[u8],
        other_certs: &[Vec<u8>],
        now: Timestamp,
        src: &impl Source,
    ) -> Vec<Output> {
        let owner = src.owner();
        let cert = match DeviceCert::decode(cert).and_then(|c| c.verify().map(|()| c)) {
            Ok(c) => c,
            Err(e) => {
                return self.refuse(
                    RefusalCode::BadCertificate,
                    None,
                    &format!("device certificate: {e}"),
                    true,
                );
            }
        };
        if cert.device() != self.remote {
            return self.refuse(
                RefusalCode::BadCertificate,
                None,
                "the certificate is for another device than the one connected",
                true,
            );
        }
        let namespace = cert.namespace();
        let own_device = namespace == owner;
        // A device its own namespace revoked (a lost phone, an own one or a
        // friend's) is served nothing.
        let revocations = src.device_revocations_of(&namespace);
        if let Err(e) = cert.check_authority(Rights::NONE, &revocations, now) {
            return self.refuse(
                RefusalCode::BadCertificate,
                None,
                &format!("device certificate: {e}"),
                true,
            );
        }
        if !own_device && !src.is_friend(&namespace) {
            return self.refuse(
                RefusalCode::Unauthorized,
                None,
                "not a friend of this namespace",
                true,
            );
        }
        for bytes in other_certs {
            match DeviceCert::decode(bytes).and_then(|c| c.verify().map(|()| c)) {
                Ok(c) if c.namespace() == namespace => self.learned_certs.push(c),
                Ok(_) => tracing::debug!("ignoring a certificate of another namespace in Hello"),
                Err(e) => tracing::debug!(%e, "ignoring an invalid certificate in Hello"),
            }
        }
        self.cert = Some(cert.clone());
        self.requester = Some(Requester {
            device: self.remote,
            namespace,
            own_device,
        });
        let grants = src.grants();
        let caps: Vec<Vec<u8>> = grants
            .caps()
            .iter()
            .filter(|c| own_device || c.grantee() == namespace)
            .map(ReadCap::encode)
            .collect();
        let revocations = if own_device {
            // Own devices enforce the same grants: they get every revocation.
            src.revocations_for(None)
        } else {
            src.revocations_for(Some(&namespace))
        };
        let (certs, device_revocations) = src.owner_devices();
        let mut out = vec![Output::Send(Message::Welcome {
            caps,
            revocations: revocations.iter().map(Revocation::encode).collect(),
            owner_certs: certs.iter().map(DeviceCert::encode).collect(),
            device_revocations: device_revocations
                .iter()
                .map(DeviceRevocation::encode)
                .collect(),
        })];
        let mut devices = src.device_addresses();
        devices.retain(|(d, addrs)| *d != self.remote && !addrs.is_empty());
        devices.truncate(MAX_ADDRESSED_DEVICES);
        if !devices.is_empty() {
            out.push(Output::Send(Message::Addresses { devices }));
        }
        if own_device {
            out.push(Output::Send(Message::Friends {
                tickets: src.friend_tickets(),
            }));
        }
        // Scope secrets go to members only: own devices, and friends that may
        // read the scope's prefix and whose device is on its roster.
        let scopes = member_scopes(
            src.scopes(),
            &grants,
            &self.remote,
            &namespace,
            own_device,
            now,
        );
        if !scopes.is_empty() {
            if let Err(e) = src.scopes_sent(&self.remote, &scope_versions(&scopes)) {
                tracing::warn!(%e, "could not record the scopes sent");
            }
            out.push(Output::Send(Message::Scopes {
                items: scopes
                    .iter()
                    .map(|(s, r)| (s.encode(), r.encode()))
                    .collect(),
            }));
        } else {
            // A device removed from every scope it was sent learns it once
            // (the set is complete), and leaves the abandoned topics.
            match src.forget_scopes_sent(&self.remote) {
                Ok(true) => out.push(Output::Send(Message::Scopes { items: Vec::new() })),
                Ok(false) => {}
                Err(e) => tracing::warn!(%e, "could not read the scopes sent"),
            }
        }
        out
    }

    fn receipts(
        &mut self,
        req: Requester,
        items: &[Vec<u8>],
        src: &impl Source,
    ) -> Result<Vec<Output>> {
        let Some(cert) = self.cert.clone() else {
            return Ok(self.refuse(RefusalCode::Protocol, None, "send Hello first", true));
        };
        let mut recorded = Vec::new();
        for bytes in items {
            let receipt = match Receipt::decode(bytes).and_then(|r| r.verify(&cert).map(|()| r)) {
                Ok(r) if r.device() == req.device && r.namespace() == req.namespace => r,
                Ok(_) => {
                    self.stats.refused += 1;
                    tracing::info!("refusing a receipt signed for another device");
                    continue;
                }
                Err(e) => {
                    self.stats.refused += 1;
                    tracing::info!(%e, "refusing an invalid receipt");
                    continue;
                }
            };
            if src.store_receipt(&receipt)? {
                recorded.push(receipt.tombstone_id().as_bytes().to_vec());
            }
        }
        Ok(vec![Output::Send(Message::ReceiptsAck {
            tombstones: recorded,
        })])
    }

    /// Whether `req` may read `path` now.
    fn may_read(req: Requester, grants: &Grants, path: &Path, now: Timestamp) -> bool {
        req.own_device || grants.may_read(path, &req.namespace, now).is_allowed()
    }

    fn sync(
        &mut self,
        req: Requester,
        cursors: Vec<(Path, u64)>,
        now: Timestamp,
        src: &impl Source,
    ) -> Result<Vec<Output>> {
        let grants = src.grants();
        // Only prefixes the requester may read now are answered; a prefix it
        // asks for beyond its caps is refused.
        let mut out = Vec::new();
        let mut allowed: Vec<(Path, u64)> = Vec::new();
        for (prefix, since) in cursors {
            if Self::may_read(req, &grants, &prefix, now) {
                allowed.push((prefix, since));
            } else {
                out.extend(self.refuse(
                    RefusalCode::Unauthorized,
                    Some(prefix),
                    "no valid read capability",
                    false,
                ));
            }
        }
        // The cursor handed back is the log position before reading it, so a
        // change racing with this answer is sent again next time, never lost.
        let upto = src.current_seq()?;
        // Deletions this device has not confirmed yet, under anything it was
        // ever served: sent whatever it may read now (a revoked friend too).
        let mut tombstones = if req.own_device {
            Vec::new()
        } else {
            let prefixes: Vec<Path> = allowed.iter().map(|(p, _)| p.clone()).collect();
            src.record_served(&req, &prefixes)?;
            src.owed_tombstones(&req.device)?
        };
        let Some(min_since) = allowed.iter().map(|(_, s)| *s).min() else {
            for chunk in tombstones.chunks(MAX_BATCH) {
                out.push(Output::Send(Message::Tombstones {
                    items: chunk.to_vec(),
                }));
            }
            out.push(Output::Send(Message::SyncDone {
                cursors: Vec::new(),
            }));
            return Ok(out);
        };
        let wants = |path: &Path, seq: u64| {
            allowed
                .iter()
                .any(|(p, s)| seq > *s && p.is_prefix_of(path))
        };
        let overlaps =
            |prefix: &Path, seq: u64| allowed.iter().any(|(p, s)| seq > *s && p.overlaps(prefix));
        // Tombstones first, then entries.
        let mut entries = Vec::new();
        let mut seq = min_since;
        loop {
            let page = src.changes_since(seq, LOG_PAGE)?;
            let Some(last) = page.last() else { break };
            seq = last.seq;
            for change in page {
                match change.kind {
                    ChangeKind::Tombstone { prefix, timestamp }
                        if overlaps(&prefix, change.seq) =>
                    {
                        match src.tombstone(&prefix, timestamp)? {
                            Some(bytes) if !tombstones.contains(&bytes) => tombstones.push(bytes),
                            Some(_) => {}
                            None => {
                                tracing::warn!(%prefix, "tombstone without its signed record; not sent")
                            }
                        }
                    }
                    ChangeKind::Tombstone { .. } => {}
                    ChangeKind::Put { path, entry } => {
                        if wants(&path, change.seq) && Self::may_read(req, &grants, &path, now) {
                            entries.push(wire_entry(path, &entry));
                        }
                    }
                }
            }
        }
        for chunk in tombstones.chunks(MAX_BATCH) {
            out.push(Output::Send(Message::Tombstones {
                items: chunk.to_vec(),
            }));
        }
        self.stats.entries += entries.len() as u64;
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            let items: Vec<WireEntry> = entries.by_ref().take(MAX_BATCH).collect();
            out.push(Output::Send(Message::Entries { items }));
        }
        out.push(Output::Send(Message::SyncDone {
            cursors: allowed.into_iter().map(|(p, _)| (p, upto)).collect(),
        }));
        Ok(out)
    }

    fn docs(
        &mut self,
        req: Requester,
        items: Vec<(Path, Vec<ChangeHash>)>,
        now: Timestamp,
        src: &impl Source,
    ) -> Result<Vec<Output>> {
        let grants = src.grants();
        let mut out = Vec::with_capacity(items.len() + 1);
        for (path, heads) in items {
            if !Self::may_read(req, &grants, &path, now) {
                out.extend(self.refuse(
                    RefusalCode::Unauthorized,
                    Some(path),
                    "no valid read capability",
                    false,
                ));
                continue;
            }
            let Some(entry) = src.entry(&path)? else {
                out.extend(self.refuse(
                    RefusalCode::NotFound,
                    Some(path),
                    "no document here",
                    false,
                ));
                continue;
            };
            let EntryKind::Document {
                created, creator, ..
            } = entry.kind
            else {
                out.extend(self.refuse(RefusalCode::NotFound, Some(path), "not a document", false));
                continue;
            };
            let changes = src.doc_for(&path, &heads)?;
            self.stats.docs += 1;
            out.push(Output::Send(Message::Doc {
                path,
                created,
                creator,
                device: entry.device,
                timestamp: entry.timestamp,
                changes,
            }));
        }
        out.push(Output::Send(Message::DocsDone));
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn blob(
        &mut self,
        req: Requester,
        path: Path,
        hash: BlobHash,
        offset: u64,
        groups: bool,
        now: Timestamp,
        src: &impl Source,
    ) -> Result<Vec<Output>> {
        // Served only through a path the requester may read that references
        // the hash: knowing a hash is not a right to its content.
        if !Self::may_read(req, &src.grants(), &path, now) {
            return Ok(self.refuse(
                RefusalCode::Unauthorized,
                Some(path),
                "no valid read capability",
                false,
            ));
        }
        match src.entry(&path)? {
            Some(entry) if entry.blob_hash() == Some(hash) => Ok(vec![Output::StreamBlob {
                hash,
                offset,
                groups,
            }]),
            _ => Ok(self.refuse(
                RefusalCode::NotFound,
                Some(path),
                "no such blob at this path",
                false,
            )),
        }
    }
}

/// An entry as sent to a peer.
pub fn wire_entry(path: Path, entry: &Entry) -> WireEntry {
    let kind = match &entry.kind {
        EntryKind::Document {
            created,
            creator,
            heads,
            ..
        } => WireKind::Document {
            created: *created,
            creator: *creator,
            heads: heads.clone(),
        },
        EntryKind::Blob {
            hash,
            size,
            media_type,
        } => WireKind::Blob {
            hash: *hash,
            size: *size,
            media_type: media_type.clone(),
        },
    };
    WireEntry {
        path,
        device: entry.device,
        timestamp: entry.timestamp,
        kind,
    }
}
