//! Secret keys: a person's [`NamespaceKey`] and a device's [`DeviceKey`],
//! and the domain-separated signing and strict verification every signed
//! type uses.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use kith_types::{DeviceId, NamespaceId};
use rand::CryptoRng;

use crate::encoding::SIGNATURE_LEN;
use crate::error::{Error, Result};

/// Prefix of an exported namespace key's text.
const KEY_TEXT_PREFIX: &str = "kith-secret-v1:";
/// Bytes of checksum after the 32 secret bytes in the exported text.
const KEY_TEXT_CHECKSUM_LEN: usize = 4;
/// Domain of the exported text's checksum.
const KEY_TEXT_CHECKSUM_CONTEXT: &str = "kith/v1/key-text-checksum";

/// A person's namespace key: the ed25519 signing key whose public half is
/// the [`NamespaceId`].
///
/// It signs [`DeviceCert`](crate::DeviceCert)s, [`ReadCap`](crate::ReadCap)s,
/// revocations, scope rosters and tombstones. Whoever holds it *is* the
/// namespace: keep it on the device that created it.
///
/// `Debug` never shows the secret. The key's memory is wiped when it is
/// dropped (ed25519-dalek's `zeroize`), but copies made through
/// [`to_bytes`](Self::to_bytes) or [`export_text`](Self::export_text) are
/// the caller's to protect.
#[derive(Clone)]
pub struct NamespaceKey {
    signing: SigningKey,
}

impl NamespaceKey {
    /// A fresh random key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self {
            signing: SigningKey::generate(rng),
        }
    }

    /// The key with these 32 secret bytes (an ed25519 seed).
    pub fn from_bytes(secret: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&secret),
        }
    }

    /// The 32 secret bytes. **Anyone who has them owns the namespace.**
    pub fn to_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The namespace this key owns (its public key).
    pub fn id(&self) -> NamespaceId {
        NamespaceId::from_bytes(self.signing.verifying_key().to_bytes())
    }

    /// Exports the secret key as text, for a backup or to move the namespace
    /// to a new device: `kith-secret-v1:` followed by lowercase base32 of the
    /// 32 secret bytes and a 4-byte checksum (which catches typos, not
    /// tampering).
    ///
    /// **Warning: this text is the namespace.** Anyone who reads it can sign
    /// as this person: certify their own devices, grant themselves every
    /// path, delete everything, forever; there is no way to take it back
    /// except abandoning the namespace. Never log it, never send it over a
    /// network, never store it unencrypted where others can read it.
    pub fn export_text(&self) -> String {
        let secret = self.signing.to_bytes();
        let mut bytes = Vec::with_capacity(32 + KEY_TEXT_CHECKSUM_LEN);
        bytes.extend_from_slice(&secret);
        bytes.extend_from_slice(&key_text_checksum(&secret));
        let text = data_encoding::BASE32_NOPAD
            .encode(&bytes)
            .to_ascii_lowercase();
        format!("{KEY_TEXT_PREFIX}{text}")
    }

    /// Imports a key exported by [`export_text`](Self::export_text).
    /// Surrounding whitespace is ignored; letters may be in either case.
    ///
    /// The same warning applies: the text is the namespace.
    ///
    /// # Errors
    /// [`Error::KeyText`] if the prefix, the base32 text, the length or the
    /// checksum is wrong. The error never contains the text.
    pub fn import_text(text: &str) -> Result<Self> {
        let text = text.trim();
        let body = text
            .get(..KEY_TEXT_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(KEY_TEXT_PREFIX))
            .and_then(|_| text.get(KEY_TEXT_PREFIX.len()..))
            .ok_or(Error::KeyText {
                reason: "missing the kith-secret-v1: prefix",
            })?;
        let upper = body.to_ascii_uppercase();
        let bytes = data_encoding::BASE32_NOPAD
            .decode(upper.as_bytes())
            .map_err(|_| Error::KeyText {
                reason: "not base32 (a-z, 2-7)",
            })?;
        if bytes.len() != 32 + KEY_TEXT_CHECKSUM_LEN {
            return Err(Error::KeyText {
                reason: "wrong length",
            });
        }
        let (secret, checksum) = bytes.split_at(32);
        let mut seed = [0u8; 32];
        seed.copy_from_slice(secret);
        if checksum != key_text_checksum(&seed) {
            return Err(Error::KeyText {
                reason: "checksum does not match (a typo?)",
            });
        }
        Ok(Self::from_bytes(seed))
    }

    pub(crate) fn sign(&self, domain: &str, body: &[u8]) -> [u8; SIGNATURE_LEN] {
        sign(&self.signing, domain, body)
    }
}

