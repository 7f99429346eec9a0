//! The store: namespaces of documents and blobs on fjall.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::ops::{Bound, RangeBounds};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use automerge::{ActorId, AutoCommit, ChangeHash};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode, Readable};
use kith_types::{DeviceId, HybridClock, NamespaceId, Path, Timestamp};
use parking_lot::{Mutex, RwLock};

use crate::blobs::{BlobFiles, BlobReader, PartialBlob, TempBlob};
use crate::codec::{Reader, Writer};
use crate::error::Limit;
use crate::groups::GroupHash;
use crate::index::IndexOp;
use crate::keys;
use crate::options::{Durability, Limits, Options};
use crate::preload;
use crate::records::{RecordKind, RecordOp};
use crate::vault::{BlobKey, ItemKey, Slot, Vault};
use crate::watch::{Watcher, Watchers};
use crate::{BlobHash, Entry, EntryKind, Error, Result};

/// A document is rewritten as one snapshot once it has this many stored
/// chunks, so loading it stays fast.
const COMPACT_CHUNKS: usize = 16;

const LOG_VERSION: u8 = 1;
const LOG_PUT: u8 = 0;
const LOG_TOMBSTONE: u8 = 1;
const META_VERSION: u8 = 1;
const OUTBOX_COUNTER_KEY: &[u8] = b"outbox";
/// Automerge bytes applied in one fjall batch by
/// [`Store::apply_changes_batch`] before it commits and starts another: it
/// bounds the memory a batch holds and how long it holds the namespace's
/// lock.
const APPLY_BATCH_BYTES: usize = 1 << 20;
/// A key no keyspace uses for data (shorter than every real key's prefix).
const COMPACT_MARKER: &[u8] = b"\xFFcompact";
/// fjall starts a new journal file at a flush once the current one is
/// larger than this. Opening a store reads the current journal file whole
/// (flushed writes too, about 10 ms per MB), so this bounds the start-up
/// after a clean close whatever the size of the store. Upstream fjall
/// hard-codes 64 MB; the setting comes from the patched copy in `vendor/`.
pub(crate) const JOURNAL_ROTATE_BYTES: u64 = 8 << 20;
/// fjall's bound on the journal files on disk (its least allowed value).
const MAX_JOURNALING_SIZE: u64 = 64 << 20;
/// Filler written per step while waiting for the journal to rotate.
const FILLER_VALUE: usize = 1 << 20;
/// Most bytes of writes kept only in fjall's memtables (and so only in its
/// journal) before the store writes every memtable out as tables. Opening
/// a store replays what the journal holds beyond its tables, at about
/// 25 ms per MB (`startup` bench), so this bounds the replay after a crash.
/// fjall's own bound is per keyspace (64 MiB for keyspaces created before
/// this one, stored in the folder), and a keyspace that receives little
/// never reaches it, which kept every journal file on disk.
pub(crate) const WRITE_BUFFER_LIMIT: u64 = 4 << 20;
/// Writes (fjall sequence numbers) at least between two flushes asked for
/// by [`WRITE_BUFFER_LIMIT`], so that fjall's count of memtable bytes,
/// which includes memtables being flushed, never makes every write flush.
const MIN_WRITES_PER_FLUSH: u64 = 1_000;
/// How long [`Store::flush`] waits for fjall's workers at most.
const FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// What [`Store::open`] found in fjall's journal: the work of its start-up
/// that grows with what was written before it and not yet flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Recovery {
    /// Bytes of journal files on disk once fjall had read them: all of it
    /// is read at every open, flushed or not (fjall starts a new file at a
    /// flush past 8 MiB, and a file it has just
    /// created counts its pre-allocated 64 MiB).
    pub journal_bytes: u64,
    /// Bytes fjall replayed from the journal into memory (writes that
    /// were not in tables yet): after a clean close nearly none, after a
    /// crash at most a few MiB.
    pub replayed_bytes: u64,
}

/// A record as listed by [`Store::all_records`]: (namespace, id, bytes).
pub type StoredRecord = (NamespaceId, Vec<u8>, Vec<u8>);

/// One change to a namespace, as recorded in its change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The namespace that changed.
    pub namespace: NamespaceId,
    /// Its local sequence number.
    pub seq: u64,
    /// What changed.
    pub kind: ChangeKind,
}

/// What a [`Change`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// An entry was written; `entry` is its state after the write (or, when
    /// read back later with [`Store::changes_since`], its current state).
    Put {
        /// Where.
        path: Path,
        /// The entry.
        entry: Entry,
    },
    /// A deletion removed what was under `prefix` written at or before
    /// `timestamp`.
    Tombstone {
        /// The deleted subtree.
        prefix: Path,
        /// The deletion time.
        timestamp: Timestamp,
    },
}

/// A page of [`Store::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Entries in path order.
    pub entries: Vec<(Path, Entry)>,
    /// Pass this as `after` to get the next page; `None` at the end.
    pub next: Option<Path>,
}

/// Who made a write that arrives from another device, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteWrite {
    /// The writing device.
    pub device: DeviceId,
    /// Its timestamp.
    pub timestamp: Timestamp,
}

/// The identity of a document: its creation time and creator. Changes to a
/// document carry it, so that a tombstone can refuse every later change to a
/// document it killed, and a replaced document's stale changes are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocIdentity {
    /// When the document was created.
    pub created: Timestamp,
    /// The device that created it.
    pub creator: DeviceId,
}

/// One document's changes from another device, for
/// [`Store::apply_changes_batch`]: the arguments of [`Store::apply_changes`].
#[derive(Debug, Clone, Copy)]
pub struct RemoteChanges<'a> {
    /// The document's path.
    pub path: &'a Path,
    /// The document's identity.
    pub identity: DocIdentity,
    /// The write the changes are.
    pub write: RemoteWrite,
    /// Automerge bytes, as for [`Store::apply_changes`].
    pub changes: &'a [u8],
}

/// The result of [`Store::apply_changes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// The entry after the apply.
    pub entry: Entry,
    /// Whether anything new was stored.
    pub changed: bool,
    /// Changes the document is waiting for (their dependants are queued and
    /// kept across restarts). Empty when the document is complete.
    pub missing_deps: Vec<ChangeHash>,
}

/// The result of [`Store::apply_tombstone`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TombstoneOutcome {
    /// Entries removed.
    pub removed: usize,
    /// Blobs whose content was deleted because nothing references them.
    pub blobs_deleted: usize,
    /// Whether this tombstone (or a later one at the same prefix) was already
    /// stored.
    pub already_known: bool,
}

#[derive(Debug, Default)]
struct NsState {
    next_seq: u64,
    loaded: bool,
}

/// A namespaced, hierarchical, durable store of Automerge documents and
/// blobs. See the crate docs.
///
/// `Store` is a cheap `Clone` handle, `Send` and `Sync`. Every method is
/// blocking (disk IO, Automerge work); call it from a plain thread or
/// `spawn_blocking` in async code. Writes to one namespace are serialised;
/// writes to different namespaces and all reads run in parallel.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .field("device", &self.inner.options.device)
            .finish_non_exhaustive()
    }
}

struct Inner {
    dir: PathBuf,
    options: Options,
    limits: Limits,
    db: Database,
    entries: Keyspace,
    docs: Keyspace,
    blob_refs: Keyspace,
    log: Keyspace,
    tombs: Keyspace,
    records: Keyspace,
    meta: Keyspace,
    /// Which vault slot holds which document's or blob's key, and the slots
    /// whose erasure is pending.
    vault_map: Keyspace,
    /// Derived indexes of the application (opaque; see `index.rs`).
    index: Keyspace,
    /// Filler written only by [`Store::compact`] to make fjall start a new
    /// journal file; empty otherwise.
    scratch: Keyspace,
    blobs: BlobFiles,
    /// The keys of every document and blob, overwritten when they go.
    vault: Vault,
    clock: HybridClock,
    actor: ActorId,
    namespaces: Mutex<HashMap<NamespaceId, Arc<Mutex<NsState>>>>,
    /// Held while blob references and blob files change together, so a file
    /// is never removed while another write is adding a reference to it.
    blob_lock: Mutex<()>,
    /// Per namespace: tombstone prefix (encoded) → latest tombstone time.
    tombstones: RwLock<HashMap<NamespaceId, BTreeMap<Vec<u8>, Timestamp>>>,
    watchers: Watchers,
    outbox_next: Mutex<u64>,
    /// One compaction at a time.
    compaction: Mutex<()>,
    /// What opening found in the journal.
    recovery: Recovery,
    /// fjall's sequence number at the last flush asked for by
    /// [`WRITE_BUFFER_LIMIT`]; held while asking.
    last_flush: Mutex<u64>,
}

