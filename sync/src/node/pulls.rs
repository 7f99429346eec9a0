//! What the node pulls from other devices: catch-ups, blobs and
//! subscriptions that keep catching up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use iroh::endpoint::Connection;
use kith_store::{BlobHash, BlobReader};
use kith_types::{DeviceId, NamespaceId, Path, Timestamp};

use crate::cache::{CacheSettings, CacheStatus, Purged};
use crate::error::{Error, Result};
use crate::net;
use crate::proto::addr::Addr;

use super::handle::{Node, blocking};

/// How long one whole sync with a device may take.
const SYNC_TIMEOUT: Duration = Duration::from_secs(300);
/// How long connecting to one device of a person may take before the next
/// is tried beside it.
const HEAD_START: Duration = Duration::from_secs(1);
/// Periodic catch-ups a subscription skips in a row while live push keeps
/// it up to date; the next one runs anyway, as a safety net.
const RESYNC_SKIPS_MAX: u32 = 9;
/// First and largest wait between retries of a subscription.
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// What one [`Node::sync_now`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// The device synced with.
    pub device: Option<DeviceId>,
    /// Entries received.
    pub entries: u64,
    /// Documents updated.
    pub docs: u64,
    /// Tombstones applied.
    pub tombstones: u64,
    /// Blobs fetched eagerly (small ones).
    pub blobs_fetched: u64,
    /// Items refused by the owner or rejected here.
    pub refused: u64,
    /// Deletion receipts the owner recorded in this sync.
    pub receipts_sent: u64,
    /// Bytes sent on the catch-up stream.
    pub bytes_sent: u64,
    /// Bytes received on the catch-up stream and blob streams.
    pub bytes_received: u64,
    /// The prefixes synced.
    pub prefixes: Vec<Path>,
    /// How long it took.
    pub duration: Duration,
}

impl Node {
    pub(super) async fn connect(&self, device: DeviceId, addrs: &[Addr]) -> Result<Connection> {
        Ok(self.connection(device, addrs).await?.0)
    }

    /// A connection to `device`: the cached one if it is open (`true`), or
    /// a new one (`false`), which is cached.
    pub(super) async fn connection(
        &self,
        device: DeviceId,
        addrs: &[Addr],
    ) -> Result<(Connection, bool)> {
        self.inner.connections.get(device, addrs).await
    }

    /// Notes that reaching `device` failed (shown in status).
    fn note_failure(&self, device: DeviceId, why: &str) {
        let why = why.to_string();
        self.inner.shared.contact(device, |c| {
            c.failed = Some((kith_types::Timestamp::wall_clock(), why));
        });
    }

    /// A connection to the first of `devices` that answers: each is given
    /// [`HEAD_START`] before the next is tried beside it, so a device that
    /// is away costs a second, not the connect timeout. Returns its index,
    /// the connection and whether it was cached.
    ///
    /// # Errors
    /// The last device's error if none answered.
    pub(super) async fn connect_first(
        &self,
        devices: &[(DeviceId, Vec<Addr>)],
    ) -> Result<(usize, Connection, bool)> {
        let mut tries = tokio::task::JoinSet::new();
        for (i, (device, addrs)) in devices.iter().cloned().enumerate() {
            let node = self.clone();
            tries.spawn(async move {
                tokio::time::sleep(HEAD_START * i as u32).await;
                (i, node.connection(device, &addrs).await)
            });
        }
        let mut last = Error::Protocol("no known device".into());
        let started = Instant::now();
        let mut answered: Vec<usize> = Vec::new();
        while let Some(done) = tries.join_next().await {
            if let Ok((i, _)) = &done {
                answered.push(*i);
            }
            match done {
                Ok((i, Ok((conn, reused)))) => {
                    // The devices tried before this one that had not
                    // answered by now (each had at least its head start)
                    // did not answer in time.
                    let waited = started.elapsed();
                    for (j, (device, _)) in devices.iter().enumerate().take(i) {
                        if !answered.contains(&j) {
                            self.note_failure(
                                *device,
                                &format!("did not answer within {waited:?}; another device did"),
                            );
                        }
                    }
                    return Ok((i, conn, reused));
                }
                Ok((i, Err(e))) => {
                    if let Some((device, _)) = devices.get(i) {
                        self.note_failure(*device, &e.to_string());
                    }
                    last = e;
                }
                Err(e) => last = Error::Protocol(format!("connecting task failed: {e}")),
            }
        }
        Err(last)
    }

