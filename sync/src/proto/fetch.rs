//! The requester's side of a catch-up stream.
//!
//! A [`Fetch`] session starts with `Hello`, then checks everything the
//! serving device says before anything reaches the local replica: the
//! server must hold a valid certificate of the owner's namespace with the
//! serve right; caps must be signed by the owner and name this node's
//! namespace; tombstones must be signed by the owner or one of its devices
//! with the write right; entries must lie under a prefix this node may read.
//! What passes is handed to a [`Replica`]; documents whose heads differ are
//! requested, and the cursors are saved only when everything was applied.

use kith_caps::{
    DeviceCert, DeviceRevocation, ReadCap, Revocation, Rights, Roster, Scope, Tombstone,
};
use kith_store::automerge::ChangeHash;
use kith_store::{ApplyOutcome, DocIdentity, RemoteChanges, RemoteWrite};
use kith_types::{DeviceId, NamespaceId, Path, Timestamp};

use super::addr::Addr;
use super::error::{Error, Result};
use super::wire::{MAX_BATCH, Message, RefusalCode, WireEntry, WireKind};

/// What the requesting side reads and writes. Every method may block.
pub trait Replica {
    /// Stores the verified caps granted to this node by the owner and the
    /// revocations of caps it held.
    fn store_caps(
        &self,
        owner: &NamespaceId,
        caps: &[ReadCap],
        revocations: &[Revocation],
    ) -> Result<()>;
    /// The owner's device revocations this node already holds (verified
    /// on arrival). A device's own `Welcome` cannot be trusted to list its
    /// revocation, so these count as well.
    fn owner_device_revocations(&self, owner: &NamespaceId) -> Vec<DeviceRevocation>;
    /// Stores the owner's verified device certificates and revocations.
    fn store_owner_devices(
        &self,
        owner: &NamespaceId,
        certs: &[DeviceCert],
        revocations: &[DeviceRevocation],
    ) -> Result<()>;
    /// Stores the friends of this node's own namespace, as sent by another
    /// of its devices.
    fn store_friends(&self, owner: &NamespaceId, tickets: &[Vec<u8>]) -> Result<()>;
    /// Keeps where `owner`'s devices can be reached, as handed over by
    /// the serving device (only devices its `Welcome` certified).
    fn store_addresses(&self, owner: &NamespaceId, devices: &[(DeviceId, Vec<Addr>)])
    -> Result<()>;
    /// Applies a verified tombstone.
    fn apply_tombstone(&self, owner: &NamespaceId, tombstone: &Tombstone) -> Result<()>;
    /// The device certificates and device revocations known for `owner`
    /// (this node's own namespace, or a friend's); `None` if `owner` is
    /// neither.
    fn devices(&self, owner: &NamespaceId) -> Option<(Vec<DeviceCert>, Vec<DeviceRevocation>)>;
    /// Stores a blob entry (without content); `false` if the store refused
    /// it by its rules (a tombstone, a newer entry), which it logs.
    fn put_blob_entry(&self, owner: &NamespaceId, entry: &WireEntry) -> Result<bool>;
    /// Whether the content of the blob with `hash` is held.
    fn has_blob(&self, hash: &kith_store::BlobHash) -> bool;
    /// The heads of the local copy of a document, if it is the document with
    /// this identity.
    fn doc_heads(
        &self,
        owner: &NamespaceId,
        path: &Path,
        identity: DocIdentity,
    ) -> Result<Option<Vec<ChangeHash>>>;
    /// Applies a document's changes.
    fn apply_doc(
        &self,
        owner: &NamespaceId,
        path: &Path,
        identity: DocIdentity,
        write: RemoteWrite,
        changes: &[u8],
    ) -> Result<ApplyOutcome>;
    /// Applies many documents' changes, one result per document in order
    /// (as [`Replica::apply_doc`] on each; a replica may write them in one
    /// batch). An error of the call itself is a failure of the replica.
    fn apply_docs(
        &self,
        owner: &NamespaceId,
        docs: &[RemoteChanges<'_>],
    ) -> Result<Vec<Result<ApplyOutcome>>> {
        Ok(docs
            .iter()
            .map(|d| self.apply_doc(owner, d.path, d.identity, d.write, d.changes))
            .collect())
    }
    /// Stores the verified live-push scopes (with rosters) of `owner` this
    /// node belongs to, as sent by the owner in this sync.
    fn store_scopes(&self, owner: &NamespaceId, scopes: &[(Scope, Roster)]) -> Result<()>;
    /// The cursors saved for syncs with `server`.
    fn cursors(&self, owner: &NamespaceId, server: &DeviceId) -> Result<Vec<(Path, u64)>>;
    /// Saves the cursors after a complete sync with `server`.
    fn save_cursors(
        &self,
        owner: &NamespaceId,
        server: &DeviceId,
        cursors: &[(Path, u64)],
    ) -> Result<()>;
}

/// What a completed fetch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchReport {
    /// Entries received.
    pub entries: u64,
    /// Documents whose changes were applied.
    pub docs: u64,
    /// Tombstones applied.
    pub tombstones: u64,
    /// Items the server refused or this side rejected.
    pub refused: u64,
    /// Blob entries received (content is fetched separately).
    pub blobs: Vec<(Path, kith_store::BlobHash, u64)>,
    /// The prefixes synced.
    pub prefixes: Vec<Path>,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    AwaitWelcome,
    AwaitSync,
    AwaitDocs { outstanding: usize },
    Done,
}

