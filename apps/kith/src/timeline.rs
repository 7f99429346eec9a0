//! The timeline index: every post of this person and their friends, newest
//! first, read in pages with an opaque [`Cursor`].
//!
//! The index is derived data in the store's index keyspace
//! ([`Store::write_index`]), so it is on disk and survives restarts. It is
//! kept up to date from each namespace's change log
//! ([`Store::changes_since`]): [`catch_up`] reads every change after the
//! sequence number it reached last time and writes the index updates and the
//! new sequence number in one atomic batch, so after a crash it resumes from
//! the last batch that committed and never misses a change. Own writes, live
//! pushes and catch-ups all land in the log; a deletion (tombstone: a deleted
//! post, a friend's "revoke and delete") is a log record too, and every
//! indexed path under its prefix is looked at again. Each indexed path is
//! indexed from the store's current state, never from the change alone, so
//! replaying a change is harmless. A namespace that is no longer a friend's
//! has its items dropped; a new friend's namespace is indexed from the start
//! of its log.
//!
//! A page reads the index from the cursor on and then only what each post
//! needs (its document, its attachments' entries, its comments through the
//! comment index), so the first page costs the same at 500 posts and at a
//! million. Before reading, [`page`] catches the index up, which reads only
//! the changes since the last catch-up (nothing at all when nothing
//! changed); `kith serve` also catches up in the background after every
//! burst of changes (`daemon.rs`), so pages seldom find anything to do.
//!
//! What a page shows is exactly what [`feed::timeline`] shows (the whole
//! timeline read at once, kept as the reference): documents directly under
//! an audience prefix of the own namespace or a friend's, each with the
//! comments at `/feed/comments/ID` of the same people that name it, ordered
//! by the post's `time` field, newest first (ties: by namespace, then by a
//! hash of the path).
//!
//! Keys, all under [`KEY_PREFIX`] (`h16` is the first 16 bytes of BLAKE3):
//!
//! | key                                                  | value             |
//! |------------------------------------------------------|-------------------|
//! | `0`                                                  | format version    |
//! | `1` ‖ !time (8, BE) ‖ ns ‖ h16(path)                 | path (encoded)    |
//! | `2` ‖ post author ‖ h16(post id) ‖ ns ‖ h16(path)    | path (encoded)    |
//! | `3` ‖ ns ‖ path (encoded)                            | its `1` or `2` key|
//! | `4` ‖ ns                                             | log seq read (BE) |
//!
//! A cursor is the `1` key of the last post of a page without its tag: a
//! position in the order, valid whatever is added or removed meanwhile.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine as _;
use kith::store::{Change, ChangeKind, EntryKind, IndexOp, Store};
use kith::{NamespaceId, Path};
use serde_json::Value;

use crate::docjson::{const_path, read_json, text_field, time_field};
use crate::error::{Error, Result};
use crate::feed::{self, Audience, COMMENTS_PREFIX, Comment, Post};
use crate::names::Names;

/// Posts in a page when the request names no limit.
pub const DEFAULT_LIMIT: usize = 50;
/// Most posts in one page.
pub const MAX_LIMIT: usize = 500;
/// The prefix of every key of the timeline in the store's index keyspace.
pub const KEY_PREFIX: &[u8] = b"timeline/";
/// Bumped when the layout changes: an index of another version is rebuilt.
const FORMAT: u8 = 1;
/// Changes read from a log, and index items scanned, per batch.
const BATCH: usize = 1000;
/// How often a long build in a page read says how far it is.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// Longest cursor text accepted (a cursor is 76 characters).
const MAX_CURSOR_TEXT: usize = 128;
const CURSOR_VERSION: u8 = 1;
const CURSOR_LEN: usize = 8 + 32 + 16;

const TAG_VERSION: u8 = b'0';
const TAG_POST: u8 = b'1';
const TAG_COMMENT: u8 = b'2';
const TAG_BY_PATH: u8 = b'3';
const TAG_READ_TO: u8 = b'4';

/// A position in the timeline: pass a page's `next` to read the posts after
/// it. Its text form is opaque (URL-safe base64).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor([u8; CURSOR_LEN]);

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = Vec::with_capacity(1 + CURSOR_LEN);
        bytes.push(CURSOR_VERSION);
        bytes.extend_from_slice(&self.0);
        f.write_str(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cursor({self})")
    }
}

impl FromStr for Cursor {
    type Err = Error;

