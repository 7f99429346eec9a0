//! Key layouts of the store's fjall keyspaces.
//!
//! | keyspace   | key                                             | value                  |
//! |------------|-------------------------------------------------|------------------------|
//! | `entries`  | ns ‖ path                                       | [`Entry`](crate::Entry)|
//! | `docs`     | ns ‖ path ‖ 0xFF ‖ chunk kind ‖ seq (8, BE)     | Automerge bytes        |
//! | `blob_refs`| hash ‖ ns ‖ path                                | empty                  |
//! | `log`      | ns ‖ seq (8, BE)                                | log record             |
//! | `tombs`    | ns ‖ prefix ‖ 0xFF ‖ time (8, BE)               | empty                  |
//! | `records`  | kind ‖ ns ‖ id                                  | opaque signed bytes    |
//! | `meta`     | `seq` ‖ ns                                      | next sequence number   |
//! | `vault`    | `d` ‖ ns ‖ path                                 | key slot (4, BE)       |
//! | `vault`    | `b` ‖ hash                                      | key slot (4, BE)       |
//! | `vault`    | `x` ‖ slot (4, BE)                              | empty: erasure pending |
//! | `index`    | opaque (the application's derived indexes)      | opaque                 |
//!
//! `path` is [`Path::encoded`]: every component followed by NUL. Components
//! are UTF-8, which never contains the byte 0xFF, so `path ‖ 0xFF` can never
//! be a prefix of another path's key: a prefix scan of `ns ‖ prefix` over
//! `entries` is exactly the subtree, and `ns ‖ path ‖ 0xFF` over `docs` is
//! exactly one document's chunks. Every key is far below fjall's
//! 65,535-byte limit (a path encodes to at most 16,384 bytes).

use kith_types::{NamespaceId, Path, Timestamp};

use crate::BlobHash;

/// Separates a path from what follows it in a key (never in UTF-8).
pub(crate) const PATH_END: u8 = 0xFF;

/// Chunk kinds of a document in `docs`.
pub(crate) const CHUNK_APPLIED: u8 = 0;
/// Raw change bytes whose dependencies are missing (Automerge queues them in
/// memory only; these keep them across restarts).
pub(crate) const CHUNK_PENDING: u8 = 1;
/// The mark of a document whose content was purged (an empty value, alone
/// under the document's prefix): its entry stays.
pub(crate) const CHUNK_PURGED: u8 = 2;

pub(crate) fn entry(ns: &NamespaceId, path: &Path) -> Vec<u8> {
    let mut k = Vec::with_capacity(32 + path.encoded().len());
    k.extend_from_slice(ns.as_bytes());
    k.extend_from_slice(path.encoded());
    k
}

/// Decodes the path of an `entries` key.
pub(crate) fn entry_path(key: &[u8]) -> crate::Result<Path> {
    let path = key.get(32..).ok_or(crate::Error::Corrupt {
        what: "entry key",
        why: "too short",
    })?;
    Path::from_encoded(path).map_err(|_| crate::Error::Corrupt {
        what: "entry key",
        why: "bad path",
    })
}

/// Prefix of every chunk of one document.
pub(crate) fn doc_prefix(ns: &NamespaceId, path: &Path) -> Vec<u8> {
    let mut k = entry(ns, path);
    k.push(PATH_END);
    k
}

