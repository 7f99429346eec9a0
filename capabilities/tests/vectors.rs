//! Committed test vectors: fixed keys and inputs, expected bytes and
//! signatures, one file per type in `tests/vectors/`. Any change to the wire
//! format shows up here as a failing test.
//!
//! To regenerate after a deliberate format change (which also needs a new
//! version byte): `KITH_UPDATE_VECTORS=1 cargo test -p kith-caps --test vectors`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::*;
use kith_caps::{
    DeviceCert, DeviceRevocation, NamespaceKey, ReadCap, Receipt, Revocation, Roster,
    SealedEnvelope, SignedPush, Tombstone, TombstoneSigner,
};

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

fn opt(t: Option<kith_types::Timestamp>) -> String {
    t.map_or("none".to_string(), |t| t.as_micros().to_string())
}

/// Renders a vector file: a title, `key = value` lines, then the signed
/// message, encoding and signature.
fn render(title: &str, fields: &[(&str, String)], domain: Option<&str>, encoded: &[u8]) -> String {
    let mut out = format!(
        "# kith-caps test vector: {title}\n# All byte strings are lowercase hex; times are microseconds.\n"
    );
    for (k, v) in fields {
        out.push_str(&format!("{k} = {v}\n"));
    }
    if let Some(domain) = domain {
        let body = &encoded[..encoded.len() - 64];
        let mut msg = domain.as_bytes().to_vec();
        msg.push(0);
        msg.extend_from_slice(body);
        out.push_str(&format!("domain = {domain}\n"));
        out.push_str(&format!("signed_message = {}\n", hex(&msg)));
        out.push_str(&format!("encoded = {}\n", hex(encoded)));
        out.push_str(&format!(
            "signature = {}\n",
            hex(&encoded[encoded.len() - 64..])
        ));
    } else {
        out.push_str(&format!("encoded = {}\n", hex(encoded)));
    }
    out
}

fn check(name: &str, rendered: String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(format!("{name}.txt"));
    if std::env::var_os("KITH_UPDATE_VECTORS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with KITH_UPDATE_VECTORS=1 to create)",
            path.display()
        )
    });
    assert_eq!(
        committed, rendered,
        "the wire format of {name} changed; if deliberate, bump the version byte and regenerate"
    );
}

/// Reads `encoded = …` back from a committed file.
fn committed_encoding(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(format!("{name}.txt"));
    let text = std::fs::read_to_string(path).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("encoded = "))
        .unwrap();
    data_encoding::HEXLOWER.decode(line.as_bytes()).unwrap()
}

fn seed(key: &NamespaceKey) -> String {
    hex(&key.to_bytes())
}

#[test]
fn device_cert_vector() {
    let c = device_cert();
    check(
        "device_cert",
        render(
            "DeviceCert v1",
            &[
                ("namespace_key_seed", seed(&alice())),
                ("namespace", hex(c.namespace().as_bytes())),
                ("device_key_seed", hex(&alice_phone().to_bytes())),
                ("device", hex(c.device().as_bytes())),
                ("rights", format!("{:#04x}", c.rights().bits())),
                ("issued_at", c.issued_at().as_micros().to_string()),
                ("expires_at", opt(c.expires_at())),
            ],
            Some(DeviceCert::DOMAIN),
            &c.encode(),
        ),
    );
    DeviceCert::decode(&committed_encoding("device_cert"))
        .unwrap()
        .verify()
        .unwrap();
}

#[test]
fn device_revocation_vector() {
    let r = device_revocation();
    check(
        "device_revocation",
        render(
            "DeviceRevocation v1",
            &[
                ("namespace_key_seed", seed(&alice())),
                ("device", hex(r.device().as_bytes())),
                ("revoked_at", r.revoked_at().as_micros().to_string()),
            ],
            Some(DeviceRevocation::DOMAIN),
            &r.encode(),
        ),
    );
    DeviceRevocation::decode(&committed_encoding("device_revocation"))
        .unwrap()
        .verify()
        .unwrap();
}

