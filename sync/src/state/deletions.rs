//! Deletions this namespace asked for, who owes a receipt, and the
//! receipts this node owes its friends.

use kith_caps::{Receipt, Tombstone};
use kith_store::{RecordKind, RecordOp};
use kith_types::{DeviceId, NamespaceId, Path, Timestamp};

use crate::error::Result;

use super::records::{ADDRESSED_ID, OUTBOX_RECEIPT, SERVED_ID, decode_served, receipt_id};
use super::shared::Shared;

/// A friend device this namespace served, and the prefixes it was served.
pub(super) struct Served {
    pub(super) device: DeviceId,
    pub(super) namespace: NamespaceId,
    pub(super) prefixes: Vec<Path>,
}

/// A signed deletion of this namespace.
pub(super) struct Deletion {
    pub(super) tombstone: Tombstone,
    pub(super) bytes: Vec<u8>,
    /// The friend it was asked of alone, for "revoke and delete".
    pub(super) addressee: Option<NamespaceId>,
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
    pub(super) fn served_devices(&self) -> Result<Vec<Served>> {
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
    pub(super) fn deletions(&self) -> Result<Vec<Deletion>> {
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
    pub(super) fn concerns(deletion: &Deletion, served: &Served) -> bool {
        deletion.addressee.is_none_or(|to| to == served.namespace)
            && served
                .prefixes
                .iter()
                .any(|p| p.overlaps(deletion.tombstone.prefix()))
    }

    /// The signed deletions `served` has not confirmed.
    pub(super) fn owed_to(&self, served: &Served, deletions: &[Deletion]) -> Result<Vec<Vec<u8>>> {
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