    /// # Errors
    /// [`Error::BadInput`] for anything but a cursor this module wrote.
    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            Error::BadInput(
                "not a timeline cursor: pass the `next` of a page unchanged".to_string(),
            )
        };
        if text.is_empty() || text.len() > MAX_CURSOR_TEXT {
            return Err(bad());
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| bad())?;
        match bytes.split_first() {
            Some((&CURSOR_VERSION, rest)) => Ok(Cursor(rest.try_into().map_err(|_| bad())?)),
            _ => Err(bad()),
        }
    }
}

/// One page of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Posts, newest first, each with its comments.
    pub posts: Vec<Post>,
    /// Where the next page starts; `None` at the end.
    pub next: Option<Cursor>,
}

/// Checks a page size from a request: 1 to [`MAX_LIMIT`], default
/// [`DEFAULT_LIMIT`].
///
/// # Errors
/// [`Error::BadInput`] outside that range.
pub fn check_limit(limit: Option<usize>) -> Result<usize> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(Error::BadInput(format!(
            "limit {n} is out of range: ask for 1 to {MAX_LIMIT} posts"
        ))),
    }
}

fn key(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(64);
    k.extend_from_slice(KEY_PREFIX);
    k.push(tag);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn h16(bytes: &[u8]) -> [u8; 16] {
    let mut out = [0; 16];
    out.copy_from_slice(&blake3::hash(bytes).as_bytes()[..16]);
    out
}

fn ns_at(bytes: &[u8], at: usize) -> Option<NamespaceId> {
    NamespaceId::try_from_slice(bytes.get(at..at + 32)?).ok()
}

/// A damaged index item. [`page`] answers it by rebuilding the index.
fn corrupt(why: &str) -> Error {
    Error::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("the timeline index is damaged ({why})"),
    ))
}

fn is_damage(e: &Error) -> bool {
    matches!(e, Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData)
}

/// Makes the next [`catch_up`] rebuild the index from the logs.
fn mark_for_rebuild(store: &Store) -> Result<()> {
    store.write_index(&[IndexOp::Remove {
        key: key(TAG_VERSION, &[]),
    }])?;
    Ok(())
}

/// The one writer of a store's index: the index is derived state, and two
/// writers reading the log at different moments could leave the older view
/// last.
#[derive(Default)]
struct Writer {
    lock: Mutex<()>,
    /// Log records read by a build from nothing (after an upgrade, or of a
    /// damaged index) of more than one batch, while it runs; 0 otherwise.
    building: AtomicU64,
}

fn writer(store: &Store) -> Arc<Writer> {
    static WRITERS: OnceLock<Mutex<HashMap<PathBuf, Arc<Writer>>>> = OnceLock::new();
    let mut writers = WRITERS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    writers
        .entry(store.dir().to_path_buf())
        .or_default()
        .clone()
}

/// Index writes gathered for one atomic batch; reads see them first, and a
/// key written twice is written once, with its last value.
struct Pending<'a> {
    store: &'a Store,
    ops: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a> Pending<'a> {
    fn new(store: &'a Store) -> Self {
        Self {
            store,
            ops: BTreeMap::new(),
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.ops.get(key) {
            Some(v) => Ok(v.clone()),
            None => Ok(self.store.index_get(key)?),
        }
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.insert(key, Some(value));
    }

    fn remove(&mut self, key: Vec<u8>) {
        self.ops.insert(key, None);
    }

    fn commit(&mut self) -> Result<()> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let ops: Vec<IndexOp> = std::mem::take(&mut self.ops)
            .into_iter()
            .map(|(key, value)| match value {
                Some(value) => IndexOp::Put { key, value },
                None => IndexOp::Remove { key },
            })
            .collect();
        self.store.write_index(&ops)?;
        Ok(())
    }
}

/// What [`catch_up`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Log records read.
    pub changes: u64,
    /// Namespaces done, of `namespaces`.
    pub done: usize,
    /// Namespaces to index.
    pub namespaces: usize,
    /// Whether the index was (re)built from nothing.
    pub rebuilt: bool,
}

