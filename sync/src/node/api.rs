//! The node's public API: identity, friends, grants, devices, deletions,
//! live push, and stopping.

use std::net::SocketAddr;
use std::time::Duration;

use crate::proto::addr::Addr;
use kith_caps::{CapId, ReadCap, Revocation, Tombstone, TombstoneId};
use kith_store::{RecordKind, RecordOp, Store};
use kith_types::{DeviceId, NamespaceId, Path, Timestamp};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::live::LiveMetrics;
use crate::state::DeletionStatus;
use crate::ticket::{DeviceInvite, Ticket};

use super::handle::{Node, blocking};

/// How long [`Node::shutdown`] gives aborted tasks (and then live push)
/// to end.
pub const SHUTDOWN_TASKS: Duration = Duration::from_secs(2);
/// How long [`Node::shutdown`] gives gossip and the endpoint to close
/// gracefully (iroh waits up to about 3 s for peers to acknowledge).
pub const SHUTDOWN_NETWORK: Duration = Duration::from_secs(6);
/// The most [`Node::shutdown`] takes before its final flush to disk: the
/// tasks, then live push, then the endpoint.
pub const SHUTDOWN_BOUND: Duration = SHUTDOWN_TASKS
    .saturating_mul(2)
    .saturating_add(SHUTDOWN_NETWORK);

impl Node {
    /// This node's namespace.
    pub fn namespace(&self) -> NamespaceId {
        self.inner.shared.namespace()
    }

    /// This device.
    pub fn device(&self) -> DeviceId {
        self.inner.shared.identity.device()
    }

    /// The store: this namespace's data and friends' replicated data.
    /// Blocking; see [`kith_store::Store`]. Write only into this node's own
    /// namespace: friends' namespaces are written by sync.
    pub fn store(&self) -> &Store {
        &self.inner.shared.store
    }

    /// Watches changes under `prefix` of `namespace`, this node's own or a
    /// friend's replicated one (see [`kith_store::Store::watch`]).
    pub fn watch(&self, namespace: &NamespaceId, prefix: &Path) -> kith_store::Watcher {
        self.inner.shared.store.watch(namespace, prefix)
    }

