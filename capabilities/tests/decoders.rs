//! Decoders never panic and accept only canonical encodings: the fuzz
//! corpus and regression inputs of `fuzz/` run as ordinary tests, plus a
//! bounded property-based fuzz on stable Rust (arbitrary bytes, and
//! mutations of valid encodings).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path as FsPath, PathBuf};

use common::*;
use kith_caps::{DecodeError, DeviceCert, Error, ReadCap, Roster, SealedEnvelope, Tombstone};
use proptest::prelude::*;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every file under `dir/<target>/`, with its target's name.
fn inputs(dir: &FsPath) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for target in std::fs::read_dir(dir).unwrap() {
        let target = target.unwrap().path();
        let name = target.file_name().unwrap().to_string_lossy().into_owned();
        for file in std::fs::read_dir(&target).unwrap() {
            out.push((name.clone(), file.unwrap().path()));
        }
    }
    out.sort();
    out
}

fn accepted_by(bytes: &[u8], target: &str) -> bool {
    decode_everything(bytes)
        .iter()
        .any(|o| o.decoder == target && o.decoded)
}

#[test]
fn fuzz_corpus_runs_as_tests() {
    let corpus = inputs(&fuzz_dir().join("corpus"));
    assert!(
        corpus.len() >= 40,
        "the corpus is missing: {}",
        corpus.len()
    );
    for (target, file) in corpus {
        let bytes = std::fs::read(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if target == "key_text" {
            let text = String::from_utf8(bytes).unwrap();
            let ok = kith_caps::NamespaceKey::import_text(&text).is_ok();
            assert_eq!(ok, name.starts_with("valid"), "{}", file.display());
            continue;
        }
        let accepted = accepted_by(&bytes, &target);
        assert_eq!(accepted, name.starts_with("valid"), "{}", file.display());
    }
}

#[test]
fn fuzz_regressions_stay_refused() {
    let regressions = inputs(&fuzz_dir().join("regressions"));
    assert!(regressions.len() >= 15, "regressions are missing");
    for (target, file) in regressions {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !accepted_by(&bytes, &target),
            "{} was accepted",
            file.display()
        );
    }
}

