//! Friends, own devices and grants: how the node learns and forgets them.

use std::collections::HashMap;
use std::sync::Arc;

use kith_caps::{DeviceCert, DeviceRevocation, Grants, ReadCap, Revocation};
use kith_store::{RecordKind, RecordOp, Store};
use kith_types::{DeviceId, NamespaceId};

use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::proto::addr::Addr;
use crate::ticket::Ticket;

use super::known::{Friend, Known};
use super::records::{
    CERT_ID, DEVICE_REVOCATION_ID, OWN_TICKET_ID, SUBSCRIBED_ID, TICKET_ID, decode_cap,
    decode_cert, decode_device_revocation, decode_revocation, device_record_id, load, parse_ticket,
};
use super::shared::Shared;

impl Shared {
    /// Loads what the node knows from the store (on start).
    pub(crate) fn load_known(store: &Store, identity: &Identity) -> Result<Known> {
        let me = identity.namespace;
        let caps = load(store, RecordKind::Capability, &me, |_| true, decode_cap)?;
        let revocations = load(
            store,
            RecordKind::Revocation,
            &me,
            |_| true,
            decode_revocation,
        )?;
        let mut own_certs = load(
            store,
            RecordKind::Device,
            &me,
            |id| id.first() == Some(&CERT_ID),
            decode_cert,
        )?;
        if !own_certs
            .iter()
            .any(|c| c.device() == identity.cert.device())
        {
            own_certs.push(identity.cert.clone());
        }
        let own_device_revocations = load(
            store,
            RecordKind::Device,
            &me,
            |id| id.first() == Some(&DEVICE_REVOCATION_ID),
            decode_device_revocation,
        )?;
        let mut friends: HashMap<NamespaceId, Friend> = HashMap::new();
        for (ns, id, text) in store.all_records(RecordKind::Friend)? {
            if !id.starts_with(TICKET_ID) || ns == me {
                continue;
            }
            let Some(ticket) = parse_ticket(text) else {
                tracing::error!(friend = %ns, "ignoring a damaged friend record");
                continue;
            };
            match friends.get_mut(&ns) {
                Some(friend) => {
                    friend
                        .addrs
                        .insert(ticket.cert.device(), ticket.addrs.clone());
                }
                None => {
                    let certs = load(
                        store,
                        RecordKind::Device,
                        &ns,
                        |id| id.first() == Some(&CERT_ID),
                        decode_cert,
                    )?;
                    let device_revocations = load(
                        store,
                        RecordKind::Device,
                        &ns,
                        |id| id.first() == Some(&DEVICE_REVOCATION_ID),
                        decode_device_revocation,
                    )?;
                    let addrs = HashMap::from([(ticket.cert.device(), ticket.addrs.clone())]);
                    friends.insert(
                        ns,
                        Friend {
                            ticket,
                            certs,
                            device_revocations,
                            addrs,
                        },
                    );
                }
            }
        }
        let mut own_addrs = HashMap::new();
        for (id, text) in store.records(RecordKind::Device, &me)? {
            if id.first() == Some(&OWN_TICKET_ID)
                && let Some(ticket) = parse_ticket(text)
            {
                own_addrs.insert(ticket.cert.device(), ticket.addrs);
            }
        }
        Ok(Known {
            grants: Arc::new(Grants::new(me, caps, revocations.clone())),
            revocations,
            own_certs,
            own_device_revocations,
            own_addrs,
            friends,
            learnt: super::addrs::load_learnt(store, &me)?,
        })
    }

    /// Every device address known: own devices' and friends'.
    pub(crate) fn known_addresses(&self) -> Vec<(DeviceId, Vec<Addr>)> {
        let known = self.known.read();
        let me = self.namespace();
        let mut out = Vec::new();
        for ns in std::iter::once(&me).chain(known.friends.keys()) {
            out.extend(
                known
                    .devices_of(ns, &me)
                    .into_iter()
                    .filter(|(d, _)| *d != self.identity.device()),
            );
        }
        out
    }