/// A `Doc` message's content, before it is checked.
#[derive(Debug)]
struct ArrivedDoc {
    path: Path,
    identity: DocIdentity,
    write: RemoteWrite,
    changes: Vec<u8>,
}

/// One catch-up stream, requester side.
#[derive(Debug)]
pub struct Fetch {
    owner: NamespaceId,
    me: NamespaceId,
    server: DeviceId,
    state: State,
    prefixes: Vec<Path>,
    device_revocations: Vec<DeviceRevocation>,
    owner_certs: Vec<DeviceCert>,
    wants: Vec<(Path, Vec<ChangeHash>)>,
    identities: std::collections::HashMap<Path, DocIdentity>,
    new_cursors: Vec<(Path, u64)>,
    /// Documents asked for by their path alone, without a catch-up
    /// ([`Fetch::documents`]); `None` for a catch-up.
    only: Option<Vec<(Path, DocIdentity)>>,
    report: FetchReport,
}

impl Fetch {
    /// A fetch of `owner`'s namespace by this node (`me`) from `server`, one
    /// of the owner's devices (as authenticated by the transport).
    pub fn new(owner: NamespaceId, me: NamespaceId, server: DeviceId) -> Self {
        Self {
            owner,
            me,
            server,
            state: State::AwaitWelcome,
            prefixes: Vec::new(),
            device_revocations: Vec::new(),
            owner_certs: Vec::new(),
            wants: Vec::new(),
            identities: Default::default(),
            new_cursors: Vec::new(),
            only: None,
            report: FetchReport::default(),
        }
    }

    /// A fetch of the whole of `owner`'s documents at `paths`, each with
    /// the identity of the entry held here (a document whose content was
    /// purged from the cache), from `server`, without a catch-up: after
    /// `Welcome` it asks for exactly these (those it may still read), and
    /// saves no cursors. The owner answers them as it answers a catch-up's.
    pub fn documents(
        owner: NamespaceId,
        me: NamespaceId,
        server: DeviceId,
        paths: Vec<(Path, DocIdentity)>,
    ) -> Self {
        Self {
            only: Some(paths),
            ..Self::new(owner, me, server)
        }
    }

    /// The first message: who this node is.
    pub fn hello(my_cert: &DeviceCert, other_certs: &[DeviceCert]) -> Message {
        Message::Hello {
            cert: my_cert.encode(),
            other_certs: other_certs.iter().map(DeviceCert::encode).collect(),
        }
    }

    /// Whether the fetch has completed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// What was done so far.
    pub fn report(&self) -> &FetchReport {
        &self.report
    }

    /// The owner's verified device certificates (from `Welcome`).
    pub fn owner_certs(&self) -> &[DeviceCert] {
        &self.owner_certs
    }

