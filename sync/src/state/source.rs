//! The owner's data as a catch-up serves it and a live push publishes it.

use std::sync::Arc;

use kith_caps::{DeviceCert, DeviceRevocation, Grants, ReadCap, Receipt, Revocation, Tombstone};
use kith_store::automerge::ChangeHash;
use kith_store::{Change, Entry, RecordKind};
use kith_types::{DeviceId, NamespaceId, Path, Timestamp};

use crate::proto::Result;
use crate::proto::addr::Addr;
use crate::proto::serve::{Requester, Source};

use super::deletions::Served;
use super::records::{decode_served, encode_served, receipt_id, served_id};
use super::shared::{NodeEvent, Shared};

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

    fn device_addresses(&self) -> Vec<(DeviceId, Vec<Addr>)> {
        self.0.own_device_addresses()
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
        Ok(self.0.owed_to(&served, &self.0.deletions()?)?)
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

    fn forget_scopes_sent(&self, device: &DeviceId) -> Result<bool> {
        Ok(self.0.forget_scopes_sent(device)?)
    }

    fn scopes_sent(&self, device: &DeviceId, versions: &[(Path, u64)]) -> Result<()> {
        Ok(self.0.record_scopes_sent(device, versions)?)
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
