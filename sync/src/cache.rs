//! Friends' data held here is a cache the person controls: a budget in
//! bytes (and optionally an age) beyond which the oldest of friends'
//! documents and blobs are purged. Entries always stay, so the timeline
//! still knows every post; a purged document or blob is fetched again from
//! its owner when read.
//!
//! What is held is kept in order in the store's `index` keyspace, under
//! [`KEY_PREFIX`], derived from the friends' change logs (caught up before
//! each use, from a position per namespace) and from reads:
//!
//! | key | value |
//! |---|---|
//! | `cache/o` ‖ time ‖ item | size |
//! | `cache/i` ‖ item | time ‖ size |
//! | `cache/r` ‖ namespace | change-log position read |
//! | `cache/t` | documents, their bytes, blobs, their bytes |
//!
//! An item is `d` ‖ namespace ‖ path for a document, `b` ‖ hash for a
//! blob's content (held once, whatever paths refer to it); its time (µs,
//! big-endian) is its latest write or, later, its latest read or fetch, so
//! the oldest first means the least recently written or used. Content this
//! node's own namespace refers to is never purged, nor what lies under the
//! prefixes the app keeps (`Builder::cache_keep`: a profile, read on every
//! page). An item whose content
//! went otherwise (a deletion, a replacement) is dropped when the purge
//! reaches it.

use std::collections::HashMap;
use std::time::Duration;

use kith_store::{BlobHash, ChangeKind, EntryKind, IndexOp, RecordKind, Store};
use kith_types::{NamespaceId, Path, Timestamp};
use parking_lot::Mutex;

use crate::error::Result;

/// Where the cache's keys live in the store's index.
pub(crate) const KEY_PREFIX: &[u8] = b"cache/";

/// Changes read, or items purged, per store batch.
const BATCH: usize = 512;

/// The id of the settings record (kind `SyncState`, own namespace).
const SETTINGS_ID: &[u8] = b"cache";

/// How much of friends' data a node keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Bytes of friends' documents and blobs held at most.
    pub budget: u64,
    /// Friends' documents and blobs not written or read for this long are
    /// purged too (`None`: kept while the budget allows).
    pub max_age: Option<Duration>,
}

impl Default for CacheSettings {
    /// 4 GiB, no age.
    fn default() -> Self {
        Self {
            budget: 4 << 30,
            max_age: None,
        }
    }
}

/// What the cache of friends' data holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStatus {
    /// The budget and age in force.
    pub settings: CacheSettings,
    /// Friends' documents whose content is held.
    pub documents: u64,
    /// Their bytes.
    pub document_bytes: u64,
    /// Friends' blobs whose content is held.
    pub blobs: u64,
    /// Their bytes.
    pub blob_bytes: u64,
}

impl CacheStatus {
    /// Bytes held in all.
    pub fn bytes(&self) -> u64 {
        self.document_bytes + self.blob_bytes
    }
}

/// What a purge removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Purged {
    /// Documents whose content was purged.
    pub documents: u64,
    /// Blobs whose content was purged.
    pub blobs: u64,
    /// Bytes freed.
    pub bytes: u64,
}

/// Counts kept with the items, in the same batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    documents: u64,
    document_bytes: u64,
    blobs: u64,
    blob_bytes: u64,
}

impl Totals {
    /// The count and bytes `item` is counted in.
    fn of(&mut self, item: &[u8]) -> (&mut u64, &mut u64) {
        if item.first() == Some(&ITEM_BLOB) {
            (&mut self.blobs, &mut self.blob_bytes)
        } else {
            (&mut self.documents, &mut self.document_bytes)
        }
    }

    fn add(&mut self, item: &[u8], size: u64) {
        let (count, bytes) = self.of(item);
        *count += 1;
        *bytes += size;
    }

    fn sub(&mut self, item: &[u8], size: u64) {
        let (count, bytes) = self.of(item);
        *count = count.saturating_sub(1);
        *bytes = bytes.saturating_sub(size);
    }

    fn bytes(&self) -> u64 {
        self.document_bytes + self.blob_bytes
    }