    /// Handles one message from the server; returns the messages to send.
    ///
    /// # Errors
    /// [`Error::Protocol`] when the server breaks the protocol or proves not
    /// to be a serving device of the owner, [`Error::Refused`] when it
    /// refuses the whole fetch; errors of the [`Replica`].
    pub fn handle(
        &mut self,
        msg: Message,
        now: Timestamp,
        replica: &impl Replica,
    ) -> Result<Vec<Message>> {
        match (msg, &self.state) {
            (
                Message::Welcome {
                    caps,
                    revocations,
                    owner_certs,
                    device_revocations,
                },
                State::AwaitWelcome,
            ) => self.welcome(
                &caps,
                &revocations,
                &owner_certs,
                &device_revocations,
                now,
                replica,
            ),
            (Message::Friends { tickets }, State::AwaitSync | State::AwaitDocs { .. }) => {
                if self.me == self.owner {
                    replica.store_friends(&self.owner, &tickets)?;
                } else {
                    self.reject("friend list sent to a device of another namespace");
                }
                Ok(Vec::new())
            }
            (Message::Addresses { devices }, State::AwaitSync | State::AwaitDocs { .. }) => {
                let certified: Vec<(DeviceId, Vec<Addr>)> = devices
                    .into_iter()
                    .filter(|(d, _)| {
                        self.owner_certs.iter().any(|c| c.device() == *d)
                            && !self.device_revocations.iter().any(|r| r.device() == *d)
                    })
                    .collect();
                replica.store_addresses(&self.owner, &certified)?;
                Ok(Vec::new())
            }
            (Message::Scopes { items }, State::AwaitSync | State::AwaitDocs { .. }) => {
                self.scopes(&items, replica)?;
                Ok(Vec::new())
            }
            (Message::Tombstones { items }, State::AwaitSync) => {
                self.tombstones(&items, now, replica)?;
                Ok(Vec::new())
            }
            (Message::Entries { items }, State::AwaitSync) => {
                self.entries(items, replica)?;
                Ok(Vec::new())
            }
            (Message::SyncDone { cursors }, State::AwaitSync) => self.sync_done(cursors, replica),
            (msg @ Message::Doc { .. }, State::AwaitDocs { .. }) => {
                self.handle_all([msg], now, replica)
            }
            (Message::DocsDone, State::AwaitDocs { outstanding }) => {
                let left = outstanding.saturating_sub(1);
                self.state = State::AwaitDocs { outstanding: left };
                if left == 0 {
                    self.finish(replica)?;
                }
                Ok(Vec::new())
            }
            (Message::Refused { code, path, reason }, _) => {
                self.report.refused += 1;
                match (code, path) {
                    (_, Some(path)) => {
                        tracing::info!(%path, ?code, reason, "the owner refused one item");
                        Ok(Vec::new())
                    }
                    (code, None) => Err(Error::Refused { code, reason }),
                }
            }
            (other, state) => Err(Error::Protocol(format!(
                "unexpected {} while {state:?}",
                other.name()
            ))),
        }
    }

    /// [`Fetch::handle`] for messages that arrived together, in order:
    /// documents in a row are checked one by one as `handle` would, then
    /// applied in one call of [`Replica::apply_docs`] (one batch, where
    /// `handle` would write each on its own). Messages after the session is
    /// done are not looked at. Returns the replies to all of them.
    ///
    /// # Errors
    /// As [`Fetch::handle`], at the first message that fails.
    pub fn handle_all(
        &mut self,
        msgs: impl IntoIterator<Item = Message>,
        now: Timestamp,
        replica: &impl Replica,
    ) -> Result<Vec<Message>> {
        let mut replies = Vec::new();
        let mut docs = Vec::new();
        let mut msgs = msgs.into_iter();
        while !self.is_done() {
            let Some(msg) = msgs.next() else { break };
            match msg {
                Message::Doc {
                    path,
                    created,
                    creator,
                    device,
                    timestamp,
                    changes,
                } if matches!(self.state, State::AwaitDocs { .. }) => docs.push(ArrivedDoc {
                    path,
                    identity: DocIdentity { created, creator },
                    write: RemoteWrite { device, timestamp },
                    changes,
                }),
                other => {
                    self.docs(std::mem::take(&mut docs), replica)?;
                    replies.extend(self.handle(other, now, replica)?);
                }
            }
        }
        self.docs(docs, replica)?;
        let left = msgs.count();
        if left > 0 {
            tracing::warn!(
                server = %self.server.fmt_short(),
                left,
                "messages after the end of the sync were ignored"
            );
        }
        Ok(replies)
    }