impl Store {
    /// Opens (or creates) a store in the folder `dir`.
    ///
    /// Recovery replays fjall's journal (a torn last batch is dropped) and
    /// removes blob files that no entry references (left by a crash between
    /// writing a blob and committing its entry). The store keeps what the
    /// journal holds beyond its tables to a few MiB, so the replay does not
    /// grow with the data ([`Store::recovery`] says what it found). Blocks.
    ///
    /// # Errors
    /// [`Error::Locked`] if another process (or another `Store` in this
    /// one) has the folder open, [`Error::Storage`] or [`Error::Io`] if it
    /// cannot be opened.
    pub fn open(dir: impl AsRef<FsPath>, options: Options) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let db = match Database::builder(dir.join("db"))
            .cache_size(options.cache_size)
            // The least fjall allows: past it, fjall itself flushes the
            // keyspaces that hold the oldest journal file on disk.
            .max_journaling_size(MAX_JOURNALING_SIZE)
            .journal_rotation_size(JOURNAL_ROTATE_BYTES)
            .open()
        {
            Ok(db) => db,
            Err(fjall::Error::Locked) => return Err(Error::Locked(dir)),
            Err(e) => return Err(e.into()),
        };
        // Applies to keyspaces created now; older ones keep the size they
        // were created with, and `bound_memtables` covers them all.
        let ks = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default().max_memtable_size(WRITE_BUFFER_LIMIT)
            })
        };
        let entries = ks("entries")?;
        let docs = ks("docs")?;
        let blob_refs = ks("blob_refs")?;
        let log = ks("log")?;
        let tombs = ks("tombs")?;
        let records = ks("records")?;
        let meta = ks("meta")?;
        let vault_map = ks("vault")?;
        let index = ks("index")?;
        let scratch = ks("scratch")?;
        let recovery = Recovery {
            journal_bytes: db.journal_disk_space()?,
            replayed_bytes: db.write_buffer_size(),
        };
        let sync = options.durability == Durability::Sync;
        let blobs = BlobFiles::open(dir.join("blobs"), sync, options.blob_cipher)?;
        let vault = Vault::open(&dir.join("vault"), sync)?;
        let actor = ActorId::from(options.device.as_bytes().as_slice());
        let limits = options.limits.clamped();
        let inner = Inner {
            dir,
            limits,
            options,
            db,
            entries,
            docs,
            blob_refs,
            log,
            tombs,
            records,
            meta,
            vault_map,
            index,
            scratch,
            blobs,
            vault,
            clock: HybridClock::new(),
            actor,
            namespaces: Mutex::default(),
            blob_lock: Mutex::default(),
            tombstones: RwLock::default(),
            watchers: Watchers::default(),
            outbox_next: Mutex::new(0),
            compaction: Mutex::default(),
            recovery,
            last_flush: Mutex::new(0),
        };
        inner.recover()?;
        // What the journal replayed into memory goes to tables now (in
        // fjall's workers), so the next start does not replay it again.
        inner.bound_memtables();
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The folder this store lives in.
    pub fn dir(&self) -> &FsPath {
        &self.inner.dir
    }

    /// The device local edits are attributed to.
    pub fn device(&self) -> DeviceId {
        self.inner.options.device
    }

    /// The store's hybrid logical clock (local writes are stamped with it).
    pub fn clock(&self) -> &HybridClock {
        &self.inner.clock
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    // ----- reading -------------------------------------------------------

    /// The entry at `path`, if any. Blocks on a read.
    ///
    /// # Errors
    /// Storage errors only.
    pub fn get(&self, ns: &NamespaceId, path: &Path) -> Result<Option<Entry>> {
        self.inner.entry_in(&self.inner.db.snapshot(), ns, path)
    }

    /// Up to `limit` entries under `prefix` in path order, starting after
    /// `after` (pass the previous page's `next`). Blocks on reads.
    ///
    /// # Errors
    /// Storage errors, or [`Error::Corrupt`] for a damaged entry.
    pub fn list(
        &self,
        ns: &NamespaceId,
        prefix: &Path,
        after: Option<&Path>,
        limit: usize,
    ) -> Result<Page> {
        let inner = &self.inner;
        let start = keys::entry(ns, prefix);
        let lower = match after {
            Some(a) if prefix.is_prefix_of(a) => Bound::Excluded(keys::entry(ns, a)),
            _ => Bound::Included(start.clone()),
        };
        let mut entries = Vec::with_capacity(limit.min(1024));
        let mut next = None;
        for guard in inner.entries.range::<Vec<u8>, _>((lower, Bound::Unbounded)) {
            let (key, value) = guard.into_inner()?;
            if !key.starts_with(&start) {
                break;
            }
            let path = keys::entry_path(&key)?;
            if entries.len() == limit {
                next = entries.last().map(|(p, _): &(Path, Entry)| p.clone());
                break;
            }
            entries.push((path, Entry::decode(&value)?));
        }
        Ok(Page { entries, next })
    }

    /// A document, with any queued changes that wait for missing
    /// dependencies. `None` if nothing is at `path`. Blocks on reads and
    /// Automerge loading.
    ///
    /// # Errors
    /// [`Error::WrongKind`] if a blob is at `path`; storage or Automerge
    /// errors for damaged data.
    pub fn document(&self, ns: &NamespaceId, path: &Path) -> Result<Option<AutoCommit>> {
        let snap = self.inner.db.snapshot();
        match self.inner.entry_in(&snap, ns, path)? {
            None => Ok(None),
            Some(e) if e.blob_hash().is_some() => Err(wrong_kind(path, "document", &e)),
            Some(_) => Ok(Some(self.inner.load_doc(&snap, ns, path)?.doc)),
        }
    }

    /// The heads of the document at `path`. Blocks on a read.
    ///
    /// # Errors
    /// [`Error::NotFound`] or [`Error::WrongKind`].
    pub fn heads(&self, ns: &NamespaceId, path: &Path) -> Result<Vec<ChangeHash>> {
        let entry = self.get(ns, path)?.ok_or_else(|| not_found(ns, path))?;
        entry
            .heads()
            .map(<[ChangeHash]>::to_vec)
            .ok_or_else(|| wrong_kind(path, "document", &entry))
    }

    /// The changes of the document at `path` that a peer with `their_heads`
    /// is missing, in Automerge's saved format (apply them with
    /// [`Store::apply_changes`] or `load_incremental`). Heads this store does
    /// not know are ignored, so the answer may include changes the peer has.
    /// Blocks.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::WrongKind`], storage errors.
    pub fn changes_for(
        &self,
        ns: &NamespaceId,
        path: &Path,
        their_heads: &[ChangeHash],
    ) -> Result<Vec<u8>> {
        let mut doc = self
            .document(ns, path)?
            .ok_or_else(|| not_found(ns, path))?;
        let known: Vec<ChangeHash> = their_heads
            .iter()
            .filter(|h| doc.get_change_by_hash(h).is_some())
            .copied()
            .collect();
        Ok(doc.save_after(&known))
    }

    /// The stored bytes of the document at `path`, in Automerge's formats
    /// (its chunks one after another, including queued changes): everything
    /// a peer that has nothing of it needs, without loading it. Apply them
    /// with [`Store::apply_changes`]. Blocks on reads.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::WrongKind`], storage errors.
    pub fn document_bytes(&self, ns: &NamespaceId, path: &Path) -> Result<Vec<u8>> {
        let inner = &self.inner;
        let snap = inner.db.snapshot();
        match inner.entry_in(&snap, ns, path)? {
            None => return Err(not_found(ns, path)),
            Some(e) if e.blob_hash().is_some() => return Err(wrong_kind(path, "document", &e)),
            Some(_) => {}
        }
        let key = inner.doc_key_in(&snap, ns, path)?.map(|(_, key)| key);
        let prefix = keys::doc_prefix(ns, path);
        let mut out = Vec::new();
        for guard in snap.prefix(&inner.docs, &prefix) {
            let (fjall_key, value) = guard.into_inner()?;
            if keys::chunk_kind(&fjall_key, prefix.len()) == Some(keys::CHUNK_PURGED) {
                return Err(not_here(ns, path));
            }
            out.extend_from_slice(&open_chunk(key.as_ref(), &fjall_key, &value)?);
        }
        Ok(out)
    }

    /// Purges the content of the documents at `paths` of `ns`, keeping
    /// their entries: for friends' documents held as a cache, which their
    /// owner's devices serve again. The chunks are deleted and their key
    /// destroyed before this returns, as for a deletion (section "vault"),
    /// and the document is marked purged: [`Store::document`] answers
    /// [`Error::NotHere`] until the whole document is applied again
    /// ([`Store::apply_changes`] with its identity; changes that do not make
    /// it whole are ignored). Paths that hold no document, or a purged one,
    /// are passed over. Writes no change-log record. Returns the bytes
    /// freed. Blocks, holding the namespace's write lock.
    ///
    /// # Errors
    /// Storage errors.
    pub fn purge_documents(&self, ns: &NamespaceId, paths: &[Path]) -> Result<u64> {
        self.purge_documents_of(&[(*ns, paths)])
    }

    /// [`Store::purge_documents`] for the documents of many namespaces:
    /// one batch per namespace, and the keys of all destroyed at the end,
    /// at once (one journal and one vault sync, where a call per namespace
    /// would sync each time), before this returns. Blocks, holding each
    /// namespace's write lock in turn.
    ///
    /// # Errors
    /// Storage errors; what was committed before one stays purged, and its
    /// keys are destroyed.
    pub fn purge_documents_of(&self, docs: &[(NamespaceId, &[Path])]) -> Result<u64> {
        let inner = &self.inner;
        let mut slots = Vec::new();
        let purged = (|| {
            let mut freed = 0;
            for (ns, paths) in docs {
                let mut txn = inner.begin(ns)?;
                let mut seen = HashSet::new();
                for path in *paths {
                    if !seen.insert(path) || self.is_purged(ns, path)? {
                        continue;
                    }
                    let Some(entry) = inner.entry_in(&inner.db.snapshot(), ns, path)? else {
                        continue;
                    };
                    let EntryKind::Document { size, .. } = entry.kind else {
                        continue;
                    };
                    txn.drop_doc(path, &entry);
                    txn.batch.insert(
                        &inner.docs,
                        keys::doc_chunk(ns, path, keys::CHUNK_PURGED, 0),
                        b"",
                    );
                    freed += size;
                }
                if !seen.is_empty() {
                    // Erased below, with the others: the markers are in
                    // this batch, so a crash before then is finished at the
                    // next open.
                    let erase = std::mem::take(&mut txn.erase);
                    txn.commit()?;
                    slots.extend(erase);
                }
            }
            Ok(freed)
        })();
        inner.erase(&slots)?;
        purged
    }

    /// Whether the content of the document at `path` of `ns` was purged
    /// ([`Store::purge_documents`]) and not applied again. Blocks on a read.
    ///
    /// # Errors
    /// Storage errors.
    pub fn is_purged(&self, ns: &NamespaceId, path: &Path) -> Result<bool> {
        Ok(self
            .inner
            .docs
            .contains_key(keys::doc_chunk(ns, path, keys::CHUNK_PURGED, 0))?)
    }

    /// The latest sequence number issued in `ns` (0 if none). Blocks on a read.
    ///
    /// # Errors
    /// Storage errors.
    pub fn current_seq(&self, ns: &NamespaceId) -> Result<u64> {
        let state = self.inner.ns_state(ns);
        let mut state = state.lock();
        self.inner.load_state(ns, &mut state)?;
        Ok(state.next_seq - 1)
    }

    /// Up to `limit` changes of `ns` after sequence number `seq`, in order.
    /// Each path appears once, at the sequence number of its latest write;
    /// tombstones appear at theirs. Use it to catch up or to resume after a
    /// [`WatchEvent::Lagged`](crate::WatchEvent::Lagged). Blocks on reads.
    ///
    /// # Errors
    /// Storage errors, [`Error::Corrupt`].
    pub fn changes_since(&self, ns: &NamespaceId, seq: u64, limit: usize) -> Result<Vec<Change>> {
        let inner = &self.inner;
        let snap = inner.db.snapshot();
        let from = keys::log(ns, seq.saturating_add(1));
        let to = keys::log(ns, u64::MAX);
        let mut out = Vec::new();
        for guard in snap.range(&inner.log, from..=to) {
            if out.len() == limit {
                break;
            }
            let (key, value) = guard.into_inner()?;
            let seq = keys::log_seq(&key).ok_or(Error::Corrupt {
                what: "log key",
                why: "bad length",
            })?;
            let kind = match LogRecord::decode(&value)? {
                LogRecord::Put(path) => match inner.entry_in(&snap, ns, &path)? {
                    Some(entry) => ChangeKind::Put { path, entry },
                    None => continue,
                },
                LogRecord::Tombstone(prefix, timestamp) => {
                    ChangeKind::Tombstone { prefix, timestamp }
                }
            };
            out.push(Change {
                namespace: *ns,
                seq,
                kind,
            });
        }
        Ok(out)
    }

    /// Every namespace that has had a write. Blocks on reads.
    ///
    /// # Errors
    /// Storage errors.
    pub fn namespaces(&self) -> Result<Vec<NamespaceId>> {
        let mut out = Vec::new();
        for guard in self.inner.meta.prefix(b"seq") {
            let key = guard.key()?;
            if let Ok(ns) = NamespaceId::try_from_slice(&key[3..]) {
                out.push(ns);
            }
        }
        Ok(out)
    }

    /// Subscribes to changes under `prefix` of `ns`. Never blocks writers:
    /// a watcher that falls [`WATCH_CAPACITY`](crate::WATCH_CAPACITY) events
    /// behind receives [`WatchEvent::Lagged`](crate::WatchEvent::Lagged).
    pub fn watch(&self, ns: &NamespaceId, prefix: &Path) -> Watcher {
        self.inner.watchers.subscribe(*ns, prefix.clone())
    }

    // ----- documents -----------------------------------------------------

    /// Creates a document at `path` from `doc`, replacing whatever was there
    /// (a new document identity, created now by this device). Blocks.
    ///
    /// # Errors
    /// [`Error::RootPath`], [`Error::TooLarge`], [`Error::Tombstoned`],
    /// storage errors.
    pub fn create_document(
        &self,
        ns: &NamespaceId,
        path: &Path,
        mut doc: AutoCommit,
    ) -> Result<Entry> {
        check_not_root(path)?;
        let inner = &self.inner;
        let bytes = doc.save();
        inner.check_size(
            Limit::DocumentSize,
            bytes.len() as u64,
            inner.limits.max_document_size,
        )?;
        let mut txn = inner.begin(ns)?;
        let now = inner.clock.now();
        inner.check_tombstone(ns, path, now)?;
        let old = inner.entry_in(&inner.db.snapshot(), ns, path)?;
        if let Some(old) = &old {
            txn.drop_doc(path, old);
        }
        let seq = txn.next_seq();
        txn.put_chunk(path, keys::CHUNK_APPLIED, seq, &bytes)?;
        let entry = Entry {
            kind: EntryKind::Document {
                created: now,
                creator: inner.options.device,
                heads: doc.get_heads(),
                size: bytes.len() as u64,
                pending: false,
            },
            device: inner.options.device,
            timestamp: now,
            seq,
        };
        txn.put(path, old.as_ref(), entry.clone());
        txn.commit()?;
        Ok(entry)
    }

    /// Edits the document at `path` with `edit` (creating an empty document
    /// first if nothing is there) and stores the resulting change. Returns
    /// what `edit` returned and the entry; an edit that changes nothing
    /// writes nothing. Other writes to the namespace wait while `edit` runs.
    /// Blocks.
    ///
    /// # Errors
    /// [`Error::WrongKind`] if a blob is at `path`, [`Error::TooLarge`],
    /// [`Error::RootPath`], storage errors. An error from `edit` itself is
    /// the caller's to put in `R`.
    pub fn edit_document<R>(
        &self,
        ns: &NamespaceId,
        path: &Path,
        edit: impl FnOnce(&mut AutoCommit) -> R,
    ) -> Result<(R, Entry)> {
        check_not_root(path)?;
        let inner = &self.inner;
        let mut txn = inner.begin(ns)?;
        let old = inner.entry_in(&inner.db.snapshot(), ns, path)?;
        let (mut loaded, identity) = match &old {
            Some(
                e @ Entry {
                    kind: EntryKind::Blob { .. },
                    ..
                },
            ) => return Err(wrong_kind(path, "document", e)),
            Some(Entry {
                kind:
                    EntryKind::Document {
                        created, creator, ..
                    },
                ..
            }) => (
                inner.load_doc(&inner.db.snapshot(), ns, path)?,
                DocIdentity {
                    created: *created,
                    creator: *creator,
                },
            ),
            None => (
                LoadedDoc::default(),
                DocIdentity {
                    created: inner.clock.now(),
                    creator: inner.options.device,
                },
            ),
        };
        loaded.doc.set_actor(inner.actor.clone());
        let heads_before = loaded.doc.get_heads();
        let out = edit(&mut loaded.doc);
        let now = inner.clock.now();
        let millis = i64::try_from(now.as_micros() / 1000).unwrap_or(i64::MAX);
        loaded
            .doc
            .commit_with(automerge::transaction::CommitOptions::default().with_time(millis));
        if old.is_some() && loaded.doc.get_heads() == heads_before {
            let entry = old.ok_or_else(|| not_found(ns, path))?;
            return Ok((out, entry));
        }
        inner.check_tombstone(ns, path, identity.created)?;
        let write = RemoteWrite {
            device: inner.options.device,
            timestamp: now,
        };
        let entry = txn.write_doc(
            path,
            old.as_ref(),
            loaded,
            &heads_before,
            identity,
            write,
            None,
            None,
        )?;
        txn.commit()?;
        Ok((out, entry))
    }

    /// Applies Automerge changes from another device (bytes from
    /// `save_after`, `save_incremental`, `save` or concatenated changes) to
    /// the document `identity` at `path`.
    ///
    /// - If a tombstone covering `path` is at or after `identity.created`,
    ///   the document was deleted: [`Error::Tombstoned`], nothing stored.
    /// - If a newer document or blob sits at `path`, [`Error::Superseded`].
    /// - If an older one sits there, it is replaced.
    /// - Changes whose dependencies are missing are queued (and kept across
    ///   restarts) until the dependencies arrive; see
    ///   [`ApplyOutcome::missing_deps`].
    ///
    /// Blocks.
    ///
    /// # Errors
    /// As above, plus [`Error::TooLarge`], [`Error::Automerge`] for bytes
    /// that are not Automerge data, [`Error::WrongKind`], storage errors.
    pub fn apply_changes(
        &self,
        ns: &NamespaceId,
        path: &Path,
        identity: DocIdentity,
        write: RemoteWrite,
        changes: &[u8],
    ) -> Result<ApplyOutcome> {
        let doc = RemoteChanges {
            path,
            identity,
            write,
            changes,
        };
        self.apply_changes_batch(ns, &[doc])?
            .pop()
            .unwrap_or_else(|| Err(not_found(ns, path)))
    }

    /// [`Store::apply_changes`] for many documents of one namespace, written
    /// in as few fjall batches as their sizes allow (one commit for many
    /// small documents, as a catch-up receives them). Each document is
    /// checked and refused on its own, exactly as `apply_changes` would:
    /// the answer holds one result per document, in order. A storage error
    /// while writing fails the whole call, and what it had not committed is
    /// not stored (what it had is, as after the same `apply_changes` calls).
    /// Blocks, holding the namespace's write lock for one batch at a time.
    ///
    /// # Errors
    /// Storage errors; each document's own refusals are in its result.
    pub fn apply_changes_batch(
        &self,
        ns: &NamespaceId,
        docs: &[RemoteChanges<'_>],
    ) -> Result<Vec<Result<ApplyOutcome>>> {
        let inner = &self.inner;
        if !preload::worth_a_helper(docs.len()) {
            return inner.apply_batch_in_order(ns, docs, None);
        }
        // New documents are loaded ahead on a second thread while this one
        // writes (see `preload`); the helper reads a snapshot of the entries
        // so as not to load a document this store already holds.
        let pre = preload::Preloader::new(docs.len());
        let snapshot = inner.db.snapshot();
        let load = |i: usize| {
            let doc = &docs[i];
            let held = inner.entry_in(&snapshot, ns, doc.path).ok()?;
            let incoming = crate::entry::Identity {
                time: doc.identity.created,
                device: doc.identity.creator,
            };
            let into_nothing = held.is_none_or(|e| e.identity() < incoming);
            (into_nothing
                && !doc.path.is_root()
                && doc.changes.len() as u64 <= inner.limits.max_change_size)
                .then(|| preload::load_new(doc.changes))
        };
        std::thread::scope(|scope| {
            scope.spawn(|| pre.run(&load));
            let _stop = preload::StopOnDrop(&pre);
            inner.apply_batch_in_order(ns, docs, Some((&pre, &load)))
        })
    }

    // ----- blobs ---------------------------------------------------------

    /// Streams `content` into the store and puts a blob entry for it at
    /// `path` (replacing whatever was there). Content is de-duplicated by
    /// BLAKE3 hash; it is never held in memory whole. Blocks.
    ///
    /// # Errors
    /// [`Error::TooLarge`] (blob size or media type), [`Error::RootPath`],
    /// [`Error::Io`] from `content`, storage errors.
    pub fn put_blob(
        &self,
        ns: &NamespaceId,
        path: &Path,
        content: impl Read,
        media_type: &str,
    ) -> Result<Entry> {
        check_not_root(path)?;
        check_media_type(media_type)?;
        let inner = &self.inner;
        let temp = inner
            .blobs
            .write_temp(content, inner.limits.max_blob_size)?;
        let mut txn = inner.begin(ns)?;
        let now = inner.clock.now();
        inner.check_tombstone(ns, path, now)?;
        let old = inner.entry_in(&inner.db.snapshot(), ns, path)?;
        let entry = Entry {
            kind: EntryKind::Blob {
                hash: temp.hash,
                size: temp.size,
                media_type: media_type.to_string(),
            },
            device: inner.options.device,
            timestamp: now,
            seq: txn.next_seq(),
        };
        if let Some(old) = &old {
            txn.drop_doc(path, old);
        }
        txn.place.push(temp);
        txn.put(path, old.as_ref(), entry.clone());
        txn.commit()?;
        Ok(entry)
    }

    /// Puts a blob entry written by another device, without its content
    /// (fetch that later and hand it to [`Store::import_blob`]). A write is
    /// accepted if it is newer than what sits at `path` and than every
    /// tombstone covering it. Re-applying the same write is a no-op. Blocks.
    ///
    /// # Errors
    /// [`Error::Tombstoned`], [`Error::Superseded`], [`Error::TooLarge`],
    /// [`Error::RootPath`], storage errors.
    pub fn put_blob_entry(
        &self,
        ns: &NamespaceId,
        path: &Path,
        write: RemoteWrite,
        hash: BlobHash,
        size: u64,
        media_type: &str,
    ) -> Result<Entry> {
        check_not_root(path)?;
        check_media_type(media_type)?;
        let inner = &self.inner;
        inner.check_size(Limit::BlobSize, size, inner.limits.max_blob_size)?;
        let incoming = crate::entry::Identity {
            time: write.timestamp,
            device: write.device,
        };
        let (mut txn, old) = inner.begin_remote(ns, path, incoming.time, write.timestamp)?;
        if let Some(old) = &old {
            if old.identity() == incoming && old.blob_hash() == Some(hash) {
                return Ok(old.clone());
            }
            if old.identity() >= incoming {
                return Err(Error::Superseded { path: path.clone() });
            }
            txn.drop_doc(path, old);
        }
        let entry = Entry {
            kind: EntryKind::Blob {
                hash,
                size,
                media_type: media_type.to_string(),
            },
            device: write.device,
            timestamp: write.timestamp,
            seq: txn.next_seq(),
        };
        txn.put(path, old.as_ref(), entry.clone());
        txn.commit()?;
        Ok(entry)
    }

    /// Stores fetched content for a blob that an entry references, checking
    /// while streaming that it hashes to `expected` (and is no longer than
    /// the limit). Blocks.
    ///
    /// # Errors
    /// [`Error::HashMismatch`], [`Error::Unreferenced`] if no entry refers to
    /// `expected`, [`Error::TooLarge`], [`Error::Io`].
    pub fn import_blob(&self, expected: BlobHash, content: impl Read) -> Result<()> {
        let inner = &self.inner;
        let temp = inner
            .blobs
            .write_temp(content, inner.limits.max_blob_size)?;
        if temp.hash != expected {
            return Err(Error::HashMismatch {
                expected,
                actual: temp.hash,
            });
        }
        let _guard = inner.blob_lock.lock();
        if !inner.is_referenced(&expected)? {
            return Err(Error::Unreferenced(expected));
        }
        inner.place_blob(temp)
    }

    /// Opens the resumable download of a blob that an entry references:
    /// bytes already received are kept across interruptions and restarts
    /// (see [`PartialBlob::offset`]); [`Store::finish_import`] verifies and
    /// stores it. One download of a blob at a time: while another is open
    /// (not yet finished or dropped), this waits for it, for at most a
    /// minute. Blocks.
    ///
    /// # Errors
    /// [`Error::Unreferenced`], [`Error::TooLarge`], [`Error::Io`],
    /// [`Error::Busy`] if the other download stayed open.
    pub fn resume_import(&self, hash: BlobHash, size: u64) -> Result<PartialBlob> {
        let inner = &self.inner;
        inner.check_size(Limit::BlobSize, size, inner.limits.max_blob_size)?;
        if !inner.is_referenced(&hash)? {
            return Err(Error::Unreferenced(hash));
        }
        // The download is encrypted under the blob's key from its first
        // byte; a partial file from before encryption at rest starts over.
        let (key, restart) = {
            let _guard = inner.blob_lock.lock();
            match inner.blob_key(&hash)? {
                Some(key) => (key, false),
                None => {
                    let key = inner.blobs.new_key();
                    inner.map_blob_key(&hash, &key)?;
                    (key, true)
                }
            }
        };
        inner.blobs.partial(hash, size, Some(&key), restart)
    }

    /// Verifies a complete download against its hash and stores it. A
    /// download whose bytes do not match is deleted. Blocks (hashes the
    /// whole blob).
    ///
    /// # Errors
    /// [`Error::BadRange`] if it is incomplete, [`Error::HashMismatch`],
    /// [`Error::Unreferenced`], [`Error::Io`].
    pub fn finish_import(&self, partial: PartialBlob) -> Result<()> {
        let inner = &self.inner;
        let _guard = inner.blob_lock.lock();
        let hash = partial.hash();
        if !inner.is_referenced(&hash)? {
            drop(partial);
            inner.drop_blob_files(&[hash])?;
            return Err(Error::Unreferenced(hash));
        }
        match inner.blobs.finish_partial(partial) {
            Ok(groups) => {
                if let Some(key) = inner.blob_key(&hash)? {
                    inner.keep_groups(&hash, &key, &groups)?;
                }
                Ok(())
            }
            Err(e @ Error::HashMismatch { .. }) => {
                // The bytes received were not the blob's: their key goes
                // with them, so the next try encrypts under a new one.
                if !inner.blobs.exists(&hash) {
                    inner.drop_blob_files(&[hash])?;
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Gives up a download whose bytes turned out not to be the blob's
    /// ([`Error::GroupMismatch`] among the bytes kept): the bytes go, and
    /// their key with them, so the next download starts over under a new
    /// key. Blocks.
    ///
    /// # Errors
    /// Storage errors.
    pub fn discard_import(&self, partial: PartialBlob) -> Result<()> {
        let inner = &self.inner;
        let _guard = inner.blob_lock.lock();
        let hash = partial.hash();
        drop(partial);
        if !inner.blobs.exists(&hash) {
            inner.drop_blob_files(&[hash])?;
        }
        Ok(())
    }

    /// The group hashes of a stored blob, [`groups::encode`]d (empty for a
    /// blob of one group), for a receiver to verify the blob group by
    /// group as it arrives. Kept since the blob was stored; for a blob
    /// stored before they were kept, computed from its content now (and
    /// kept). Blocks.
    ///
    /// # Errors
    /// [`Error::BlobMissing`] if the content is not here,
    /// [`Error::HashMismatch`] if the content kept does not hash to
    /// `hash`, storage errors.
    ///
    /// [`groups::encode`]: crate::groups::encode
    pub fn blob_groups(&self, hash: &BlobHash) -> Result<Vec<u8>> {
        let inner = &self.inner;
        let key = inner.blob_key(hash)?;
        if let Some(key) = &key {
            let fjall_key = keys::vault_groups(hash);
            if let Some(sealed) = inner.vault_map.get(&fjall_key)? {
                return key.key.open(&fjall_key, &sealed);
            }
        }
        let mut reader = self.read_blob(hash, ..)?;
        if crate::groups::group_count(reader.len()) == 1 {
            return Ok(Vec::new());
        }
        let mut hasher = crate::groups::GroupHasher::new();
        hasher.update_from(&mut reader)?;
        let (actual, groups) = hasher.finalize();
        if actual != *hash {
            return Err(Error::HashMismatch {
                expected: *hash,
                actual,
            });
        }
        if let Some(key) = &key {
            let _guard = inner.blob_lock.lock();
            // Still the blob's key (it was not deleted meanwhile).
            if inner.blob_key(hash)?.as_ref() == Some(key) {
                inner.keep_groups(hash, key, &groups)?;
            }
        }
        Ok(crate::groups::encode(&groups))
    }

    /// The namespaces with an entry that references `hash`. Blocks.
    ///
    /// # Errors
    /// Storage errors.
    pub fn blob_namespaces(&self, hash: &BlobHash) -> Result<Vec<NamespaceId>> {
        let mut out: Vec<NamespaceId> = Vec::new();
        for guard in self.inner.blob_refs.prefix(hash.as_bytes()) {
            let key = guard.key()?;
            if let Some(ns) = key
                .get(32..64)
                .and_then(|b| NamespaceId::try_from_slice(b).ok())
                && out.last() != Some(&ns)
            {
                out.push(ns);
            }
        }
        Ok(out)
    }

    /// Whether the content of `hash` is stored locally.
    pub fn has_blob(&self, hash: &BlobHash) -> bool {
        self.inner.blobs.exists(hash)
    }

    /// Deletes the local content of `hash` while entries keep referring to
    /// it (a purged cache: the content can be fetched again). Returns whether
    /// a file was removed. Blocks.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn purge_blob(&self, hash: &BlobHash) -> Result<bool> {
        let _guard = self.inner.blob_lock.lock();
        self.inner.drop_blob_files(&[*hash])
    }

    /// Streams `range` of a blob's content (all of it with `..`). Blocks on
    /// opening the file; reading blocks too.
    ///
    /// # Errors
    /// [`Error::BlobMissing`] if the content is not here, [`Error::BadRange`].
    pub fn read_blob(&self, hash: &BlobHash, range: impl RangeBounds<u64>) -> Result<BlobReader> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => Some(e.saturating_add(1)),
            Bound::Excluded(e) => Some(*e),
            Bound::Unbounded => None,
        };
        let key = self.inner.blob_key(hash)?;
        self.inner.blobs.reader(hash, start, end, key.as_ref())
    }

    // ----- deletion ------------------------------------------------------

    /// Applies a deletion: removes every entry under `prefix` written at or
    /// before `timestamp` (documents created at or before it with their whole
    /// history, blob entries written at or before it, and blob content that
    /// nothing references any more) and keeps the tombstone, so that older
    /// writes under `prefix` and later changes to a killed document are
    /// refused from now on. `records` (the signed tombstone, a receipt, an
    /// outbox message …) are written in the same atomic batch. The bytes are
    /// physically gone from the data folder after [`Store::compact`].
    /// Re-applying a known tombstone removes nothing more. Blocks.
    ///
    /// # Errors
    /// [`Error::TooLarge`] for an oversize record, storage errors.
    pub fn apply_tombstone(
        &self,
        ns: &NamespaceId,
        prefix: &Path,
        timestamp: Timestamp,
        records: &[RecordOp],
    ) -> Result<TombstoneOutcome> {
        let inner = &self.inner;
        for op in records {
            inner.check_record(op)?;
        }
        inner.clock.observe(timestamp);
        let mut txn = inner.begin(ns)?;
        let already_known = inner
            .tombstone_at(ns, prefix)
            .is_some_and(|t| t >= timestamp);
        let mut removed = 0;
        for guard in inner.entries.prefix(keys::entry(ns, prefix)) {
            let (key, value) = guard.into_inner()?;
            let entry = Entry::decode(&value)?;
            if entry.identity().time <= timestamp {
                let path = keys::entry_path(&key)?;
                txn.remove(&path, &entry);
                removed += 1;
            }
        }
        if !already_known {
            txn.tombstone(prefix, timestamp);
        }
        for op in records {
            inner.record_op(&mut txn.batch, op)?;
        }
        let blobs_deleted = txn.commit()?;
        if !already_known {
            let mut tombs = inner.tombstones.write();
            let slot = tombs
                .entry(*ns)
                .or_default()
                .entry(prefix.encoded().to_vec())
                .or_insert(timestamp);
            *slot = (*slot).max(timestamp);
        }
        Ok(TombstoneOutcome {
            removed,
            blobs_deleted,
            already_known,
        })
    }

    /// The latest tombstone time covering `path` (at `path` or any ancestor).
    pub fn covering_tombstone(&self, ns: &NamespaceId, path: &Path) -> Option<Timestamp> {
        self.inner.covering_tombstone(ns, path)
    }

    /// Every tombstone of `ns`: prefix and latest time. Blocks on reads.
    ///
    /// # Errors
    /// Storage errors.
    pub fn tombstones(&self, ns: &NamespaceId) -> Result<Vec<(Path, Timestamp)>> {
        let tombs = self.inner.tombstones.read();
        let Some(map) = tombs.get(ns) else {
            return Ok(Vec::new());
        };
        map.iter()
            .map(|(p, t)| Ok((Path::from_encoded(p)?, *t)))
            .collect()
    }

    /// Makes deleted bytes physically disappear: flushes every memtable,
    /// retires fjall's journal file (which still holds every write since it
    /// was started) and rewrites every table without deleted values (major
    /// compaction).
    ///
    /// fjall starts a new journal file only at a flush once the current one
    /// passes 8 MiB, and offers no call to start one sooner, so this
    /// appends filler through a scratch keyspace until the journal rotates:
    /// one compaction writes up to 8 MiB, then frees it. Run it after
    /// deletions (the app does, after a deletion request), not after every
    /// write. Blocks; takes a fraction of a second plus the time to rewrite
    /// the store's tables.
    ///
    /// # Errors
    /// Storage errors.
    pub fn compact(&self) -> Result<()> {
        let inner = &self.inner;
        let _exclusive = inner.compaction.lock();
        let all = inner.keyspaces();
        inner.db.persist(PersistMode::SyncAll)?;
        // Every keyspace needs a flushed table for the journal manager to
        // consider the old journal fully persisted.
        for ks in &all {
            ks.insert(COMPACT_MARKER, b"")?;
            ks.remove(COMPACT_MARKER)?;
        }
        inner.rotate_journal()?;
        for ks in &all {
            ks.rotate_memtable_and_wait()?;
        }
        // Journal maintenance runs on a memtable rotation: one more, now that
        // everything the old journal held is in tables.
        inner.meta.insert(COMPACT_MARKER, b"")?;
        inner.meta.remove(COMPACT_MARKER)?;
        inner.meta.rotate_memtable_and_wait()?;
        let remaining = inner.db.journal_count();
        if remaining > 1 {
            tracing::warn!(
                remaining,
                "old journal files were not retired by compaction"
            );
        }
        for ks in &all {
            ks.major_compact()?;
        }
        Ok(())
    }

    // ----- records -------------------------------------------------------

    /// Writes record operations in one atomic batch. Blocks.
    ///
    /// # Errors
    /// [`Error::TooLarge`] for an oversize record or id, storage errors.
    pub fn write_records(&self, ops: &[RecordOp]) -> Result<()> {
        let inner = &self.inner;
        let mut batch = inner.batch();
        for op in ops {
            inner.check_record(op)?;
            inner.record_op(&mut batch, op)?;
        }
        inner.commit(batch)?;
        Ok(())
    }

    /// Stores one opaque record. Blocks.
    ///
    /// # Errors
    /// As [`Store::write_records`].
    pub fn put_record(
        &self,
        kind: RecordKind,
        ns: &NamespaceId,
        id: &[u8],
        bytes: &[u8],
    ) -> Result<()> {
        self.write_records(&[RecordOp::put(kind, *ns, id, bytes)])
    }

    /// One record, if stored. Blocks.
    ///
    /// # Errors
    /// Storage errors.
    pub fn record(&self, kind: RecordKind, ns: &NamespaceId, id: &[u8]) -> Result<Option<Vec<u8>>> {
        if id.len() > crate::MAX_RECORD_ID_LEN {
            return Ok(None);
        }
        Ok(self
            .inner
            .records
            .get(keys::record(kind.tag(), ns, id))?
            .map(|v| v.to_vec()))
    }

    /// Every record of `kind` in `ns`, as (id, bytes), ordered by id. Blocks.
    ///
    /// # Errors
    /// Storage errors.
    pub fn records(&self, kind: RecordKind, ns: &NamespaceId) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let prefix = keys::record_prefix(kind.tag(), ns);
        let mut out = Vec::new();
        for guard in self.inner.records.prefix(&prefix) {
            let (key, value) = guard.into_inner()?;
            out.push((key[prefix.len()..].to_vec(), value.to_vec()));
        }
        Ok(out)
    }

    /// Every record of `kind` in every namespace, as (namespace, id, bytes),
    /// ordered by namespace then id. Blocks.
    ///
    /// # Errors
    /// Storage errors, [`Error::Corrupt`].
    pub fn all_records(&self, kind: RecordKind) -> Result<Vec<StoredRecord>> {
        let mut out = Vec::new();
        for guard in self.inner.records.prefix([kind.tag()]) {
            let (key, value) = guard.into_inner()?;
            let ns = key
                .get(1..33)
                .and_then(|b| NamespaceId::try_from_slice(b).ok())
                .ok_or(Error::Corrupt {
                    what: "record key",
                    why: "too short",
                })?;
            out.push((ns, key[33..].to_vec(), value.to_vec()));
        }
        Ok(out)
    }

    /// Removes one record. Blocks.
    ///
    /// # Errors
    /// Storage errors.
    pub fn remove_record(&self, kind: RecordKind, ns: &NamespaceId, id: &[u8]) -> Result<()> {
        self.write_records(&[RecordOp::remove(kind, *ns, id)])
    }

    /// Queues a message owed to `dest` (a deletion request, a receipt, a key
    /// update). It stays until [`Store::outbox_remove`], across restarts.
    /// Returns its id; ids increase. Blocks.
    ///
    /// # Errors
    /// [`Error::TooLarge`], storage errors.
    pub fn outbox_push(&self, dest: &NamespaceId, message: &[u8]) -> Result<u64> {
        let inner = &self.inner;
        let mut next = inner.outbox_next.lock();
        let id = *next;
        let op = RecordOp::put(RecordKind::Outbox, *dest, &id.to_be_bytes(), message);
        inner.check_record(&op)?;
        let mut batch = inner.batch();
        inner.record_op(&mut batch, &op)?;
        batch.insert(&inner.meta, OUTBOX_COUNTER_KEY, (id + 1).to_be_bytes());
        inner.commit(batch)?;
        *next = id + 1;
        Ok(id)
    }

    /// The messages queued for `dest`, oldest first, as (id, bytes). Blocks.
    ///
    /// # Errors
    /// Storage errors, [`Error::Corrupt`].
    pub fn outbox(&self, dest: &NamespaceId) -> Result<Vec<(u64, Vec<u8>)>> {
        self.records(RecordKind::Outbox, dest)?
            .into_iter()
            .map(|(id, bytes)| {
                let id: [u8; 8] = id.try_into().map_err(|_| Error::Corrupt {
                    what: "outbox id",
                    why: "bad length",
                })?;
                Ok((u64::from_be_bytes(id), bytes))
            })
            .collect()
    }

    /// Removes a delivered outbox message. Blocks.
    ///
    /// # Errors
    /// Storage errors.
    pub fn outbox_remove(&self, dest: &NamespaceId, id: u64) -> Result<()> {
        self.remove_record(RecordKind::Outbox, dest, &id.to_be_bytes())
    }

    // ----- derived indexes -----------------------------------------------

    /// Writes index operations in one atomic batch, in order. Blocks.
    ///
    /// # Errors
    /// [`Error::TooLarge`] for an empty or oversize key or an oversize value
    /// (nothing is written then), storage errors.
    pub fn write_index(&self, ops: &[IndexOp]) -> Result<()> {
        let inner = &self.inner;
        for op in ops {
            let key = op.key();
            if key.is_empty() || key.len() > crate::MAX_INDEX_KEY_LEN {
                return Err(Error::TooLarge {
                    limit: Limit::IndexKey,
                    size: key.len() as u64,
                    max: crate::MAX_INDEX_KEY_LEN as u64,
                });
            }
            if let IndexOp::Put { value, .. } = op
                && value.len() > crate::MAX_INDEX_VALUE_LEN
            {
                return Err(Error::TooLarge {
                    limit: Limit::IndexValue,
                    size: value.len() as u64,
                    max: crate::MAX_INDEX_VALUE_LEN as u64,
                });
            }
        }
        let mut batch = inner.batch();
        for op in ops {
            match op {
                IndexOp::Put { key, value } => {
                    batch.insert(&inner.index, key.as_slice(), value.as_slice());
                }
                IndexOp::Remove { key } => batch.remove(&inner.index, key.as_slice()),
            }
        }
        inner.commit(batch)?;
        Ok(())
    }

    /// The value of one index key, if stored. Blocks on a read.
    ///
    /// # Errors
    /// Storage errors.
    pub fn index_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if key.is_empty() || key.len() > crate::MAX_INDEX_KEY_LEN {
            return Ok(None);
        }
        Ok(self.inner.index.get(key)?.map(|v| v.to_vec()))
    }

    /// Up to `limit` index items whose keys start with `prefix`, in key
    /// order, from the first key after `after` (all of them without it), as
    /// (key, value). Reads only what it returns. Blocks on reads.
    ///
    /// # Errors
    /// Storage errors.
    pub fn index_scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let lower = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        if limit == 0 {
            return Ok(out);
        }
        for guard in self
            .inner
            .index
            .range::<Vec<u8>, _>((lower, Bound::Unbounded))
        {
            let (key, value) = guard.into_inner()?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.to_vec(), value.to_vec()));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Flushes everything written so far to disk (fsync), whatever the
    /// durability mode. Blocks.
    ///
    /// # Errors
    /// Storage errors.
    pub fn sync(&self) -> Result<()> {
        self.inner.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// Writes everything fjall holds only in memory (and so only in its
    /// journal) out as tables and waits for it, so the next
    /// [`Store::open`] has nothing to replay; fjall then also deletes the
    /// journal files it no longer needs. Durability does not depend on it:
    /// every write is in the journal when its call returns. A clean
    /// shutdown calls it, and the store calls it itself when the last
    /// handle is dropped. Blocks (milliseconds: the store keeps at
    /// most a few MiB waiting in memory).
    ///
    /// # Errors
    /// Storage errors; [`Error::Io`] (timed out) if fjall's workers have not
    /// finished within a minute.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    /// Bytes of fjall's journal files now: what the next [`Store::open`]
    /// reads through (a file being written counts its pre-allocated 64 MiB
    /// until an open cuts it to what it holds).
    ///
    /// # Errors
    /// Storage errors.
    pub fn journal_size(&self) -> Result<u64> {
        Ok(self.inner.db.journal_disk_space()?)
    }

    /// What opening this store found in fjall's journal.
    pub fn recovery(&self) -> Recovery {
        self.inner.recovery
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "could not flush the store as it closed");
        }
    }
}

