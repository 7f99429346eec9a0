//! The node handle and what its parts share.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use iroh::Endpoint;
use iroh::address_lookup::memory::MemoryLookup;
use kith_types::NamespaceId;
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::live::Live;
use crate::net::connections::Connections;
use crate::net::fetch::Downloads;
use crate::state::Shared;

/// What the node's tasks read of its configuration.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    /// The relays configured (put in tickets until the home relay is
    /// known).
    pub(super) relays: Vec<String>,
    /// How long a cached connection may move no stream data.
    pub(super) connection_idle: Duration,
    /// Blobs up to this size are fetched as soon as their entry arrives.
    pub(super) eager_blob_size: u64,
    /// How often a subscription catches up.
    pub(super) resync_interval: Duration,
    /// How long connecting (and a poke's delivery) may take.
    pub(super) connect_timeout: Duration,
}

/// What a [`Node`] handle points at.
pub(super) struct Inner {
    pub(super) shared: Arc<Shared>,
    /// Blob fetches in progress, one per blob.
    pub(super) downloads: Downloads,
    pub(super) endpoint: Endpoint,
    pub(super) acceptor: crate::net::accept::Acceptor,
    pub(super) lookup: MemoryLookup,
    pub(super) settings: Settings,
    pub(super) subscriptions: Mutex<HashMap<NamespaceId, JoinHandle<()>>>,
    /// Connections this node opened to other devices.
    pub(super) connections: Arc<Connections>,
    pub(super) live: Option<Arc<Live>>,
    /// Background tasks other than subscriptions; `None` once the node is
    /// stopping.
    pub(super) tasks: Mutex<Option<Vec<JoinHandle<()>>>>,
}

impl Inner {
    /// Spawns a task that [`Node::shutdown`] stops and awaits.
    /// Once the node is stopping, nothing new is started: a task spawned
    /// after [`Node::shutdown`] took the list would be neither aborted nor
    /// awaited, and could hold the store or a connection attempt after it.
    pub(super) fn spawn_tracked(
        &self,
        task: impl Future<Output = ()> + Send + 'static,
    ) -> Option<tokio::task::AbortHandle> {
        let mut tasks = self.tasks.lock();
        let Some(tasks) = tasks.as_mut() else {
            tracing::debug!("the node is stopping; not starting a task");
            return None;
        };
        tasks.retain(|t| !t.is_finished());
        let handle = tokio::spawn(task);
        let abort = handle.abort_handle();
        tasks.push(handle);
        Some(abort)
    }
}

/// A kith node: this device's store, endpoint and sync tasks.
///
/// `Node` is a cheap handle (`Clone`); the node stops when [`Node::shutdown`]
/// is awaited. Its methods are async; the blocking store is reached through
/// [`Node::store`] (call it from blocking code or `spawn_blocking`).
#[derive(Clone)]
pub struct Node {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("namespace", &self.namespace())
            .field("device", &self.device())
            .finish_non_exhaustive()
    }
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Protocol(format!("blocking task failed: {e}")))?
}
