//! The handle every task of the node shares: the store, the identity and
//! what the node knows.

use std::collections::HashSet;
use std::sync::Arc;

use kith_store::Store;
use kith_types::{DeviceId, NamespaceId, Path};
use parking_lot::RwLock;

use crate::cache::FriendCache;
use crate::error::Result;
use crate::identity::Identity;

use super::book::{ScopeBook, load_book, roster_members};
use super::early::EarlyPushes;
use super::known::Known;

/// Everything the node's tasks share: what the node knows, not the drivers'
/// parts (the connection gate, budgets and channels belong to the drivers).
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) identity: Identity,
    pub(crate) known: RwLock<Known>,
    /// Friends' data held here, purged past its budget.
    pub(crate) cache: FriendCache,
    /// Woken when friends' data held here may have grown (a catch-up, a
    /// fetch) or the cache's settings changed.
    pub(crate) cache_changed: tokio::sync::Notify,
    /// Set when live push brought friends' data; the cache's next tick
    /// looks (a push alone does not wake it: bursts stay cheap).
    pub(crate) cache_grew: std::sync::atomic::AtomicBool,
    /// Node events for [`crate::Node::events`].
    pub(crate) events: tokio::sync::broadcast::Sender<NodeEvent>,
    /// The live-push scopes this node holds.
    pub(crate) scopes: RwLock<ScopeBook>,
    /// Bumped whenever the held scopes change.
    pub(crate) scope_version: tokio::sync::watch::Sender<u64>,
    /// Woken when something new may be owed to other devices (a re-key, a
    /// deletion).
    pub(crate) owed_changed: tokio::sync::Notify,
    /// What was seen of other devices since start (for status).
    pub(crate) contacts:
        parking_lot::Mutex<std::collections::HashMap<DeviceId, super::known::Contact>>,
    /// Told the device whenever what is known of where it is changes.
    pub(crate) moved: tokio::sync::broadcast::Sender<DeviceId>,
    /// This device's own current addresses (the endpoint's), handed over
    /// to the devices it serves.
    pub(crate) here: RwLock<Vec<crate::proto::addr::Addr>>,
    /// Live messages that came with a `Rekey`, by topic: received when
    /// the key is stored, or by the topic's listener if it runs.
    pub(crate) early: EarlyPushes,
    /// Told the admitted devices whenever they change.
    admission: Arc<dyn Admission>,
}

/// What the node's drivers are told, synchronously, when the set of devices
/// that may connect changes (the connection gate implements it).
pub(crate) trait Admission: std::fmt::Debug + Send + Sync {
    /// The devices admitted from now on: this namespace's, its friends', and
    /// the members of scopes it holds.
    fn admit(&self, devices: HashSet<DeviceId>);
}

/// Admission for a node without a network (simulations).
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct NoNetwork;

#[cfg(test)]
impl Admission for NoNetwork {
    fn admit(&self, _devices: HashSet<DeviceId>) {}
}

/// Work a driver asks the node to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Work {
    /// Catch up with this namespace now (`recovery`: because something was
    /// missed live).
    Sync {
        namespace: NamespaceId,
        recovery: bool,
    },
    /// Fetch this small blob now.
    FetchBlob { namespace: NamespaceId, path: Path },
    /// Tell these devices to catch up with this one (live push could not
    /// reach them).
    Poke { devices: Vec<DeviceId> },
    /// Send these members their scopes again with the epoch's first live
    /// messages ([`crate::proto::wire::Message::Rekey`]), falling back to
    /// a poke: a message published while the topic had no neighbors.
    Rekey { devices: Vec<DeviceId> },
    /// `device` (of `namespace`) has just started or moved: forget the
    /// links to it, re-join the topics joined through it, catch up.
    Back {
        device: DeviceId,
        namespace: NamespaceId,
    },
}

/// Node events held for a slow listener before it lags.
const EVENTS: usize = 256;

/// Something that happened on a node, for apps that show it live
/// ([`crate::Node::events`]). Changes to entries are watched on the store
/// ([`crate::Node::watch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A friend's device confirmed a deletion this namespace requested.
    Receipt {
        /// The deletion confirmed.
        tombstone: kith_caps::TombstoneId,
        /// The friend's namespace.
        namespace: NamespaceId,
        /// The friend's device that deleted.
        device: DeviceId,
    },
}

impl Shared {
    /// Opens what the node knows from `store`, and tells `admission` who
    /// may connect. Blobs up to `eager_blob_size` announced live are
    /// fetched at once.
    pub(crate) fn open(
        store: Store,
        identity: Identity,
        cache: FriendCache,
        admission: Arc<dyn Admission>,
        eager_blob_size: u64,
    ) -> Result<Self> {
        let known = Self::load_known(&store, &identity)?;
        let scopes = load_book(&store)?;
        let shared = Self {
            store,
            identity,
            known: RwLock::new(known),
            cache,
            cache_changed: tokio::sync::Notify::new(),
            cache_grew: std::sync::atomic::AtomicBool::new(false),
            events: tokio::sync::broadcast::channel(EVENTS).0,
            scopes: RwLock::new(scopes),
            scope_version: tokio::sync::watch::channel(0).0,
            owed_changed: tokio::sync::Notify::new(),
            here: RwLock::new(Vec::new()),
            contacts: parking_lot::Mutex::new(std::collections::HashMap::new()),
            moved: tokio::sync::broadcast::channel(EVENTS).0,
            early: EarlyPushes::new(eager_blob_size),
            admission,
        };
        shared.refresh_gate();
        Ok(shared)
    }

    pub(crate) fn namespace(&self) -> NamespaceId {
        self.identity.namespace
    }

    /// Tells the drivers which devices are admitted, from what is known.
    pub(crate) fn refresh_gate(&self) {
        let known = self.known.read();
        let me = self.namespace();
        let mut devices: HashSet<DeviceId> = HashSet::new();
        for ns in std::iter::once(&me).chain(known.friends.keys()) {
            devices.extend(known.devices_of(ns, &me).into_iter().map(|(d, _)| d));
        }
        // Members of a shared scope form one gossip mesh, friends or not.
        devices.extend(roster_members(&self.scopes.read()));
        self.admission.admit(devices);
    }
}
