//! Where devices are: the addresses this node learns of other devices
//! (from the connections it authenticates and from what owners hand over
//! in a catch-up), kept in the store so that they survive restarts, and
//! this device's own current addresses, which it hands over.

use std::collections::HashMap;

use kith_store::{RecordKind, RecordOp, Store};
use kith_types::{DeviceId, NamespaceId};

use crate::error::Result;
use crate::proto::addr::{Addr, merge};
use crate::proto::codec::{Dec, Enc};

use super::known::Contact;
use super::records::{LEARNT_ID, device_record_id};
use super::shared::Shared;

/// Version byte of a stored address list.
const ADDRS_VERSION: u8 = 1;

/// The addresses learnt before, from the store (damaged records are
/// logged and skipped: they are hints, learnt again on the next contact).
pub(super) fn load_learnt(store: &Store, me: &NamespaceId) -> Result<HashMap<DeviceId, Vec<Addr>>> {
    let mut out = HashMap::new();
    for (id, bytes) in store.records(RecordKind::Device, me)? {
        if id.first() != Some(&LEARNT_ID) || id.len() != 33 {
            continue;
        }
        let mut device = [0u8; 32];
        device.copy_from_slice(&id[1..]);
        let decoded = Dec::versioned(&bytes, ADDRS_VERSION).and_then(|mut r| {
            let addrs = Addr::decode_list(&mut r)?;
            r.end()?;
            Ok(addrs)
        });
        match decoded {
            Ok(addrs) => {
                out.insert(DeviceId::from_bytes(device), addrs);
            }
            Err(e) => tracing::warn!(%e, "ignoring a damaged address record"),
        }
    }
    Ok(out)
}

fn encode(addrs: &[Addr]) -> Vec<u8> {
    let mut w = Enc::versioned(ADDRS_VERSION);
    Addr::encode_list(addrs, &mut w);
    w.finish()
}

impl Shared {
    /// Records that `device` was just reached at (or heard from) `fresh`:
    /// they go first in its list. Only devices the node knows (own,
    /// friends', members of a held scope) are kept. Returns whether the
    /// list changed (it is then stored).
    pub(crate) fn learn_addresses(&self, device: &DeviceId, fresh: &[Addr]) -> Result<bool> {
        if fresh.is_empty() || *device == self.identity.device() {
            return Ok(false);
        }
        let merged = {
            let mut known = self.known.write();
            let old = known.learnt.get(device).cloned().unwrap_or_default();
            let merged = merge(fresh, &old);
            if merged == old {
                return Ok(false);
            }
            known.learnt.insert(*device, merged.clone());
            merged
        };
        tracing::debug!(device = %device.fmt_short(), addrs = ?merged, "learnt where a device is");
        self.store.write_records(&[RecordOp::put(
            RecordKind::Device,
            self.namespace(),
            &device_record_id(LEARNT_ID, device),
            &encode(&merged),
        )])?;
        // Nobody listening (a node without a network) is fine.
        let _ = self.moved.send(*device);
        Ok(true)
    }

    /// Takes the addresses `owner`'s serving device handed over, for the
    /// devices that act for `owner` (a stranger's are not kept).
    pub(crate) fn learn_handed_over(
        &self,
        owner: &NamespaceId,
        devices: &[(DeviceId, Vec<Addr>)],
    ) -> Result<()> {
        let acting: Vec<DeviceId> = self
            .known
            .read()
            .devices_of(owner, &self.namespace())
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        for (device, addrs) in devices {
            if acting.contains(device) {
                // What was learnt from a connection stays first: it is
                // what worked from here.
                let known = self.known.read().learnt.get(device).cloned();
                let merged = match known {
                    Some(k) => merge(&k, addrs),
                    None => addrs.clone(),
                };
                self.learn_addresses(device, &merged)?;
            } else {
                tracing::debug!(device = %device.fmt_short(), "ignoring addresses of a device that does not act for the owner");
            }
        }
        Ok(())
    }

    /// Where this namespace's devices can be reached, to hand over in a
    /// catch-up: this device's own addresses, and what is known of the
    /// others.
    pub(crate) fn own_device_addresses(&self) -> Vec<(DeviceId, Vec<Addr>)> {
        let me = self.identity.device();
        let here = self.here.read().clone();
        self.known
            .read()
            .devices_of(&self.namespace(), &self.namespace())
            .into_iter()
            .map(|(d, addrs)| {
                if d == me {
                    (d, here.clone())
                } else {
                    (d, addrs)
                }
            })
            .filter(|(_, addrs)| !addrs.is_empty())
            .collect()
    }

    /// Sets this device's own current addresses (the endpoint's).
    pub(crate) fn set_here(&self, addrs: Vec<Addr>) {
        *self.here.write() = addrs;
    }
}

impl Shared {
    /// Updates what was seen of `device`.
    pub(crate) fn contact(&self, device: DeviceId, update: impl FnOnce(&mut Contact)) {
        update(self.contacts.lock().entry(device).or_default());
    }

    /// What was seen of `device` since start.
    pub(crate) fn contact_of(&self, device: &DeviceId) -> Contact {
        self.contacts
            .lock()
            .get(device)
            .cloned()
            .unwrap_or_default()
    }
}