    fn encode(&self) -> Vec<u8> {
        [
            self.documents,
            self.document_bytes,
            self.blobs,
            self.blob_bytes,
        ]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 32 {
            return None;
        }
        let (documents, document_bytes) = two_u64(&bytes[..16])?;
        let (blobs, blob_bytes) = two_u64(&bytes[16..])?;
        Some(Self {
            documents,
            document_bytes,
            blobs,
            blob_bytes,
        })
    }
}

const TAG_ORDER: u8 = b'o';
const TAG_ITEM: u8 = b'i';
const TAG_READ_TO: u8 = b'r';
const TAG_TOTALS: u8 = b't';
const ITEM_DOC: u8 = b'd';
const ITEM_BLOB: u8 = b'b';

fn key(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = KEY_PREFIX.to_vec();
    k.push(tag);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn doc_item(ns: &NamespaceId, path: &Path) -> Vec<u8> {
    let mut k = vec![ITEM_DOC];
    k.extend_from_slice(ns.as_bytes());
    k.extend_from_slice(path.encoded());
    k
}

fn blob_item(hash: &BlobHash) -> Vec<u8> {
    let mut k = vec![ITEM_BLOB];
    k.extend_from_slice(hash.as_bytes());
    k
}

/// What an item names.
enum Item {
    Doc(NamespaceId, Path),
    Blob(BlobHash),
}

fn parse_item(item: &[u8]) -> Option<Item> {
    match item.split_first()? {
        (&ITEM_DOC, rest) if rest.len() > 32 => {
            let ns = NamespaceId::from_bytes(rest[..32].try_into().ok()?);
            Some(Item::Doc(ns, Path::from_encoded(&rest[32..]).ok()?))
        }
        (&ITEM_BLOB, rest) => Some(Item::Blob(BlobHash::from_bytes(rest.try_into().ok()?))),
        _ => None,
    }
}

fn two_u64(bytes: &[u8]) -> Option<(u64, u64)> {
    let a = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let b = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some((a, b))
}

/// Index writes gathered for one batch, readable before they are written.
struct Pending<'a> {
    store: &'a Store,
    ops: Vec<IndexOp>,
    overlay: HashMap<Vec<u8>, Option<Vec<u8>>>,
    totals: Totals,
}

impl<'a> Pending<'a> {
    fn new(store: &'a Store) -> Result<Self> {
        let totals = store
            .index_get(&key(TAG_TOTALS, &[]))?
            .and_then(|b| Totals::decode(&b))
            .unwrap_or_default();
        Ok(Self {
            store,
            ops: Vec::new(),
            overlay: HashMap::new(),
            totals,
        })
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.overlay.get(key) {
            Some(v) => Ok(v.clone()),
            None => Ok(self.store.index_get(key)?),
        }
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.overlay.insert(key.clone(), Some(value.clone()));
        self.ops.push(IndexOp::Put { key, value });
    }

    fn remove(&mut self, key: Vec<u8>) {
        self.overlay.insert(key.clone(), None);
        self.ops.push(IndexOp::Remove { key });
    }

    /// The time and size of `item`, if held.
    fn held(&self, item: &[u8]) -> Result<Option<(u64, u64)>> {
        Ok(self.get(&key(TAG_ITEM, &[item]))?.and_then(|v| two_u64(&v)))
    }

    /// Records `item` as held with `size`, at `time` or later.
    fn hold(&mut self, item: &[u8], size: u64, time: u64) -> Result<()> {
        let time = match self.held(item)? {
            Some((old_time, old_size)) => {
                self.remove(key(TAG_ORDER, &[&old_time.to_be_bytes(), item]));
                self.totals.sub(item, old_size);
                old_time.max(time)
            }
            None => time,
        };
        self.put(
            key(TAG_ORDER, &[&time.to_be_bytes(), item]),
            size.to_be_bytes().to_vec(),
        );
        let mut place = time.to_be_bytes().to_vec();
        place.extend_from_slice(&size.to_be_bytes());
        self.put(key(TAG_ITEM, &[item]), place);
        self.totals.add(item, size);
        Ok(())
    }

