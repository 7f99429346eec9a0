//! Another namespace's data as this node keeps it: the one door through
//! which catch-ups and live pushes write friends' (and own devices') data.

use std::sync::Arc;

use kith_caps::{DeviceCert, DeviceRevocation, ReadCap, Revocation, Tombstone};
use kith_store::automerge::ChangeHash;
use kith_store::{
    ApplyOutcome, DocIdentity, Entry, EntryKind, RecordKind, RecordOp, RemoteChanges, RemoteWrite,
};
use kith_types::{DeviceId, NamespaceId, Path};

use crate::proto::addr::Addr;
use crate::proto::fetch::{Replica, is_expected_refusal};
use crate::proto::wire::{WireEntry, WireKind};
use crate::proto::{Error, Result};

use super::records::{
    CERT_ID, DEVICE_REVOCATION_ID, decode_cursors, device_record_id, encode_cursors, parse_ticket,
};
use super::shared::Shared;

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

    fn store_addresses(
        &self,
        owner: &NamespaceId,
        devices: &[(DeviceId, Vec<Addr>)],
    ) -> Result<()> {
        Ok(self.0.learn_handed_over(owner, devices)?)
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

    fn apply_docs(
        &self,
        owner: &NamespaceId,
        docs: &[RemoteChanges<'_>],
    ) -> Result<Vec<Result<ApplyOutcome>>> {
        Ok(self
            .0
            .store
            .apply_changes_batch(owner, docs)?
            .into_iter()
            .map(|r| r.map_err(Error::from))
            .collect())
    }

    fn store_scopes(
        &self,
        owner: &NamespaceId,
        scopes: &[(kith_caps::Scope, kith_caps::Roster)],
    ) -> Result<()> {
        Ok(self.0.store_scopes(owner, scopes)?)
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