/// Brings the index up to date with the logs of `people` (the own namespace
/// and the friends'), and drops what it holds of anyone else. Calls
/// `progress` after every batch, and stops early (with what it committed
/// kept) when that answers `false`. Blocks; cheap when nothing changed (no
/// read of a log whose head it has reached). One catch-up runs at a time
/// per store; another waits for it, except while a build from nothing runs
/// (after an upgrade, or of a damaged index), which can take minutes.
///
/// # Errors
/// [`Error::Unavailable`] while such a build runs in another thread (saying
/// how far it is); store errors.
pub fn catch_up(
    store: &Store,
    people: &[NamespaceId],
    progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<Progress> {
    let writer = writer(store);
    let _one_writer = match writer.lock.try_lock() {
        Ok(guard) => guard,
        Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => {
            let read = writer.building.load(Ordering::Relaxed);
            if read > 0 {
                return Err(Error::Unavailable(format!(
                    "the timeline is being indexed ({read} changes read so far); try again in a moment"
                )));
            }
            writer.lock.lock().unwrap_or_else(|e| e.into_inner())
        }
    };
    // Whatever way this ends, a build is no longer running.
    struct Built<'a>(&'a AtomicU64);
    impl Drop for Built<'_> {
        fn drop(&mut self) {
            self.0.store(0, Ordering::Relaxed);
        }
    }
    let _built = Built(&writer.building);
    let mut p = Progress {
        namespaces: people.len(),
        ..Progress::default()
    };
    let version_key = key(TAG_VERSION, &[]);
    if store.index_get(&version_key)?.as_deref() != Some(&[FORMAT]) {
        clear(store)?;
        store.write_index(&[IndexOp::Put {
            key: version_key,
            value: vec![FORMAT],
        }])?;
        p.rebuilt = true;
    }
    let read_to = read_positions(store)?;
    let wanted: HashSet<&NamespaceId> = people.iter().collect();
    for ns in read_to.keys().filter(|ns| !wanted.contains(ns)) {
        forget(store, ns)?;
    }
    for ns in people {
        let mut seq = read_to.get(ns).copied().unwrap_or(0);
        // The log's head is kept in memory: a namespace without news costs
        // no read of its log.
        if store.current_seq(ns)? <= seq {
            p.done += 1;
            continue;
        }
        loop {
            let changes = store.changes_since(ns, seq, BATCH)?;
            let Some(last) = changes.last().map(|c| c.seq) else {
                break;
            };
            let mut pending = Pending::new(store);
            for change in &changes {
                apply(store, &mut pending, change)?;
            }
            seq = last;
            pending.put(
                key(TAG_READ_TO, &[ns.as_bytes()]),
                seq.to_be_bytes().to_vec(),
            );
            pending.commit()?;
            p.changes += changes.len() as u64;
            if p.rebuilt && p.changes > BATCH as u64 {
                writer.building.store(p.changes, Ordering::Relaxed);
            }
            if !progress(p) {
                return Ok(p);
            }
            if changes.len() < BATCH {
                break;
            }
        }
        p.done += 1;
    }
    Ok(p)
}

fn read_positions(store: &Store) -> Result<HashMap<NamespaceId, u64>> {
    let prefix = key(TAG_READ_TO, &[]);
    let mut out = HashMap::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let items = store.index_scan(&prefix, after.as_deref(), BATCH)?;
        for (k, v) in &items {
            let ns = ns_at(k, prefix.len()).ok_or_else(|| corrupt("position key"))?;
            let seq: [u8; 8] = v.as_slice().try_into().map_err(|_| corrupt("position"))?;
            out.insert(ns, u64::from_be_bytes(seq));
        }
        match items.last() {
            Some((k, _)) if items.len() == BATCH => after = Some(k.clone()),
            _ => return Ok(out),
        }
    }
}

/// Removes every key of the timeline (an index of another format).
fn clear(store: &Store) -> Result<()> {
    loop {
        let items = store.index_scan(KEY_PREFIX, None, BATCH)?;
        if items.is_empty() {
            return Ok(());
        }
        let ops: Vec<IndexOp> = items
            .into_iter()
            .map(|(key, _)| IndexOp::Remove { key })
            .collect();
        store.write_index(&ops)?;
    }
}

/// Drops everything indexed of `ns` (no longer a friend), then its position.
fn forget(store: &Store, ns: &NamespaceId) -> Result<()> {
    let prefix = key(TAG_BY_PATH, &[ns.as_bytes()]);
    loop {
        let items = store.index_scan(&prefix, None, BATCH)?;
        let mut pending = Pending::new(store);
        for (by_path, forward) in &items {
            pending.remove(forward.clone());
            pending.remove(by_path.clone());
        }
        if items.is_empty() {
            pending.remove(key(TAG_READ_TO, &[ns.as_bytes()]));
            return pending.commit();
        }
        pending.commit()?;
    }
}