    /// Forgets `item` (no longer held).
    fn drop_item(&mut self, item: &[u8]) -> Result<()> {
        if let Some((time, size)) = self.held(item)? {
            self.remove(key(TAG_ORDER, &[&time.to_be_bytes(), item]));
            self.remove(key(TAG_ITEM, &[item]));
            self.totals.sub(item, size);
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let mut ops = std::mem::take(&mut self.ops);
        ops.push(IndexOp::Put {
            key: key(TAG_TOTALS, &[]),
            value: self.totals.encode(),
        });
        self.store.write_index(&ops)?;
        self.overlay.clear();
        Ok(())
    }
}

/// Friends' documents and blobs held here, oldest first.
#[derive(Debug)]
pub(crate) struct FriendCache {
    settings: Mutex<CacheSettings>,
    /// Friends' paths under these are never purged.
    keep: Vec<Path>,
    /// Held while the index is read or written: one writer at a time.
    lock: Mutex<()>,
}

impl FriendCache {
    /// The cache of `store`, with the settings stored there or else
    /// `default`. Reads one record.
    pub(crate) fn open(
        store: &Store,
        own: &NamespaceId,
        default: CacheSettings,
        keep: Vec<Path>,
    ) -> Result<Self> {
        let settings = match store.record(RecordKind::SyncState, own, SETTINGS_ID)? {
            Some(bytes) => decode_settings(&bytes).unwrap_or_else(|| {
                tracing::warn!("the stored cache settings are damaged; using the defaults");
                default
            }),
            None => default,
        };
        Ok(Self {
            settings: Mutex::new(settings),
            keep,
            lock: Mutex::new(()),
        })
    }

    /// The settings in force.
    pub(crate) fn settings(&self) -> CacheSettings {
        *self.settings.lock()
    }

    /// Keeps `settings` (in the store, for later starts) and puts them in
    /// force. Blocks.
    pub(crate) fn set_settings(
        &self,
        store: &Store,
        own: &NamespaceId,
        settings: CacheSettings,
    ) -> Result<()> {
        store.put_record(
            RecordKind::SyncState,
            own,
            SETTINGS_ID,
            &encode_settings(&settings),
        )?;
        *self.settings.lock() = settings;
        Ok(())
    }

    /// What is held now (after reading what changed). Blocks.
    pub(crate) fn status(&self, store: &Store, own: &NamespaceId) -> Result<CacheStatus> {
        let _one = self.lock.lock();
        let totals = self.catch_up(store, own)?;
        Ok(CacheStatus {
            settings: self.settings(),
            documents: totals.documents,
            document_bytes: totals.document_bytes,
            blobs: totals.blobs,
            blob_bytes: totals.blob_bytes,
        })
    }

    /// Records a read or fetch of a friend's blob at `time`: it is now among
    /// the newest. Content this node's own namespace refers to is not
    /// cached. Blocks.
    pub(crate) fn used_blob(
        &self,
        store: &Store,
        own: &NamespaceId,
        hash: BlobHash,
        size: u64,
        time: Timestamp,
    ) -> Result<()> {
        if !store.has_blob(&hash) || store.blob_namespaces(&hash)?.contains(own) {
            return Ok(());
        }
        let _one = self.lock.lock();
        let mut pending = Pending::new(store)?;
        pending.hold(&blob_item(&hash), size, time.as_micros())?;
        pending.commit()
    }

    /// Records a fetch of friends' documents at `time`. Blocks.
    pub(crate) fn used_documents(
        &self,
        store: &Store,
        ns: &NamespaceId,
        paths: &[Path],
        time: Timestamp,
    ) -> Result<()> {
        let _one = self.lock.lock();
        let mut pending = Pending::new(store)?;
        for path in paths {
            if let Some(entry) = store.get(ns, path)?
                && let EntryKind::Document { size, .. } = entry.kind
                && !store.is_purged(ns, path)?
            {
                pending.hold(&doc_item(ns, path), size, time.as_micros())?;
            }
        }
        pending.commit()
    }