    fn scopes(&mut self, items: &[(Vec<u8>, Vec<u8>)], replica: &impl Replica) -> Result<()> {
        let checked = check_scopes(&self.owner, &self.prefixes, items);
        for _ in 0..checked.outside {
            self.reject("a scope outside this node's grants or with a foreign roster");
        }
        self.report.refused += checked.invalid as u64;
        replica.store_scopes(&self.owner, &checked.ok)
    }

    fn welcome(
        &mut self,
        caps: &[Vec<u8>],
        revocations: &[Vec<u8>],
        owner_certs: &[Vec<u8>],
        device_revocations: &[Vec<u8>],
        now: Timestamp,
        replica: &impl Replica,
    ) -> Result<Vec<Message>> {
        let owner = self.owner;
        let certs: Vec<DeviceCert> = owner_certs
            .iter()
            .filter_map(|b| {
                verified(
                    DeviceCert::decode(b).and_then(|c| c.verify().map(|()| c)),
                    "device certificate",
                )
            })
            .filter(|c| c.namespace() == owner)
            .collect();
        let dev_revs: Vec<DeviceRevocation> = device_revocations
            .iter()
            .filter_map(|b| {
                verified(
                    DeviceRevocation::decode(b).and_then(|r| r.verify().map(|()| r)),
                    "device revocation",
                )
            })
            .filter(|r| r.namespace() == owner)
            .collect();
        let mut dev_revs = dev_revs;
        for known in replica.owner_device_revocations(&owner) {
            if !dev_revs.contains(&known) {
                dev_revs.push(known);
            }
        }
        // The server must be a device of the owner allowed to serve, and
        // not one revoked (as this node knows, whatever the server says).
        let serving =
            kith_caps::may_act(&owner, &self.server, Rights::SERVE, &certs, &dev_revs, now);
        if !serving.is_allowed() {
            return Err(Error::Protocol(format!(
                "{} is not a serving device of namespace {}",
                self.server.fmt_short(),
                owner.fmt_short()
            )));
        }
        let caps: Vec<ReadCap> = caps
            .iter()
            .filter_map(|b| {
                verified(
                    ReadCap::decode(b).and_then(|c| c.verify().map(|()| c)),
                    "read cap",
                )
            })
            .filter(|c| c.namespace() == owner && (c.grantee() == self.me || self.me == owner))
            .collect();
        let revocations: Vec<Revocation> = revocations
            .iter()
            .filter_map(|b| {
                verified(
                    Revocation::decode(b).and_then(|r| r.verify().map(|()| r)),
                    "revocation",
                )
            })
            .filter(|r| r.namespace() == owner)
            .collect();
        replica.store_owner_devices(&owner, &certs, &dev_revs)?;
        replica.store_caps(&owner, &caps, &revocations)?;
        self.owner_certs = certs;
        self.device_revocations = dev_revs;
        self.prefixes = readable_prefixes(&self.me, owner, caps, revocations, now);
        self.report.prefixes = self.prefixes.clone();
        // Taken, not cloned: `only` stays `Some` (no cursors are saved).
        if let Some(paths) = self.only.as_mut().map(std::mem::take) {
            for (path, identity) in paths {
                if self.readable(&path) {
                    self.identities.insert(path.clone(), identity);
                    self.wants.push((path, Vec::new()));
                } else {
                    self.report.refused += 1;
                    tracing::info!(%path, "no longer readable: not asked for");
                }
            }
            return self.sync_done(Vec::new(), replica);
        }
        let saved = replica.cursors(&owner, &self.server)?;
        let cursors: Vec<(Path, u64)> = self
            .prefixes
            .iter()
            .map(|p| {
                let seq = saved.iter().find(|(q, _)| q == p).map_or(0, |(_, s)| *s);
                (p.clone(), seq)
            })
            .collect();
        // Even with nothing granted, ask: deletions of data this device was
        // served before are still owed to it.
        self.state = State::AwaitSync;
        Ok(vec![Message::Sync { cursors }])
    }

