//! Change events for local consumers.
//!
//! Each watcher has a bounded queue of [`WATCH_CAPACITY`] events. Writers
//! never wait for a consumer: when a watcher's queue is full the event is
//! dropped for that watcher and it is marked *lagged*; its next receive
//! returns [`WatchEvent::Lagged`], telling it to re-list what it watches.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kith_types::{NamespaceId, Path};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::{Change, ChangeKind};

/// Events a watcher can hold before it lags.
pub const WATCH_CAPACITY: usize = 1024;

/// What a [`Watcher`] receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A change under the watched prefix.
    Change(Change),
    /// Events were dropped because this watcher fell behind: re-list the
    /// prefix (or call [`Store::changes_since`](crate::Store::changes_since)
    /// from the last sequence number seen).
    Lagged,
}

/// A subscription to changes under a prefix of a namespace; see
/// [`Store::watch`](crate::Store::watch). Dropping it unsubscribes.
#[derive(Debug)]
pub struct Watcher {
    rx: mpsc::Receiver<Change>,
    lagged: Arc<AtomicBool>,
}

impl Watcher {
    fn take_lag(&mut self) -> Option<WatchEvent> {
        if self.lagged.swap(false, Ordering::AcqRel) {
            // Anything still queued is older than the gap: drop it, the
            // consumer re-lists anyway.
            while self.rx.try_recv().is_ok() {}
            return Some(WatchEvent::Lagged);
        }
        None
    }

    /// Waits for the next event. `None` once the store is gone.
    pub async fn recv(&mut self) -> Option<WatchEvent> {
        if let Some(lag) = self.take_lag() {
            return Some(lag);
        }
        let change = self.rx.recv().await?;
        Some(self.take_lag().unwrap_or(WatchEvent::Change(change)))
    }

    /// Blocks the thread until the next event. Do not call from async code.
    /// `None` once the store is gone.
    pub fn blocking_recv(&mut self) -> Option<WatchEvent> {
        if let Some(lag) = self.take_lag() {
            return Some(lag);
        }
        let change = self.rx.blocking_recv()?;
        Some(self.take_lag().unwrap_or(WatchEvent::Change(change)))
    }

    /// The next event if one is ready.
    pub fn try_recv(&mut self) -> Option<WatchEvent> {
        if let Some(lag) = self.take_lag() {
            return Some(lag);
        }
        self.rx.try_recv().ok().map(WatchEvent::Change)
    }
}

struct Slot {
    namespace: NamespaceId,
    prefix: Path,
    tx: mpsc::Sender<Change>,
    lagged: Arc<AtomicBool>,
}

impl Slot {
    fn wants(&self, change: &Change) -> bool {
        if change.namespace != self.namespace {
            return false;
        }
        match &change.kind {
            ChangeKind::Put { path, .. } => self.prefix.is_prefix_of(path),
            ChangeKind::Tombstone { prefix, .. } => self.prefix.overlaps(prefix),
        }
    }
}

/// The store's set of watchers.
#[derive(Default)]
pub(crate) struct Watchers {
    slots: Mutex<Vec<Slot>>,
}

impl Watchers {
    pub(crate) fn subscribe(&self, namespace: NamespaceId, prefix: Path) -> Watcher {
        let (tx, rx) = mpsc::channel(WATCH_CAPACITY);
        let lagged = Arc::new(AtomicBool::new(false));
        self.slots.lock().push(Slot {
            namespace,
            prefix,
            tx,
            lagged: lagged.clone(),
        });
        Watcher { rx, lagged }
    }

    /// Delivers changes without ever blocking.
    pub(crate) fn notify(&self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let mut slots = self.slots.lock();
        slots.retain(|slot| !slot.tx.is_closed());
        for slot in slots.iter() {
            for change in changes.iter().filter(|c| slot.wants(c)) {
                if slot.tx.try_send(change.clone()).is_err() {
                    slot.lagged.store(true, Ordering::Release);
                    break;
                }
            }
        }
    }
}