fn check_not_root(path: &Path) -> Result<()> {
    if path.is_root() {
        Err(Error::RootPath)
    } else {
        Ok(())
    }
}

fn check_media_type(media_type: &str) -> Result<()> {
    if media_type.len() > crate::MAX_MEDIA_TYPE_LEN {
        return Err(Error::TooLarge {
            limit: Limit::MediaType,
            size: media_type.len() as u64,
            max: crate::MAX_MEDIA_TYPE_LEN as u64,
        });
    }
    Ok(())
}

/// A stored document chunk in Automerge's format: decrypted with `key`, or
/// as stored if it was written before encryption at rest.
fn open_chunk(key: Option<&ItemKey>, fjall_key: &[u8], stored: &[u8]) -> Result<Vec<u8>> {
    if !crate::vault::is_sealed(stored) {
        return Ok(stored.to_vec());
    }
    match key {
        Some(key) => key.open(fjall_key, stored),
        None => Err(Error::Corrupt {
            what: "document chunk",
            why: "encrypted, but the document has no key",
        }),
    }
}

/// A document's key as a write sees it.
enum DocKey {
    /// Stored before this write, in this slot.
    Existing(Slot, ItemKey),
    /// Allocated by this write, for a new document (or one replacing the
    /// old one at its path).
    Fresh(Slot, ItemKey),
    /// The document was removed by this write; its key is erased after the
    /// commit.
    Dropped,
}

