//! The catch-up connections to other devices, whichever side opened them:
//! reused across requests, tracked by the gate (so a device that stops
//! being admitted is cut off) and closed once idle (iroh keeps open
//! connections alive with pings, which an owner with hundreds of friends
//! would otherwise pay for all the time).
//!
//! A connection serves both ways: this node serves the streams a device
//! opens on a connection this node dialed, and opens its own streams on a
//! connection the device dialed. So a device that can dial but cannot be
//! dialed (behind a NAT, or just restarted on an address iroh does not yet
//! prefer) is still reached, over the connection it opened last.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use iroh::Endpoint;
use iroh::endpoint::{ConnectOptions, Connection, QuicTransportConfig};
use kith_types::DeviceId;

use super::gate::Gate;
use crate::error::{Error, Result};
use crate::proto::addr::Addr;
use crate::proto::wire::ALPN;

/// A connection this node opened, and when it last moved stream data.
struct Cached {
    conn: Connection,
    /// Stream frames sent and received when last looked at.
    stream_frames: u64,
    active_at: Instant,
}

impl Cached {
    fn new(conn: Connection) -> Self {
        Self {
            stream_frames: Self::stream_frames(&conn),
            conn,
            active_at: Instant::now(),
        }
    }

    fn stream_frames(conn: &Connection) -> u64 {
        let stats = conn.stats();
        stats.frame_tx.stream + stats.frame_rx.stream
    }
}

/// What serves the streams a device opens on a connection this node dialed
/// (the catch-up protocol handler, set by the node).
type Server = Box<dyn Fn(Connection) + Send + Sync>;

/// The cache of connections to other devices, on the catch-up ALPN.
pub(crate) struct Connections {
    endpoint: Endpoint,
    gate: Gate,
    connect_timeout: Duration,
    /// The transport of the connections this node dials.
    transport: QuicTransportConfig,
    /// Held only for lookups and inserts, never across an await: a
    /// fair async lock here made every request queue behind the others'
    /// wake-ups when hundreds were sent at once.
    open: parking_lot::Mutex<HashMap<DeviceId, Cached>>,
    /// Serves the streams other devices open on connections this node
    /// dialed (set once the protocol handler exists).
    server: std::sync::OnceLock<Server>,
}

impl Connections {
    /// Connections over `endpoint` with `transport`, each tracked by
    /// `gate`; connecting gives up after `connect_timeout`.
    pub(crate) fn new(
        endpoint: Endpoint,
        gate: Gate,
        connect_timeout: Duration,
        transport: QuicTransportConfig,
    ) -> Self {
        Self {
            endpoint,
            gate,
            connect_timeout,
            transport,
            open: parking_lot::Mutex::new(HashMap::new()),
            server: std::sync::OnceLock::new(),
        }
    }

    /// The gate the connections are tracked by.
    pub(crate) fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Sets what serves the streams devices open on connections this node
    /// dialed.
    pub(crate) fn serve_with(&self, server: impl Fn(Connection) + Send + Sync + 'static) {
        let _ = self.server.set(Box::new(server));
    }

    /// Keeps `conn`, which `device` just opened to this node, as the one
    /// to reach it by: it is the newest proof of where the device is.
    pub(crate) fn offer(&self, device: DeviceId, conn: &Connection) {
        self.open.lock().insert(device, Cached::new(conn.clone()));
    }

    /// A connection to `device`: the cached one if it is open (`true`), or
    /// a new one to `addrs` (`false`), which is cached.
    pub(crate) async fn get(&self, device: DeviceId, addrs: &[Addr]) -> Result<(Connection, bool)> {
        {
            let mut open = self.open.lock();
            if let Some(cached) = open.get_mut(&device)
                && cached.conn.close_reason().is_none()
            {
                cached.active_at = Instant::now();
                return Ok((cached.conn.clone(), true));
            }
        }
        // Connecting may take up to the connect timeout: not under the
        // lock, so that other devices are reached meanwhile.
        let addr = super::addrs::endpoint_addr(&device, addrs)?;
        let started = Instant::now();
        tracing::trace!(device = %device.fmt_short(), ?addrs, "connecting");
        let options = ConnectOptions::new().with_transport_config(self.transport.clone());
        let connecting = async {
            self.endpoint
                .connect_with_opts(addr, ALPN, options)
                .await
                .map_err(Error::network)?
                .await
                .map_err(Error::network)
        };
        let conn = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| Error::Timeout("connecting"))??;
        tracing::trace!(device = %device.fmt_short(), took = ?started.elapsed(), "connected");
        self.gate.track(device, &conn);
        if let Some(serve) = self.server.get() {
            serve(conn.clone());
        }
        self.open.lock().insert(device, Cached::new(conn.clone()));
        Ok((conn, false))
    }

    /// Drops the cached connection to `device` (it failed), closing it
    /// with `reason` if one is given.
    pub(crate) fn forget(&self, device: &DeviceId, reason: Option<&'static [u8]>) {
        let cached = self.open.lock().remove(device);
        if let Some(cached) = cached
            && let Some(reason) = reason
        {
            tracing::debug!(device = %device.fmt_short(), "closing a cached connection");
            cached.conn.close(0u32.into(), reason);
        }
    }

    /// Closes the connections that moved no stream data for `idle`.
    pub(crate) fn close_idle(&self, idle: Duration) {
        self.open.lock().retain(|device, cached| {
            if cached.conn.close_reason().is_some() {
                return false;
            }
            let frames = Cached::stream_frames(&cached.conn);
            if frames != cached.stream_frames {
                cached.stream_frames = frames;
                cached.active_at = Instant::now();
                return true;
            }
            if cached.active_at.elapsed() < idle {
                return true;
            }
            tracing::debug!(device = %device.fmt_short(), "closing an idle connection");
            cached.conn.close(0u32.into(), b"idle");
            false
        });
    }

    /// How many cached connections are open now.
    pub(crate) fn count(&self) -> usize {
        self.open
            .lock()
            .values()
            .filter(|c| c.conn.close_reason().is_none())
            .count()
    }

    /// Closes every cached connection (the node is stopping).
    pub(crate) fn close_all(&self) {
        let all: Vec<Cached> = self.open.lock().drain().map(|(_, c)| c).collect();
        for cached in all {
            cached.conn.close(0u32.into(), b"shutting down");
        }
    }
}
