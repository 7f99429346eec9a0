//! What the node can say about its network: per known device, whether it
//! is reachable now, over which path, and what was last exchanged with it.

use std::time::Duration;

use kith_types::{DeviceId, NamespaceId, Timestamp};

use crate::error::Result;
use crate::net::addrs::paths_of;
use crate::proto::addr::Addr;

use super::handle::{Node, blocking};

/// How a device is reached right now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Route {
    /// A direct UDP path (after any hole punching) to this address.
    Direct(std::net::SocketAddr),
    /// Through this relay.
    Relay(String),
}

/// What this node knows of one other device.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerStatus {
    /// The namespace the device acts for (this node's own, or a friend's).
    pub namespace: NamespaceId,
    /// The device.
    pub device: DeviceId,
    /// Whether it is one of this namespace's own devices.
    pub own: bool,
    /// The path of an open connection to it now, if any (none while
    /// reaching it failed since that connection was made).
    pub route: Option<Route>,
    /// Round-trip time on that path.
    pub rtt: Option<Duration>,
    /// The addresses it is dialed at, most recent first.
    pub addresses: Vec<Addr>,
    /// When a connection with it was last authenticated (since start).
    pub last_seen: Option<Timestamp>,
    /// When a catch-up it served last completed (since start).
    pub last_sync: Option<Timestamp>,
    /// When a live message it signed last passed every check (since start).
    pub last_live: Option<Timestamp>,
    /// The last failure to reach it (since start), with its time.
    pub last_error: Option<(Timestamp, String)>,
    /// It is owed the current key of a scope it belongs to.
    pub owed_keys: bool,
    /// It is owed a deletion it has not confirmed.
    pub owed_deletions: bool,
}

impl PeerStatus {
    /// Whether it can be reached now: nothing failed since a connection
    /// with it was last authenticated.
    pub fn reachable(&self) -> bool {
        match (&self.last_seen, &self.last_error) {
            (Some(seen), Some((failed, _))) => seen > failed,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

impl Node {
    /// Every other device this node knows (own ones first, then friends'),
    /// with how it is reached and what was last exchanged with it.
    ///
    /// # Errors
    /// Store errors (reading what is owed).
    pub async fn peers(&self) -> Result<Vec<PeerStatus>> {
        let shared = self.inner.shared.clone();
        let (owed_keys, owed_deletions) = blocking(move || {
            Ok((
                shared.devices_owed_scopes()?,
                shared.devices_owed_tombstones()?,
            ))
        })
        .await?;
        let me = self.namespace();
        let this = self.device();
        let known: Vec<(NamespaceId, DeviceId, Vec<Addr>)> = {
            let known = self.inner.shared.known.read();
            let mut friends: Vec<NamespaceId> = known.friends.keys().copied().collect();
            friends.sort();
            std::iter::once(me)
                .chain(friends)
                .flat_map(|ns| {
                    known
                        .devices_of(&ns, &me)
                        .into_iter()
                        .map(move |(d, a)| (ns, d, a))
                })
                .filter(|(_, d, _)| *d != this)
                .collect()
        };
        let gate = self.inner.connections.gate();
        Ok(known
            .into_iter()
            .map(|(namespace, device, addresses)| {
                let links = gate.links(&device);
                // The selected path of the newest connection.
                let selected = links.iter().rev().find_map(|c| {
                    let rtt = c
                        .paths()
                        .iter()
                        .find(|p| p.is_selected())
                        .map(|p| p.rtt())?;
                    Some((paths_of(c).into_iter().next(), rtt))
                });
                let (route, rtt) = match selected {
                    Some((Some(Addr::Ip(a)), rtt)) => (Some(Route::Direct(a)), Some(rtt)),
                    Some((Some(Addr::Relay(u)), rtt)) => (Some(Route::Relay(u)), Some(rtt)),
                    _ => (None, None),
                };
                let contact = self.inner.shared.contact_of(&device);
                // A connection that looks open after a failure may lead to a
                // process that is gone (it has not timed out yet).
                let failed_since = match (&contact.seen, &contact.failed) {
                    (Some(seen), Some((failed, _))) => failed > seen,
                    (None, Some(_)) => true,
                    _ => false,
                };
                let (route, rtt) = if failed_since {
                    (None, None)
                } else {
                    (route, rtt)
                };
                PeerStatus {
                    namespace,
                    device,
                    own: namespace == me,
                    route,
                    rtt,
                    addresses,
                    last_seen: contact.seen,
                    last_sync: contact.synced,
                    last_live: contact.live,
                    last_error: contact.failed,
                    owed_keys: owed_keys.contains(&device),
                    owed_deletions: owed_deletions.contains(&device),
                }
            })
            .collect())
    }

    /// Where this device can be reached now (the endpoint's direct
    /// addresses and relay), as it hands them to the devices it serves.
    pub fn here(&self) -> Vec<Addr> {
        self.inner.shared.here.read().clone()
    }
}