fn not_here(ns: &NamespaceId, path: &Path) -> Error {
    Error::NotHere {
        namespace: *ns,
        path: path.clone(),
    }
}

fn not_found(ns: &NamespaceId, path: &Path) -> Error {
    Error::NotFound {
        namespace: *ns,
        path: path.clone(),
    }
}

fn wrong_kind(path: &Path, expected: &'static str, found: &Entry) -> Error {
    Error::WrongKind {
        path: path.clone(),
        expected,
        found: found.kind_name(),
    }
}

/// A document loaded from its stored chunks.
#[derive(Default)]
struct LoadedDoc {
    doc: AutoCommit,
    /// Its key and slot, read for loading, so a write need not read them
    /// again (`None` for a document stored in the clear, or a new one).
    key: Option<(Slot, ItemKey)>,
    applied_keys: Vec<fjall::Slice>,
    pending_keys: Vec<fjall::Slice>,
    applied_bytes: u64,
    pending_bytes: u64,
}

impl LoadedDoc {
    /// A document loaded from received bytes, with nothing stored yet.
    fn new(doc: AutoCommit) -> Self {
        Self {
            doc,
            key: None,
            applied_keys: Vec::new(),
            pending_keys: Vec::new(),
            applied_bytes: 0,
            pending_bytes: 0,
        }
    }
}

