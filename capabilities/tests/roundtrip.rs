//! Round-trip property tests: for every type, `decode(encode(x)) == x`,
//! the decoded object still verifies, and the encoding is exactly as long
//! as the layout in FORMAT.md says.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use kith_caps::{
    CapId, DeviceCert, DeviceId, DeviceRevocation, NamespaceId, ReadCap, Receipt, Revocation,
    Rights, Roster, Scope, ScopeSecret, SealedEnvelope, Tombstone, TombstoneId,
};
use kith_types::{Path, Timestamp};
use proptest::prelude::*;

fn component() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9]{1,8}", "[a-c\u{e9}\u{1F600} ~-]{1,5}", "x{255}"]
}

fn path() -> impl Strategy<Value = Path> {
    prop::collection::vec(component(), 0..6).prop_map(|cs| Path::from_components(cs).unwrap())
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    prop_oneof![Just(0u64), Just(u64::MAX - 1), any::<u64>()].prop_map(Timestamp::from_micros)
}

/// An issue time and an optional expiry after it.
fn window() -> impl Strategy<Value = (Timestamp, Option<Timestamp>)> {
    (any::<u64>(), prop::option::of(1..=u64::MAX)).prop_map(|(start, len)| {
        let start = start % (u64::MAX / 2);
        (
            Timestamp::from_micros(start),
            len.map(|l| Timestamp::from_micros(start.saturating_add(l))),
        )
    })
}

fn rights() -> impl Strategy<Value = Rights> {
    (0u8..4).prop_map(|b| Rights::from_bits(b).unwrap())
}

fn id32() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn config() -> ProptestConfig {
    // Signing and verifying are slow in unoptimised test builds.
    ProptestConfig::with_cases(48)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn device_cert_round_trips(device in id32(), rights in rights(), (at, exp) in window()) {
        let cert = DeviceCert::issue(&alice(), DeviceId::from_bytes(device), rights, at, exp).unwrap();
        let bytes = cert.encode();
        prop_assert_eq!(bytes.len(), 1 + 32 + 32 + 1 + 8 + 1 + if exp.is_some() { 8 } else { 0 } + 64);
        let back = DeviceCert::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &cert);
        back.verify().unwrap();
        prop_assert_eq!(back.rights(), rights);
        prop_assert_eq!(back.expires_at(), exp);
    }

    #[test]
    fn device_revocation_round_trips(device in id32(), at in timestamp()) {
        let rev = DeviceRevocation::issue(&alice(), DeviceId::from_bytes(device), at);
        let bytes = rev.encode();
        prop_assert_eq!(bytes.len(), DeviceRevocation::MAX_ENCODED_LEN);
        let back = DeviceRevocation::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &rev);
        back.verify().unwrap();
    }

    #[test]
    fn read_cap_round_trips(id in any::<[u8; 16]>(), grantee in id32(), prefix in path(), (at, exp) in window()) {
        let cap = ReadCap::issue(&alice(), CapId::from_bytes(id), NamespaceId::from_bytes(grantee), prefix.clone(), at, exp).unwrap();
        let bytes = cap.encode();
        prop_assert!(bytes.len() <= ReadCap::MAX_ENCODED_LEN);
        let back = ReadCap::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &cap);
        back.verify().unwrap();
        prop_assert_eq!(back.prefix(), &prefix);
    }

    #[test]
    fn revocation_round_trips(id in any::<[u8; 16]>(), at in timestamp()) {
        let rev = Revocation::issue(&alice(), CapId::from_bytes(id), at);
        let bytes = rev.encode();
        prop_assert_eq!(bytes.len(), Revocation::MAX_ENCODED_LEN);
        let back = Revocation::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &rev);
        back.verify().unwrap();
    }

    #[test]
    fn tombstone_round_trips(id in any::<[u8; 16]>(), prefix in path(), up_to in timestamp(), by_device in any::<bool>()) {
        let id = TombstoneId::from_bytes(id);
        let tomb = if by_device {
            Tombstone::issue_by_device(&alice_phone(), device_cert(), id, prefix, up_to).unwrap()
        } else {
            Tombstone::issue(&alice(), id, prefix, up_to)
        };
        let bytes = tomb.encode();
        prop_assert!(bytes.len() <= Tombstone::MAX_ENCODED_LEN);
        let back = Tombstone::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &tomb);
        back.verify().unwrap();
    }

    #[test]
    fn receipt_round_trips(id in any::<[u8; 16]>(), at in timestamp()) {
        let receipt = Receipt::issue(&bob_laptop(), bob().id(), TombstoneId::from_bytes(id), at);
        let bytes = receipt.encode();
        prop_assert_eq!(bytes.len(), Receipt::MAX_ENCODED_LEN);
        let back = Receipt::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &receipt);
        if at >= bob_device_cert().issued_at() {
            back.verify(&bob_device_cert()).unwrap();
        }
    }

    #[test]
    fn roster_round_trips(prefix in path(), epoch in any::<u64>(), members in prop::collection::vec(id32(), 0..40)) {
        let members: Vec<DeviceId> = members.into_iter().map(DeviceId::from_bytes).collect();
        let roster = Roster::issue(&alice(), prefix, epoch, members.clone()).unwrap();
        let back = Roster::decode(&roster.encode()).unwrap();
        prop_assert_eq!(&back, &roster);
        back.verify().unwrap();
        for m in &members {
            prop_assert!(back.contains(m));
        }
        prop_assert!(back.members().windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn scope_round_trips(ns in id32(), prefix in path(), epoch in any::<u64>(), secret in id32()) {
        let scope = Scope::new(NamespaceId::from_bytes(ns), prefix, epoch, ScopeSecret::from_bytes(secret));
        let back = Scope::decode(&scope.encode()).unwrap();
        prop_assert_eq!(back.topic_id(), scope.topic_id());
        prop_assert_eq!(&back, &scope);
    }
}

proptest! {
    #[test]
    fn sealed_envelope_round_trips(plaintext in prop::collection::vec(any::<u8>(), 0..2048), epoch in any::<u64>(), secret in id32()) {
        let scope = Scope::new(alice().id(), p("/a"), epoch, ScopeSecret::from_bytes(secret));
        let sealed = scope.seal(&plaintext, &mut rand::rng()).unwrap();
        let bytes = sealed.encode();
        prop_assert_eq!(bytes.len(), plaintext.len() + SealedEnvelope::OVERHEAD);
        let back = SealedEnvelope::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &sealed);
        prop_assert_eq!(back.plaintext_len(), plaintext.len());
        prop_assert_eq!(scope.open(&back).unwrap(), plaintext);
    }
}

