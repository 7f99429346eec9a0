//! What the node knows, and the store-backed views the protocol reads and
//! writes through.
//!
//! Signed objects are stored as opaque records in the store (the store does
//! not interpret them), verified when they arrive and again when loaded:
//!
//! | record kind | namespace | id | bytes |
//! |---|---|---|---|
//! | `Capability` | issuer | cap id | `ReadCap` |
//! | `Revocation` | issuer | cap id | `Revocation` |
//! | `Device` | namespace | `1` ‖ device | `DeviceCert` |
//! | `Device` | namespace | `2` ‖ device | `DeviceRevocation` |
//! | `Tombstone` | namespace | tombstone id | `Tombstone` |
//! | `Device` | own namespace | `3` ‖ device | ticket text of another own device |
//! | `Friend` | friend | `ticket` ‖ device | ticket text |
//! | `Friend` | friend | `subscribed` | empty |
//! | `SyncState` | owner | serving device | cursors |

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use kith_caps::{DeviceCert, DeviceRevocation, Grants, ReadCap, Receipt, Revocation, Tombstone};
use kith_store::automerge::ChangeHash;
use kith_store::{
    ApplyOutcome, Change, DocIdentity, Entry, EntryKind, RecordKind, RecordOp, RemoteWrite, Store,
};
use kith_types::{DeviceId, NamespaceId, Path, Timestamp};
use parking_lot::RwLock;

use crate::cache::BlobCache;
use crate::identity::Identity;
use crate::net::gate::Gate;
use crate::net::limits::PeerBudgets;
use crate::proto::fetch::{Replica, is_expected_refusal};
use crate::proto::serve::{Requester, Source};
use crate::proto::wire::{WireEntry, WireKind};
use crate::ticket::Ticket;
use crate::{Error, Result};

const CERT_ID: u8 = 1;
const DEVICE_REVOCATION_ID: u8 = 2;
/// A ticket of one of this namespace's other devices.
const OWN_TICKET_ID: u8 = 3;
const TICKET_ID: &[u8] = b"ticket";
const SUBSCRIBED_ID: &[u8] = b"subscribed";
/// Sync-state id prefix of the friend a deletion was asked of.
const ADDRESSED_ID: &[u8] = b"to";

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
}

/// Everything the node's tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) identity: Identity,
    pub(crate) known: RwLock<Known>,
    pub(crate) gate: Gate,
    pub(crate) budgets: PeerBudgets,
    pub(crate) cache: BlobCache,
    /// Node events for [`crate::Node::events`].
    pub(crate) events: tokio::sync::broadcast::Sender<NodeEvent>,
    /// The live-push scopes this node holds.
    pub(crate) scopes: RwLock<crate::scopes::ScopeBook>,
    /// Bumped whenever the held scopes change.
    pub(crate) scope_version: tokio::sync::watch::Sender<u64>,
    /// Work for the node from the live layer and from pokes.
    pub(crate) requests: tokio::sync::mpsc::Sender<crate::live::LiveRequest>,
    /// Woken when something new may be owed to other devices (a re-key, a
    /// deletion).
    pub(crate) owed_changed: tokio::sync::Notify,
    /// Blob fetches in progress, one per blob.
    pub(crate) downloads: crate::net::fetch::Downloads,
}

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

fn device_record_id(kind: u8, device: &DeviceId) -> Vec<u8> {
    let mut id = vec![kind];
    id.extend_from_slice(device.as_bytes());
    id
}

/// Loads verified signed objects of one kind; damaged ones are logged and
/// skipped (they never reach a decision).
fn load<T>(
    store: &Store,
    kind: RecordKind,
    ns: &NamespaceId,
    id_filter: impl Fn(&[u8]) -> bool,
    decode: impl Fn(&[u8]) -> kith_caps::Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for (id, bytes) in store.records(kind, ns)? {
        if !id_filter(&id) {
            continue;
        }
        match decode(&bytes) {
            Ok(v) => out.push(v),
            Err(e) => tracing::error!(?kind, %e, "ignoring a damaged stored record"),
        }
    }
    Ok(out)
}

