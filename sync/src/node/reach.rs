//! Being found: where other devices are (learnt from every authenticated
//! connection), where this one is (the endpoint's addresses, handed over
//! in catch-ups), and telling every known device when this one starts or
//! moves.

use std::sync::Weak;

use iroh::Watcher;
use kith_types::{DeviceId, Timestamp};
use n0_future::StreamExt;

use crate::net;
use crate::net::gate::Sighting;
use crate::proto::addr::Addr;
use crate::proto::wire::Message;

use super::handle::{Inner, Node, blocking};

/// How many devices are told something (`Back`, `Poke`) at once.
const TELL_PARALLEL: usize = 8;

impl Node {
    /// Remembers where admitted devices' connections came from (in the
    /// store; the address lookup follows, see [`Node::follow_moves`]).
    pub(super) async fn remember_sightings(
        weak: Weak<Inner>,
        mut sightings: tokio::sync::mpsc::Receiver<Sighting>,
    ) {
        while let Some((device, addrs)) = sightings.recv().await {
            let Some(inner) = weak.upgrade() else { return };
            inner
                .shared
                .contact(device, |c| c.seen = Some(Timestamp::wall_clock()));
            let shared = inner.shared.clone();
            if let Err(e) = blocking(move || shared.learn_addresses(&device, &addrs)).await {
                tracing::warn!(%e, "could not record where a device is");
            }
        }
    }

    /// Gives iroh's address lookup (which gossip dials through) what is
    /// learnt of where devices are, as it is learnt.
    pub(super) async fn follow_moves(weak: Weak<Inner>) {
        let Some(mut moved) = weak.upgrade().map(|i| i.shared.moved.subscribe()) else {
            return;
        };
        loop {
            let device = match moved.recv().await {
                Ok(d) => d,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            let Some(inner) = weak.upgrade() else { return };
            let addrs = inner.shared.known.read().learnt.get(&device).cloned();
            if let Some(addrs) = addrs {
                inner.tell_lookup(&device, &addrs);
            }
        }
    }

    /// Keeps this device's own addresses current (they are handed over in
    /// catch-ups); when they change after start (the device moved to
    /// another network), tells every known device.
    pub(super) async fn follow_own_addresses(weak: Weak<Inner>, tell_back: bool) {
        let Some(mut addrs) = weak.upgrade().map(|i| i.endpoint.watch_addr().stream()) else {
            return;
        };
        let mut last: Option<Vec<Addr>> = None;
        while let Some(addr) = addrs.next().await {
            let Some(inner) = weak.upgrade() else { return };
            let mut here: Vec<Addr> = addr.ip_addrs().copied().map(Addr::Ip).collect();
            here.extend(
                addr.relay_urls()
                    .filter_map(|u| Addr::relay(u.as_str()).ok()),
            );
            if last.as_ref() == Some(&here) {
                continue;
            }
            tracing::debug!(addrs = ?here, "this device's addresses");
            inner.shared.set_here(here.clone());
            let moved = last.as_ref().is_some_and(|old| {
                here.iter()
                    .filter_map(Addr::ip)
                    .any(|a| !old.contains(&Addr::Ip(a)))
            });
            last = Some(here);
            if moved && tell_back && inner.live.is_some() {
                tracing::info!("this device's addresses changed; telling the devices it knows");
                inner.spawn_tracked(Node::announce(weak.clone()));
            }
        }
    }

    /// Tells every device this node knows (own devices and friends') that
    /// it is back: they learn where it is now from the authenticated
    /// connection, re-link their gossip to it, and catch up with it, which
    /// brings what was written while it was away.
    pub(super) async fn announce(weak: Weak<Inner>) {
        let devices: Vec<DeviceId> = match weak.upgrade() {
            Some(inner) => inner
                .shared
                .known_addresses()
                .into_iter()
                .map(|(d, _)| d)
                .collect(),
            None => return,
        };
        let reached = Node::tell_all(weak, devices, Message::Back).await;
        tracing::debug!(reached, "told the devices it knows where this one is");
    }

    /// Sends `msg` alone on a stream to each of `devices`, [`TELL_PARALLEL`]
    /// at a time; returns how many took it.
    pub(super) async fn tell_all(weak: Weak<Inner>, devices: Vec<DeviceId>, msg: Message) -> usize {
        let mut reached = 0usize;
        let mut running = tokio::task::JoinSet::new();
        let mut devices = devices.into_iter();
        loop {
            while running.len() < TELL_PARALLEL {
                let Some(device) = devices.next() else { break };
                let Some(inner) = weak.upgrade() else {
                    return reached;
                };
                let node = Node { inner };
                let msg = msg.clone();
                running.spawn(async move {
                    match node.tell(device, msg.clone()).await {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::debug!(device = %device.fmt_short(), msg = msg.name(), %e, "could not tell a device");
                            false
                        }
                    }
                });
            }
            match running.join_next().await {
                Some(Ok(true)) => reached += 1,
                Some(_) => {}
                None => break,
            }
        }
        reached
    }
}

impl Inner {
    /// Gives iroh's address lookup (which gossip dials through) what is
    /// known of `device`.
    pub(super) fn tell_lookup(&self, device: &DeviceId, addrs: &[Addr]) {
        if let Ok(addr) = net::addrs::endpoint_addr(device, addrs) {
            self.lookup.add_endpoint_info(addr);
        }
    }
}