impl fmt::Debug for NamespaceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NamespaceKey({}, secret hidden)", self.id().fmt_short())
    }
}

/// A device's key: the secret half of its iroh endpoint id ([`DeviceId`]).
///
/// iroh's `SecretKey` and this key are the same 32 bytes: build one with
/// `DeviceKey::from_bytes(secret_key.to_bytes())`. A device key signs
/// [`Receipt`](crate::Receipt)s and, with a write right, tombstones.
#[derive(Clone)]
pub struct DeviceKey {
    signing: SigningKey,
}

impl DeviceKey {
    /// A fresh random key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self {
            signing: SigningKey::generate(rng),
        }
    }

    /// The key with these 32 secret bytes (an iroh `SecretKey`'s bytes).
    pub fn from_bytes(secret: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&secret),
        }
    }

    /// The 32 secret bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The device's id (its public key, the iroh endpoint id).
    pub fn id(&self) -> DeviceId {
        DeviceId::from_bytes(self.signing.verifying_key().to_bytes())
    }

    pub(crate) fn sign(&self, domain: &str, body: &[u8]) -> [u8; SIGNATURE_LEN] {
        sign(&self.signing, domain, body)
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceKey({}, secret hidden)", self.id().fmt_short())
    }
}

fn key_text_checksum(secret: &[u8; 32]) -> [u8; KEY_TEXT_CHECKSUM_LEN] {
    let hash = blake3::derive_key(KEY_TEXT_CHECKSUM_CONTEXT, secret);
    let mut out = [0u8; KEY_TEXT_CHECKSUM_LEN];
    out.copy_from_slice(&hash[..KEY_TEXT_CHECKSUM_LEN]);
    out
}

/// `domain || 0x00 || body`: the bytes a signature of this type covers.
pub(crate) fn signed_message(domain: &str, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(domain.len() + 1 + body.len());
    msg.extend_from_slice(domain.as_bytes());
    msg.push(0);
    msg.extend_from_slice(body);
    msg
}

fn sign(key: &SigningKey, domain: &str, body: &[u8]) -> [u8; SIGNATURE_LEN] {
    key.sign(&signed_message(domain, body)).to_bytes()
}

/// Checks `signature` over `domain || 0 || body` strictly under the public
/// key `signer`.
///
/// # Errors
/// [`Error::InvalidKey`] if `signer` is not a valid public key,
/// [`Error::BadSignature`] if the signature does not verify.
pub(crate) fn verify(
    signer: &[u8; 32],
    signer_what: &'static str,
    domain: &str,
    body: &[u8],
    signature: &[u8; SIGNATURE_LEN],
    what: &'static str,
) -> Result<()> {
    let key = verifying_key(signer).ok_or(Error::InvalidKey { what: signer_what })?;
    let signature = Signature::from_bytes(signature);
    key.verify_strict(&signed_message(domain, body), &signature)
        .map_err(|_| Error::BadSignature { what })
}

/// Public keys kept decompressed, at most this many.
const VERIFYING_KEYS_KEPT: usize = 4096;

/// Public keys already decompressed (a curve point from its 32 bytes: about
/// a tenth of a signature check), by their bytes. A node checks the
/// signatures of the same few devices again and again (every live message
/// of a friend's device), so each key is decompressed once. Only keys that
/// decompressed are kept; the check itself (`verify_strict`, with its
/// small-order and canonical-encoding rules) runs every time.
static VERIFYING_KEYS: std::sync::LazyLock<
    std::sync::RwLock<std::collections::HashMap<[u8; 32], VerifyingKey>>,
> = std::sync::LazyLock::new(Default::default);