    /// Where to reach `device` (a friend's or an own one), if known.
    pub(crate) fn device_addrs(&self, device: &DeviceId) -> Option<(NamespaceId, Vec<Addr>)> {
        let known = self.known.read();
        let me = self.namespace();
        let ns = known.acting_for(device, &me)?;
        known
            .devices_of(&ns, &me)
            .into_iter()
            .find(|(d, _)| d == device)
            .map(|(_, addrs)| (ns, addrs))
    }

    pub(crate) fn add_friend(&self, ticket: &Ticket) -> Result<()> {
        let ns = ticket.namespace;
        if ns == self.namespace() {
            return self.add_own_device(ticket);
        }
        let mut ticket_id = TICKET_ID.to_vec();
        ticket_id.extend_from_slice(ticket.cert.device().as_bytes());
        self.store.write_records(&[
            RecordOp::put(
                RecordKind::Friend,
                ns,
                &ticket_id,
                ticket.to_string().as_bytes(),
            ),
            RecordOp::put(
                RecordKind::Device,
                ns,
                &device_record_id(CERT_ID, &ticket.cert.device()),
                &ticket.cert.encode(),
            ),
        ])?;
        {
            let mut known = self.known.write();
            let friend = known.friends.entry(ns).or_insert_with(|| Friend {
                ticket: ticket.clone(),
                certs: Vec::new(),
                device_revocations: Vec::new(),
                addrs: HashMap::new(),
            });
            friend
                .addrs
                .insert(ticket.cert.device(), ticket.addrs.clone());
            if !friend.certs.iter().any(|c| c == &ticket.cert) {
                friend.certs.push(ticket.cert.clone());
            }
        }
        self.refresh_gate();
        self.learn_ticket_relays(ticket)?;
        self.scopes_follow_grants()
    }

    /// Records another device of this namespace (from its ticket): its
    /// certificate and where it listens.
    pub(crate) fn add_own_device(&self, ticket: &Ticket) -> Result<()> {
        let device = ticket.cert.device();
        if device == self.identity.device() {
            return Err(Error::NotAllowed("that is this device's own ticket"));
        }
        self.store.write_records(&[
            RecordOp::put(
                RecordKind::Device,
                ticket.namespace,
                &device_record_id(OWN_TICKET_ID, &device),
                ticket.to_string().as_bytes(),
            ),
            RecordOp::put(
                RecordKind::Device,
                ticket.namespace,
                &device_record_id(CERT_ID, &device),
                &ticket.cert.encode(),
            ),
        ])?;
        {
            let mut known = self.known.write();
            known.own_addrs.insert(device, ticket.addrs.clone());
            if !known.own_certs.contains(&ticket.cert) {
                known.own_certs.push(ticket.cert.clone());
            }
        }
        self.refresh_gate();
        self.learn_ticket_relays(ticket)
    }

    /// Keeps the relays a ticket names as addresses of its device.
    fn learn_ticket_relays(&self, ticket: &Ticket) -> Result<()> {
        let relays: Vec<Addr> = ticket
            .relays
            .iter()
            .filter_map(|r| Addr::relay(r).ok())
            .collect();
        self.learn_addresses(&ticket.cert.device(), &relays)?;
        Ok(())
    }

    /// Stores a certificate this namespace issued for a new device.
    pub(crate) fn store_own_cert(&self, cert: &DeviceCert) -> Result<()> {
        self.store.put_record(
            RecordKind::Device,
            &self.namespace(),
            &device_record_id(CERT_ID, &cert.device()),
            &cert.encode(),
        )?;
        {
            let mut known = self.known.write();
            if !known.own_certs.contains(cert) {
                known.own_certs.push(cert.clone());
            }
        }
        self.refresh_gate();
        Ok(())
    }

    /// The device revocations known for `namespace`: this namespace's own,
    /// or a friend's as last received from them. Every route that decides
    /// whether a device acts for a namespace (serving it, syncing from it,
    /// accepting its live push) counts these.
    pub(crate) fn device_revocations_of(&self, namespace: &NamespaceId) -> Vec<DeviceRevocation> {
        let known = self.known.read();
        if *namespace == self.namespace() {
            known.own_device_revocations.clone()
        } else {
            known
                .friends
                .get(namespace)
                .map(|f| f.device_revocations.clone())
                .unwrap_or_default()
        }
    }