    /// The devices of `owner` to sync from, in order of preference (for
    /// this node's own namespace: its other devices).
    pub(super) fn devices_of(&self, owner: &NamespaceId) -> Result<Vec<(DeviceId, Vec<Addr>)>> {
        let me = self.namespace();
        let known = self.inner.shared.known.read();
        if *owner != me && !known.friends.contains_key(owner) {
            return Err(Error::NotFriend(*owner));
        }
        let this = self.device();
        let mut devices = known.devices_of(owner, &me);
        devices.retain(|(d, _)| *d != this);
        Ok(devices)
    }

    /// Catches up with `friend` now: connects to one of their devices and
    /// fetches everything changed under the prefixes this node may read,
    /// then small blobs.
    ///
    /// # Errors
    /// [`Error::NotFriend`], [`Error::Unreachable`] if no device answered,
    /// [`Error::Refused`] or [`Error::Protocol`] if the device refused or
    /// misbehaved, store errors.
    pub async fn sync_now(&self, friend: &NamespaceId) -> Result<SyncReport> {
        let devices = self.devices_of(friend)?;
        let mut last_error = String::from("no known device");
        let mut attempts: Vec<(DeviceId, Vec<Addr>)> = devices;
        let mut retried: Vec<DeviceId> = Vec::new();
        while !attempts.is_empty() {
            let started = Instant::now();
            let (i, conn, reused) = match self.connect_first(&attempts).await {
                Ok(c) => c,
                Err(e) => {
                    last_error = e.to_string();
                    break;
                }
            };
            let (device, addrs) = attempts.remove(i);
            tracing::trace!(ns = %friend.fmt_short(), device = %device.fmt_short(), reused, "catching up");
            let run = tokio::time::timeout(
                SYNC_TIMEOUT,
                net::fetch::sync(&self.inner.shared, &conn, *friend),
            )
            .await;
            let (fetch, traffic) = match run {
                Ok(Ok(v)) => v,
                Ok(Err(e @ (Error::Refused { .. } | Error::Protocol(_) | Error::Wire(_)))) => {
                    return Err(e);
                }
                Ok(Err(e)) => {
                    self.inner.connections.forget(&device, None);
                    last_error = e.to_string();
                    self.note_failure(device, &last_error);
                    // A cached connection that turned out dead: once more
                    // on a fresh one.
                    if reused && !retried.contains(&device) {
                        retried.push(device);
                        attempts.insert(0, (device, addrs));
                    }
                    continue;
                }
                Err(_) => {
                    last_error = "timed out".into();
                    self.note_failure(device, &last_error);
                    continue;
                }
            };
            let mut report = SyncReport {
                device: Some(device),
                entries: fetch.entries,
                docs: fetch.docs,
                tombstones: fetch.tombstones,
                refused: fetch.refused,
                bytes_sent: traffic.sent,
                bytes_received: traffic.received,
                prefixes: fetch.prefixes.clone(),
                ..SyncReport::default()
            };
            let eager = self.inner.settings.eager_blob_size;
            for (path, hash, size) in fetch.blobs {
                if size > eager || self.inner.shared.store.has_blob(&hash) {
                    continue;
                }
                match net::fetch::blob(
                    &self.inner.shared,
                    &self.inner.downloads,
                    &conn,
                    &path,
                    hash,
                    size,
                )
                .await
                {
                    Ok(n) => {
                        report.blobs_fetched += 1;
                        report.bytes_received += n;
                        // Held as of its write: a year-old photo is not
                        // kept longer than its post.
                        let shared = self.inner.shared.clone();
                        let (owner, at) = (*friend, path.clone());
                        blocking(move || {
                            let own = shared.namespace();
                            let time = shared
                                .store
                                .get(&owner, &at)?
                                .map_or_else(Timestamp::wall_clock, |e| e.timestamp);
                            shared
                                .cache
                                .used_blob(&shared.store, &own, hash, size, time)
                        })
                        .await?;
                    }
                    Err(e) => {
                        tracing::info!(%path, %e, "could not fetch a small blob; it will be fetched when read")
                    }
                }
            }
            // Deletions applied now (or before) are confirmed to the owner.
            match net::fetch::receipts(&self.inner.shared, &conn, *friend).await {
                Ok(n) => report.receipts_sent = n as u64,
                Err(e) => tracing::info!(%e, "receipts not delivered yet; they stay queued"),
            }
            report.duration = started.elapsed();
            self.inner.shared.cache_changed.notify_one();
            self.inner.shared.contact(device, |c| {
                c.synced = Some(kith_types::Timestamp::wall_clock())
            });
            return Ok(report);
        }
        Err(Error::Unreachable {
            namespace: *friend,
            last_error,
        })
    }