#[test]
fn read_cap_vector() {
    let c = read_cap();
    check(
        "read_cap",
        render(
            "ReadCap v1",
            &[
                ("namespace_key_seed", seed(&alice())),
                ("id", hex(c.id().as_bytes())),
                ("grantee", hex(c.grantee().as_bytes())),
                ("prefix", c.prefix().to_string()),
                ("issued_at", c.issued_at().as_micros().to_string()),
                ("expires_at", opt(c.expires_at())),
            ],
            Some(ReadCap::DOMAIN),
            &c.encode(),
        ),
    );
    ReadCap::decode(&committed_encoding("read_cap"))
        .unwrap()
        .verify()
        .unwrap();
}

#[test]
fn revocation_vector() {
    let r = revocation();
    check(
        "revocation",
        render(
            "Revocation v1",
            &[
                ("namespace_key_seed", seed(&alice())),
                ("cap_id", hex(r.cap_id().as_bytes())),
                ("revoked_at", r.revoked_at().as_micros().to_string()),
            ],
            Some(Revocation::DOMAIN),
            &r.encode(),
        ),
    );
    Revocation::decode(&committed_encoding("revocation"))
        .unwrap()
        .verify()
        .unwrap();
}

fn tombstone_fields(t: &Tombstone) -> Vec<(&'static str, String)> {
    vec![
        ("id", hex(t.id().as_bytes())),
        ("namespace", hex(t.namespace().as_bytes())),
        ("prefix", t.prefix().to_string()),
        ("up_to", t.up_to().as_micros().to_string()),
        (
            "signer",
            match t.signer() {
                TombstoneSigner::Namespace => "namespace".to_string(),
                TombstoneSigner::Device(cert) => format!("device cert {}", hex(&cert.encode())),
            },
        ),
    ]
}

#[test]
fn tombstone_vector() {
    let t = tombstone();
    let mut fields = vec![("namespace_key_seed", seed(&alice()))];
    fields.extend(tombstone_fields(&t));
    check(
        "tombstone",
        render(
            "Tombstone v1, signed by the namespace key",
            &fields,
            Some(Tombstone::DOMAIN),
            &t.encode(),
        ),
    );
    Tombstone::decode(&committed_encoding("tombstone"))
        .unwrap()
        .verify()
        .unwrap();
}

#[test]
fn device_tombstone_vector() {
    let t = device_tombstone();
    let mut fields = vec![("device_key_seed", hex(&alice_phone().to_bytes()))];
    fields.extend(tombstone_fields(&t));
    check(
        "tombstone_by_device",
        render(
            "Tombstone v1, signed by a device",
            &fields,
            Some(Tombstone::DOMAIN),
            &t.encode(),
        ),
    );
    Tombstone::decode(&committed_encoding("tombstone_by_device"))
        .unwrap()
        .verify()
        .unwrap();
}

#[test]
fn receipt_vector() {
    let r = receipt();
    check(
        "receipt",
        render(
            "Receipt v1",
            &[
                ("device_key_seed", hex(&bob_laptop().to_bytes())),
                ("tombstone_id", hex(r.tombstone_id().as_bytes())),
                ("namespace", hex(r.namespace().as_bytes())),
                ("device", hex(r.device().as_bytes())),
                ("applied_at", r.applied_at().as_micros().to_string()),
                ("device_cert", hex(&bob_device_cert().encode())),
            ],
            Some(Receipt::DOMAIN),
            &r.encode(),
        ),
    );
    Receipt::decode(&committed_encoding("receipt"))
        .unwrap()
        .verify(&bob_device_cert())
        .unwrap();
}

#[test]
fn roster_vector() {
    let r = roster();
    let members: Vec<String> = r.members().iter().map(|m| hex(m.as_bytes())).collect();
    check(
        "roster",
        render(
            "Roster v1",
            &[
                ("namespace_key_seed", seed(&alice())),
                ("prefix", r.prefix().to_string()),
                ("epoch", r.epoch().to_string()),
                ("members", members.join(",")),
            ],
            Some(Roster::DOMAIN),
            &r.encode(),
        ),
    );
    Roster::decode(&committed_encoding("roster"))
        .unwrap()
        .verify()
        .unwrap();
}