    /// Purges the oldest of friends' documents and blobs while more than
    /// the budget is held, and those older than the age limit. Blocks.
    pub(crate) fn enforce(
        &self,
        store: &Store,
        own: &NamespaceId,
        now: Timestamp,
    ) -> Result<Purged> {
        let settings = self.settings();
        let cutoff = settings
            .max_age
            .map(|age| now.as_micros().saturating_sub(age.as_micros() as u64));
        let _one = self.lock.lock();
        self.catch_up(store, own)?;
        self.purge_while(store, own, |totals, time| {
            totals.bytes() > settings.budget || cutoff.is_some_and(|c| time < c)
        })
    }

    /// Purges every friend's document and blob held. Blocks.
    pub(crate) fn purge_all(&self, store: &Store, own: &NamespaceId) -> Result<Purged> {
        let _one = self.lock.lock();
        self.catch_up(store, own)?;
        self.purge_while(store, own, |_, _| true)
    }

    /// Purges items oldest first while `more(totals, item time)` says so.
    fn purge_while(
        &self,
        store: &Store,
        own: &NamespaceId,
        more: impl Fn(&Totals, u64) -> bool,
    ) -> Result<Purged> {
        let mut purged = Purged::default();
        let prefix = key(TAG_ORDER, &[]);
        loop {
            let mut pending = Pending::new(store)?;
            let items = store.index_scan(&prefix, None, BATCH)?;
            let mut docs: HashMap<NamespaceId, Vec<Path>> = HashMap::new();
            let mut done = items.is_empty();
            for (k, _) in &items {
                let Some(time) = k
                    .get(prefix.len()..prefix.len() + 8)
                    .and_then(|t| t.try_into().ok())
                    .map(u64::from_be_bytes)
                else {
                    pending.remove(k.clone());
                    continue;
                };
                if !more(&pending.totals, time) {
                    done = true;
                    break;
                }
                let item = &k[prefix.len() + 8..];
                let held = pending.held(item)?;
                let size = held.map_or(0, |(_, s)| s);
                match parse_item(item) {
                    Some(Item::Doc(ns, path)) => {
                        let here = matches!(
                            store.get(&ns, &path)?,
                            Some(e) if matches!(e.kind, EntryKind::Document { .. })
                        ) && !store.is_purged(&ns, &path)?;
                        if here {
                            docs.entry(ns).or_default().push(path);
                            purged.documents += 1;
                            purged.bytes += size;
                        }
                    }
                    Some(Item::Blob(hash)) => {
                        if store.has_blob(&hash)
                            && !store.blob_namespaces(&hash)?.contains(own)
                            && store.purge_blob(&hash)?
                        {
                            tracing::debug!(%hash, "purged a friend's blob from the cache");
                            purged.blobs += 1;
                            purged.bytes += size;
                        }
                    }
                    None => tracing::warn!("dropping a damaged cache item"),
                }
                if held.is_some() {
                    pending.drop_item(item)?;
                } else {
                    pending.remove(k.clone());
                }
            }
            // The documents' content goes before the items that name them.
            let docs: Vec<(NamespaceId, &[Path])> = docs
                .iter()
                .map(|(ns, paths)| (*ns, paths.as_slice()))
                .collect();
            store.purge_documents_of(&docs)?;
            pending.commit()?;
            if done || items.len() < BATCH {
                if purged != Purged::default() {
                    tracing::info!(
                        documents = purged.documents,
                        blobs = purged.blobs,
                        bytes = purged.bytes,
                        "purged friends' data from the cache"
                    );
                }
                return Ok(purged);
            }
        }
    }