    /// Opens the blob at `path` of `namespace`, fetching it from the owner's
    /// devices first if it is not stored here (a friend's blob that was
    /// never fetched or was purged, or one written on another device of this
    /// namespace).
    ///
    /// # Errors
    /// [`kith_store::Error::NotFound`] if nothing is at `path`, fetch errors,
    /// store errors.
    pub async fn read_blob(&self, namespace: &NamespaceId, path: &Path) -> Result<BlobReader> {
        let (hash, _) = self.ensure_blob(namespace, path).await?;
        let store = self.inner.shared.store.clone();
        blocking(move || Ok(store.read_blob(&hash, ..)?)).await
    }

    /// Fetches the content of the blob at `path` of `namespace` from the
    /// owner's devices now (if it is not stored here yet), resuming an
    /// interrupted fetch. Returns the bytes received (0 if it was here).
    ///
    /// # Errors
    /// As [`Node::read_blob`].
    pub async fn fetch(&self, namespace: &NamespaceId, path: &Path) -> Result<u64> {
        Ok(self.ensure_blob(namespace, path).await?.1)
    }

    /// Makes sure the blob at `path` is stored here, fetching it from the
    /// owner's devices if not: a friend's blob never fetched or purged, or
    /// one written on another device of this namespace. Returns its hash and
    /// the bytes received.
    pub(super) async fn ensure_blob(
        &self,
        namespace: &NamespaceId,
        path: &Path,
    ) -> Result<(BlobHash, u64)> {
        let store = self.inner.shared.store.clone();
        let (ns, p) = (*namespace, path.clone());
        let entry = blocking(move || Ok(store.get(&ns, &p)?))
            .await?
            .ok_or_else(|| {
                Error::from(kith_store::Error::NotFound {
                    namespace: *namespace,
                    path: path.clone(),
                })
            })?;
        let kith_store::EntryKind::Blob { hash, size, .. } = entry.kind else {
            return Err(kith_store::Error::WrongKind {
                path: path.clone(),
                expected: "blob",
                found: "document",
            }
            .into());
        };
        let received = if self.inner.shared.store.has_blob(&hash) {
            0
        } else {
            if self.devices_of(namespace)?.is_empty() {
                return Err(kith_store::Error::BlobMissing(hash).into());
            }
            // Fetched from the owner's devices, never from other friends.
            self.fetch_blob(namespace, path, hash, size).await?
        };
        if *namespace != self.namespace() {
            let shared = self.inner.shared.clone();
            blocking(move || {
                let own = shared.namespace();
                let now = Timestamp::wall_clock();
                shared.cache.used_blob(&shared.store, &own, hash, size, now)
            })
            .await?;
            if received > 0 {
                self.inner.shared.cache_changed.notify_one();
            }
        }
        Ok((hash, received))
    }

    pub(super) async fn fetch_blob(
        &self,
        owner: &NamespaceId,
        path: &Path,
        hash: BlobHash,
        size: u64,
    ) -> Result<u64> {
        let mut last_error = String::from("no known device");
        for (device, addrs) in self.devices_of(owner)? {
            let conn = match self.connect(device, &addrs).await {
                Ok(c) => c,
                Err(e) => {
                    last_error = e.to_string();
                    continue;
                }
            };
            match net::fetch::blob(
                &self.inner.shared,
                &self.inner.downloads,
                &conn,
                path,
                hash,
                size,
            )
            .await
            {
                Ok(n) => return Ok(n),
                Err(e @ (Error::Refused { .. } | Error::Store(_))) => return Err(e),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(Error::Unreachable {
            namespace: *owner,
            last_error,
        })
    }

    /// What the cache of friends' data holds, and its settings. Reads what
    /// changed since it last looked (the first time after an upgrade, every
    /// friend's change log). Blocks a blocking thread, not the caller.
    ///
    /// # Errors
    /// Store errors.
    pub async fn cache_status(&self) -> Result<CacheStatus> {
        self.with_cache(|cache, store, own| cache.status(store, own))
            .await
    }

    /// Runs `f` on the cache, the store and the own namespace, on a
    /// blocking thread.
    async fn with_cache<T: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::cache::FriendCache, &kith_store::Store, &NamespaceId) -> Result<T>
        + Send
        + 'static,
    ) -> Result<T> {
        let shared = self.inner.shared.clone();
        blocking(move || f(&shared.cache, &shared.store, &shared.namespace())).await
    }