#[test]
fn largest_values_round_trip() {
    let longest = Path::from_components(std::iter::repeat_n("x".repeat(255), 64)).unwrap();
    let cap = ReadCap::issue(
        &alice(),
        CapId::from_bytes([1; 16]),
        bob().id(),
        longest.clone(),
        t(0),
        Some(t(u64::MAX)),
    )
    .unwrap();
    assert_eq!(cap.encode().len(), ReadCap::MAX_ENCODED_LEN);
    assert_eq!(ReadCap::decode(&cap.encode()).unwrap(), cap);

    let tomb = Tombstone::issue_by_device(
        &alice_phone(),
        device_cert(),
        TombstoneId::from_bytes([2; 16]),
        longest.clone(),
        t(u64::MAX),
    )
    .unwrap();
    assert_eq!(tomb.encode().len(), Tombstone::MAX_ENCODED_LEN);
    assert_eq!(Tombstone::decode(&tomb.encode()).unwrap(), tomb);

    let members = (0..Roster::MAX_MEMBERS).map(|i| {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&(i as u64).to_be_bytes());
        DeviceId::from_bytes(b)
    });
    let roster = Roster::issue(&alice(), longest.clone(), u64::MAX, members).unwrap();
    assert_eq!(roster.encode().len(), Roster::MAX_ENCODED_LEN);
    assert_eq!(Roster::decode(&roster.encode()).unwrap(), roster);

    let scope = Scope::new(
        alice().id(),
        longest,
        u64::MAX,
        ScopeSecret::from_bytes([9; 32]),
    );
    assert_eq!(scope.encode().len(), Scope::MAX_ENCODED_LEN);

    let cert =
        DeviceCert::issue(&alice(), bob_laptop().id(), Rights::ALL, t(0), Some(t(1))).unwrap();
    assert_eq!(cert.encode().len(), DeviceCert::MAX_ENCODED_LEN);

    let big = vec![7u8; SealedEnvelope::MAX_PLAINTEXT_LEN];
    let sealed = common::scope().seal(&big, &mut rand::rng()).unwrap();
    assert_eq!(sealed.encode().len(), SealedEnvelope::MAX_ENCODED_LEN);
    assert_eq!(SealedEnvelope::decode(&sealed.encode()).unwrap(), sealed);
    assert_eq!(common::scope().open(&sealed).unwrap(), big);
}