    /// Reads the friends' change logs from where it last stopped and
    /// records what they hold. Returns the totals. Call with `lock` held.
    fn catch_up(&self, store: &Store, own: &NamespaceId) -> Result<Totals> {
        let mut pending = Pending::new(store)?;
        for ns in store.namespaces()? {
            if ns == *own {
                continue;
            }
            let read_to = key(TAG_READ_TO, &[ns.as_bytes()]);
            let mut from = pending
                .get(&read_to)?
                .and_then(|v| v.as_slice().try_into().ok())
                .map_or(0, u64::from_be_bytes);
            loop {
                let changes = store.changes_since(&ns, from, BATCH)?;
                for change in &changes {
                    match &change.kind {
                        ChangeKind::Put { path, .. }
                            if self.keep.iter().any(|k| k.is_prefix_of(path)) => {}
                        ChangeKind::Put { path, entry } => match &entry.kind {
                            EntryKind::Document { size, .. } => {
                                let item = doc_item(&ns, path);
                                if store.is_purged(&ns, path)? {
                                    pending.drop_item(&item)?;
                                } else {
                                    pending.hold(&item, *size, entry.timestamp.as_micros())?;
                                }
                            }
                            EntryKind::Blob { hash, size, .. } => {
                                pending.drop_item(&doc_item(&ns, path))?;
                                if store.has_blob(hash)
                                    && !store.blob_namespaces(hash)?.contains(own)
                                {
                                    pending.hold(
                                        &blob_item(hash),
                                        *size,
                                        entry.timestamp.as_micros(),
                                    )?;
                                }
                            }
                        },
                        ChangeKind::Tombstone { prefix, .. } => {
                            pending.commit()?;
                            self.forget_deleted(store, &mut pending, &ns, prefix)?;
                        }
                    }
                    from = change.seq;
                }
                if let Some(last) = changes.last() {
                    pending.put(read_to.clone(), last.seq.to_be_bytes().to_vec());
                }
                pending.commit()?;
                if changes.len() < BATCH {
                    break;
                }
            }
        }
        Ok(pending.totals)
    }

    /// Drops the document items under `prefix` of `ns` whose document is
    /// gone (a deletion reached them).
    fn forget_deleted(
        &self,
        store: &Store,
        pending: &mut Pending<'_>,
        ns: &NamespaceId,
        prefix: &Path,
    ) -> Result<()> {
        let scan = key(TAG_ITEM, &[&doc_item(ns, prefix)]);
        let start = key(TAG_ITEM, &[]).len();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let items = store.index_scan(&scan, after.as_deref(), BATCH)?;
            for (k, _) in &items {
                if let Some(Item::Doc(ns, path)) = parse_item(&k[start..])
                    && store.get(&ns, &path)?.is_none()
                {
                    pending.drop_item(&k[start..])?;
                }
            }
            pending.commit()?;
            match items.last() {
                Some((k, _)) if items.len() == BATCH => after = Some(k.clone()),
                _ => return Ok(()),
            }
        }
    }
}

/// Version 1: budget, then age in seconds (0 for none), big-endian.
fn encode_settings(s: &CacheSettings) -> Vec<u8> {
    let mut out = vec![1];
    out.extend_from_slice(&s.budget.to_be_bytes());
    out.extend_from_slice(&s.max_age.map_or(0, |a| a.as_secs()).to_be_bytes());
    out
}