impl Inner {
    fn keyspaces(&self) -> [&Keyspace; 10] {
        [
            &self.entries,
            &self.docs,
            &self.blob_refs,
            &self.log,
            &self.tombs,
            &self.records,
            &self.meta,
            &self.vault_map,
            &self.index,
            &self.scratch,
        ]
    }

    /// The key of the document at `path` and its slot, as `reader` sees
    /// them; `None` for a document stored before encryption at rest (or
    /// none at all).
    fn doc_key_in(
        &self,
        reader: &impl Readable,
        ns: &NamespaceId,
        path: &Path,
    ) -> Result<Option<(Slot, ItemKey)>> {
        match reader.get(&self.vault_map, keys::vault_doc(ns, path))? {
            None => Ok(None),
            Some(slot) => {
                let slot = keys::slot_of(&slot)?;
                Ok(Some((slot, self.key_in_slot(slot)?)))
            }
        }
    }

    fn key_in_slot(&self, slot: Slot) -> Result<ItemKey> {
        self.vault.key(slot)?.ok_or(Error::Corrupt {
            what: "vault",
            why: "the key of a stored item was destroyed",
        })
    }

    /// The key a blob's files are encrypted with; `None` for a file stored
    /// in the clear (before encryption at rest).
    fn blob_key(&self, hash: &BlobHash) -> Result<Option<BlobKey>> {
        match self.vault_map.get(keys::vault_blob(hash))? {
            None => Ok(None),
            Some(slot) => {
                let (slot, cipher) = keys::blob_slot_of(&slot)?;
                let key = self.key_in_slot(slot)?;
                Ok(Some(BlobKey { key, cipher }))
            }
        }
    }

    /// Stores `key` in the vault as the key of `hash`'s files (replacing,
    /// and erasing, any earlier one). Call with the blob lock held.
    fn map_blob_key(&self, hash: &BlobHash, key: &BlobKey) -> Result<()> {
        let old = self.vault_map.get(keys::vault_blob(hash))?;
        let slot = self.vault.allocate(&key.key)?;
        let mut batch = self.batch();
        let value = keys::blob_slot(slot, key.cipher);
        batch.insert(&self.vault_map, keys::vault_blob(hash), value);
        let old = match old {
            Some(old) => {
                let (old, _) = keys::blob_slot_of(&old)?;
                batch.insert(&self.vault_map, keys::vault_erasing(old), b"");
                Some(old)
            }
            None => None,
        };
        if let Err(e) = self.commit(batch) {
            self.vault.discard(&[slot]);
            return Err(e);
        }
        if let Some(old) = old {
            // Whatever was encrypted under the old key (a partial download)
            // cannot be read any more: it goes.
            self.blobs.remove_partial(hash);
            self.erase(&[old])?;
        }
        Ok(())
    }

    /// Moves new blob content into place, its key into the vault first (a
    /// crash in between leaves a key for a missing file, which a download
    /// fills again). Content already there is kept and the copy dropped.
    /// Call with the blob lock held.
    fn place_blob(&self, temp: TempBlob) -> Result<()> {
        if self.blobs.exists(&temp.hash) {
            return Ok(());
        }
        if let Some(key) = &temp.key {
            self.map_blob_key(&temp.hash, key)?;
            self.keep_groups(&temp.hash, key, &temp.groups)?;
        }
        self.blobs.commit(temp)
    }

    /// Keeps a blob's group hashes beside its key, sealed with it, so they
    /// go with the key when the blob is deleted. Nothing for one group.
    fn keep_groups(&self, hash: &BlobHash, key: &BlobKey, groups: &[GroupHash]) -> Result<()> {
        if groups.is_empty() {
            return Ok(());
        }
        let fjall_key = keys::vault_groups(hash);
        let sealed = key.key.seal(&fjall_key, &crate::groups::encode(groups))?;
        let mut batch = self.batch();
        batch.insert(&self.vault_map, fjall_key, sealed);
        self.commit(batch)
    }

    /// Removes blobs' files (content and partial downloads) and erases
    /// their keys. Returns whether a content file was removed. Call with
    /// the blob lock held.
    fn drop_blob_files(&self, hashes: &[BlobHash]) -> Result<bool> {
        let (removed, slots) = self.unlink_blobs(hashes)?;
        self.erase(&slots)?;
        Ok(removed > 0)
    }