fn apply(store: &Store, pending: &mut Pending<'_>, change: &Change) -> Result<()> {
    let ns = &change.namespace;
    match &change.kind {
        ChangeKind::Put { path, .. } => reindex(store, pending, ns, path),
        ChangeKind::Tombstone { prefix, .. } => {
            // What the tombstone removed is gone from the store; what under
            // its prefix is newer than it stays. Look at each again.
            pending.commit()?;
            let scan = key(TAG_BY_PATH, &[ns.as_bytes(), prefix.encoded()]);
            let start = key(TAG_BY_PATH, &[ns.as_bytes()]).len();
            let mut after: Option<Vec<u8>> = None;
            loop {
                let items = store.index_scan(&scan, after.as_deref(), BATCH)?;
                for (by_path, _) in &items {
                    let path =
                        Path::from_encoded(&by_path[start..]).map_err(|_| corrupt("path key"))?;
                    reindex(store, pending, ns, &path)?;
                }
                pending.commit()?;
                match items.last() {
                    Some((k, _)) if items.len() == BATCH => after = Some(k.clone()),
                    _ => return Ok(()),
                }
            }
        }
    }
}

/// What an entry is to the timeline.
enum Role {
    Post(Audience),
    Comment,
}

fn role_of(path: &Path) -> Option<Role> {
    for audience in Audience::ALL {
        let prefix = audience.prefix();
        if path.len() == prefix.len() + 1 && prefix.is_prefix_of(path) {
            return Some(Role::Post(audience));
        }
    }
    let comments = const_path(COMMENTS_PREFIX);
    (path.len() == comments.len() + 1 && comments.is_prefix_of(path)).then_some(Role::Comment)
}

/// What the timeline can show of a document.
enum Shown {
    /// The document as JSON.
    Json(Value),
    /// A friend's document purged from the cache (its entry is here).
    Purged,
    /// Nothing: no document, or one that does not read as JSON (a friend's
    /// data is not trusted to be well formed).
    Nothing,
}

/// What the timeline can show of the document at `path`, read once.
/// Failures of the store itself are errors.
fn shown(store: &Store, ns: &NamespaceId, path: &Path) -> Result<Shown> {
    match read_json(store, ns, path) {
        Ok(Some(v)) => Ok(Shown::Json(v)),
        Ok(None) => Ok(Shown::Nothing),
        Err(e) if feed::is_not_here(&e) => Ok(Shown::Purged),
        Err(Error::Node(kith::Error::Store(e)))
            if matches!(
                *e,
                kith::store::Error::Storage(_)
                    | kith::store::Error::Io(_)
                    | kith::store::Error::Corrupt { .. }
            ) =>
        {
            Err(Error::Node(kith::Error::Store(e)))
        }
        Err(e) => {
            tracing::debug!(%ns, %path, error = %e, "not shown in the timeline");
            Ok(Shown::Nothing)
        }
    }
}

/// The timeline key `path` of `ns` should have now, from the store.
fn wanted_key(store: &Store, ns: &NamespaceId, path: &Path) -> Result<Option<Vec<u8>>> {
    let Some(role) = role_of(path) else {
        return Ok(None);
    };
    let written = match store.get(ns, path)? {
        Some(e) if matches!(e.kind, EntryKind::Document { .. }) => e.timestamp,
        _ => return Ok(None),
    };
    let path_hash = h16(path.encoded());
    let v = match shown(store, ns, path)? {
        Shown::Json(v) => v,
        Shown::Nothing => return Ok(None),
        // Indexed afresh while purged (a rebuild): a post by its latest
        // write, a comment once it is fetched again.
        Shown::Purged => {
            return Ok(match role {
                Role::Post(_) => {
                    let time = (u64::MAX - written.as_micros()).to_be_bytes();
                    Some(key(TAG_POST, &[&time, ns.as_bytes(), &path_hash]))
                }
                Role::Comment => None,
            });
        }
    };
    Ok(match role {
        Role::Post(_) => {
            let time = (u64::MAX - time_field(&v)).to_be_bytes();
            Some(key(TAG_POST, &[&time, ns.as_bytes(), &path_hash]))
        }
        Role::Comment => {
            let author_text = text_field(&v, "post_author");
            let post_id = text_field(&v, "post_id");
            match author_text.parse::<NamespaceId>() {
                // The feed matches comments to posts by the id's text.
                Ok(author) if author.to_string() == author_text => Some(key(
                    TAG_COMMENT,
                    &[
                        author.as_bytes(),
                        &h16(post_id.as_bytes()),
                        ns.as_bytes(),
                        &path_hash,
                    ],
                )),
                _ => None,
            }
        }
    })
}