    fn readable(&self, path: &Path) -> bool {
        self.prefixes.iter().any(|p| p.is_prefix_of(path))
    }

    fn tombstones(
        &mut self,
        items: &[Vec<u8>],
        now: Timestamp,
        replica: &impl Replica,
    ) -> Result<()> {
        for bytes in items {
            let tombstone = match Tombstone::decode(bytes) {
                Ok(t) => t,
                Err(e) => {
                    self.reject(&format!("undecodable tombstone: {e}"));
                    continue;
                }
            };
            if tombstone.namespace() != self.owner {
                self.reject("tombstone of another namespace");
                continue;
            }
            if let Err(e) = kith_caps::tombstone_validity(&tombstone, &self.device_revocations, now)
            {
                self.reject(&format!("invalid tombstone: {e}"));
                continue;
            }
            replica.apply_tombstone(&self.owner, &tombstone)?;
            self.report.tombstones += 1;
        }
        Ok(())
    }

    fn reject(&mut self, why: &str) {
        self.report.refused += 1;
        tracing::warn!(server = %self.server.fmt_short(), why, "rejected data from the server");
    }

    fn entries(&mut self, items: Vec<WireEntry>, replica: &impl Replica) -> Result<()> {
        for entry in items {
            if !self.readable(&entry.path) {
                self.reject("entry outside the granted prefixes");
                continue;
            }
            self.report.entries += 1;
            match &entry.kind {
                WireKind::Blob { hash, size, .. } => {
                    self.report.blobs.push((entry.path.clone(), *hash, *size));
                    replica.put_blob_entry(&self.owner, &entry)?;
                }
                WireKind::Document {
                    created,
                    creator,
                    heads,
                } => {
                    let identity = DocIdentity {
                        created: *created,
                        creator: *creator,
                    };
                    let local = replica.doc_heads(&self.owner, &entry.path, identity)?;
                    let mut theirs = heads.clone();
                    theirs.sort();
                    match local {
                        Some(mut mine) => {
                            mine.sort();
                            if mine != theirs {
                                self.identities.insert(entry.path.clone(), identity);
                                self.wants.push((entry.path, mine));
                            }
                        }
                        None => {
                            self.identities.insert(entry.path.clone(), identity);
                            self.wants.push((entry.path, Vec::new()));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn sync_done(
        &mut self,
        cursors: Vec<(Path, u64)>,
        replica: &impl Replica,
    ) -> Result<Vec<Message>> {
        self.new_cursors = cursors
            .into_iter()
            .filter(|(p, _)| self.prefixes.contains(p))
            .collect();
        let wants = std::mem::take(&mut self.wants);
        if wants.is_empty() {
            self.finish(replica)?;
            return Ok(Vec::new());
        }
        let batches: Vec<Message> = wants
            .chunks(MAX_BATCH)
            .map(|chunk| Message::WantDocs {
                items: chunk.to_vec(),
            })
            .collect();
        self.state = State::AwaitDocs {
            outstanding: batches.len(),
        };
        Ok(batches)
    }

    /// Applies documents that were asked for; refuses the others.
    fn docs(&mut self, arrived: Vec<ArrivedDoc>, replica: &impl Replica) -> Result<()> {
        if arrived.is_empty() {
            return Ok(());
        }
        let mut asked = Vec::with_capacity(arrived.len());
        for doc in &arrived {
            if !self.readable(&doc.path) || self.identities.get(&doc.path) != Some(&doc.identity) {
                self.reject("document that was not asked for");
            } else {
                asked.push(RemoteChanges {
                    path: &doc.path,
                    identity: doc.identity,
                    write: doc.write,
                    changes: &doc.changes,
                });
            }
        }
        if asked.is_empty() {
            return Ok(());
        }
        let outcomes = replica.apply_docs(&self.owner, &asked)?;
        if outcomes.len() != asked.len() {
            return Err(Error::Protocol(format!(
                "the replica answered {} of {} documents",
                outcomes.len(),
                asked.len()
            )));
        }
        for (doc, outcome) in asked.iter().zip(outcomes) {
            match outcome {
                Ok(_) => self.report.docs += 1,
                Err(Error::Store(e)) if is_expected_refusal(&e) => {
                    tracing::info!(path = %doc.path, %e, "document not applied");
                    self.report.refused += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn finish(&mut self, replica: &impl Replica) -> Result<()> {
        if self.only.is_none() {
            replica.save_cursors(&self.owner, &self.server, &self.new_cursors)?;
        }
        self.state = State::Done;
        Ok(())
    }
}

/// Store refusals that are the rules working, not failures: a deleted or
/// replaced document, or bad Automerge bytes from the peer.
pub(crate) fn is_expected_refusal(e: &kith_store::Error) -> bool {
    matches!(
        e,
        kith_store::Error::Tombstoned { .. }
            | kith_store::Error::Superseded { .. }
            | kith_store::Error::WrongKind { .. }
            | kith_store::Error::Automerge(_)
            | kith_store::Error::TooLarge { .. }
    )
}

fn verified<T>(r: kith_caps::Result<T>, what: &str) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(what, %e, "dropping an invalid signed object from the server");
            None
        }
    }
}

/// The refusal code for an error, for logs and reports.
pub fn refusal_of(e: &Error) -> Option<RefusalCode> {
    match e {
        Error::Refused { code, .. } => Some(*code),
        _ => None,
    }
}

/// What `me` may read of `owner` now under these caps and revocations:
/// everything for its own namespace, else the granted prefixes (none inside
/// another).
pub(crate) fn readable_prefixes(
    me: &NamespaceId,
    owner: NamespaceId,
    caps: Vec<ReadCap>,
    revocations: Vec<Revocation>,
    now: Timestamp,
) -> Vec<Path> {
    if *me == owner {
        return vec![Path::root()];
    }
    let grants = kith_caps::Grants::new(owner, caps, revocations);
    let mut prefixes: Vec<Path> = grants
        .caps()
        .iter()
        .filter(|c| grants.may_read(c.prefix(), me, now).is_allowed())
        .map(|c| c.prefix().clone())
        .collect();
    prefixes.sort();
    prefixes.dedup();
    // A prefix inside another granted one adds nothing.
    let all = prefixes.clone();
    prefixes.retain(|p| !all.iter().any(|q| q != p && q.is_prefix_of(p)));
    prefixes
}

/// Scopes received from a device of `owner`, checked: each decodes, its
/// roster is signed by `owner` for that scope's epoch, and its prefix lies
/// inside one of `prefixes` (what this node may read of `owner`).
pub(crate) struct CheckedScopes {
    /// The scopes that passed.
    pub(crate) ok: Vec<(Scope, Roster)>,
    /// Well-formed scopes outside the prefixes or with a foreign roster.
    pub(crate) outside: usize,
    /// Scopes or rosters that did not decode or verify.
    pub(crate) invalid: usize,
}

/// Checks scopes as [`CheckedScopes`] describes.
pub(crate) fn check_scopes(
    owner: &NamespaceId,
    prefixes: &[Path],
    items: &[(Vec<u8>, Vec<u8>)],
) -> CheckedScopes {
    let mut checked = CheckedScopes {
        ok: Vec::new(),
        outside: 0,
        invalid: 0,
    };
    for (scope, roster) in items {
        let decoded = Scope::decode(scope).and_then(|scope| {
            let roster = Roster::decode(roster)?;
            roster.verify()?;
            Ok((scope, roster))
        });
        match decoded {
            Ok((scope, roster))
                if scope.namespace() == *owner
                    && roster.is_for(&scope)
                    && prefixes.iter().any(|p| p.is_prefix_of(scope.prefix())) =>
            {
                checked.ok.push((scope, roster));
            }
            Ok(_) => checked.outside += 1,
            Err(e) => {
                tracing::info!(%e, "rejecting an invalid scope");
                checked.invalid += 1;
            }
        }
    }
    checked
}