fn parse_ticket(text: Vec<u8>) -> Option<Ticket> {
    String::from_utf8(text).ok()?.parse().ok()
}

fn decode_cap(b: &[u8]) -> kith_caps::Result<ReadCap> {
    let c = ReadCap::decode(b)?;
    c.verify()?;
    Ok(c)
}

fn decode_revocation(b: &[u8]) -> kith_caps::Result<Revocation> {
    let r = Revocation::decode(b)?;
    r.verify()?;
    Ok(r)
}

fn decode_cert(b: &[u8]) -> kith_caps::Result<DeviceCert> {
    let c = DeviceCert::decode(b)?;
    c.verify()?;
    Ok(c)
}

fn decode_device_revocation(b: &[u8]) -> kith_caps::Result<DeviceRevocation> {
    let r = DeviceRevocation::decode(b)?;
    r.verify()?;
    Ok(r)
}

impl Shared {
    pub(crate) fn namespace(&self) -> NamespaceId {
        self.identity.namespace
    }

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
        })
    }

    /// Brings this namespace's scopes in step with its grants and friends;
    /// wakes the delivery of what that makes owed (a new epoch's secret).
    pub(crate) fn scopes_follow_grants(&self) -> Result<()> {
        if self.reconcile_own_scopes()? {
            self.owed_changed.notify_one();
        }
        Ok(())
    }

    /// For a deletion asked of one friend only (not applied here): that
    /// friend.
    pub(crate) fn addressee(
        &self,
        tombstone: &kith_caps::TombstoneId,
    ) -> Result<Option<NamespaceId>> {
        let mut id = ADDRESSED_ID.to_vec();
        id.extend_from_slice(tombstone.as_bytes());
        Ok(self
            .store
            .record(RecordKind::SyncState, &self.namespace(), &id)?
            .and_then(|b| NamespaceId::try_from_slice(&b).ok()))
    }

    /// Keeps a deletion asked of `friend` only: the owner's own copy stays,
    /// and only `friend`'s devices that were served data under the prefix
    /// are sent it (until each confirms).
    pub(crate) fn store_addressed_tombstone(
        &self,
        tombstone: &Tombstone,
        friend: &NamespaceId,
    ) -> Result<()> {
        let ns = self.namespace();
        let mut id = ADDRESSED_ID.to_vec();
        id.extend_from_slice(tombstone.id().as_bytes());
        self.store.write_records(&[
            RecordOp::put(RecordKind::SyncState, ns, &id, friend.as_bytes()),
            RecordOp::put(
                RecordKind::Tombstone,
                ns,
                tombstone.id().as_bytes(),
                &tombstone.encode(),
            ),
        ])?;
        self.owed_changed.notify_one();
        Ok(())
    }

    /// Every device address known: own devices' and friends'.
    pub(crate) fn known_addresses(&self) -> Vec<(DeviceId, Vec<SocketAddr>)> {
        let known = self.known.read();
        let mut out: Vec<(DeviceId, Vec<SocketAddr>)> = known
            .own_addrs
            .iter()
            .map(|(d, a)| (*d, a.clone()))
            .collect();
        for friend in known.friends.values() {
            out.extend(friend.devices());
        }
        out
    }

    /// Devices that were served data under a deleted prefix and have not
    /// confirmed the deletion yet.
    pub(crate) fn devices_owed_tombstones(&self) -> Result<Vec<DeviceId>> {
        let tombstones = self.deletions()?;
        let mut out = Vec::new();
        for served in self.served_devices()? {
            if !self.owed_to(&served, &tombstones)?.is_empty() {
                out.push(served.device);
            }
        }
        Ok(out)
    }

    /// Every friend device this namespace served, with what it was served.
    fn served_devices(&self) -> Result<Vec<Served>> {
        let ns = self.namespace();
        let mut out = Vec::new();
        for (id, bytes) in self.store.records(RecordKind::SyncState, &ns)? {
            let Some(device) = id.strip_prefix(SERVED_ID) else {
                continue;
            };
            let Ok(device) = DeviceId::try_from_slice(device) else {
                continue;
            };
            if let Some((namespace, prefixes)) = decode_served(&bytes) {
                out.push(Served {
                    device,
                    namespace,
                    prefixes,
                });
            }
        }
        Ok(out)
    }

    /// This namespace's signed deletions, each with the friend it was asked
    /// of alone (if any).
    fn deletions(&self) -> Result<Vec<Deletion>> {
        let mut out = Vec::new();
        for (_, bytes) in self
            .store
            .records(RecordKind::Tombstone, &self.namespace())?
        {
            let Ok(tombstone) = Tombstone::decode(&bytes) else {
                continue;
            };
            let addressee = self.addressee(&tombstone.id())?;
            out.push(Deletion {
                tombstone,
                bytes,
                addressee,
            });
        }
        Ok(out)
    }

    /// Whether `deletion` concerns `served`: it was served data under the
    /// prefix, and the deletion was not asked of another friend only.
    fn concerns(deletion: &Deletion, served: &Served) -> bool {
        deletion.addressee.is_none_or(|to| to == served.namespace)
            && served
                .prefixes
                .iter()
                .any(|p| p.overlaps(deletion.tombstone.prefix()))
    }

    /// The signed deletions `served` has not confirmed.
    fn owed_to(&self, served: &Served, deletions: &[Deletion]) -> Result<Vec<Vec<u8>>> {
        let ns = self.namespace();
        let mut out = Vec::new();
        for d in deletions.iter().filter(|d| Self::concerns(d, served)) {
            let id = receipt_id(d.tombstone.id().as_bytes(), &served.device);
            if self.store.record(RecordKind::Receipt, &ns, &id)?.is_none() {
                out.push(d.bytes.clone());
            }
        }
        Ok(out)
    }

    /// Where to reach `device` (a friend's or an own one), if known.
    pub(crate) fn device_addrs(&self, device: &DeviceId) -> Option<(NamespaceId, Vec<SocketAddr>)> {
        let known = self.known.read();
        if let Some(a) = known.own_addrs.get(device) {
            return Some((self.namespace(), a.clone()));
        }
        known.friends.iter().find_map(|(ns, f)| {
            f.devices()
                .into_iter()
                .find(|(d, _)| d == device)
                .map(|(_, a)| (*ns, a))
        })
    }

    /// Recomputes the connection gate from what is known.
    pub(crate) fn refresh_gate(&self) {
        let known = self.known.read();
        let me = self.namespace();
        let mut devices: Vec<DeviceId> = Vec::new();
        for ns in std::iter::once(&me).chain(known.friends.keys()) {
            devices.extend(known.devices_of(ns, &me).into_iter().map(|(d, _)| d));
        }
        // Members of a shared scope form one gossip mesh, friends or not.
        devices.extend(crate::scopes::roster_members(&self.scopes.read()));
        self.gate.set(devices);
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
        let mut out = Vec::new();
        for friend in known.friends.values() {
            for (device, addrs) in friend.devices() {
                if let Some(cert) = friend.certs.iter().find(|c| c.device() == device) {
                    out.push(Ticket {
                        namespace: friend.ticket.namespace,
                        cert: cert.clone(),
                        addrs,
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

/// The owner's data, as served to a requester.
pub(crate) struct OwnerSource<'a>(pub(crate) &'a Shared);

impl Source for OwnerSource<'_> {
    fn owner(&self) -> NamespaceId {
        self.0.namespace()
    }

    fn grants(&self) -> Arc<Grants> {
        self.0.known.read().grants.clone()
    }

    fn revocations_for(&self, grantee: Option<&NamespaceId>) -> Vec<Revocation> {
        let known = self.0.known.read();
        let Some(grantee) = grantee else {
            return known.revocations.clone();
        };
        let ids: Vec<_> = known
            .grants
            .caps()
            .iter()
            .filter(|c| c.grantee() == *grantee)
            .map(ReadCap::id)
            .collect();
        known
            .revocations
            .iter()
            .filter(|r| ids.contains(&r.cap_id()))
            .cloned()
            .collect()
    }

    fn device_revocations_of(&self, namespace: &NamespaceId) -> Vec<DeviceRevocation> {
        self.0.device_revocations_of(namespace)
    }

    fn owner_devices(&self) -> (Vec<DeviceCert>, Vec<DeviceRevocation>) {
        let known = self.0.known.read();
        (
            known.own_certs.clone(),
            known.own_device_revocations.clone(),
        )
    }

    fn is_friend(&self, namespace: &NamespaceId) -> bool {
        self.0.known.read().friends.contains_key(namespace)
    }

    fn friend_tickets(&self) -> Vec<Vec<u8>> {
        self.0
            .friend_tickets()
            .iter()
            .map(|t| t.to_string().into_bytes())
            .collect()
    }

    fn current_seq(&self) -> Result<u64> {
        Ok(self.0.store.current_seq(&self.0.namespace())?)
    }

    fn changes_since(&self, seq: u64, limit: usize) -> Result<Vec<Change>> {
        Ok(self
            .0
            .store
            .changes_since(&self.0.namespace(), seq, limit)?)
    }

    fn entry(&self, path: &Path) -> Result<Option<Entry>> {
        Ok(self.0.store.get(&self.0.namespace(), path)?)
    }

    fn doc_changes(&self, path: &Path, heads: &[ChangeHash]) -> Result<Vec<u8>> {
        Ok(self.0.store.changes_for(&self.0.namespace(), path, heads)?)
    }

    fn doc_bytes(&self, path: &Path) -> Result<Vec<u8>> {
        Ok(self.0.store.document_bytes(&self.0.namespace(), path)?)
    }

    fn doc_heads(&self, path: &Path) -> Result<Vec<ChangeHash>> {
        Ok(self.0.store.heads(&self.0.namespace(), path)?)
    }

    fn doc_head_deps(&self, path: &Path) -> Result<Vec<ChangeHash>> {
        let mut deps = Vec::new();
        if let Some(mut doc) = self.0.store.document(&self.0.namespace(), path)? {
            for h in doc.get_heads() {
                if let Some(c) = doc.get_change_by_hash(&h) {
                    deps.extend(c.deps().iter().copied());
                }
            }
        }
        Ok(deps)
    }

    fn record_served(&self, requester: &Requester, prefixes: &[Path]) -> Result<()> {
        if prefixes.is_empty() {
            return Ok(());
        }
        let store = &self.0.store;
        let ns = self.0.namespace();
        let id = served_id(&requester.device);
        let mut served = match store.record(RecordKind::SyncState, &ns, &id)? {
            Some(bytes) => decode_served(&bytes).map(|(_, p)| p).unwrap_or_default(),
            None => Vec::new(),
        };
        let before = served.len();
        for p in prefixes {
            if !served.contains(p) {
                served.push(p.clone());
            }
        }
        if served.len() != before {
            store.put_record(
                RecordKind::SyncState,
                &ns,
                &id,
                &encode_served(&requester.namespace, &served),
            )?;
        }
        Ok(())
    }

    fn owed_tombstones(&self, device: &DeviceId) -> Result<Vec<Vec<u8>>> {
        let ns = self.0.namespace();
        let Some(bytes) = self
            .0
            .store
            .record(RecordKind::SyncState, &ns, &served_id(device))?
        else {
            return Ok(Vec::new());
        };
        let Some((namespace, prefixes)) = decode_served(&bytes) else {
            return Ok(Vec::new());
        };
        let served = Served {
            device: *device,
            namespace,
            prefixes,
        };
        self.0.owed_to(&served, &self.0.deletions()?)
    }

    fn store_receipt(&self, receipt: &Receipt) -> Result<bool> {
        let store = &self.0.store;
        let ns = self.0.namespace();
        let tombstone = receipt.tombstone_id();
        if store
            .record(RecordKind::Tombstone, &ns, tombstone.as_bytes())?
            .is_none()
        {
            return Ok(false);
        }
        let id = receipt_id(tombstone.as_bytes(), &receipt.device());
        if store.record(RecordKind::Receipt, &ns, &id)?.is_some() {
            // The first receipt stands: a device that confirms again (its
            // receipt crossed a re-delivery) does not move the time the
            // deletion was confirmed.
            return Ok(true);
        }
        store.put_record(RecordKind::Receipt, &ns, &id, &receipt.encode())?;
        // Nobody listening is fine.
        let _ = self.0.events.send(NodeEvent::Receipt {
            tombstone,
            namespace: receipt.namespace(),
            device: receipt.device(),
        });
        Ok(true)
    }

    fn scopes(&self) -> Vec<(kith_caps::Scope, kith_caps::Roster)> {
        self.0.own_scopes()
    }

    fn scopes_sent(&self, device: &DeviceId, versions: &[(Path, u64)]) -> Result<()> {
        self.0.record_scopes_sent(device, versions)
    }

    fn tombstone(&self, prefix: &Path, time: Timestamp) -> Result<Option<Vec<u8>>> {
        let ns = self.0.namespace();
        for (_, bytes) in self.0.store.records(RecordKind::Tombstone, &ns)? {
            if let Ok(t) = Tombstone::decode(&bytes)
                && t.prefix() == prefix
                && t.up_to() == time
            {
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    }
}

/// This node's replica of another namespace, as a fetch writes it.
pub(crate) struct FriendReplica<'a>(pub(crate) &'a Shared);

impl Replica for FriendReplica<'_> {
    fn store_caps(
        &self,
        owner: &NamespaceId,
        caps: &[ReadCap],
        revocations: &[Revocation],
    ) -> Result<()> {
        let mut ops: Vec<RecordOp> = caps
            .iter()
            .map(|c| {
                RecordOp::put(
                    RecordKind::Capability,
                    *owner,
                    c.id().as_bytes(),
                    &c.encode(),
                )
            })
            .collect();
        ops.extend(revocations.iter().map(|r| {
            RecordOp::put(
                RecordKind::Revocation,
                *owner,
                r.cap_id().as_bytes(),
                &r.encode(),
            )
        }));
        self.0.store.write_records(&ops)?;
        if *owner == self.0.namespace() {
            // Grants made on another device of this namespace take effect here.
            let mut known = self.0.known.write();
            let mut grants = (*known.grants).clone();
            for cap in caps {
                grants.insert(cap.clone());
            }
            for rev in revocations {
                grants.revoke(rev);
                if !known.revocations.contains(rev) {
                    known.revocations.push(rev.clone());
                }
            }
            known.grants = Arc::new(grants);
        }
        Ok(())
    }

    fn store_friends(&self, owner: &NamespaceId, tickets: &[Vec<u8>]) -> Result<()> {
        if *owner != self.0.namespace() {
            return Err(Error::Protocol(
                "friends are shared only between a namespace's own devices".into(),
            ));
        }
        for bytes in tickets {
            match parse_ticket(bytes.clone()) {
                Some(t) if t.namespace != *owner => self.0.add_friend(&t)?,
                Some(_) => {}
                None => tracing::warn!("ignoring an invalid friend ticket from an own device"),
            }
        }
        Ok(())
    }

    fn owner_device_revocations(&self, owner: &NamespaceId) -> Vec<DeviceRevocation> {
        self.0.device_revocations_of(owner)
    }

    fn store_owner_devices(
        &self,
        owner: &NamespaceId,
        certs: &[DeviceCert],
        revocations: &[DeviceRevocation],
    ) -> Result<()> {
        let mut ops: Vec<RecordOp> = certs
            .iter()
            .map(|c| {
                RecordOp::put(
                    RecordKind::Device,
                    *owner,
                    &device_record_id(CERT_ID, &c.device()),
                    &c.encode(),
                )
            })
            .collect();
        ops.extend(revocations.iter().map(|r| {
            RecordOp::put(
                RecordKind::Device,
                *owner,
                &device_record_id(DEVICE_REVOCATION_ID, &r.device()),
                &r.encode(),
            )
        }));
        self.0.store.write_records(&ops)?;
        let changed = {
            let mut known = self.0.known.write();
            if *owner == self.0.namespace() {
                let before = (known.own_certs.len(), known.own_device_revocations.len());
                for c in certs {
                    if !known.own_certs.contains(c) {
                        known.own_certs.push(c.clone());
                    }
                }
                for r in revocations {
                    if !known.own_device_revocations.contains(r) {
                        known.own_device_revocations.push(r.clone());
                    }
                }
                before != (known.own_certs.len(), known.own_device_revocations.len())
            } else {
                match known.friends.get_mut(owner) {
                    Some(friend) => {
                        let before = (friend.certs.len(), friend.device_revocations.len());
                        for c in certs {
                            if !friend.certs.contains(c) {
                                friend.certs.push(c.clone());
                            }
                        }
                        for r in revocations {
                            if !friend.device_revocations.contains(r) {
                                friend.device_revocations.push(r.clone());
                            }
                        }
                        before != (friend.certs.len(), friend.device_revocations.len())
                    }
                    None => false,
                }
            }
        };
        if changed {
            self.0.refresh_gate();
        }
        Ok(())
    }

    fn apply_tombstone(&self, owner: &NamespaceId, tombstone: &Tombstone) -> Result<()> {
        let record = RecordOp::put(
            RecordKind::Tombstone,
            *owner,
            tombstone.id().as_bytes(),
            &tombstone.encode(),
        );
        self.0
            .store
            .apply_tombstone(owner, tombstone.prefix(), tombstone.up_to(), &[record])?;
        if *owner != self.0.namespace() {
            // Confirm to the owner. Queued durably until the owner records it;
            // queued again if a re-delivered tombstone finds none pending.
            self.0.queue_receipt(owner, tombstone)?;
        }
        Ok(())
    }

    fn devices(&self, owner: &NamespaceId) -> Option<(Vec<DeviceCert>, Vec<DeviceRevocation>)> {
        let known = self.0.known.read();
        if *owner == self.0.namespace() {
            Some((
                known.own_certs.clone(),
                known.own_device_revocations.clone(),
            ))
        } else {
            known
                .friends
                .get(owner)
                .map(|f| (f.certs.clone(), f.device_revocations.clone()))
        }
    }

    fn has_blob(&self, hash: &kith_store::BlobHash) -> bool {
        self.0.store.has_blob(hash)
    }

    fn put_blob_entry(&self, owner: &NamespaceId, entry: &WireEntry) -> Result<bool> {
        let WireKind::Blob {
            hash,
            size,
            media_type,
        } = &entry.kind
        else {
            return Err(Error::Protocol("not a blob entry".into()));
        };
        let write = RemoteWrite {
            device: entry.device,
            timestamp: entry.timestamp,
        };
        match self
            .0
            .store
            .put_blob_entry(owner, &entry.path, write, *hash, *size, media_type)
        {
            Ok(_) => Ok(true),
            Err(e) if is_expected_refusal(&e) => {
                tracing::info!(path = %entry.path, %e, "blob entry not applied");
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn doc_heads(
        &self,
        owner: &NamespaceId,
        path: &Path,
        identity: DocIdentity,
    ) -> Result<Option<Vec<ChangeHash>>> {
        match self.0.store.get(owner, path)? {
            Some(Entry {
                kind:
                    EntryKind::Document {
                        created,
                        creator,
                        heads,
                        ..
                    },
                ..
            }) if created == identity.created && creator == identity.creator => Ok(Some(heads)),
            _ => Ok(None),
        }
    }

    fn apply_doc(
        &self,
        owner: &NamespaceId,
        path: &Path,
        identity: DocIdentity,
        write: RemoteWrite,
        changes: &[u8],
    ) -> Result<ApplyOutcome> {
        Ok(self
            .0
            .store
            .apply_changes(owner, path, identity, write, changes)?)
    }

    fn store_scopes(
        &self,
        owner: &NamespaceId,
        scopes: &[(kith_caps::Scope, kith_caps::Roster)],
    ) -> Result<()> {
        self.0.store_scopes(owner, scopes)
    }

    fn cursors(&self, owner: &NamespaceId, server: &DeviceId) -> Result<Vec<(Path, u64)>> {
        let Some(bytes) = self
            .0
            .store
            .record(RecordKind::SyncState, owner, server.as_bytes())?
        else {
            return Ok(Vec::new());
        };
        Ok(decode_cursors(&bytes).unwrap_or_else(|| {
            tracing::warn!("damaged sync cursors; starting over");
            Vec::new()
        }))
    }

    fn save_cursors(
        &self,
        owner: &NamespaceId,
        server: &DeviceId,
        cursors: &[(Path, u64)],
    ) -> Result<()> {
        let mut merged = self.cursors(owner, server)?;
        for (p, s) in cursors {
            match merged.iter_mut().find(|(q, _)| q == p) {
                Some(slot) => slot.1 = *s,
                None => merged.push((p.clone(), *s)),
            }
        }
        self.0.store.put_record(
            RecordKind::SyncState,
            owner,
            server.as_bytes(),
            &encode_cursors(&merged),
        )?;
        Ok(())
    }
}

/// Tag of a receipt in the outbox.
pub(crate) const OUTBOX_RECEIPT: u8 = 1;

/// Sync-state id prefix of what a device was served.
const SERVED_ID: &[u8] = b"served";

/// A friend device this namespace served, and the prefixes it was served.
struct Served {
    device: DeviceId,
    namespace: NamespaceId,
    prefixes: Vec<Path>,
}

/// A signed deletion of this namespace.
struct Deletion {
    tombstone: Tombstone,
    bytes: Vec<u8>,
    /// The friend it was asked of alone, for "revoke and delete".
    addressee: Option<NamespaceId>,
}

fn served_id(device: &DeviceId) -> Vec<u8> {
    let mut id = SERVED_ID.to_vec();
    id.extend_from_slice(device.as_bytes());
    id
}

fn receipt_id(tombstone: &[u8], device: &DeviceId) -> Vec<u8> {
    let mut id = tombstone.to_vec();
    id.extend_from_slice(device.as_bytes());
    id
}

/// Served record: the requester's namespace, then its prefixes.
fn encode_served(namespace: &NamespaceId, prefixes: &[Path]) -> Vec<u8> {
    let mut out = namespace.as_bytes().to_vec();
    out.extend_from_slice(&encode_cursors(
        &prefixes.iter().map(|p| (p.clone(), 0)).collect::<Vec<_>>(),
    ));
    out
}

fn decode_served(bytes: &[u8]) -> Option<(NamespaceId, Vec<Path>)> {
    let ns = NamespaceId::try_from_slice(bytes.get(..32)?).ok()?;
    let prefixes = decode_cursors(&bytes[32..])?
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    Some((ns, prefixes))
}

/// A receipt waiting in the outbox.
#[derive(Debug, Clone)]
pub(crate) struct OwedReceipt {
    pub(crate) outbox_id: u64,
    pub(crate) tombstone: Vec<u8>,
    pub(crate) bytes: Vec<u8>,
}

/// Whether a friend device has confirmed a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionStatus {
    /// The friend's namespace.
    pub namespace: NamespaceId,
    /// The friend's device that was served data under the deleted prefix.
    pub device: DeviceId,
    /// When it applied the deletion, from its signed receipt; `None` while
    /// pending.
    pub confirmed: Option<Timestamp>,
}

impl Shared {
    /// Queues a signed receipt of `tombstone` for its owner, unless one is
    /// already waiting. Call only once the store has applied the tombstone:
    /// `Store::apply_tombstone` returns after the deleted items' keys are
    /// destroyed on disk, which is what the receipt asserts.
    pub(crate) fn queue_receipt(&self, owner: &NamespaceId, tombstone: &Tombstone) -> Result<()> {
        let pending = self.store.outbox(owner)?;
        let id = tombstone.id();
        let already = pending.iter().any(|(_, m)| {
            m.first() == Some(&OUTBOX_RECEIPT)
                && Receipt::decode(&m[1..]).is_ok_and(|r| r.tombstone_id() == id)
        });
        if !already {
            let receipt = Receipt::issue(
                &self.identity.device_key,
                self.namespace(),
                id,
                self.store.clock().now(),
            );
            let mut message = vec![OUTBOX_RECEIPT];
            message.extend_from_slice(&receipt.encode());
            self.store.outbox_push(owner, &message)?;
        }
        Ok(())
    }

    /// Receipts waiting for `owner`.
    pub(crate) fn owed_receipts(&self, owner: &NamespaceId) -> Result<Vec<OwedReceipt>> {
        Ok(self
            .store
            .outbox(owner)?
            .into_iter()
            .filter(|(_, m)| m.first() == Some(&OUTBOX_RECEIPT))
            .filter_map(|(outbox_id, m)| {
                let r = Receipt::decode(&m[1..]).ok()?;
                Some(OwedReceipt {
                    outbox_id,
                    tombstone: r.tombstone_id().as_bytes().to_vec(),
                    bytes: m[1..].to_vec(),
                })
            })
            .collect())
    }

    /// Per friend device ever served data under the deleted prefix: whether
    /// it confirmed the deletion.
    pub(crate) fn deletion_status(
        &self,
        tombstone: &kith_caps::TombstoneId,
    ) -> Result<Vec<DeletionStatus>> {
        let ns = self.namespace();
        let Some(bytes) = self
            .store
            .record(RecordKind::Tombstone, &ns, tombstone.as_bytes())?
        else {
            return Ok(Vec::new());
        };
        let deletion = Deletion {
            tombstone: Tombstone::decode(&bytes)?,
            addressee: self.addressee(tombstone)?,
            bytes,
        };
        let mut out = Vec::new();
        for served in self.served_devices()? {
            if !Self::concerns(&deletion, &served) {
                continue;
            }
            let confirmed = self
                .store
                .record(
                    RecordKind::Receipt,
                    &ns,
                    &receipt_id(tombstone.as_bytes(), &served.device),
                )?
                .and_then(|b| Receipt::decode(&b).ok())
                .map(|r| r.applied_at());
            out.push(DeletionStatus {
                namespace: served.namespace,
                device: served.device,
                confirmed,
            });
        }
        Ok(out)
    }
}

pub(crate) fn encode_cursors(cursors: &[(Path, u64)]) -> Vec<u8> {
    let mut out = vec![1u8];
    for (p, s) in cursors {
        out.extend_from_slice(&(p.encoded().len() as u16).to_be_bytes());
        out.extend_from_slice(p.encoded());
        out.extend_from_slice(&s.to_be_bytes());
    }
    out
}

pub(crate) fn decode_cursors(bytes: &[u8]) -> Option<Vec<(Path, u64)>> {
    let (&version, mut rest) = bytes.split_first()?;
    if version != 1 {
        return None;
    }
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize;
        let path = Path::from_encoded(rest.get(2..2 + len)?).ok()?;
        let seq = u64::from_be_bytes(rest.get(2 + len..10 + len)?.try_into().ok()?);
        out.push((path, seq));
        rest = &rest[10 + len..];
    }
    Some(out)
}