#[test]
fn signed_push_vector() {
    let m = signed_push();
    check(
        "signed_push",
        render(
            "SignedPush v1",
            &[
                ("device_key_seed", hex(&alice_phone().to_bytes())),
                ("namespace", hex(m.namespace().as_bytes())),
                ("body", hex(m.body())),
            ],
            Some(SignedPush::DOMAIN),
            &m.encode(),
        ),
    );
    SignedPush::decode(&committed_encoding("signed_push"))
        .unwrap()
        .verify()
        .unwrap();
}

#[test]
fn scope_and_sealed_envelope_vectors() {
    let s = scope();
    check(
        "scope",
        render(
            "Scope v1 (unsigned; carries the secret) and its derived topic id",
            &[
                ("namespace", hex(s.namespace().as_bytes())),
                ("prefix", s.prefix().to_string()),
                ("epoch", s.epoch().to_string()),
                ("secret", hex(s.secret().as_bytes())),
                (
                    "topic_id = blake3 derive_key(\"kith/v1/scope-topic\", secret || epoch)",
                    hex(s.topic_id().as_bytes()),
                ),
            ],
            None,
            &s.encode(),
        ),
    );
    // The envelope pins the payload key derivation and the AEAD: fixed
    // nonce (24 bytes of 0x4e), known plaintext.
    let e = sealed_envelope();
    check(
        "sealed_envelope",
        render(
            "SealedEnvelope v1, sealed with the scope of scope.txt",
            &[
                (
                    "payload_key",
                    "blake3 derive_key(\"kith/v1/scope-payload-key\", secret || epoch)".to_string(),
                ),
                (
                    "aad",
                    "\"kith/v1/sealed-envelope\" || 0x00 || version || epoch".to_string(),
                ),
                ("nonce", hex(&[0x4e; 24])),
                ("plaintext", hex(b"hello, friends")),
            ],
            None,
            &e.encode(),
        ),
    );
    let back = SealedEnvelope::decode(&committed_encoding("sealed_envelope")).unwrap();
    assert_eq!(s.open(&back).unwrap(), b"hello, friends");
}

#[test]
fn exported_key_text_vector() {
    let key = alice();
    check(
        "namespace_key_text",
        format!(
            "# kith-caps test vector: exported NamespaceKey text (a test key; never use it)\nsecret = {}\nnamespace = {}\ntext = {}\n",
            seed(&key),
            key.id(),
            key.export_text()
        ),
    );
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/namespace_key_text.txt");
    let text = std::fs::read_to_string(path).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("text = "))
        .unwrap();
    assert_eq!(NamespaceKey::import_text(line).unwrap().id(), key.id());
}

#[test]
fn maximum_lengths_are_as_documented_in_format_md() {
    assert_eq!(DeviceCert::MAX_ENCODED_LEN, 147);
    assert_eq!(DeviceRevocation::MAX_ENCODED_LEN, 137);
    assert_eq!(ReadCap::MAX_ENCODED_LEN, 16_548);
    assert_eq!(Revocation::MAX_ENCODED_LEN, 121);
    assert_eq!(Tombstone::MAX_ENCODED_LEN, 16_657);
    assert_eq!(Receipt::MAX_ENCODED_LEN, 153);
    assert_eq!(Roster::MAX_ENCODED_LEN, 49_261);
    assert_eq!(kith_caps::Scope::MAX_ENCODED_LEN, 16_459);
    assert_eq!(SealedEnvelope::MAX_ENCODED_LEN, 65_536);
    let format =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("FORMAT.md"))
            .unwrap();
    for n in [
        "147", "137", "16,548", "121", "16,657", "153", "49,261", "16,459", "65,536",
    ] {
        assert!(format.contains(n), "FORMAT.md does not mention {n}");
    }
}
