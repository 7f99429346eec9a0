//! Opaque signed records kept beside the data: capabilities, revocations,
//! tombstones, receipts, friends, device certificates, scopes and the outbox.
//!
//! The store does not interpret them (the capabilities crate defines their
//! meaning); it keeps them durably, keyed by kind, namespace and id, and can
//! write them in the same atomic batch as the data they relate to (see
//! [`Store::apply_tombstone`](crate::Store::apply_tombstone)).

use kith_types::NamespaceId;

/// Longest record id, bytes.
pub const MAX_RECORD_ID_LEN: usize = 255;

/// What a record is. The tag byte of each kind is part of the on-disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordKind {
    /// A read capability granted by or to a namespace.
    Capability,
    /// A revocation of a capability.
    Revocation,
    /// A signed deletion request.
    Tombstone,
    /// A signed receipt confirming a deletion.
    Receipt,
    /// A friend (their ticket or namespace record).
    Friend,
    /// A device certificate or device revocation.
    Device,
    /// Scope material (secrets, epochs, rosters).
    Scope,
    /// This node's own identity material.
    Identity,
    /// A message owed to someone, kept until delivered.
    Outbox,
    /// Sync progress with a peer (cursors).
    SyncState,
}

impl RecordKind {
    pub(crate) fn tag(self) -> u8 {
        match self {
            RecordKind::Capability => 1,
            RecordKind::Revocation => 2,
            RecordKind::Tombstone => 3,
            RecordKind::Receipt => 4,
            RecordKind::Friend => 5,
            RecordKind::Device => 6,
            RecordKind::Scope => 7,
            RecordKind::Identity => 8,
            RecordKind::Outbox => 9,
            RecordKind::SyncState => 10,
        }
    }
}

/// One write to the record keyspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOp {
    /// Store `bytes` under (kind, namespace, id), replacing what was there.
    Put {
        /// Record kind.
        kind: RecordKind,
        /// Namespace it belongs to.
        ns: NamespaceId,
        /// Its id (at most [`MAX_RECORD_ID_LEN`] bytes).
        id: Vec<u8>,
        /// The opaque bytes.
        bytes: Vec<u8>,
    },
    /// Remove (kind, namespace, id).
    Remove {
        /// Record kind.
        kind: RecordKind,
        /// Namespace it belongs to.
        ns: NamespaceId,
        /// Its id.
        id: Vec<u8>,
    },
}

impl RecordOp {
    /// A put.
    pub fn put(kind: RecordKind, ns: NamespaceId, id: &[u8], bytes: &[u8]) -> Self {
        Self::Put {
            kind,
            ns,
            id: id.to_vec(),
            bytes: bytes.to_vec(),
        }
    }

    /// A removal.
    pub fn remove(kind: RecordKind, ns: NamespaceId, id: &[u8]) -> Self {
        Self::Remove {
            kind,
            ns,
            id: id.to_vec(),
        }
    }

    pub(crate) fn id(&self) -> &[u8] {
        match self {
            RecordOp::Put { id, .. } | RecordOp::Remove { id, .. } => id,
        }
    }
}