    /// Removes blobs' files (content and partial downloads) and the slot
    /// map entries of their keys, marking the slots for erasure in one
    /// batch; returns how many content files were removed and the slots to
    /// [`Inner::erase`]. Call with the blob lock held.
    fn unlink_blobs(&self, hashes: &[BlobHash]) -> Result<(usize, Vec<Slot>)> {
        // The markers first: a crash after a file went but before its key's
        // marker was written would leave the key with nothing to find it by.
        let mut batch = self.batch();
        let mut slots = Vec::new();
        for hash in hashes {
            if let Some(slot) = self.vault_map.get(keys::vault_blob(hash))? {
                let (slot, _) = keys::blob_slot_of(&slot)?;
                if !slots.contains(&slot) {
                    batch.remove(&self.vault_map, keys::vault_blob(hash));
                    batch.remove(&self.vault_map, keys::vault_groups(hash));
                    batch.insert(&self.vault_map, keys::vault_erasing(slot), b"");
                    slots.push(slot);
                }
            }
        }
        if !slots.is_empty() {
            self.commit(batch)?;
        }
        let mut removed = 0;
        for hash in hashes {
            if self.blobs.remove(hash)? {
                removed += 1;
            }
            self.blobs.remove_partial(hash);
        }
        Ok((removed, slots))
    }

    /// Destroys the keys in `slots`, whose slot map entries are gone and
    /// whose pending-erasure markers are written: the journal is fsynced
    /// (so the deletion is on disk before its keys go), the slots are
    /// overwritten with zeros and the vault fsynced, then the markers are
    /// removed. The slots are reused only after the store is opened again,
    /// once nothing can mark them again.
    fn erase(&self, slots: &[Slot]) -> Result<()> {
        if slots.is_empty() {
            return Ok(());
        }
        self.db.persist(PersistMode::SyncAll)?;
        self.vault.destroy(slots)?;
        let mut batch = self.batch();
        for slot in slots {
            batch.remove(&self.vault_map, keys::vault_erasing(*slot));
        }
        self.commit(batch)?;
        Ok(())
    }