    /// The endpoint's current direct addresses.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.inner.endpoint.addr().ip_addrs().copied().collect()
    }

    /// A ticket a friend adds to reach this node.
    pub fn ticket(&self) -> Ticket {
        Ticket {
            namespace: self.namespace(),
            cert: self.inner.shared.identity.cert.clone(),
            addrs: self.addrs(),
            relays: {
                // The home relay once connected, else the configured ones.
                let home: Vec<String> = self
                    .inner
                    .endpoint
                    .addr()
                    .relay_urls()
                    .map(ToString::to_string)
                    .collect();
                if home.is_empty() {
                    self.inner.settings.relays.clone()
                } else {
                    home
                }
            },
        }
    }

    /// Adds (or updates) a friend from their ticket. Their devices may
    /// connect from now on. A ticket of another device of this node's own
    /// namespace records that device instead.
    ///
    /// # Errors
    /// [`Error::NotAllowed`] for this device's own ticket; store errors.
    pub async fn add_friend(&self, ticket: &Ticket) -> Result<()> {
        let shared = self.inner.shared.clone();
        let ticket2 = ticket.clone();
        blocking(move || shared.add_friend(&ticket2)).await?;
        let mut addrs: Vec<Addr> = ticket.addrs.iter().copied().map(Addr::Ip).collect();
        addrs.extend(ticket.relays.iter().filter_map(|r| Addr::relay(r).ok()));
        if !addrs.is_empty() {
            self.inner.tell_lookup(&ticket.cert.device(), &addrs);
        }
        Ok(())
    }

    /// This node's friends.
    pub fn friends(&self) -> Vec<NamespaceId> {
        let mut f: Vec<NamespaceId> = self
            .inner
            .shared
            .known
            .read()
            .friends
            .keys()
            .copied()
            .collect();
        f.sort();
        f
    }

    /// Removes a friend: their devices are refused from now on and their
    /// subscription stops. Their replicated data stays until deleted.
    ///
    /// # Errors
    /// Store errors.
    pub async fn remove_friend(&self, friend: &NamespaceId) -> Result<bool> {
        self.unsubscribe(friend).await?;
        let shared = self.inner.shared.clone();
        let friend = *friend;
        let removed = blocking(move || shared.remove_friend(&friend)).await?;
        Ok(removed)
    }

    pub(super) fn namespace_key(&self) -> Result<&kith_caps::NamespaceKey> {
        self.inner
            .shared
            .identity
            .namespace_key
            .as_ref()
            .ok_or(Error::NotAllowed(
                "only the device holding the namespace key can sign grants and deletions",
            ))
    }

    /// Lets `friend` read everything under `prefix` until `expires` (or
    /// forever). Takes effect at once on this device.
    ///
    /// # Errors
    /// [`Error::NotFriend`], [`Error::NotAllowed`] without the namespace key,
    /// store errors.
    pub async fn grant(
        &self,
        friend: &NamespaceId,
        prefix: &Path,
        expires: Option<Timestamp>,
    ) -> Result<ReadCap> {
        if !self.inner.shared.known.read().friends.contains_key(friend) {
            return Err(Error::NotFriend(*friend));
        }
        let key = self.namespace_key()?;
        let now = self.inner.shared.store.clock().now();
        let cap = ReadCap::issue(
            key,
            CapId::random(&mut rand::rng()),
            *friend,
            prefix.clone(),
            now,
            expires,
        )?;
        let shared = self.inner.shared.clone();
        let cap2 = cap.clone();
        blocking(move || shared.store_own_cap(&cap2)).await?;
        Ok(cap)
    }

    /// Revokes a cap: from now on this device refuses the grantee anything
    /// under the cap's prefix (unless another valid cap covers it).
    ///
    /// # Errors
    /// [`Error::NotAllowed`] without the namespace key, store errors.
    pub async fn revoke(&self, cap: CapId) -> Result<Revocation> {
        let key = self.namespace_key()?;
        let now = self.inner.shared.store.clock().now();
        let rev = Revocation::issue(key, cap, now);
        let shared = self.inner.shared.clone();
        let rev2 = rev.clone();
        blocking(move || shared.store_own_revocation(&rev2)).await?;
        // Publishing moves to the new epoch's topics before this returns.
        if let Some(live) = &self.inner.live {
            live.reconcile().await;
        }
        Ok(rev)
    }

    /// Revokes a cap and asks the friend it was granted to to delete what
    /// they hold under its prefix ("revoke and delete"). This namespace
    /// keeps its own data; only the grantee's devices that were served data
    /// under the prefix are sent the deletion request (including when
    /// offline: they get it when they come back), and each confirms with a
    /// receipt, listed by [`Node::receipts`].
    ///
    /// # Errors
    /// [`Error::NotAllowed`] without the namespace key or for a cap this
    /// namespace did not issue, store errors.
    pub async fn revoke_and_delete(&self, cap: CapId) -> Result<(Revocation, TombstoneId)> {
        let issued = self
            .inner
            .shared
            .known
            .read()
            .grants
            .caps()
            .iter()
            .find(|c| c.id() == cap)
            .cloned()
            .ok_or(Error::NotAllowed("no cap with that id was issued here"))?;
        let key = self.namespace_key()?;
        let revocation = self.revoke(cap).await?;
        let now = self.inner.shared.store.clock().now();
        let tombstone = Tombstone::issue(
            key,
            TombstoneId::random(&mut rand::rng()),
            issued.prefix().clone(),
            now,
        );
        let id = tombstone.id();
        let shared = self.inner.shared.clone();
        let friend = issued.grantee();
        blocking(move || shared.store_addressed_tombstone(&tombstone, &friend)).await?;
        Ok((revocation, id))
    }

    /// Every cap this namespace issued, with whether it is revoked.
    pub fn grants(&self) -> Vec<(ReadCap, bool)> {
        let grants = self.inner.shared.known.read().grants.clone();
        grants
            .caps()
            .iter()
            .map(|c| (c.clone(), grants.is_revoked(&c.id())))
            .collect()
    }

    /// Certifies another device (prepared with [`prepare_device`]) to act
    /// for this namespace with `rights`, and returns the invite to start it
    /// with. The device may connect at once.
    ///
    /// # Errors
    /// [`Error::NotAllowed`] without the namespace key, store errors.
    pub async fn invite_device(
        &self,
        device: DeviceId,
        rights: kith_caps::Rights,
    ) -> Result<DeviceInvite> {
        let key = self.namespace_key()?;
        let now = self.inner.shared.store.clock().now();
        let cert = kith_caps::DeviceCert::issue(key, device, rights, now, None)?;
        let shared = self.inner.shared.clone();
        let cert2 = cert.clone();
        blocking(move || {
            shared.store_own_cert(&cert2)?;
            // The new device is a member of every scope of this namespace.
            shared.scopes_follow_grants()
        })
        .await?;
        Ok(DeviceInvite {
            cert,
            from: self.ticket(),
        })
    }

    /// Revokes one of this namespace's devices (a lost phone): from now on
    /// no device of this namespace syncs from it or serves it, its live
    /// pushes are refused, every scope it was in moves to a new key it is
    /// not given, and friends learn of the revocation at their next
    /// catch-up (they are poked for the new keys), after which they too
    /// neither sync from it nor accept what it sends.
    ///
    /// # Errors
    /// [`Error::NotAllowed`] without the namespace key or for this device
    /// itself; store errors. A device not known yet is revoked all the same
    /// (its certificate, seen later, is refused).
    pub async fn revoke_device(&self, device: DeviceId) -> Result<kith_caps::DeviceRevocation> {
        let key = self.namespace_key()?;
        if device == self.device() {
            return Err(Error::NotAllowed(
                "revoking the device that holds the namespace key",
            ));
        }
        let now = self.inner.shared.store.clock().now();
        let revocation = kith_caps::DeviceRevocation::issue(key, device, now);
        let shared = self.inner.shared.clone();
        let r = revocation.clone();
        blocking(move || {
            let ns = shared.namespace();
            crate::proto::fetch::Replica::store_owner_devices(
                &crate::state::FriendReplica(&shared),
                &ns,
                &[],
                &[r],
            )?;
            // Its rosters lose it: new epochs, keys it is not given, owed
            // (and poked) to every remaining member.
            shared.scopes_follow_grants()
        })
        .await?;
        // Cached connections to it are closed.
        self.inner.connections.forget(&device, Some(b"revoked"));
        Ok(revocation)
    }

    /// The verified caps `friend` granted this node, and the revocations of
    /// caps it held, as last received from them.
    ///
    /// # Errors
    /// Store errors.
    pub async fn caps_from(&self, friend: &NamespaceId) -> Result<(Vec<ReadCap>, Vec<Revocation>)> {
        let shared = self.inner.shared.clone();
        let f = *friend;
        blocking(move || shared.caps_from(&f)).await
    }

    /// For a deletion this node requested: every friend device that was
    /// ever served data under its prefix, and whether it has confirmed the
    /// deletion with a signed receipt (friends receive owed deletions, even
    /// after a revocation, whenever they sync).
    ///
    /// # Errors
    /// Store errors.
    pub async fn receipts(&self, tombstone: TombstoneId) -> Result<Vec<DeletionStatus>> {
        let shared = self.inner.shared.clone();
        blocking(move || shared.deletion_status(&tombstone)).await
    }

    /// Every deletion this namespace requested, oldest first.
    ///
    /// # Errors
    /// Store errors.
    pub async fn deletions(&self) -> Result<Vec<Tombstone>> {
        let shared = self.inner.shared.clone();
        blocking(move || {
            let ns = shared.namespace();
            let mut out = Vec::new();
            for (_, bytes) in shared.store.records(RecordKind::Tombstone, &ns)? {
                match Tombstone::decode(&bytes) {
                    Ok(t) => out.push(t),
                    Err(e) => tracing::error!(%e, "ignoring a damaged stored tombstone"),
                }
            }
            out.sort_by_key(|t| t.up_to());
            Ok(out)
        })
        .await
    }

    /// Events of this node as they happen (deletion receipts arriving).
    /// A receiver that falls behind by more than 256 events gets
    /// `RecvError::Lagged` and should re-read what it shows.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<crate::state::NodeEvent> {
        self.inner.shared.events.subscribe()
    }

    /// Deletes everything under `prefix` of this namespace written until
    /// now, and keeps the signed tombstone so that friends receive it.
    /// The root is refused: deleting the whole namespace is
    /// [`Node::delete_everything`].
    ///
    /// # Errors
    /// [`Error::WholeNamespace`] for `/`, [`Error::NotAllowed`] without the
    /// namespace key, store errors.
    pub async fn delete(&self, prefix: &Path) -> Result<TombstoneId> {
        if prefix.is_root() {
            return Err(Error::WholeNamespace);
        }
        self.issue_deletion(prefix).await
    }

    /// Deletes the whole namespace: every document and blob, here and on
    /// every friend's device that was served any of it, which confirm with
    /// receipts. What [`Node::delete`] refuses for `/`, said explicitly.
    ///
    /// # Errors
    /// [`Error::NotAllowed`] without the namespace key, store errors.
    pub async fn delete_everything(&self) -> Result<TombstoneId> {
        self.issue_deletion(&Path::root()).await
    }

    pub(super) async fn issue_deletion(&self, prefix: &Path) -> Result<TombstoneId> {
        let key = self.namespace_key()?;
        let now = self.inner.shared.store.clock().now();
        let tombstone = Tombstone::issue(
            key,
            TombstoneId::random(&mut rand::rng()),
            prefix.clone(),
            now,
        );
        let shared = self.inner.shared.clone();
        let id = tombstone.id();
        blocking(move || {
            let ns = shared.namespace();
            let record = RecordOp::put(
                RecordKind::Tombstone,
                ns,
                tombstone.id().as_bytes(),
                &tombstone.encode(),
            );
            shared
                .store
                .apply_tombstone(&ns, tombstone.prefix(), tombstone.up_to(), &[record])?;
            Ok(())
        })
        .await?;
        // Friends' devices that were served the data are poked to sync.
        self.inner.shared.owed_changed.notify_one();
        Ok(id)
    }

    /// Counters of live push: how changes arrived (live or by recovery),
    /// what was published and dropped.
    pub fn live_metrics(&self) -> LiveMetrics {
        self.inner
            .live
            .as_ref()
            .map(|l| l.metrics())
            .unwrap_or_default()
    }

    /// Bytes this node's endpoint has sent since it started, over every
    /// protocol (catch-up, gossip) and transport.
    pub fn bytes_sent(&self) -> u64 {
        let m = &self.inner.endpoint.metrics().socket;
        m.send_ipv4.get() + m.send_ipv6.get() + m.send_relay.get()
    }

    /// Whether live push keeps this node up to date with everything
    /// `friend` granted it (see [`Live::in_step`]).
    pub(super) async fn live_in_step(&self, friend: &NamespaceId) -> bool {
        let Some(live) = self.inner.live.as_ref() else {
            return false;
        };
        if *friend == self.namespace() {
            // Own devices replicate paths no scope covers.
            return false;
        }
        let Ok((caps, revocations)) = self.caps_from(friend).await else {
            return false;
        };
        let now = Timestamp::wall_clock();
        let prefixes: Vec<Path> = caps
            .iter()
            .filter(|c| c.check_time(now).is_ok() && !revocations.iter().any(|r| r.revokes(c)))
            .map(|c| c.prefix().clone())
            .collect();
        live.in_step(friend, &prefixes)
    }

    /// Connections this node opened to other devices that are open now
    /// (each closes after [`Builder::connection_idle`] without use).
    pub async fn connections_open(&self) -> usize {
        self.inner.connections.count()
    }

    /// The live-push topics this node has joined: one per scope it belongs
    /// to (its own namespace's granted prefixes, and friends' prefixes it
    /// may read), at the scope's current epoch.
    pub fn live_topics(&self) -> Vec<crate::live::LiveTopic> {
        self.inner
            .live
            .as_ref()
            .map(|l| l.topics())
            .unwrap_or_default()
    }

    /// Stops the node: subscriptions end, connections close, the endpoint
    /// shuts down, and everything written is flushed to disk.
    ///
    /// It returns within [`SHUTDOWN_BOUND`] plus the time the final flush
    /// to disk takes, whatever peers, transfers or gossip do: every task is
    /// aborted and given [`SHUTDOWN_TASKS`] to end, live push as long to
    /// leave its topics, and the endpoint [`SHUTDOWN_NETWORK`] to close
    /// gracefully (what does not is logged and dropped).
    ///
    /// # Errors
    /// Store errors while flushing.
    pub async fn shutdown(self) -> Result<()> {
        // Every task is stopped and awaited, so that none still holds the
        // store when this returns (the data folder can be opened again).
        // From here on nothing new starts (see `Inner::spawn_tracked`).
        let mut tasks: Vec<JoinHandle<()>> = self.inner.tasks.lock().take().unwrap_or_default();
        tasks.extend(self.inner.subscriptions.lock().drain().map(|(_, t)| t));
        for task in &tasks {
            task.abort();
        }
        let ended = tokio::time::timeout(SHUTDOWN_TASKS, async {
            for task in tasks {
                let _ = task.await;
            }
        })
        .await;
        if ended.is_err() {
            tracing::warn!("a node task did not end within {SHUTDOWN_TASKS:?} of its abort");
        }
        if let Some(live) = &self.inner.live
            && tokio::time::timeout(SHUTDOWN_TASKS, live.shutdown())
                .await
                .is_err()
        {
            tracing::warn!("live push did not stop within {SHUTDOWN_TASKS:?}; dropping it");
        }
        self.inner.connections.close_all();
        match tokio::time::timeout(SHUTDOWN_NETWORK, self.inner.acceptor.shutdown()).await {
            Ok(()) => {}
            Err(_) => tracing::warn!(
                "the endpoint did not close within {SHUTDOWN_NETWORK:?}; dropping it"
            ),
        }
        let store = self.inner.shared.store.clone();
        // Synced, then flushed to tables: the next start replays nothing.
        blocking(move || {
            store.sync()?;
            Ok(store.flush()?)
        })
        .await
    }
}
