//! Cross-type replay is refused: a signature made for one type never
//! verifies as another, and one type's bytes are never accepted as another.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use ed25519_dalek::Signer;
use kith_caps::{
    DeviceCert, DeviceRevocation, Error, ReadCap, Receipt, Result, Revocation, Roster, Tombstone,
};

const DOMAINS: [&str; 7] = [
    DeviceCert::DOMAIN,
    DeviceRevocation::DOMAIN,
    ReadCap::DOMAIN,
    Revocation::DOMAIN,
    Tombstone::DOMAIN,
    Receipt::DOMAIN,
    Roster::DOMAIN,
];

type Check = fn(&[u8]) -> Result<()>;

/// A signed object: name, domain, signer's seed, encoding, full check.
type Signed = (&'static str, &'static str, [u8; 32], Vec<u8>, Check);

/// One instance of every signed type: its name, domain, the seed of the key
/// that signs it, its encoding and its full check.
fn signed_objects() -> Vec<Signed> {
    vec![
        (
            "device cert",
            DeviceCert::DOMAIN,
            [0x11; 32],
            device_cert().encode(),
            |b| DeviceCert::decode(b)?.verify(),
        ),
        (
            "device revocation",
            DeviceRevocation::DOMAIN,
            [0x11; 32],
            device_revocation().encode(),
            |b| DeviceRevocation::decode(b)?.verify(),
        ),
        (
            "read cap",
            ReadCap::DOMAIN,
            [0x11; 32],
            read_cap().encode(),
            |b| ReadCap::decode(b)?.verify(),
        ),
        (
            "revocation",
            Revocation::DOMAIN,
            [0x11; 32],
            revocation().encode(),
            |b| Revocation::decode(b)?.verify(),
        ),
        (
            "tombstone",
            Tombstone::DOMAIN,
            [0x11; 32],
            tombstone().encode(),
            |b| Tombstone::decode(b)?.verify(),
        ),
        (
            "device tombstone",
            Tombstone::DOMAIN,
            [0x33; 32],
            device_tombstone().encode(),
            |b| Tombstone::decode(b)?.verify(),
        ),
        (
            "receipt",
            Receipt::DOMAIN,
            [0x44; 32],
            receipt().encode(),
            |b| Receipt::decode(b)?.verify(&bob_device_cert()),
        ),
        (
            "roster",
            Roster::DOMAIN,
            [0x11; 32],
            roster().encode(),
            |b| Roster::decode(b)?.verify(),
        ),
    ]
}

/// `body` signed over `prefix || body` by the key with `seed`.
fn signed(seed: [u8; 32], prefix: &[u8], body: &[u8]) -> Vec<u8> {
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let mut msg = prefix.to_vec();
    msg.extend_from_slice(body);
    let mut out = body.to_vec();
    out.extend_from_slice(&key.sign(&msg).to_bytes());
    out
}

fn tagged(domain: &str) -> Vec<u8> {
    let mut t = domain.as_bytes().to_vec();
    t.push(0);
    t
}

#[test]
fn signatures_do_not_cross_domains() {
    for (name, own, seed, bytes, check) in signed_objects() {
        let body = &bytes[..bytes.len() - 64];
        // Control: signing the body under its own domain is exactly what
        // the crate does.
        assert_eq!(signed(seed, &tagged(own), body), bytes, "{name}");
        for other in DOMAINS.into_iter().filter(|d| *d != own) {
            let replayed = signed(seed, &tagged(other), body);
            assert!(
                matches!(check(&replayed), Err(Error::BadSignature { .. })),
                "{name}: a signature for {other} was accepted"
            );
        }
        // Neither a bare signature of the bytes, nor one with the tag but
        // no separator, nor another version of the tag.
        for prefix in [
            b"".to_vec(),
            own.as_bytes().to_vec(),
            tagged(&own.replace("/v1/", "/v2/")),
        ] {
            let replayed = signed(seed, &prefix, body);
            assert!(
                matches!(check(&replayed), Err(Error::BadSignature { .. })),
                "{name}: a signature with prefix {prefix:?} was accepted"
            );
        }
    }
}

#[test]
fn one_types_bytes_are_refused_as_another() {
    let objects = signed_objects();
    for (name, own, _, bytes, _) in &objects {
        for (other_name, other, _, _, check) in &objects {
            if own == other {
                continue;
            }
            assert!(
                check(bytes).is_err(),
                "{name}'s bytes were accepted as a {other_name}"
            );
        }
    }
}

#[test]
fn a_read_cap_is_not_a_tombstone() {
    // The example, spelled out: a ReadCap's bytes and signature
    // presented as a Tombstone fail to decode; its signature spliced onto a
    // tombstone body fails to verify.
    let cap = read_cap().encode();
    assert!(matches!(Tombstone::decode(&cap), Err(Error::Decode(_))));
    let mut tomb = tombstone().encode();
    let len = tomb.len();
    tomb[len - 64..].copy_from_slice(&cap[cap.len() - 64..]);
    assert!(matches!(
        Tombstone::decode(&tomb).unwrap().verify(),
        Err(Error::BadSignature { .. })
    ));
}