#[test]
fn decode_errors_are_typed() {
    let cap = read_cap().encode();
    let mut v2 = cap.clone();
    v2[0] = 2;
    assert!(matches!(
        ReadCap::decode(&v2),
        Err(Error::Decode(DecodeError::UnknownVersion {
            version: 2,
            ..
        }))
    ));
    let mut trailing = cap.clone();
    trailing.push(0);
    assert!(matches!(
        ReadCap::decode(&trailing),
        Err(Error::Decode(DecodeError::TrailingBytes { count: 1, .. }))
    ));
    assert!(matches!(
        ReadCap::decode(&cap[..cap.len() - 1]),
        Err(Error::Decode(DecodeError::Truncated {
            field: "signature",
            ..
        }))
    ));
    assert!(matches!(
        ReadCap::decode(&[]),
        Err(Error::Decode(DecodeError::Truncated {
            field: "version",
            ..
        }))
    ));
    let huge = vec![1u8; ReadCap::MAX_ENCODED_LEN + 1];
    assert!(matches!(
        ReadCap::decode(&huge),
        Err(Error::Decode(DecodeError::TooLong { field: "input", .. }))
    ));
    let read = |dir: &str, name: &str| {
        std::fs::read(fuzz_dir().join("regressions").join(dir).join(name)).unwrap()
    };
    assert!(matches!(
        DeviceCert::decode(&read("device_cert", "unknown_rights_bits.bin")),
        Err(Error::Decode(DecodeError::UnknownBits { bits: 0x84, .. }))
    ));
    assert!(matches!(
        DeviceCert::decode(&read("device_cert", "expiry_equals_issue.bin")),
        Err(Error::Decode(DecodeError::NotCanonical { .. }))
    ));
    assert!(matches!(
        ReadCap::decode(&read("read_cap", "option_tag_2.bin")),
        Err(Error::Decode(DecodeError::InvalidTag { tag: 2, .. }))
    ));
    assert!(matches!(
        ReadCap::decode(&read("read_cap", "path_length_65535.bin")),
        Err(Error::Decode(DecodeError::TooLong {
            field: "prefix",
            ..
        }))
    ));
    assert!(matches!(
        ReadCap::decode(&read("read_cap", "path_without_terminator.bin")),
        Err(Error::Decode(DecodeError::InvalidPath { .. }))
    ));
    assert!(matches!(
        Roster::decode(&read("roster", "members_descending.bin")),
        Err(Error::Decode(DecodeError::NotCanonical { .. }))
    ));
    assert!(matches!(
        Roster::decode(&read("roster", "members_duplicate.bin")),
        Err(Error::Decode(DecodeError::NotCanonical { .. }))
    ));
    assert!(matches!(
        Roster::decode(&read("roster", "member_count_65535.bin")),
        Err(Error::Decode(DecodeError::TooLong {
            field: "members",
            ..
        }))
    ));
    assert!(matches!(
        SealedEnvelope::decode(&read("sealed_envelope", "ciphertext_length_u32_max.bin")),
        Err(Error::Decode(DecodeError::TooLong {
            field: "ciphertext",
            ..
        }))
    ));
    assert!(matches!(
        SealedEnvelope::decode(&read("sealed_envelope", "ciphertext_shorter_than_tag.bin")),
        Err(Error::Decode(DecodeError::NotCanonical { .. }))
    ));
    assert!(matches!(
        Tombstone::decode(&read("tombstone", "signer_tag_7.bin")),
        Err(Error::Decode(DecodeError::InvalidTag { tag: 7, .. }))
    ));
    assert!(matches!(
        Tombstone::decode(&read("tombstone", "embedded_cert_length_65535.bin")),
        Err(Error::Decode(DecodeError::TooLong { .. }))
    ));
    assert!(matches!(
        Tombstone::decode(&read("tombstone", "embedded_cert_version_9.bin")),
        Err(Error::Decode(DecodeError::UnknownVersion {
            version: 9,
            ..
        }))
    ));
}

fn valid_encodings() -> Vec<Vec<u8>> {
    vec![
        device_cert().encode(),
        device_revocation().encode(),
        read_cap().encode(),
        revocation().encode(),
        tombstone().encode(),
        device_tombstone().encode(),
        receipt().encode(),
        roster().encode(),
        scope().encode(),
        sealed_envelope().encode(),
        signed_push().encode(),
    ]
}

/// One change to a valid encoding.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
    Splice(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..6))
            .prop_map(|(i, b)| Mutation::Splice(i, b)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
    match m {
        Mutation::Set(i, b) => {
            if !bytes.is_empty() {
                let i = at(*i, bytes.len());
                bytes[i] = *b;
            }
        }
        Mutation::Truncate(i) => bytes.truncate(at(*i, bytes.len() + 1)),
        Mutation::Insert(i, b) => bytes.insert(at(*i, bytes.len() + 1), *b),
        Mutation::Remove(i) => {
            if !bytes.is_empty() {
                bytes.remove(at(*i, bytes.len()));
            }
        }
        Mutation::Splice(i, new) => {
            let i = at(*i, bytes.len() + 1);
            let end = (i + new.len()).min(bytes.len());
            bytes.splice(i..end, new.iter().copied());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        decode_everything(&bytes);
    }

    #[test]
    fn arbitrary_bytes_with_a_valid_version_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut input = vec![1u8];
        input.extend(bytes);
        decode_everything(&input);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn mutated_encodings_never_panic(which in 0usize..11, mutations in prop::collection::vec(mutation(), 1..4)) {
        let mut bytes = valid_encodings()[which].clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        decode_everything(&bytes);
    }
}
