//! Fixed keys and one instance of every type, shared by the tests.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use kith_caps::{
    CapId, DeviceCert, DeviceKey, DeviceRevocation, NamespaceKey, ReadCap, Receipt, Revocation,
    Rights, Roster, Scope, ScopeSecret, SealedEnvelope, SignedPush, Tombstone, TombstoneId,
};
use kith_types::{Path, Timestamp};

pub fn alice() -> NamespaceKey {
    NamespaceKey::from_bytes([0x11; 32])
}

pub fn bob() -> NamespaceKey {
    NamespaceKey::from_bytes([0x22; 32])
}

pub fn alice_phone() -> DeviceKey {
    DeviceKey::from_bytes([0x33; 32])
}

pub fn bob_laptop() -> DeviceKey {
    DeviceKey::from_bytes([0x44; 32])
}

pub fn p(s: &str) -> Path {
    Path::parse(s).unwrap()
}

pub fn t(micros: u64) -> Timestamp {
    Timestamp::from_micros(micros)
}

/// A seeded, non-cryptographic stand-in is not needed: tests that need
/// randomness use rand's thread RNG; fixtures use fixed ids.
pub fn device_cert() -> DeviceCert {
    DeviceCert::issue(
        &alice(),
        alice_phone().id(),
        Rights::WRITE | Rights::SERVE,
        t(1_000),
        Some(t(1_000_000_000)),
    )
    .unwrap()
}

pub fn bob_device_cert() -> DeviceCert {
    DeviceCert::issue(&bob(), bob_laptop().id(), Rights::NONE, t(1_000), None).unwrap()
}

pub fn device_revocation() -> DeviceRevocation {
    DeviceRevocation::issue(&alice(), alice_phone().id(), t(5_000))
}

pub fn read_cap() -> ReadCap {
    ReadCap::issue(
        &alice(),
        CapId::from_bytes([0xca; 16]),
        bob().id(),
        p("/photos"),
        t(2_000),
        Some(t(9_000_000)),
    )
    .unwrap()
}

pub fn revocation() -> Revocation {
    Revocation::issue(&alice(), CapId::from_bytes([0xca; 16]), t(3_000))
}

pub fn tombstone() -> Tombstone {
    Tombstone::issue(
        &alice(),
        TombstoneId::from_bytes([0x70; 16]),
        p("/photos/2024"),
        t(4_000),
    )
}

pub fn device_tombstone() -> Tombstone {
    Tombstone::issue_by_device(
        &alice_phone(),
        device_cert(),
        TombstoneId::from_bytes([0x71; 16]),
        p("/posts"),
        t(4_500),
    )
    .unwrap()
}

pub fn receipt() -> Receipt {
    Receipt::issue(
        &bob_laptop(),
        bob().id(),
        TombstoneId::from_bytes([0x70; 16]),
        t(6_000),
    )
}

pub fn roster() -> Roster {
    Roster::issue(
        &alice(),
        p("/photos"),
        3,
        [alice_phone().id(), bob_laptop().id()],
    )
    .unwrap()
}

pub fn scope() -> Scope {
    Scope::new(
        alice().id(),
        p("/photos"),
        3,
        ScopeSecret::from_bytes([0x5c; 32]),
    )
}

/// A deterministic "RNG" for fixed nonces in vectors: fills with one byte.
pub struct FixedBytes(pub u8);

impl rand::TryRng for FixedBytes {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(u32::from_ne_bytes([self.0; 4]))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(u64::from_ne_bytes([self.0; 8]))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        dst.fill(self.0);
        Ok(())
    }
}

impl rand::TryCryptoRng for FixedBytes {}

pub fn sealed_envelope() -> SealedEnvelope {
    scope()
        .seal(b"hello, friends", &mut FixedBytes(0x4e))
        .unwrap()
}

/// A push message about alice's namespace, signed by her phone.
pub fn signed_push() -> SignedPush {
    SignedPush::sign(&alice_phone(), alice().id(), b"a push body".to_vec()).unwrap()
}

/// The outcome of feeding bytes to one decoder (and, if it accepts them,
/// to the object's checks).
#[derive(Debug)]
pub struct Outcome {
    pub decoder: &'static str,
    pub decoded: bool,
}

/// Feeds `bytes` to every decoder in the crate. Whatever a decoder accepts
/// must re-encode to exactly the same bytes (one encoding per value), and
/// its checks must return without panicking.
pub fn decode_everything(bytes: &[u8]) -> Vec<Outcome> {
    let mut out = Vec::new();
    let mut record = |decoder, decoded| out.push(Outcome { decoder, decoded });
    if let Ok(v) = DeviceCert::decode(bytes) {
        assert_eq!(v.encode(), bytes, "device cert is not canonical");
        let _ = v.verify();
        record("device_cert", true);
    }
    if let Ok(v) = DeviceRevocation::decode(bytes) {
        assert_eq!(v.encode(), bytes, "device revocation is not canonical");
        let _ = v.verify();
        record("device_revocation", true);
    }
    if let Ok(v) = ReadCap::decode(bytes) {
        assert_eq!(v.encode(), bytes, "read cap is not canonical");
        let _ = v.verify();
        record("read_cap", true);
    }
    if let Ok(v) = Revocation::decode(bytes) {
        assert_eq!(v.encode(), bytes, "revocation is not canonical");
        let _ = v.verify();
        record("revocation", true);
    }
    if let Ok(v) = Tombstone::decode(bytes) {
        assert_eq!(v.encode(), bytes, "tombstone is not canonical");
        let _ = v.verify();
        let _ = v.check_authority(&[], t(0));
        record("tombstone", true);
    }
    if let Ok(v) = Receipt::decode(bytes) {
        assert_eq!(v.encode(), bytes, "receipt is not canonical");
        let _ = v.verify(&bob_device_cert());
        record("receipt", true);
    }
    if let Ok(v) = Roster::decode(bytes) {
        assert_eq!(v.encode(), bytes, "roster is not canonical");
        let _ = v.verify();
        record("roster", true);
    }
    if let Ok(v) = Scope::decode(bytes) {
        assert_eq!(v.encode(), bytes, "scope is not canonical");
        record("scope", true);
    }
    if let Ok(v) = SealedEnvelope::decode(bytes) {
        assert_eq!(v.encode(), bytes, "sealed envelope is not canonical");
        let _ = scope().open(&v);
        record("sealed_envelope", true);
    }
    if let Ok(v) = SignedPush::decode(bytes) {
        assert_eq!(v.encode(), bytes, "signed push is not canonical");
        let _ = v.verify();
        record("signed_push", true);
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = NamespaceKey::import_text(text);
    }
    out
}