    /// Sets how much of friends' data this node keeps (kept across
    /// restarts), then purges what no longer fits, oldest first. Returns
    /// what was purged.
    ///
    /// # Errors
    /// Store errors.
    pub async fn set_cache(&self, settings: CacheSettings) -> Result<Purged> {
        self.with_cache(move |cache, store, own| {
            cache.set_settings(store, own, settings)?;
            cache.enforce(store, own, Timestamp::wall_clock())
        })
        .await
    }

    /// Purges every friend's document and blob held here now. Their
    /// entries stay (the timeline still lists every post), and each is
    /// fetched again from its owner when read ([`Node::read_document`],
    /// [`Node::fetch_documents`], [`Node::read_blob`]). This node's own data
    /// is never purged. Returns what was purged.
    ///
    /// # Errors
    /// Store errors.
    pub async fn purge_cache(&self) -> Result<Purged> {
        self.with_cache(|cache, store, own| cache.purge_all(store, own))
            .await
    }

    /// Purges what the cache's settings no longer allow (more than the
    /// budget, older than the age). The node does this itself after
    /// catch-ups and fetches, and within a minute of live changes arriving.
    ///
    /// # Errors
    /// Store errors.
    pub async fn enforce_cache(&self) -> Result<Purged> {
        self.with_cache(|cache, store, own| cache.enforce(store, own, Timestamp::wall_clock()))
            .await
    }

    /// The document at `path` of `namespace`, fetched whole from its
    /// owner's devices first if its content was purged from the cache.
    /// `None` if nothing is at `path`.
    ///
    /// # Errors
    /// [`kith_store::Error::WrongKind`] for a blob, fetch errors
    /// ([`Error::Unreachable`] when no device of the owner answers), store
    /// errors.
    pub async fn read_document(
        &self,
        namespace: &NamespaceId,
        path: &Path,
    ) -> Result<Option<kith_store::automerge::AutoCommit>> {
        let read = |node: &Node| {
            let store = node.inner.shared.store.clone();
            let (ns, p) = (*namespace, path.clone());
            blocking(move || Ok(store.document(&ns, &p)?))
        };
        match read(self).await {
            Err(Error::Store(e)) if matches!(*e, kith_store::Error::NotHere { .. }) => {
                self.fetch_documents(namespace, std::slice::from_ref(path))
                    .await?;
                read(self).await
            }
            other => other,
        }
    }