    /// Finishes erasures a crash interrupted (their markers are still
    /// there).
    fn resume_erasures(&self) -> Result<()> {
        let mut slots = Vec::new();
        for guard in self.vault_map.prefix(keys::VAULT_ERASING) {
            let key = guard.key()?;
            slots.push(keys::slot_of(&key[keys::VAULT_ERASING.len()..])?);
        }
        if slots.is_empty() {
            return Ok(());
        }
        tracing::info!(count = slots.len(), "finishing interrupted erasures");
        self.erase(&slots)?;
        // The slots may be reused from now on: their markers must not come
        // back after a power loss.
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// Commits `batch`, then keeps what waits in memtables bounded.
    fn commit(&self, batch: OwnedWriteBatch) -> Result<()> {
        batch.commit()?;
        self.bound_memtables();
        Ok(())
    }

    /// Starts writing every keyspace's memtable out as a table (in fjall's
    /// workers, without waiting) once more than [`WRITE_BUFFER_LIMIT`]
    /// bytes wait in memtables: so the journal left to replay at the next
    /// start stays small, and fjall can delete a journal file once it
    /// rotates (it keeps one until every keyspace written in it has
    /// flushed past it).
    fn bound_memtables(&self) {
        if self.db.write_buffer_size() <= WRITE_BUFFER_LIMIT || self.db.outstanding_flushes() > 0 {
            return;
        }
        let Some(mut last) = self.last_flush.try_lock() else {
            return; // another writer is asking
        };
        let seqno = self.db.seqno();
        if seqno < last.saturating_add(MIN_WRITES_PER_FLUSH) && *last != 0 {
            return;
        }
        *last = seqno;
        for ks in self.keyspaces() {
            if let Err(e) = ks.rotate_memtable() {
                tracing::warn!(error = %e, "could not start a memtable flush");
            }
        }
    }

    fn flush(&self) -> Result<()> {
        let all = self.keyspaces();
        for ks in &all {
            ks.rotate_memtable()?;
        }
        let started = std::time::Instant::now();
        while all.iter().any(|ks| ks.sealed_memtable_count() > 0) {
            if started.elapsed() > FLUSH_WAIT {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "fjall did not flush its memtables within a minute",
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(())
    }

    /// Appends incompressible filler through `scratch` until fjall seals the
    /// active journal file, then removes the filler.
    fn rotate_journal(&self) -> Result<()> {
        let before = self.db.journal_count();
        let active = self.db.journal_disk_space()?;
        let mut needed = JOURNAL_ROTATE_BYTES.saturating_sub(active) + FILLER_VALUE as u64;
        let mut filler = vec![0u8; FILLER_VALUE];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut written: u64 = 0;
        let mut key: u32 = 0;
        // Bounded: four times the threshold is far more than ever needed.
        while self.db.journal_count() == before && written < 4 * JOURNAL_ROTATE_BYTES {
            while needed > 0 {
                for chunk in filler.chunks_mut(8) {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
                }
                self.scratch.insert(key.to_be_bytes(), filler.as_slice())?;
                key += 1;
                written += FILLER_VALUE as u64;
                needed = needed.saturating_sub(FILLER_VALUE as u64);
            }
            // The flush worker checks the journal size when it flushes.
            self.scratch.rotate_memtable_and_wait()?;
            needed = FILLER_VALUE as u64;
        }
        let mut batch = self.db.batch();
        for k in 0..key {
            batch.remove(&self.scratch, k.to_be_bytes());
        }
        batch.commit()?;
        if self.db.journal_count() == before {
            tracing::warn!(written, "fjall did not start a new journal file");
        }
        Ok(())
    }

    fn recover(&self) -> Result<()> {
        // Tombstones into memory; the clock moves past all of them.
        let mut tombs: HashMap<NamespaceId, BTreeMap<Vec<u8>, Timestamp>> = HashMap::new();
        for guard in self.tombs.iter() {
            let key = guard.key()?;
            if key.as_ref() == COMPACT_MARKER {
                continue; // left by a compaction cut short
            }
            let (ns, prefix, time) = keys::parse_tomb(&key).ok_or(Error::Corrupt {
                what: "tombstone key",
                why: "malformed",
            })?;
            let slot = tombs
                .entry(ns)
                .or_default()
                .entry(prefix.encoded().to_vec())
                .or_insert(time);
            *slot = (*slot).max(time);
            self.clock.observe(time);
        }
        *self.tombstones.write() = tombs;
        // The clock also moves past every write recorded before a restart.
        for guard in self.meta.prefix(b"seq") {
            let value = guard.value()?;
            let (_, last) = decode_meta(&value)?;
            self.clock.observe(last);
        }
        if let Some(v) = self.meta.get(OUTBOX_COUNTER_KEY)? {
            let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| Error::Corrupt {
                what: "outbox counter",
                why: "bad length",
            })?;
            *self.outbox_next.lock() = u64::from_be_bytes(bytes);
        }
        self.resume_erasures()?;
        // Blob files nothing references were left by a crash between writing
        // the file and committing its entry (or its removal).
        let _guard = self.blob_lock.lock();
        let mut unreferenced = Vec::new();
        for hash in self.blobs.all()? {
            if !self.is_referenced(&hash)? {
                tracing::info!(%hash, "removing unreferenced blob file");
                unreferenced.push(hash);
            }
        }
        for hash in self.blobs.partials()? {
            if !self.is_referenced(&hash)? {
                unreferenced.push(hash);
            } else if self.blobs.exists(&hash) {
                self.blobs.remove_partial(&hash);
            }
        }
        self.drop_blob_files(&unreferenced)?;
        Ok(())
    }

    fn batch(&self) -> OwnedWriteBatch {
        let mode = match self.options.durability {
            Durability::Buffered => PersistMode::Buffer,
            Durability::Sync => PersistMode::SyncAll,
        };
        self.db.batch().durability(Some(mode))
    }

    fn ns_state(&self, ns: &NamespaceId) -> Arc<Mutex<NsState>> {
        self.namespaces.lock().entry(*ns).or_default().clone()
    }

    fn load_state(&self, ns: &NamespaceId, state: &mut NsState) -> Result<()> {
        if !state.loaded {
            state.next_seq = match self.meta.get(keys::meta_seq(ns))? {
                Some(v) => decode_meta(&v)?.0,
                None => 1,
            };
            state.loaded = true;
        }
        Ok(())
    }

    fn begin(&self, ns: &NamespaceId) -> Result<Txn<'_>> {
        let state = self.ns_state(ns);
        let mut guard = state.lock_arc();
        self.load_state(ns, &mut guard)?;
        let start_seq = guard.next_seq;
        Ok(Txn {
            inner: self,
            ns: *ns,
            state: guard,
            start_seq,
            batch: self.batch(),
            changes: Vec::new(),
            freed: Vec::new(),
            place: Vec::new(),
            doc_keys: HashMap::new(),
            allocated: Vec::new(),
            erase: Vec::new(),
            touches_blobs: false,
            committed: false,
        })
    }

    /// Starts a write that arrived from another device: moves the clock past
    /// it, takes the namespace lock, refuses it if a tombstone at or after
    /// `identity_time` covers `path` (checked under the lock, so a deletion
    /// landing concurrently is seen), and reads what sits at `path`.
    fn begin_remote(
        &self,
        ns: &NamespaceId,
        path: &Path,
        identity_time: Timestamp,
        written: Timestamp,
    ) -> Result<(Txn<'_>, Option<Entry>)> {
        self.clock.observe(written);
        let txn = self.begin(ns)?;
        self.check_tombstone(ns, path, identity_time)?;
        let old = self.entry_in(&self.db.snapshot(), ns, path)?;
        Ok((txn, old))
    }

    /// [`Store::apply_changes_batch`]'s writing: in order, one batch at a
    /// time under the namespace's lock, taking each document's load from
    /// `pre` where a helper loaded it.
    fn apply_batch_in_order(
        &self,
        ns: &NamespaceId,
        docs: &[RemoteChanges<'_>],
        pre: Option<(&preload::Preloader, &preload::Load<'_>)>,
    ) -> Result<Vec<Result<ApplyOutcome>>> {
        let mut results = Vec::with_capacity(docs.len());
        let mut txn: Option<Txn<'_>> = None;
        // Paths written by the open batch: a second change to one of them
        // must read the first, so the batch is committed before it.
        let mut written: HashSet<&Path> = HashSet::new();
        let mut bytes = 0usize;
        for (i, doc) in docs.iter().enumerate() {
            let preloaded = pre.and_then(|(p, load)| p.take(i, load));
            if written.contains(doc.path) || bytes >= APPLY_BATCH_BYTES {
                // An open batch that wrote nothing is dropped unwritten.
                if let Some(mut open) = txn.take()
                    && !written.is_empty()
                {
                    open.commit()?;
                }
                written.clear();
                bytes = 0;
            }
            if let Err(e) = check_not_root(doc.path).and_then(|()| {
                self.check_size(
                    Limit::ChangeSize,
                    doc.changes.len() as u64,
                    self.limits.max_change_size,
                )
            }) {
                results.push(Err(e));
                continue;
            }
            self.clock.observe(doc.write.timestamp);
            let open = match &mut txn {
                Some(open) => open,
                None => txn.insert(self.begin(ns)?),
            };
            let outcome = self.apply_into(open, ns, doc, preloaded)?;
            if matches!(&outcome, Ok(o) if o.changed) {
                written.insert(doc.path);
                bytes += doc.changes.len();
            }
            results.push(outcome);
        }
        if let Some(mut open) = txn
            && !written.is_empty()
        {
            open.commit()?;
        }
        Ok(results)
    }

    /// One document of [`Store::apply_changes_batch`] into `txn` (which
    /// holds the namespace's lock). The inner result is the document's own
    /// answer: its refusals are found before `txn` is touched. The outer
    /// error is a storage error after `txn` was written to.
    fn apply_into(
        &self,
        txn: &mut Txn<'_>,
        ns: &NamespaceId,
        doc: &RemoteChanges<'_>,
        preloaded: Option<std::result::Result<AutoCommit, automerge::AutomergeError>>,
    ) -> Result<Result<ApplyOutcome>> {
        let RemoteChanges {
            path,
            identity,
            write,
            changes,
        } = *doc;
        let incoming = crate::entry::Identity {
            time: identity.created,
            device: identity.creator,
        };
        let checked = (|| {
            // Under the lock, so a deletion landing concurrently is seen.
            self.check_tombstone(ns, path, incoming.time)?;
            let old = self.entry_in(&self.db.snapshot(), ns, path)?;
            let mut restoring = false;
            let replacing = match &old {
                Some(e) if e.identity() > incoming => {
                    return Err(Error::Superseded { path: path.clone() });
                }
                Some(
                    e @ Entry {
                        kind: EntryKind::Blob { .. },
                        ..
                    },
                ) if e.identity() == incoming => {
                    return Err(wrong_kind(path, "document", e));
                }
                Some(e) if e.identity() == incoming => {
                    match self.load_doc(&self.db.snapshot(), ns, path) {
                        Ok(mut loaded) => {
                            let heads_before = loaded.doc.get_heads();
                            loaded.doc.load_incremental(changes)?;
                            return Ok((old, false, loaded, heads_before, false));
                        }
                        // Purged content comes back whole, into nothing.
                        Err(Error::NotHere { .. }) => {
                            restoring = true;
                            false
                        }
                        Err(e) => return Err(e),
                    }
                }
                Some(_) => true,
                None => false,
            };
            // Into nothing: the helper's load if it made one (the same call).
            let doc = match preloaded {
                Some(result) => result?,
                None => preload::load_new(changes)?,
            };
            Ok((old, replacing, LoadedDoc::new(doc), Vec::new(), restoring))
        })();
        let (old, replacing, mut loaded, heads_before, restoring) = match checked {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let missing = loaded.doc.get_missing_deps(&[]);
        if let Some(entry) = old
            .as_ref()
            .filter(|_| restoring && (!missing.is_empty() || loaded.doc.get_heads().is_empty()))
        {
            // Changes to a purged document that do not make it whole (a live
            // push's increment): the document stays purged, and a read
            // fetches it whole, these changes included, from its owner.
            tracing::debug!(%ns, %path, "changes to a purged document wait until it is read");
            return Ok(Ok(ApplyOutcome {
                entry: entry.clone(),
                changed: false,
                missing_deps: Vec::new(),
            }));
        }
        if restoring {
            txn.batch
                .remove(&self.docs, keys::doc_chunk(ns, path, keys::CHUNK_PURGED, 0));
        }
        let grew = loaded.doc.get_heads() != heads_before;
        if let Some(entry) = old
            .as_ref()
            .filter(|_| !grew && !replacing && missing.is_empty())
        {
            return Ok(Ok(ApplyOutcome {
                entry: entry.clone(),
                changed: false,
                missing_deps: missing,
            }));
        }
        if let Some(e) = old.as_ref().filter(|_| replacing) {
            txn.drop_doc(path, e);
        }
        let pending = (!missing.is_empty()).then_some(changes);
        let entry = txn.write_doc(
            path,
            old.as_ref(),
            loaded,
            &heads_before,
            identity,
            write,
            pending,
            Some(changes),
        )?;
        Ok(Ok(ApplyOutcome {
            entry,
            changed: true,
            missing_deps: missing,
        }))
    }

    fn entry_in(
        &self,
        reader: &impl Readable,
        ns: &NamespaceId,
        path: &Path,
    ) -> Result<Option<Entry>> {
        reader
            .get(&self.entries, keys::entry(ns, path))?
            .map(|v| Entry::decode(&v))
            .transpose()
    }

    fn load_doc(&self, reader: &impl Readable, ns: &NamespaceId, path: &Path) -> Result<LoadedDoc> {
        let prefix = keys::doc_prefix(ns, path);
        let mut loaded = LoadedDoc {
            key: self.doc_key_in(reader, ns, path)?,
            ..LoadedDoc::default()
        };
        for guard in reader.prefix(&self.docs, &prefix) {
            let (key, sealed) = guard.into_inner()?;
            if keys::chunk_kind(&key, prefix.len()) == Some(keys::CHUNK_PURGED) {
                return Err(not_here(ns, path));
            }
            let value = open_chunk(loaded.key.as_ref().map(|(_, k)| k), &key, &sealed)?;
            match keys::chunk_kind(&key, prefix.len()) {
                Some(keys::CHUNK_APPLIED) => {
                    loaded.applied_bytes += value.len() as u64;
                    loaded.applied_keys.push(key);
                }
                Some(keys::CHUNK_PENDING) => {
                    loaded.pending_bytes += value.len() as u64;
                    loaded.pending_keys.push(key);
                }
                Some(keys::CHUNK_PURGED) => return Err(not_here(ns, path)),
                _ => {
                    return Err(Error::Corrupt {
                        what: "document chunk key",
                        why: "unknown chunk kind",
                    });
                }
            }
            loaded.doc.load_incremental(&value)?;
        }
        Ok(loaded)
    }

    fn is_referenced(&self, hash: &BlobHash) -> Result<bool> {
        Ok(self.blob_refs.prefix(hash.as_bytes()).next().is_some())
    }

    fn check_size(&self, limit: Limit, size: u64, max: u64) -> Result<()> {
        if size > max {
            return Err(Error::TooLarge { limit, size, max });
        }
        Ok(())
    }

    fn tombstone_at(&self, ns: &NamespaceId, prefix: &Path) -> Option<Timestamp> {
        self.tombstones
            .read()
            .get(ns)?
            .get(prefix.encoded())
            .copied()
    }

    fn covering_tombstone(&self, ns: &NamespaceId, path: &Path) -> Option<Timestamp> {
        let tombs = self.tombstones.read();
        let map = tombs.get(ns)?;
        path.ancestors_encoded()
            .filter_map(|p| map.get(p).copied())
            .max()
    }

    /// Refuses a write (or a document created) at `time` under a tombstone
    /// at or after `time`.
    fn check_tombstone(&self, ns: &NamespaceId, path: &Path, time: Timestamp) -> Result<()> {
        match self.covering_tombstone(ns, path) {
            Some(t) if t >= time => Err(Error::Tombstoned {
                path: path.clone(),
                tombstone: t,
                write: time,
            }),
            _ => Ok(()),
        }
    }

    fn check_record(&self, op: &RecordOp) -> Result<()> {
        let id = op.id();
        if id.len() > crate::MAX_RECORD_ID_LEN {
            return Err(Error::TooLarge {
                limit: Limit::RecordId,
                size: id.len() as u64,
                max: crate::MAX_RECORD_ID_LEN as u64,
            });
        }
        if let RecordOp::Put { bytes, .. } = op {
            self.check_size(
                Limit::RecordSize,
                bytes.len() as u64,
                self.limits.max_record_size,
            )?;
        }
        Ok(())
    }

    fn record_op(&self, batch: &mut OwnedWriteBatch, op: &RecordOp) -> Result<()> {
        match op {
            RecordOp::Put {
                kind,
                ns,
                id,
                bytes,
            } => {
                batch.insert(
                    &self.records,
                    keys::record(kind.tag(), ns, id),
                    bytes.as_slice(),
                );
            }
            RecordOp::Remove { kind, ns, id } => {
                batch.remove(&self.records, keys::record(kind.tag(), ns, id));
            }
        }
        Ok(())
    }
}

fn encode_meta(next_seq: u64, last: Timestamp) -> Vec<u8> {
    let mut w = Writer::with_version(META_VERSION);
    w.u64(next_seq).u64(last.as_micros());
    w.finish()
}

fn decode_meta(bytes: &[u8]) -> Result<(u64, Timestamp)> {
    let mut r = Reader::new(bytes, "namespace state", META_VERSION)?;
    let seq = r.u64()?;
    let last = Timestamp::from_micros(r.u64()?);
    r.finish()?;
    Ok((seq, last))
}

/// A record of the change log.
enum LogRecord {
    Put(Path),
    Tombstone(Path, Timestamp),
}

impl LogRecord {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_version(LOG_VERSION);
        match self {
            LogRecord::Put(path) => {
                w.u8(LOG_PUT).short_bytes(path.encoded());
            }
            LogRecord::Tombstone(prefix, time) => {
                w.u8(LOG_TOMBSTONE)
                    .short_bytes(prefix.encoded())
                    .u64(time.as_micros());
            }
        }
        w.finish()
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "log record", LOG_VERSION)?;
        let tag = r.u8()?;
        let path =
            Path::from_encoded(r.short_bytes(kith_types::MAX_ENCODED_PATH_LEN)?).map_err(|_| {
                Error::Corrupt {
                    what: "log record",
                    why: "bad path",
                }
            })?;
        let record = match tag {
            LOG_PUT => LogRecord::Put(path),
            LOG_TOMBSTONE => LogRecord::Tombstone(path, Timestamp::from_micros(r.u64()?)),
            _ => return Err(r.corrupt("unknown record")),
        };
        r.finish()?;
        Ok(record)
    }
}

/// The writes of one operation on one namespace, committed as one batch
/// while the namespace's lock is held.
struct Txn<'a> {
    inner: &'a Inner,
    ns: NamespaceId,
    state: parking_lot::ArcMutexGuard<parking_lot::RawMutex, NsState>,
    start_seq: u64,
    batch: OwnedWriteBatch,
    changes: Vec<Change>,
    /// Blob hashes that lost a reference; their files go if no other remains.
    freed: Vec<BlobHash>,
    /// New blob content to move into place in the same critical section.
    place: Vec<TempBlob>,
    /// Keys of the documents this write touches.
    doc_keys: HashMap<Path, DocKey>,
    /// Vault slots allocated by this write (cleared again if it fails).
    allocated: Vec<Slot>,
    /// Vault slots to erase once the batch is committed.
    erase: Vec<Slot>,
    touches_blobs: bool,
    committed: bool,
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if !self.committed {
            // Nothing was written: hand the sequence numbers and the vault
            // slots back.
            self.state.next_seq = self.start_seq;
            self.inner.vault.discard(&self.allocated);
        }
    }
}

