//! Friends and devices as this node knows them, and the one answer to
//! "which devices act for namespace X".

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use kith_caps::{DeviceCert, DeviceRevocation, Grants, Revocation};
use kith_types::{DeviceId, NamespaceId, Timestamp};

use crate::proto::addr::{Addr, merge};
use crate::ticket::Ticket;

/// A friend as this node knows them.
#[derive(Debug, Clone)]
pub(crate) struct Friend {
    /// The first ticket added (its device is tried first).
    pub(crate) ticket: Ticket,
    pub(crate) certs: Vec<DeviceCert>,
    pub(crate) device_revocations: Vec<DeviceRevocation>,
    /// Addresses of each device, from every ticket added.
    pub(crate) addrs: HashMap<DeviceId, Vec<SocketAddr>>,
}

impl Friend {
    /// The friend's devices, each with the addresses known for it.
    pub(crate) fn devices(&self) -> Vec<(DeviceId, Vec<SocketAddr>)> {
        let revoked = |c: &DeviceCert| self.device_revocations.iter().any(|r| r.revokes(c));
        let addrs = |d: &DeviceId| self.addrs.get(d).cloned().unwrap_or_default();
        let first = self.ticket.cert.device();
        let mut out: Vec<(DeviceId, Vec<SocketAddr>)> = vec![(first, addrs(&first))];
        for cert in self.certs.iter().filter(|c| !revoked(c)) {
            if !out.iter().any(|(d, _)| *d == cert.device()) {
                out.push((cert.device(), addrs(&cert.device())));
            }
        }
        out.retain(|(d, _)| !self.device_revocations.iter().any(|r| r.device() == *d));
        out
    }
}

/// The node's mutable knowledge, behind one lock.
#[derive(Debug)]
pub(crate) struct Known {
    /// This namespace's grants (caps it issued and their revocations).
    pub(crate) grants: Arc<Grants>,
    pub(crate) revocations: Vec<Revocation>,
    pub(crate) own_certs: Vec<DeviceCert>,
    pub(crate) own_device_revocations: Vec<DeviceRevocation>,
    /// Addresses of this namespace's other devices.
    pub(crate) own_addrs: HashMap<DeviceId, Vec<SocketAddr>>,
    pub(crate) friends: HashMap<NamespaceId, Friend>,
    /// Addresses learnt of devices (own and friends'), most recent first:
    /// from the connections this node authenticated and from what owners
    /// handed over in a catch-up. Tried before the tickets' addresses.
    pub(crate) learnt: HashMap<DeviceId, Vec<Addr>>,
}

impl Known {
    /// The devices that act for `namespace` (this node's own, `me`, or a
    /// friend's), each with the addresses known for it: every device with a
    /// certificate its namespace signed, less those it revoked. The one
    /// answer for the gate and for the choice of devices to sync from.
    pub(crate) fn devices_of(
        &self,
        namespace: &NamespaceId,
        me: &NamespaceId,
    ) -> Vec<(DeviceId, Vec<Addr>)> {
        self.ticket_devices_of(namespace, me)
            .into_iter()
            .map(|(d, addrs)| (d, self.addrs_of(&d, &addrs)))
            .collect()
    }

    /// Where to reach `device`: what was learnt of it, then `ticket`'s
    /// addresses.
    fn addrs_of(&self, device: &DeviceId, ticket: &[SocketAddr]) -> Vec<Addr> {
        let ticket: Vec<Addr> = ticket.iter().copied().map(Addr::Ip).collect();
        match self.learnt.get(device) {
            Some(learnt) => merge(learnt, &ticket),
            None => merge(&ticket, &[]),
        }
    }

    /// [`Known::devices_of`], with the tickets' addresses only.
    fn ticket_devices_of(
        &self,
        namespace: &NamespaceId,
        me: &NamespaceId,
    ) -> Vec<(DeviceId, Vec<SocketAddr>)> {
        if namespace == me {
            self.own_certs
                .iter()
                .filter(|c| !self.own_device_revocations.iter().any(|r| r.revokes(c)))
                .map(|c| {
                    let addrs = self.own_addrs.get(&c.device()).cloned().unwrap_or_default();
                    (c.device(), addrs)
                })
                .collect()
        } else {
            self.friends
                .get(namespace)
                .map(Friend::devices)
                .unwrap_or_default()
        }
    }

    /// The namespace `device` acts for (this node's own, `me`, or a
    /// friend's), by [`Known::devices_of`]; `None` for a stranger.
    pub(crate) fn acting_for(&self, device: &DeviceId, me: &NamespaceId) -> Option<NamespaceId> {
        std::iter::once(me)
            .chain(self.friends.keys())
            .find(|ns| self.devices_of(ns, me).iter().any(|(d, _)| d == device))
            .copied()
    }
}

/// What this node saw of another device since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Contact {
    /// When a connection with it was last authenticated.
    pub(crate) seen: Option<Timestamp>,
    /// When a catch-up it served last completed.
    pub(crate) synced: Option<Timestamp>,
    /// When a live message it signed last passed every check.
    pub(crate) live: Option<Timestamp>,
    /// The last failure to reach it, and when.
    pub(crate) failed: Option<(Timestamp, String)>,
}