/// Makes the index agree with the store about `path` of `ns`.
fn reindex(store: &Store, pending: &mut Pending<'_>, ns: &NamespaceId, path: &Path) -> Result<()> {
    let by_path = key(TAG_BY_PATH, &[ns.as_bytes(), path.encoded()]);
    let old = pending.get(&by_path)?;
    if old.is_some() && store.is_purged(ns, path)? {
        // Purged from the cache of friends' data, not deleted: it keeps its
        // place, and comes back as it is when fetched again.
        return Ok(());
    }
    let new = wanted_key(store, ns, path)?;
    if let Some(old) = old
        && Some(&old) != new.as_ref()
    {
        pending.remove(old);
    }
    match new {
        Some(forward) => {
            pending.put(forward.clone(), path.encoded().to_vec());
            pending.put(by_path, forward);
        }
        None => pending.remove(by_path),
    }
    Ok(())
}

/// The people whose posts the timeline shows: `me`, then `friends`.
pub fn people(me: &NamespaceId, friends: &[NamespaceId]) -> Vec<NamespaceId> {
    let mut people = vec![*me];
    people.extend(friends.iter().filter(|f| *f != me));
    people
}

/// Up to `limit` posts after `before` (from the newest without it), newest
/// first, with their comments, and the cursor of the next page. Catches the
/// index up first. Blocks.
///
/// # Errors
/// [`Error::BadInput`] for a `limit` outside 1 to [`MAX_LIMIT`]; store
/// errors.
pub fn page(
    store: &Store,
    me: &NamespaceId,
    friends: &[NamespaceId],
    names: &Names,
    before: Option<&Cursor>,
    limit: usize,
) -> Result<Page> {
    match read_page(store, me, friends, names, before, limit) {
        Err(e) if is_damage(&e) => {
            tracing::warn!(error = %e, "rebuilding the timeline index");
            mark_for_rebuild(store)?;
            read_page(store, me, friends, names, before, limit)
        }
        other => other,
    }
}

fn read_page(
    store: &Store,
    me: &NamespaceId,
    friends: &[NamespaceId],
    names: &Names,
    before: Option<&Cursor>,
    limit: usize,
) -> Result<Page> {
    let limit = check_limit(Some(limit))?;
    let people = people(me, friends);
    // A build from nothing in this thread (the CLI without a daemon, after
    // an upgrade) says how far it is: it can take minutes.
    let mut last_said = std::time::Instant::now();
    catch_up(store, &people, &mut |p| {
        if p.rebuilt && last_said.elapsed() >= PROGRESS_EVERY {
            eprintln!(
                "indexing the timeline (once): {} changes read, {} of {} namespaces done",
                p.changes, p.done, p.namespaces
            );
            last_said = std::time::Instant::now();
        }
        true
    })?;
    let allowed: HashSet<&NamespaceId> = people.iter().collect();
    let prefix = key(TAG_POST, &[]);
    let mut after = before.map(|c| key(TAG_POST, &[&c.0]));
    let mut posts = Vec::with_capacity(limit);
    let mut next = None;
    'scan: loop {
        let items = store.index_scan(&prefix, after.as_deref(), limit + 1)?;
        for (k, v) in &items {
            let Some(ns) = ns_at(k, prefix.len() + 8).filter(|ns| allowed.contains(ns)) else {
                continue;
            };
            let cursor: [u8; CURSOR_LEN] = k[prefix.len()..]
                .try_into()
                .map_err(|_| corrupt("post key"))?;
            if posts.len() == limit {
                // One more post exists: the page is not the last.
                next = posts.last().map(|(c, _)| Cursor(*c));
                break 'scan;
            }
            let path = Path::from_encoded(v).map_err(|_| corrupt("post path"))?;
            if let Some(post) = resolve(store, me, &ns, &path, &allowed, names)? {
                posts.push((cursor, post));
            }
        }
        match items.last() {
            Some((k, _)) if items.len() == limit + 1 => after = Some(k.clone()),
            _ => break,
        }
    }
    Ok(Page {
        posts: posts.into_iter().map(|(_, p)| p).collect(),
        next,
    })
}

