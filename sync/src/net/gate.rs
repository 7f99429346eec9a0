//! The connection gate: refuses, right after the TLS handshake, every
//! endpoint that is not one of this namespace's devices or a friend's, and
//! closes the open connections of a device that stops being one (a revoked
//! device, a removed friend). It sees every authenticated connection, on
//! every ALPN, so it is also where the node learns where devices are.

use std::collections::HashSet;
use std::sync::Arc;

use iroh::endpoint::{
    AfterHandshakeOutcome, Connection, EndpointHooks, VarInt, WeakConnectionHandle,
};
use kith_types::DeviceId;
use parking_lot::{Mutex, RwLock};

use crate::proto::addr::Addr;
use crate::state::Admission;

/// Where an admitted device was just seen, for the node to remember.
pub(crate) type Sighting = (DeviceId, Vec<Addr>);

/// Sightings held for the node before new ones are dropped (they are
/// hints: the next connection brings them again).
const SIGHTINGS: usize = 1024;

/// QUIC close code sent to refused endpoints.
pub(crate) const REFUSED_CODE: u32 = 403;

/// The set of devices allowed to connect; shared with the node, which keeps
/// it current as friends and devices come and go.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gate {
    allowed: Arc<RwLock<HashSet<DeviceId>>>,
    /// Open connections, accepted or opened, by remote device: closed when
    /// their device leaves the allowed set. Weak handles: the gate is held
    /// by the endpoint, so a strong one would keep both alive.
    open: Arc<Mutex<Vec<(DeviceId, WeakConnectionHandle)>>>,
    /// Where admitted devices' connections come from.
    sightings: Option<tokio::sync::mpsc::Sender<Sighting>>,
}

impl Gate {
    /// A gate that admits nobody yet, and the sightings of the devices it
    /// admits.
    pub(crate) fn new() -> (Self, tokio::sync::mpsc::Receiver<Sighting>) {
        let (tx, rx) = tokio::sync::mpsc::channel(SIGHTINGS);
        (
            Self {
                sightings: Some(tx),
                ..Self::default()
            },
            rx,
        )
    }

    /// Tells the node where `device`'s `conn` leads.
    pub(crate) fn sighted(&self, device: DeviceId, conn: &Connection) {
        let addrs = super::addrs::paths_of(conn);
        if let Some(tx) = &self.sightings
            && !addrs.is_empty()
            && tx.try_send((device, addrs)).is_err()
        {
            tracing::debug!(device = %device.fmt_short(), "too many sightings queued; dropping one");
        }
    }

    /// Replaces the allowed set, and closes every open connection of a
    /// device no longer in it.
    pub(crate) fn set(&self, devices: impl IntoIterator<Item = DeviceId>) {
        let allowed: HashSet<DeviceId> = devices.into_iter().collect();
        let mut open = self.open.lock();
        open.retain(|(device, weak)| {
            let Some(conn) = weak.upgrade().filter(|c| c.close_reason().is_none()) else {
                return false;
            };
            if allowed.contains(device) {
                return true;
            }
            tracing::info!(remote = %device.fmt_short(), "closing the connection of a device no longer admitted");
            conn.close(VarInt::from_u32(REFUSED_CODE), b"no longer admitted");
            false
        });
        *self.allowed.write() = allowed;
    }

    /// Keeps `conn` (to or from `device`) to close it if `device` stops
    /// being admitted.
    pub(crate) fn track(&self, device: DeviceId, conn: &Connection) {
        let mut open = self.open.lock();
        open.retain(|(_, weak)| weak.upgrade().is_some_and(|c| c.close_reason().is_none()));
        open.push((device, conn.weak_handle()));
    }

    /// The open connections of `device`, on any ALPN.
    pub(crate) fn links(&self, device: &DeviceId) -> Vec<Connection> {
        self.open
            .lock()
            .iter()
            .filter(|(d, _)| d == device)
            .filter_map(|(_, weak)| weak.upgrade())
            .filter(|c| c.close_reason().is_none())
            .collect()
    }

    pub(crate) fn allows(&self, device: &DeviceId) -> bool {
        self.allowed.read().contains(device)
    }
}

impl Admission for Gate {
    fn admit(&self, devices: HashSet<DeviceId>) {
        self.set(devices);
    }
}

impl EndpointHooks for Gate {
    async fn after_handshake<'a>(&'a self, conn: &'a Connection) -> AfterHandshakeOutcome {
        let remote = DeviceId::from_bytes(*conn.remote_id().as_bytes());
        if self.allows(&remote) {
            self.track(remote, conn);
            self.sighted(remote, conn);
            AfterHandshakeOutcome::Accept
        } else {
            tracing::info!(remote = %remote.fmt_short(), "refused a connection from an unknown device");
            AfterHandshakeOutcome::Reject {
                error_code: VarInt::from_u32(REFUSED_CODE),
                reason: b"not a device of a friend".to_vec(),
            }
        }
    }
}