impl Txn<'_> {
    /// Stores a chunk of the document at `path`, encrypted under its key
    /// (a new key for a document without one).
    fn put_chunk(&mut self, path: &Path, kind: u8, seq: u64, plaintext: &[u8]) -> Result<()> {
        let key = keys::doc_chunk(&self.ns, path, kind, seq);
        let sealed = self.doc_key(path)?.seal(&key, plaintext)?;
        self.batch.insert(&self.inner.docs, key, sealed);
        Ok(())
    }

    /// The key to encrypt the chunks of the document at `path` with: the
    /// one this write already uses, the stored one, or (for a new document,
    /// one replaced in this write, or one stored in the clear) a new one.
    fn doc_key(&mut self, path: &Path) -> Result<ItemKey> {
        let inner = self.inner;
        match self.doc_keys.get(path) {
            Some(DocKey::Existing(_, key) | DocKey::Fresh(_, key)) => return Ok(key.clone()),
            Some(DocKey::Dropped) => {}
            None => {
                if let Some((slot, key)) = inner.doc_key_in(&inner.db.snapshot(), &self.ns, path)? {
                    self.doc_keys
                        .insert(path.clone(), DocKey::Existing(slot, key.clone()));
                    return Ok(key);
                }
            }
        }
        let key = ItemKey::random();
        let slot = inner.vault.reserve()?;
        self.allocated.push(slot);
        self.doc_keys
            .insert(path.clone(), DocKey::Fresh(slot, key.clone()));
        Ok(key)
    }

    fn next_seq(&mut self) -> u64 {
        let seq = self.state.next_seq;
        self.state.next_seq += 1;
        seq
    }

    /// Writes `entry` at `path` (its `seq` must come from this txn),
    /// replacing `old` (whose own content the caller has dealt with).
    fn put(&mut self, path: &Path, old: Option<&Entry>, entry: Entry) {
        let inner = self.inner;
        let ns = self.ns;
        self.batch
            .insert(&inner.entries, keys::entry(&ns, path), entry.encode());
        self.batch.insert(
            &inner.log,
            keys::log(&ns, entry.seq),
            LogRecord::Put(path.clone()).encode(),
        );
        if let Some(old) = old
            && old.seq != entry.seq
        {
            self.batch.remove(&inner.log, keys::log(&ns, old.seq));
        }
        // Blob references change only when the hash does: a batch must never
        // remove and insert the same key.
        let old_hash = old.and_then(Entry::blob_hash);
        let new_hash = entry.blob_hash();
        if old_hash != new_hash {
            self.touches_blobs = true;
            if let Some(hash) = old_hash {
                self.batch
                    .remove(&inner.blob_refs, keys::blob_ref(&hash, &ns, path));
                self.freed.push(hash);
            }
            if let Some(hash) = new_hash {
                self.batch
                    .insert(&inner.blob_refs, keys::blob_ref(&hash, &ns, path), b"");
            }
        }
        self.changes.push(Change {
            namespace: ns,
            seq: entry.seq,
            kind: ChangeKind::Put {
                path: path.clone(),
                entry,
            },
        });
    }

    /// Deletes the stored chunks of the document `old` at `path` (nothing
    /// for a blob: [`Txn::put`] and [`Txn::remove`] handle references).
    fn drop_doc(&mut self, path: &Path, old: &Entry) {
        if old.blob_hash().is_some() {
            return;
        }
        let inner = self.inner;
        for guard in inner.docs.prefix(keys::doc_prefix(&self.ns, path)) {
            match guard.key() {
                Ok(key) => self.batch.remove(&inner.docs, key),
                Err(e) => tracing::error!(%e, "could not read a document chunk key while deleting"),
            }
        }
        // Its key is erased after the commit: every copy of the chunks left
        // in the journal and the tables is unreadable from then on.
        let slot = match self.doc_keys.get(path) {
            Some(DocKey::Existing(slot, _) | DocKey::Fresh(slot, _)) => Some(*slot),
            Some(DocKey::Dropped) => None,
            None => match inner.vault_map.get(keys::vault_doc(&self.ns, path)) {
                Ok(slot) => slot.and_then(|s| keys::slot_of(&s).ok()),
                Err(e) => {
                    tracing::error!(%e, "could not read a document's key slot while deleting");
                    None
                }
            },
        };
        if let Some(slot) = slot {
            self.batch
                .insert(&inner.vault_map, keys::vault_erasing(slot), b"");
            self.erase.push(slot);
        }
        self.doc_keys.insert(path.clone(), DocKey::Dropped);
    }

    /// Removes the entry at `path` entirely (a tombstone reached it).
    fn remove(&mut self, path: &Path, old: &Entry) {
        self.drop_doc(path, old);
        if let Some(hash) = old.blob_hash() {
            self.touches_blobs = true;
            self.batch
                .remove(&self.inner.blob_refs, keys::blob_ref(&hash, &self.ns, path));
            self.freed.push(hash);
        }
        self.batch
            .remove(&self.inner.entries, keys::entry(&self.ns, path));
        self.batch
            .remove(&self.inner.log, keys::log(&self.ns, old.seq));
    }

    fn tombstone(&mut self, prefix: &Path, timestamp: Timestamp) {
        let seq = self.next_seq();
        let inner = self.inner;
        self.batch
            .insert(&inner.tombs, keys::tomb(&self.ns, prefix, timestamp), b"");
        self.batch.insert(
            &inner.log,
            keys::log(&self.ns, seq),
            LogRecord::Tombstone(prefix.clone(), timestamp).encode(),
        );
        self.changes.push(Change {
            namespace: self.ns,
            seq,
            kind: ChangeKind::Tombstone {
                prefix: prefix.clone(),
                timestamp,
            },
        });
    }

    /// Stores the new state of a document after local or remote changes and
    /// returns its entry.
    #[allow(clippy::too_many_arguments)]
    fn write_doc(
        &mut self,
        path: &Path,
        old: Option<&Entry>,
        mut loaded: LoadedDoc,
        heads_before: &[ChangeHash],
        identity: DocIdentity,
        write: RemoteWrite,
        pending: Option<&[u8]>,
        received: Option<&[u8]>,
    ) -> Result<Entry> {
        let inner = self.inner;
        let limits = inner.limits;
        if let Some((slot, key)) = loaded.key.take() {
            self.doc_keys
                .entry(path.clone())
                .or_insert(DocKey::Existing(slot, key));
        }
        let missing = loaded.doc.get_missing_deps(&[]);
        // A new document is saved whole (Automerge's compact format loads
        // fastest); later changes are appended as increments. A new document
        // received complete is kept as received: Automerge parsed and
        // checked every byte of it, and re-encoding would only cost time.
        let chunk = if heads_before.is_empty() && loaded.applied_keys.is_empty() {
            match received {
                _ if loaded.doc.get_heads().is_empty() => Vec::new(),
                Some(bytes) if missing.is_empty() && loaded.pending_keys.is_empty() => {
                    bytes.to_vec()
                }
                _ => loaded.doc.save(),
            }
        } else {
            loaded.doc.save_after(heads_before)
        };
        inner.check_size(
            Limit::ChangeSize,
            chunk.len() as u64,
            limits.max_change_size,
        )?;
        let seq = self.next_seq();
        // Pending chunks: keep the raw bytes of changes Automerge had to queue.
        let mut pending_bytes = loaded.pending_bytes;
        if let Some(raw) = pending {
            pending_bytes += raw.len() as u64;
            inner.check_size(Limit::PendingSize, pending_bytes, limits.max_pending_size)?;
            self.put_chunk(path, keys::CHUNK_PENDING, seq, raw)?;
        } else if missing.is_empty() {
            for key in loaded.pending_keys.drain(..) {
                self.batch.remove(&inner.docs, key);
            }
            pending_bytes = 0;
        }
        // Applied chunks: append, or rewrite as one snapshot when many.
        let applied_bytes = if loaded.applied_keys.len() + 1 >= COMPACT_CHUNKS {
            let snapshot = loaded.doc.save();
            for key in loaded.applied_keys.drain(..) {
                self.batch.remove(&inner.docs, key);
            }
            let len = snapshot.len() as u64;
            self.put_chunk(path, keys::CHUNK_APPLIED, seq, &snapshot)?;
            len
        } else if !chunk.is_empty() {
            let len = chunk.len() as u64;
            self.put_chunk(path, keys::CHUNK_APPLIED, seq, &chunk)?;
            loaded.applied_bytes + len
        } else {
            loaded.applied_bytes
        };
        let size = applied_bytes + pending_bytes;
        inner.check_size(Limit::DocumentSize, size, limits.max_document_size)?;
        let same_doc = crate::entry::Identity {
            time: identity.created,
            device: identity.creator,
        };
        // The entry names the latest write to this document.
        let (device, timestamp) = match old {
            Some(o) if o.identity() == same_doc && o.timestamp > write.timestamp => {
                (o.device, o.timestamp)
            }
            _ => (write.device, write.timestamp),
        };
        let entry = Entry {
            kind: EntryKind::Document {
                created: identity.created,
                creator: identity.creator,
                heads: loaded.doc.get_heads(),
                size,
                pending: !missing.is_empty(),
            },
            device,
            timestamp,
            seq,
        };
        self.put(path, old, entry.clone());
        Ok(entry)
    }

    /// Commits the batch (moving new blob files into place and deleting
    /// unreferenced ones in the same critical section) and notifies
    /// watchers. Returns how many blob files were deleted.
    fn commit(&mut self) -> Result<usize> {
        let inner = self.inner;
        // The new documents' keys (reserved by `doc_key`, named by this
        // batch) are on disk before it (see the vault module): all of them
        // in one write and one sync.
        inner
            .vault
            .write_keys(self.doc_keys.values().filter_map(|state| match state {
                DocKey::Fresh(slot, key) => Some((*slot, key)),
                _ => None,
            }))?;
        let last = inner.clock.last();
        let batch = std::mem::replace(&mut self.batch, inner.batch());
        let mut batch = batch;
        batch.insert(
            &inner.meta,
            keys::meta_seq(&self.ns),
            encode_meta(self.state.next_seq, last),
        );
        for (path, state) in self.doc_keys.drain() {
            let key = keys::vault_doc(&self.ns, &path);
            match state {
                DocKey::Fresh(slot, _) => batch.insert(&inner.vault_map, key, slot.to_be_bytes()),
                DocKey::Dropped => batch.remove(&inner.vault_map, key),
                DocKey::Existing(..) => {}
            }
        }
        let mut deleted = 0;
        if self.touches_blobs || !self.place.is_empty() {
            let _guard = inner.blob_lock.lock();
            for temp in self.place.drain(..) {
                inner.place_blob(temp)?;
            }
            inner.commit(batch)?;
            self.committed = true;
            let mut gone = Vec::new();
            for hash in self.freed.drain(..) {
                if !gone.contains(&hash) && !inner.is_referenced(&hash)? {
                    gone.push(hash);
                }
            }
            let (removed, slots) = inner.unlink_blobs(&gone)?;
            deleted = removed;
            self.erase.extend(slots);
        } else {
            inner.commit(batch)?;
            self.committed = true;
        }
        // Deleted documents and blobs are unreadable before the write
        // returns (see the vault module).
        inner.erase(&self.erase)?;
        inner.watchers.notify(&self.changes);
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn path() -> impl Strategy<Value = Path> {
        prop::collection::vec("[a-z\u{e9}]{1,8}", 0..6)
            .prop_map(|c| Path::from_components(c).unwrap())
    }

    proptest! {
        #[test]
        fn log_records_round_trip(p in path(), t in any::<u64>(), tomb in any::<bool>()) {
            let record = if tomb {
                LogRecord::Tombstone(p.clone(), Timestamp::from_micros(t))
            } else {
                LogRecord::Put(p.clone())
            };
            let decoded = LogRecord::decode(&record.encode()).unwrap();
            match (record, decoded) {
                (LogRecord::Put(a), LogRecord::Put(b)) => prop_assert_eq!(a, b),
                (LogRecord::Tombstone(a, s), LogRecord::Tombstone(b, u)) => {
                    prop_assert_eq!(a, b);
                    prop_assert_eq!(s, u);
                }
                _ => prop_assert!(false, "kind changed"),
            }
        }

        #[test]
        fn namespace_state_round_trips(seq in any::<u64>(), t in any::<u64>()) {
            let bytes = encode_meta(seq, Timestamp::from_micros(t));
            prop_assert_eq!(decode_meta(&bytes).unwrap(), (seq, Timestamp::from_micros(t)));
        }

        #[test]
        fn damaged_records_are_errors_not_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = LogRecord::decode(&bytes);
            let _ = decode_meta(&bytes);
        }
    }

    #[test]
    fn group_hashes_of_a_blob_stored_before_they_were_kept_are_computed_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::new(DeviceId::from_bytes([1; 32]))).unwrap();
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let ns = NamespaceId::from_bytes([2; 32]);
        let entry = store
            .put_blob(&ns, &Path::parse("/a").unwrap(), &content[..], "x/y")
            .unwrap();
        let hash = entry.blob_hash().unwrap();
        let kept = store.blob_groups(&hash).unwrap();
        assert_eq!(kept.len(), 4 * 32);
        // As a store written before group hashes were kept has it.
        let key = keys::vault_groups(&hash);
        store.inner.vault_map.remove(&key).unwrap();
        assert_eq!(store.blob_groups(&hash).unwrap(), kept);
        assert!(store.inner.vault_map.get(&key).unwrap().is_some());
        // Damaged content gives no hashes to vouch for it.
        store.inner.vault_map.remove(&key).unwrap();
        let hex = hash.to_hex();
        let file = dir.path().join("blobs").join(&hex[..2]).join(&hex[2..]);
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        assert!(matches!(
            store.blob_groups(&hash),
            Err(Error::HashMismatch { .. })
        ));
    }
}