/// The post at `path` of `ns` with its comments, if it is one and readable.
fn resolve(
    store: &Store,
    me: &NamespaceId,
    ns: &NamespaceId,
    path: &Path,
    people: &HashSet<&NamespaceId>,
    names: &Names,
) -> Result<Option<Post>> {
    let Some(Role::Post(audience)) = role_of(path) else {
        return Ok(None);
    };
    let Some(mut post) = feed::read_post(store, ns, path, audience, names)? else {
        return Ok(None);
    };
    post.mine = ns == me;
    post.comments = comments_on(store, ns, &post.id, people, names)?;
    Ok(Some(post))
}

/// The comments of `people` on `author`'s post `id`, oldest first.
fn comments_on(
    store: &Store,
    author: &NamespaceId,
    id: &str,
    people: &HashSet<&NamespaceId>,
    names: &Names,
) -> Result<Vec<Comment>> {
    let prefix = key(TAG_COMMENT, &[author.as_bytes(), &h16(id.as_bytes())]);
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    let author_text = author.to_string();
    loop {
        let items = store.index_scan(&prefix, after.as_deref(), BATCH)?;
        for (k, v) in &items {
            let Some(ns) = ns_at(k, prefix.len()).filter(|ns| people.contains(ns)) else {
                continue;
            };
            let path = Path::from_encoded(v).map_err(|_| corrupt("comment path"))?;
            let (text, time, loading) = match shown(store, &ns, &path)? {
                Shown::Json(v) => {
                    if text_field(&v, "post_author") != author_text
                        || text_field(&v, "post_id") != id
                    {
                        continue;
                    }
                    (text_field(&v, "text"), time_field(&v), false)
                }
                // Purged from the cache: the index says whose post it
                // answers; its text comes back from the commenter.
                Shown::Purged => {
                    let written = store
                        .get(&ns, &path)?
                        .map_or(0, |e| e.timestamp.as_micros());
                    (String::new(), written, true)
                }
                Shown::Nothing => continue,
            };
            out.push(Comment {
                id: path.last().unwrap_or_default().to_string(),
                author: ns.to_string(),
                author_name: names.name_of(&ns),
                author_avatar: names.avatar_of(&ns),
                post_author: author_text.clone(),
                post_id: id.to_string(),
                path: path.to_string(),
                text,
                time,
                loading,
            });
        }
        match items.last() {
            Some((k, _)) if items.len() == BATCH => after = Some(k.clone()),
            _ => break,
        }
    }
    out.sort_by_key(|c| c.time);
    Ok(out)
}

/// The posts with id `id` of `me` and `friends` (one per author who has
/// one), with their comments. Catches the index up first. Blocks.
///
/// # Errors
/// Store errors.
pub fn posts_with_id(
    store: &Store,
    me: &NamespaceId,
    friends: &[NamespaceId],
    names: &Names,
    id: &str,
) -> Result<Vec<Post>> {
    let people = people(me, friends);
    catch_up(store, &people, &mut |_| true)?;
    let allowed: HashSet<&NamespaceId> = people.iter().collect();
    let mut out = Vec::new();
    for ns in &people {
        for audience in Audience::ALL {
            let Ok(path) = audience.prefix().join(id) else {
                return Ok(out);
            };
            if let Some(post) = resolve(store, me, ns, &path, &allowed, names)? {
                out.push(post);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let c = Cursor([7; CURSOR_LEN]);
        let text = c.to_string();
        assert!(text.len() <= MAX_CURSOR_TEXT);
        assert_eq!(text.parse::<Cursor>().unwrap(), c);
        for bad in [
            "",
            "x",
            "!!!!",
            &"A".repeat(MAX_CURSOR_TEXT + 1),
            &text[..text.len() - 1],
            &format!("{text}AA"),
        ] {
            assert!(
                matches!(bad.parse::<Cursor>(), Err(Error::BadInput(_))),
                "{bad:?}"
            );
        }
        // Another version byte.
        let mut bytes = vec![9];
        bytes.extend_from_slice(&[7; CURSOR_LEN]);
        let other = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        assert!(matches!(other.parse::<Cursor>(), Err(Error::BadInput(_))));
    }

    #[test]
    fn limits_are_checked() {
        assert_eq!(check_limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(check_limit(Some(1)).unwrap(), 1);
        assert_eq!(check_limit(Some(MAX_LIMIT)).unwrap(), MAX_LIMIT);
        for bad in [0, MAX_LIMIT + 1, usize::MAX] {
            assert!(matches!(check_limit(Some(bad)), Err(Error::BadInput(_))));
        }
    }
}
