//! How what the node knows is kept in the store: the ids of its records
//! and the encodings of those the node writes itself (signed objects are
//! stored as they arrived, and verified again when loaded).
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

use kith_caps::{DeviceCert, DeviceRevocation, ReadCap, Revocation, Roster, Scope};
use kith_store::{RecordKind, Store};
use kith_types::{DeviceId, NamespaceId, Path};

use crate::error::Result;
use crate::ticket::Ticket;

pub(super) const CERT_ID: u8 = 1;

pub(super) const DEVICE_REVOCATION_ID: u8 = 2;

/// A ticket of one of this namespace's other devices.
pub(super) const OWN_TICKET_ID: u8 = 3;

pub(super) const TICKET_ID: &[u8] = b"ticket";

pub(super) const SUBSCRIBED_ID: &[u8] = b"subscribed";

/// Sync-state id prefix of the friend a deletion was asked of.
pub(super) const ADDRESSED_ID: &[u8] = b"to";

/// Tag of a receipt in the outbox.
pub(crate) const OUTBOX_RECEIPT: u8 = 1;

/// Sync-state id prefix of what a device was served.
pub(super) const SERVED_ID: &[u8] = b"served";

pub(super) fn device_record_id(kind: u8, device: &DeviceId) -> Vec<u8> {
    let mut id = vec![kind];
    id.extend_from_slice(device.as_bytes());
    id
}

/// Loads verified signed objects of one kind; damaged ones are logged and
/// skipped (they never reach a decision).
pub(super) fn load<T>(
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

pub(super) fn parse_ticket(text: Vec<u8>) -> Option<Ticket> {
    String::from_utf8(text).ok()?.parse().ok()
}

pub(super) fn decode_cap(b: &[u8]) -> kith_caps::Result<ReadCap> {
    let c = ReadCap::decode(b)?;
    c.verify()?;
    Ok(c)
}

pub(super) fn decode_revocation(b: &[u8]) -> kith_caps::Result<Revocation> {
    let r = Revocation::decode(b)?;
    r.verify()?;
    Ok(r)
}

pub(super) fn decode_cert(b: &[u8]) -> kith_caps::Result<DeviceCert> {
    let c = DeviceCert::decode(b)?;
    c.verify()?;
    Ok(c)
}

pub(super) fn decode_device_revocation(b: &[u8]) -> kith_caps::Result<DeviceRevocation> {
    let r = DeviceRevocation::decode(b)?;
    r.verify()?;
    Ok(r)
}

pub(super) fn served_id(device: &DeviceId) -> Vec<u8> {
    let mut id = SERVED_ID.to_vec();
    id.extend_from_slice(device.as_bytes());
    id
}

pub(super) fn receipt_id(tombstone: &[u8], device: &DeviceId) -> Vec<u8> {
    let mut id = tombstone.to_vec();
    id.extend_from_slice(device.as_bytes());
    id
}

/// Served record: the requester's namespace, then its prefixes.
pub(super) fn encode_served(namespace: &NamespaceId, prefixes: &[Path]) -> Vec<u8> {
    let mut out = namespace.as_bytes().to_vec();
    out.extend_from_slice(&encode_cursors(
        &prefixes.iter().map(|p| (p.clone(), 0)).collect::<Vec<_>>(),
    ));
    out
}

pub(super) fn decode_served(bytes: &[u8]) -> Option<(NamespaceId, Vec<Path>)> {
    let ns = NamespaceId::try_from_slice(bytes.get(..32)?).ok()?;
    let prefixes = decode_cursors(&bytes[32..])?
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    Some((ns, prefixes))
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

/// Sync-state id prefix of the record of scope versions sent to a device
/// (kept in the sync cursors' encoding: (prefix, [`roster_version`]) pairs).
pub(super) const SCOPES_SENT_ID: &[u8] = b"scopes";

pub(super) fn encode_held(scope: &Scope, roster: &Roster) -> Vec<u8> {
    let s = scope.encode();
    let mut out = Vec::with_capacity(4 + s.len() + 64);
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(&s);
    out.extend_from_slice(&roster.encode());
    out
}

pub(super) fn decode_held(bytes: &[u8]) -> Option<(Scope, Roster)> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let scope = Scope::decode(bytes.get(4..4 + len)?).ok()?;
    let roster = Roster::decode(bytes.get(4 + len..)?).ok()?;
    roster.verify().ok()?;
    roster.is_for(&scope).then_some((scope, roster))
}

pub(super) fn sent_id(device: &DeviceId) -> Vec<u8> {
    let mut id = SCOPES_SENT_ID.to_vec();
    id.extend_from_slice(device.as_bytes());
    id
}