    /// Every friend's tickets, for this namespace's other devices.
    pub(crate) fn friend_tickets(&self) -> Vec<Ticket> {
        let known = self.known.read();
        let me = self.namespace();
        let mut out = Vec::new();
        for friend in known.friends.values() {
            for (device, addrs) in known.devices_of(&friend.ticket.namespace, &me) {
                if let Some(cert) = friend.certs.iter().find(|c| c.device() == device) {
                    out.push(Ticket {
                        namespace: friend.ticket.namespace,
                        cert: cert.clone(),
                        addrs: addrs.iter().filter_map(Addr::ip).collect(),
                        relays: addrs
                            .iter()
                            .filter_map(|a| match a {
                                Addr::Relay(u) => Some(u.clone()),
                                Addr::Ip(_) => None,
                            })
                            .collect(),
                    });
                }
            }
        }
        out
    }

    pub(crate) fn remove_friend(&self, ns: &NamespaceId) -> Result<bool> {
        let removed = self.known.write().friends.remove(ns).is_some();
        let mut ops: Vec<RecordOp> = self
            .store
            .records(RecordKind::Friend, ns)?
            .into_iter()
            .map(|(id, _)| RecordOp::remove(RecordKind::Friend, *ns, &id))
            .collect();
        ops.push(RecordOp::remove(RecordKind::Friend, *ns, SUBSCRIBED_ID));
        self.store.write_records(&ops)?;
        self.refresh_gate();
        self.scopes_follow_grants()?;
        Ok(removed)
    }

    pub(crate) fn set_subscribed(&self, ns: &NamespaceId, on: bool) -> Result<()> {
        let op = if on {
            RecordOp::put(RecordKind::Friend, *ns, SUBSCRIBED_ID, b"")
        } else {
            RecordOp::remove(RecordKind::Friend, *ns, SUBSCRIBED_ID)
        };
        Ok(self.store.write_records(&[op])?)
    }

    pub(crate) fn subscribed(&self) -> Result<Vec<NamespaceId>> {
        let mut friends: Vec<NamespaceId> = self.known.read().friends.keys().copied().collect();
        friends.push(self.namespace());
        let mut out = Vec::new();
        for ns in friends {
            if self
                .store
                .record(RecordKind::Friend, &ns, SUBSCRIBED_ID)?
                .is_some()
            {
                out.push(ns);
            }
        }
        Ok(out)
    }

    /// Stores a cap this namespace issued and makes it take effect.
    pub(crate) fn store_own_cap(&self, cap: &ReadCap) -> Result<()> {
        self.store.put_record(
            RecordKind::Capability,
            &self.namespace(),
            cap.id().as_bytes(),
            &cap.encode(),
        )?;
        {
            let mut known = self.known.write();
            let mut grants = (*known.grants).clone();
            grants.insert(cap.clone());
            known.grants = Arc::new(grants);
        }
        self.scopes_follow_grants()
    }

    /// Stores a revocation this namespace issued and makes it take effect.
    pub(crate) fn store_own_revocation(&self, rev: &Revocation) -> Result<()> {
        self.store.put_record(
            RecordKind::Revocation,
            &self.namespace(),
            rev.cap_id().as_bytes(),
            &rev.encode(),
        )?;
        {
            let mut known = self.known.write();
            let mut grants = (*known.grants).clone();
            grants.revoke(rev);
            known.grants = Arc::new(grants);
            known.revocations.push(rev.clone());
        }
        self.scopes_follow_grants()
    }

    /// Caps `owner` granted to this node.
    pub(crate) fn caps_from(&self, owner: &NamespaceId) -> Result<(Vec<ReadCap>, Vec<Revocation>)> {
        let me = self.namespace();
        let caps = load(
            &self.store,
            RecordKind::Capability,
            owner,
            |_| true,
            decode_cap,
        )?
        .into_iter()
        .filter(|c| c.namespace() == *owner && c.grantee() == me)
        .collect();
        let revs = load(
            &self.store,
            RecordKind::Revocation,
            owner,
            |_| true,
            decode_revocation,
        )?;
        Ok((caps, revs))
    }
}