pub(crate) fn doc_chunk(ns: &NamespaceId, path: &Path, kind: u8, seq: u64) -> Vec<u8> {
    let mut k = doc_prefix(ns, path);
    k.push(kind);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The chunk kind of a `docs` key, given the length of its document prefix.
pub(crate) fn chunk_kind(key: &[u8], prefix_len: usize) -> Option<u8> {
    key.get(prefix_len).copied()
}

pub(crate) fn blob_ref(hash: &BlobHash, ns: &NamespaceId, path: &Path) -> Vec<u8> {
    let mut k = Vec::with_capacity(64 + path.encoded().len());
    k.extend_from_slice(hash.as_bytes());
    k.extend_from_slice(ns.as_bytes());
    k.extend_from_slice(path.encoded());
    k
}

pub(crate) fn log(ns: &NamespaceId, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(40);
    k.extend_from_slice(ns.as_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn log_seq(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(32..40)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

pub(crate) fn tomb(ns: &NamespaceId, prefix: &Path, time: Timestamp) -> Vec<u8> {
    let mut k = entry(ns, prefix);
    k.push(PATH_END);
    k.extend_from_slice(&time.to_be_bytes());
    k
}

/// Splits a `tombs` key into namespace, prefix and time.
pub(crate) fn parse_tomb(key: &[u8]) -> Option<(NamespaceId, Path, Timestamp)> {
    if key.len() < 32 + 9 {
        return None;
    }
    let ns = NamespaceId::try_from_slice(&key[..32]).ok()?;
    let (rest, time) = key.split_at(key.len() - 8);
    let (prefix, sep) = rest[32..].split_at(rest.len() - 33);
    if sep != [PATH_END] {
        return None;
    }
    let prefix = Path::from_encoded(prefix).ok()?;
    let time = Timestamp::from_be_bytes(time.try_into().ok()?);
    Some((ns, prefix, time))
}

pub(crate) fn meta_seq(ns: &NamespaceId) -> Vec<u8> {
    let mut k = b"seq".to_vec();
    k.extend_from_slice(ns.as_bytes());
    k
}

pub(crate) fn record(kind: u8, ns: &NamespaceId, id: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(33 + id.len());
    k.push(kind);
    k.extend_from_slice(ns.as_bytes());
    k.extend_from_slice(id);
    k
}

pub(crate) fn record_prefix(kind: u8, ns: &NamespaceId) -> Vec<u8> {
    record(kind, ns, &[])
}

/// The vault slot of a document's key.
pub(crate) fn vault_doc(ns: &NamespaceId, path: &Path) -> Vec<u8> {
    let mut k = Vec::with_capacity(33 + path.encoded().len());
    k.push(b'd');
    k.extend_from_slice(ns.as_bytes());
    k.extend_from_slice(path.encoded());
    k
}

/// The vault slot of a blob file's key.
pub(crate) fn vault_blob(hash: &BlobHash) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(b'b');
    k.extend_from_slice(hash.as_bytes());
    k
}

/// A blob's group hashes, sealed with the blob's key.
pub(crate) fn vault_groups(hash: &BlobHash) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(b'g');
    k.extend_from_slice(hash.as_bytes());
    k
}

/// Prefix of the pending-erasure markers.
pub(crate) const VAULT_ERASING: &[u8] = b"x";

/// A slot whose key is being destroyed.
pub(crate) fn vault_erasing(slot: u32) -> Vec<u8> {
    let mut k = VAULT_ERASING.to_vec();
    k.extend_from_slice(&slot.to_be_bytes());
    k
}

/// The value of a blob's slot map entry: its key's slot, then the cipher of
/// its files (nothing for XChaCha20, as before AES was offered; 1 for
/// AES-256-CTR).
pub(crate) fn blob_slot(slot: u32, cipher: crate::BlobCipher) -> Vec<u8> {
    let mut v = slot.to_be_bytes().to_vec();
    match cipher {
        crate::BlobCipher::XChaCha20 => {}
        crate::BlobCipher::Aes256Ctr => v.push(BLOB_AES_256_CTR),
    }
    v
}

const BLOB_AES_256_CTR: u8 = 1;

/// Decodes what [`blob_slot`] made.
pub(crate) fn blob_slot_of(bytes: &[u8]) -> crate::Result<(u32, crate::BlobCipher)> {
    match *bytes {
        [a, b, c, d] => Ok((
            u32::from_be_bytes([a, b, c, d]),
            crate::BlobCipher::XChaCha20,
        )),
        [a, b, c, d, BLOB_AES_256_CTR] => Ok((
            u32::from_be_bytes([a, b, c, d]),
            crate::BlobCipher::Aes256Ctr,
        )),
        _ => Err(crate::Error::Corrupt {
            what: "vault slot of a blob",
            why: "bad length or unknown cipher",
        }),
    }
}

/// Decodes a slot number (the value of a slot map entry, or the tail of a
/// pending-erasure key).
pub(crate) fn slot_of(bytes: &[u8]) -> crate::Result<u32> {
    let b: [u8; 4] = bytes.try_into().map_err(|_| crate::Error::Corrupt {
        what: "vault slot",
        why: "bad length",
    })?;
    Ok(u32::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tomb_keys_round_trip() {
        let ns = NamespaceId::from_bytes([3; 32]);
        for p in ["/", "/a", "/a/b"] {
            let prefix = Path::parse(p).unwrap();
            let t = Timestamp::from_micros(42);
            assert_eq!(parse_tomb(&tomb(&ns, &prefix, t)), Some((ns, prefix, t)));
        }
        assert_eq!(parse_tomb(b"short"), None);
    }

    #[test]
    fn blob_slots_name_their_cipher() {
        use crate::BlobCipher::{Aes256Ctr, XChaCha20};
        for cipher in [XChaCha20, Aes256Ctr] {
            let v = blob_slot(0x0102_0304, cipher);
            assert_eq!(blob_slot_of(&v).unwrap(), (0x0102_0304, cipher));
        }
        // A value written before AES was offered: the slot alone.
        assert_eq!(blob_slot_of(&[0, 0, 0, 9]).unwrap(), (9, XChaCha20));
        for bad in [&[0u8, 0, 9][..], &[0, 0, 0, 9, 2], &[0, 0, 0, 9, 1, 1], &[]] {
            assert!(blob_slot_of(bad).is_err(), "{bad:?}");
        }
    }
}
