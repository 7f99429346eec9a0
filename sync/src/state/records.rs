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
//! | `Device` | own namespace | `4` ‖ device | addresses learnt of a device |
//! | `Friend` | friend | `ticket` ‖ device | ticket text |
//! | `Friend` | friend | `subscribed` | empty |
//! | `SyncState` | owner | serving device | cursors |

use kith_caps::{DeviceCert, DeviceRevocation, ReadCap, Revocation, Roster, Scope};
use kith_store::{RecordKind, Store};
use kith_types::{DeviceId, NamespaceId, Path};

use crate::error::Result;
use crate::proto::codec::{Dec, Enc};
use crate::ticket::Ticket;

pub(super) const CERT_ID: u8 = 1;

pub(super) const DEVICE_REVOCATION_ID: u8 = 2;

/// A ticket of one of this namespace's other devices.
pub(super) const OWN_TICKET_ID: u8 = 3;

/// Addresses learnt of a device (own namespace, any device).
pub(super) const LEARNT_ID: u8 = 4;

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
    let mut e = Enc::default();
    e.raw(namespace.as_bytes());
    e.raw(&encode_cursors(
        &prefixes.iter().map(|p| (p.clone(), 0)).collect::<Vec<_>>(),
    ));
    e.finish()
}

pub(super) fn decode_served(bytes: &[u8]) -> Option<(NamespaceId, Vec<Path>)> {
    let mut d = Dec(bytes);
    let ns = NamespaceId::from_bytes(d.array().ok()?);
    let prefixes = decode_cursors(d.0)?.into_iter().map(|(p, _)| p).collect();
    Some((ns, prefixes))
}

/// Cursors (and lists of prefixes, with 0 for each): version `1`, then
/// per prefix its path and a `u64`, to the end.
pub(crate) fn encode_cursors(cursors: &[(Path, u64)]) -> Vec<u8> {
    let mut e = Enc::versioned(1);
    for (p, s) in cursors {
        e.path(p);
        e.u64(*s);
    }
    e.finish()
}

pub(crate) fn decode_cursors(bytes: &[u8]) -> Option<Vec<(Path, u64)>> {
    let mut d = Dec::versioned(bytes, 1).ok()?;
    let mut out = Vec::new();
    while !d.is_empty() {
        out.push((d.path().ok()?, d.u64().ok()?));
    }
    Some(out)
}

/// Sync-state id prefix of the record of scope versions sent to a device
/// (kept in the sync cursors' encoding: (prefix, [`roster_version`]) pairs).
pub(super) const SCOPES_SENT_ID: &[u8] = b"scopes";

/// A held scope: the scope's encoding as a byte string, then its roster's
/// encoding to the end.
pub(super) fn encode_held(scope: &Scope, roster: &Roster) -> Vec<u8> {
    let mut e = Enc::default();
    e.bytes(&scope.encode());
    e.raw(&roster.encode());
    e.finish()
}

pub(super) fn decode_held(bytes: &[u8]) -> Option<(Scope, Roster)> {
    let mut d = Dec(bytes);
    let scope = Scope::decode(d.bytes(bytes.len()).ok()?).ok()?;
    let roster = Roster::decode(d.0).ok()?;
    roster.verify().ok()?;
    roster.is_for(&scope).then_some((scope, roster))
}

pub(super) fn sent_id(device: &DeviceId) -> Vec<u8> {
    let mut id = SCOPES_SENT_ID.to_vec();
    id.extend_from_slice(device.as_bytes());
    id
}

#[cfg(test)]
mod tests {
    use kith_caps::{NamespaceKey, ScopeSecret};
    use proptest::prelude::*;
    use rand::SeedableRng;

    use super::*;

    fn path() -> impl Strategy<Value = Path> {
        prop::collection::vec("[a-z0-9]{1,12}", 1..5)
            .prop_map(|parts| Path::parse(&format!("/{}", parts.join("/"))).unwrap())
    }

    proptest! {
        #[test]
        fn cursors_round_trip(cursors in prop::collection::vec((path(), any::<u64>()), 0..20)) {
            prop_assert_eq!(decode_cursors(&encode_cursors(&cursors)), Some(cursors));
        }

        #[test]
        fn served_round_trips(ns in any::<[u8; 32]>(), prefixes in prop::collection::vec(path(), 0..20)) {
            let ns = NamespaceId::from_bytes(ns);
            prop_assert_eq!(decode_served(&encode_served(&ns, &prefixes)), Some((ns, prefixes)));
        }

        #[test]
        fn held_scopes_round_trip(seed in any::<u64>(), prefix in path(), epoch in any::<u64>(), members in prop::collection::vec(any::<[u8; 32]>(), 0..40)) {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let key = NamespaceKey::generate(&mut rng);
            let scope = Scope::new(key.id(), prefix.clone(), epoch, ScopeSecret::random(&mut rng));
            let roster = Roster::issue(&key, prefix, epoch, members.into_iter().map(DeviceId::from_bytes)).unwrap();
            let held = decode_held(&encode_held(&scope, &roster));
            prop_assert_eq!(held.map(|(s, r)| (s.encode(), r.encode())), Some((scope.encode(), roster.encode())));
        }

        #[test]
        fn damaged_records_never_panic(raw in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_cursors(&raw);
            let _ = decode_served(&raw);
            let _ = decode_held(&raw);
        }
    }
}