/// The public key with these bytes, decompressed (from [`VERIFYING_KEYS`]
/// when it was before); `None` if the bytes are not a curve point.
fn verifying_key(bytes: &[u8; 32]) -> Option<VerifyingKey> {
    if let Some(key) = VERIFYING_KEYS
        .read()
        .ok()
        .and_then(|keys| keys.get(bytes).copied())
    {
        return Some(key);
    }
    let key = VerifyingKey::from_bytes(bytes).ok()?;
    if let Ok(mut keys) = VERIFYING_KEYS.write() {
        if keys.len() >= VERIFYING_KEYS_KEPT {
            // Bounded: an arbitrary key makes room (many keys at once, from
            // a peer sending strangers' signatures, only cost the
            // decompression again).
            if let Some(old) = keys.keys().next().copied() {
                keys.remove(&old);
            }
        }
        keys.insert(*bytes, key);
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decompressed_key_checks_its_own_signatures_only() {
        let a = DeviceKey::from_bytes([7; 32]);
        let b = DeviceKey::from_bytes([8; 32]);
        let (pa, pb) = (*a.id().as_bytes(), *b.id().as_bytes());
        let sig_a = sign(&a.signing, "kith/test", b"body");
        // Twice each: the second check uses the key kept from the first.
        for _ in 0..2 {
            assert!(verify(&pa, "signer", "kith/test", b"body", &sig_a, "test").is_ok());
            assert!(matches!(
                verify(&pb, "signer", "kith/test", b"body", &sig_a, "test"),
                Err(Error::BadSignature { .. })
            ));
            assert!(matches!(
                verify(&pa, "signer", "kith/test", b"other body", &sig_a, "test"),
                Err(Error::BadSignature { .. })
            ));
            assert!(matches!(
                verify(&pa, "signer", "kith/other", b"body", &sig_a, "test"),
                Err(Error::BadSignature { .. })
            ));
        }
        assert_eq!(verifying_key(&pa), VerifyingKey::from_bytes(&pa).ok());
        assert_eq!(verifying_key(&pb), VerifyingKey::from_bytes(&pb).ok());
    }

    #[test]
    fn bytes_that_are_not_a_point_stay_refused_and_the_kept_keys_stay_bounded() {
        // y = 2 is not the y-coordinate of a curve point.
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        assert!(VerifyingKey::from_bytes(&not_a_point).is_err());
        let sig = [0u8; SIGNATURE_LEN];
        for _ in 0..2 {
            assert!(matches!(
                verify(&not_a_point, "signer", "kith/test", b"body", &sig, "test"),
                Err(Error::InvalidKey { .. })
            ));
        }
        assert!(!VERIFYING_KEYS.read().unwrap().contains_key(&not_a_point));
        for i in 0..(VERIFYING_KEYS_KEPT + 10) {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let id = *DeviceKey::from_bytes(seed).id().as_bytes();
            assert!(verifying_key(&id).is_some());
        }
        assert!(VERIFYING_KEYS.read().unwrap().len() <= VERIFYING_KEYS_KEPT);
    }

    #[test]
    fn key_text_round_trips_and_catches_typos() {
        let key = NamespaceKey::from_bytes([42; 32]);
        let text = key.export_text();
        assert!(text.starts_with(KEY_TEXT_PREFIX));
        let back = NamespaceKey::import_text(&text).unwrap();
        assert_eq!(back.id(), key.id());
        assert_eq!(back.to_bytes(), key.to_bytes());
        let upper = format!("  {}\n", text.to_ascii_uppercase());
        assert_eq!(NamespaceKey::import_text(&upper).unwrap().id(), key.id());

        // One changed character: the checksum (or base32) catches it.
        let mut chars: Vec<char> = text.chars().collect();
        let i = KEY_TEXT_PREFIX.len() + 3;
        chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        assert!(matches!(
            NamespaceKey::import_text(&typo),
            Err(Error::KeyText { .. })
        ));
        for bad in [
            "",
            "kith-secret-v1:",
            "kith-secret-v2:aaaa",
            "kith-secret-v1:!!!!",
            "kith-secret-v1:aaaaaaaa",
            "é",
        ] {
            assert!(matches!(
                NamespaceKey::import_text(bad),
                Err(Error::KeyText { .. })
            ));
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let key = NamespaceKey::from_bytes([1; 32]);
        let shown = format!("{key:?}");
        assert!(shown.contains("hidden"));
        let text = key.export_text();
        assert!(!shown.contains(&text[KEY_TEXT_PREFIX.len()..KEY_TEXT_PREFIX.len() + 10]));
        assert!(format!("{:?}", DeviceKey::from_bytes([1; 32])).contains("hidden"));
    }

    #[test]
    fn signatures_are_domain_separated() {
        let key = NamespaceKey::from_bytes([3; 32]);
        let sig = key.sign("kith/v1/a", b"body");
        let id = *key.id().as_bytes();
        assert!(verify(&id, "k", "kith/v1/a", b"body", &sig, "a").is_ok());
        assert!(matches!(
            verify(&id, "k", "kith/v1/b", b"body", &sig, "b"),
            Err(Error::BadSignature { what: "b" })
        ));
    }
}