    /// Fetches the whole of the documents at `paths` of `namespace` (a
    /// friend's) whose content was purged from the cache, from the owner's
    /// devices, on one stream; paths that hold none are passed over, and
    /// those the owner refuses (no longer readable, deleted) stay as they
    /// are. Returns how many were fetched.
    ///
    /// # Errors
    /// [`Error::NotFriend`], [`Error::Unreachable`] if no device answered,
    /// [`Error::Refused`] or [`Error::Protocol`] if the device refused or
    /// misbehaved, store errors.
    pub async fn fetch_documents(&self, namespace: &NamespaceId, paths: &[Path]) -> Result<u64> {
        let store = self.inner.shared.store.clone();
        let (ns, asked) = (*namespace, paths.to_vec());
        let wants = blocking(move || {
            let mut wants = Vec::new();
            for path in asked {
                if let Some(entry) = store.get(&ns, &path)?
                    && let kith_store::EntryKind::Document {
                        created, creator, ..
                    } = entry.kind
                    && store.is_purged(&ns, &path)?
                {
                    wants.push((path, kith_store::DocIdentity { created, creator }));
                }
            }
            Ok(wants)
        })
        .await?;
        if wants.is_empty() {
            return Ok(0);
        }
        let mut last_error = String::from("no known device");
        for (device, addrs) in self.devices_of(namespace)? {
            let conn = match self.connect(device, &addrs).await {
                Ok(c) => c,
                Err(e) => {
                    last_error = e.to_string();
                    continue;
                }
            };
            let run = tokio::time::timeout(
                SYNC_TIMEOUT,
                net::fetch::documents(&self.inner.shared, &conn, *namespace, wants.clone()),
            )
            .await;
            match run {
                Ok(Ok((report, _))) => {
                    let shared = self.inner.shared.clone();
                    let paths: Vec<Path> = wants.into_iter().map(|(p, _)| p).collect();
                    blocking(move || {
                        let now = Timestamp::wall_clock();
                        shared.cache.used_documents(&shared.store, &ns, &paths, now)
                    })
                    .await?;
                    self.inner.shared.cache_changed.notify_one();
                    return Ok(report.docs);
                }
                Ok(Err(e @ (Error::Refused { .. } | Error::Store(_)))) => return Err(e),
                Ok(Err(e)) => {
                    self.inner.connections.forget(&device, None);
                    last_error = e.to_string();
                    self.note_failure(device, &last_error);
                }
                Err(_) => {
                    last_error = "timed out".into();
                    self.note_failure(device, &last_error);
                }
            }
        }
        Err(Error::Unreachable {
            namespace: *namespace,
            last_error,
        })
    }

    /// Keeps `friend`'s namespace synced: syncs now and then every
    /// resync interval, retrying with backoff while the friend is offline.
    /// Resumes after a restart.
    ///
    /// # Errors
    /// [`Error::NotFriend`], store errors.
    pub async fn subscribe(&self, friend: &NamespaceId) -> Result<()> {
        if *friend != self.namespace()
            && !self.inner.shared.known.read().friends.contains_key(friend)
        {
            return Err(Error::NotFriend(*friend));
        }
        let shared = self.inner.shared.clone();
        let f = *friend;
        blocking(move || shared.set_subscribed(&f, true)).await?;
        self.start_subscription(*friend);
        Ok(())
    }

    /// Stops keeping `friend` synced.
    ///
    /// # Errors
    /// Store errors.
    pub async fn unsubscribe(&self, friend: &NamespaceId) -> Result<()> {
        if let Some(task) = self.inner.subscriptions.lock().remove(friend) {
            task.abort();
        }
        let shared = self.inner.shared.clone();
        let f = *friend;
        blocking(move || shared.set_subscribed(&f, false)).await
    }

    pub(super) fn start_subscription(&self, friend: NamespaceId) {
        let weak = Arc::downgrade(&self.inner);
        let interval = self.inner.settings.resync_interval;
        let task = tokio::spawn(async move {
            let mut wait = RETRY_MIN;
            let mut skipped = 0;
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let node = Node { inner };
                if wait == interval
                    && skipped < RESYNC_SKIPS_MAX
                    && node.live_in_step(&friend).await
                {
                    // Live push delivers everything; the catch-up would
                    // only list what already arrived.
                    skipped += 1;
                    if let Some(live) = &node.inner.live {
                        live.resync_skipped();
                    }
                    tracing::trace!(friend = %friend.fmt_short(), "in step live; periodic catch-up skipped");
                    drop(node);
                    tokio::time::sleep(wait).await;
                    continue;
                }
                skipped = 0;
                match node.sync_now(&friend).await {
                    Ok(report) => {
                        tracing::debug!(friend = %friend.fmt_short(), entries = report.entries, "subscription synced");
                        wait = interval;
                    }
                    Err(Error::NotFriend(_)) => return,
                    Err(e) => {
                        tracing::info!(friend = %friend.fmt_short(), %e, retry_in = ?wait, "subscription sync failed");
                        wait = if wait >= interval {
                            RETRY_MIN
                        } else {
                            (wait * 2).min(RETRY_MAX)
                        };
                    }
                }
                drop(node);
                tokio::time::sleep(wait).await;
            }
        });
        // Under the task list's lock, so that a subscription started while
        // the node stops is either drained by `shutdown` or never kept.
        let tasks = self.inner.tasks.lock();
        if tasks.is_none() {
            task.abort();
            return;
        }
        if let Some(old) = self.inner.subscriptions.lock().insert(friend, task) {
            old.abort();
        }
    }
}
