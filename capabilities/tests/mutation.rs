//! Flipping any single bit of an encoded signed object makes decoding or
//! verification fail: every bit of one instance of every signed type (and
//! of a sealed envelope, whose authentication is the AEAD tag).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use kith_caps::{
    DeviceCert, DeviceRevocation, ReadCap, Receipt, Result, Revocation, Roster, SealedEnvelope,
    Tombstone,
};

/// Flips every bit of `bytes` in turn and checks that `check` fails on the
/// result; checks that it succeeds on the original.
fn every_bit_flip_fails(what: &str, bytes: &[u8], check: impl Fn(&[u8]) -> Result<()>) {
    check(bytes).unwrap_or_else(|e| panic!("{what}: the original must pass: {e}"));
    let mut mutated = bytes.to_vec();
    for byte in 0..bytes.len() {
        for bit in 0..8 {
            mutated[byte] ^= 1 << bit;
            assert!(
                check(&mutated).is_err(),
                "{what}: flipping bit {bit} of byte {byte} was not detected"
            );
            mutated[byte] ^= 1 << bit;
        }
    }
}

#[test]
fn device_cert_detects_every_bit_flip() {
    every_bit_flip_fails("device cert", &device_cert().encode(), |b| {
        DeviceCert::decode(b)?.verify()
    });
}

#[test]
fn device_revocation_detects_every_bit_flip() {
    every_bit_flip_fails("device revocation", &device_revocation().encode(), |b| {
        DeviceRevocation::decode(b)?.verify()
    });
}

#[test]
fn read_cap_detects_every_bit_flip() {
    every_bit_flip_fails("read cap", &read_cap().encode(), |b| {
        ReadCap::decode(b)?.verify()
    });
}

#[test]
fn revocation_detects_every_bit_flip() {
    every_bit_flip_fails("revocation", &revocation().encode(), |b| {
        Revocation::decode(b)?.verify()
    });
}

#[test]
fn namespace_tombstone_detects_every_bit_flip() {
    every_bit_flip_fails("tombstone", &tombstone().encode(), |b| {
        Tombstone::decode(b)?.verify()
    });
}

#[test]
fn device_tombstone_detects_every_bit_flip() {
    // Covers the embedded cert too: its bits are signed twice.
    every_bit_flip_fails("device tombstone", &device_tombstone().encode(), |b| {
        Tombstone::decode(b)?.verify()
    });
}

#[test]
fn receipt_detects_every_bit_flip() {
    let cert = bob_device_cert();
    every_bit_flip_fails("receipt", &receipt().encode(), |b| {
        Receipt::decode(b)?.verify(&cert)
    });
}

#[test]
fn roster_detects_every_bit_flip() {
    every_bit_flip_fails("roster", &roster().encode(), |b| {
        Roster::decode(b)?.verify()
    });
}

#[test]
fn sealed_envelope_detects_every_bit_flip() {
    let scope = scope();
    every_bit_flip_fails("sealed envelope", &sealed_envelope().encode(), |b| {
        scope.open(&SealedEnvelope::decode(b)?).map(drop)
    });
}

#[test]
fn the_receipt_cert_is_checked_too() {
    // A receipt checked against a cert whose bits were flipped fails.
    let receipt = receipt();
    every_bit_flip_fails("receipt's cert", &bob_device_cert().encode(), |b| {
        receipt.verify(&DeviceCert::decode(b)?)
    });
}