fn decode_settings(bytes: &[u8]) -> Option<CacheSettings> {
    let (&version, rest) = bytes.split_first()?;
    if version != 1 || rest.len() != 16 {
        return None;
    }
    let (budget, age) = two_u64(rest)?;
    Some(CacheSettings {
        budget,
        max_age: (age > 0).then(|| Duration::from_secs(age)),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn settings_round_trip_and_damage_is_refused() {
        for s in [
            CacheSettings::default(),
            CacheSettings {
                budget: 0,
                max_age: Some(Duration::from_secs(86_400 * 365)),
            },
        ] {
            assert_eq!(decode_settings(&encode_settings(&s)), Some(s));
        }
        let bytes = encode_settings(&CacheSettings::default());
        assert_eq!(decode_settings(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode_settings(&[2]), None);
    }

    fn open_store(dir: &std::path::Path) -> Store {
        Store::open(
            dir,
            kith_store::Options::new(kith_types::DeviceId::from_bytes([1; 32])),
        )
        .unwrap()
    }

    fn write(store: &Store, ns: &NamespaceId, path: &str, bytes: usize) -> Path {
        use kith_store::automerge::transaction::Transactable;
        let path = Path::parse(path).unwrap();
        store
            .edit_document(ns, &path, |d| {
                d.put(kith_store::automerge::ROOT, "text", "x".repeat(bytes))
            })
            .unwrap()
            .0
            .unwrap();
        path
    }

    fn settings(budget: u64, max_age: Option<Duration>) -> CacheSettings {
        CacheSettings { budget, max_age }
    }

    /// Oldest written first, a fetch makes an item the newest, the own
    /// namespace and kept prefixes are never purged, an age purges by time.
    #[test]
    fn the_oldest_go_first_within_the_budget_and_the_age() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let own = NamespaceId::from_bytes([1; 32]);
        let friend = NamespaceId::from_bytes([2; 32]);
        let mine = write(&store, &own, "/feed/mine", 2000);
        let profile = write(&store, &friend, "/profile", 2000);
        let paths: Vec<Path> = (0..6)
            .map(|i| write(&store, &friend, &format!("/feed/{i}"), 2000))
            .collect();
        let size = match store.get(&friend, &paths[0]).unwrap().unwrap().kind {
            EntryKind::Document { size, .. } => size,
            EntryKind::Blob { .. } => unreachable!(),
        };
        let cache = FriendCache::open(
            &store,
            &own,
            settings(u64::MAX, None),
            vec![Path::parse("/profile").unwrap()],
        )
        .unwrap();
        let held = cache.status(&store, &own).unwrap();
        assert_eq!((held.documents, held.document_bytes), (6, 6 * size));

        // /feed/0 is read (fetched) now: it becomes the newest.
        let now = Timestamp::wall_clock();
        cache
            .used_documents(&store, &friend, &paths[..1], now)
            .unwrap();
        cache
            .set_settings(&store, &own, settings(3 * size, None))
            .unwrap();
        let purged = cache.enforce(&store, &own, now).unwrap();
        assert_eq!((purged.documents, purged.bytes), (3, 3 * size));
        let gone: Vec<bool> = paths
            .iter()
            .map(|p| store.is_purged(&friend, p).unwrap())
            .collect();
        assert_eq!(gone, [false, true, true, true, false, false]);
        assert!(!store.is_purged(&friend, &profile).unwrap(), "kept prefix");
        assert!(!store.is_purged(&own, &mine).unwrap(), "own data");
        // Within the budget: nothing more.
        assert_eq!(cache.enforce(&store, &own, now).unwrap(), Purged::default());

        // An age: nothing is a day old yet; two days on, all of it is.
        cache
            .set_settings(
                &store,
                &own,
                settings(u64::MAX, Some(Duration::from_secs(86_400))),
            )
            .unwrap();
        assert_eq!(cache.enforce(&store, &own, now).unwrap(), Purged::default());
        let later = Timestamp::from_micros(now.as_micros() + 2 * 86_400 * 1_000_000);
        assert_eq!(cache.enforce(&store, &own, later).unwrap().documents, 3);
        assert!(paths.iter().all(|p| store.is_purged(&friend, p).unwrap()));
        assert!(!store.is_purged(&own, &mine).unwrap());
        let status = cache.status(&store, &own).unwrap();
        assert_eq!((status.documents, status.document_bytes), (0, 0));

        // A deletion of a held document drops it from the index.
        let extra = write(&store, &friend, "/gone/x", 2000);
        assert_eq!(cache.status(&store, &own).unwrap().documents, 1);
        store
            .apply_tombstone(
                &friend,
                &Path::parse("/gone").unwrap(),
                store.clock().now(),
                &[],
            )
            .unwrap();
        assert!(store.get(&friend, &extra).unwrap().is_none());
        assert_eq!(cache.status(&store, &own).unwrap().documents, 0);
    }

    #[test]
    fn items_round_trip() {
        let ns = NamespaceId::from_bytes([7; 32]);
        let path = Path::parse("/posts/a").unwrap();
        match parse_item(&doc_item(&ns, &path)) {
            Some(Item::Doc(n, p)) => assert_eq!((n, p), (ns, path)),
            _ => panic!("a document item"),
        }
        let hash = BlobHash::from_bytes([9; 32]);
        assert!(matches!(parse_item(&blob_item(&hash)), Some(Item::Blob(h)) if h == hash));
        assert!(parse_item(b"x").is_none());
        assert!(parse_item(&[ITEM_BLOB, 1, 2]).is_none());
    }
}
