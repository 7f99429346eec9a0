//! Scopes: the key material of live push over gossip.
//!
//! For each granted prefix of a namespace the owner keeps a [`Scope`]: a
//! random 32-byte secret and an epoch. From (secret, epoch) BLAKE3's key
//! derivation gives two unrelated values with distinct context strings:
//!
//! - the gossip **topic id** (`kith/v1/scope-topic`), so only members can
//!   find the topic, and
//! - the **payload key** (`kith/v1/scope-payload-key`), with which every
//!   message in the topic is sealed (XChaCha20-Poly1305 with a random
//!   192-bit nonce, in a [`SealedEnvelope`]), so only members can read it.
//!
//! The scope's current members' devices are listed in a [`Roster`] signed by
//! the namespace key. Revoking a member means a new epoch: a new secret,
//! hence a new topic and key, and a roster without the revoked member's
//! devices.
//!
//! A [`Scope`] holds the secret and is encoded **without a signature**: it
//! may only travel from the owner's device to a member over an
//! authenticated, encrypted direct connection.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use kith_types::{DeviceId, NamespaceId, Path};
use rand::CryptoRng;

use crate::encoding::{MAX_PATH_FIELD_LEN, Reader, SIGNATURE_LEN, VERSION, Writer};
use crate::error::{DecodeError, Error, Result};
use crate::keys::{self, NamespaceKey};

/// BLAKE3 context of the gossip topic id.
const TOPIC_CONTEXT: &str = "kith/v1/scope-topic";
/// BLAKE3 context of the payload key.
const PAYLOAD_KEY_CONTEXT: &str = "kith/v1/scope-payload-key";
/// Associated data prefix of sealed envelopes.
const ENVELOPE_AAD_DOMAIN: &str = "kith/v1/sealed-envelope";

/// A scope's random secret. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ScopeSecret([u8; 32]);

impl ScopeSecret {
    /// A fresh random secret.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Wraps 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 secret bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for ScopeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScopeSecret(hidden)")
    }
}

/// A gossip topic id, derived from a scope's (secret, epoch).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicId([u8; 32]);

impl TopicId {
    /// The 32 bytes (iroh-gossip's `TopicId::from_bytes` takes them).
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}

impl fmt::Debug for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicId({self})")
    }
}

/// The key material of one scope: (namespace, prefix) with its current
/// epoch and secret, and what is derived from them.
///
/// `Debug` shows neither the secret nor the topic id (which would let
/// outsiders find the topic).
#[derive(Clone, PartialEq, Eq)]
pub struct Scope {
    namespace: NamespaceId,
    prefix: Path,
    epoch: u64,
    secret: ScopeSecret,
    topic: TopicId,
    payload_key: [u8; 32],
}

impl Scope {
    /// Length of the encoding, at most.
    pub const MAX_ENCODED_LEN: usize = 1 + 32 + MAX_PATH_FIELD_LEN + 8 + 32;
    const WHAT: &'static str = "scope";

    /// The scope (namespace, prefix) at `epoch` with `secret`.
    pub fn new(namespace: NamespaceId, prefix: Path, epoch: u64, secret: ScopeSecret) -> Self {
        let mut material = [0u8; 40];
        material[..32].copy_from_slice(secret.as_bytes());
        material[32..].copy_from_slice(&epoch.to_be_bytes());
        let topic = TopicId(blake3::derive_key(TOPIC_CONTEXT, &material));
        let payload_key = blake3::derive_key(PAYLOAD_KEY_CONTEXT, &material);
        Self {
            namespace,
            prefix,
            epoch,
            secret,
            topic,
            payload_key,
        }
    }

    /// A new scope at epoch 0 with a random secret.
    pub fn generate<R: CryptoRng + ?Sized>(
        namespace: NamespaceId,
        prefix: Path,
        rng: &mut R,
    ) -> Self {
        Self::new(namespace, prefix, 0, ScopeSecret::random(rng))
    }

    /// The next epoch of this scope, with a fresh random secret (after a
    /// member was revoked).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the epoch counter is exhausted.
    pub fn next_epoch<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> Result<Self> {
        let epoch = self.epoch.checked_add(1).ok_or(Error::InvalidArgument {
            reason: "scope epoch exhausted",
        })?;
        Ok(Self::new(
            self.namespace,
            self.prefix.clone(),
            epoch,
            ScopeSecret::random(rng),
        ))
    }

    /// The gossip topic id of this epoch.
    pub fn topic_id(&self) -> TopicId {
        self.topic
    }

    /// Whether this scope's prefix covers `path` in `namespace`.
    pub fn covers(&self, namespace: &NamespaceId, path: &Path) -> bool {
        self.namespace == *namespace && self.prefix.is_prefix_of(path)
    }

    /// Seals `plaintext` with this epoch's payload key and a random nonce.
    ///
    /// # Errors
    /// [`Error::TooLarge`] if `plaintext` is over
    /// [`SealedEnvelope::MAX_PLAINTEXT_LEN`].
    pub fn seal<R: CryptoRng + ?Sized>(
        &self,
        plaintext: &[u8],
        rng: &mut R,
    ) -> Result<SealedEnvelope> {
        if plaintext.len() > SealedEnvelope::MAX_PLAINTEXT_LEN {
            return Err(Error::TooLarge {
                what: "sealed payload",
                len: plaintext.len(),
                max: SealedEnvelope::MAX_PLAINTEXT_LEN,
            });
        }
        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut nonce);
        let cipher = XChaCha20Poly1305::new((&self.payload_key).into());
        let aad = SealedEnvelope::aad(self.epoch);
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::TooLarge {
                what: "sealed payload",
                len: plaintext.len(),
                max: SealedEnvelope::MAX_PLAINTEXT_LEN,
            })?;
        Ok(SealedEnvelope {
            epoch: self.epoch,
            nonce,
            ciphertext,
        })
    }

    /// Opens an envelope sealed with this scope's current epoch.
    ///
    /// # Errors
    /// [`Error::Open`] if it was sealed for another epoch, with another
    /// key, or altered.
    pub fn open(&self, envelope: &SealedEnvelope) -> Result<Vec<u8>> {
        if envelope.epoch != self.epoch {
            return Err(Error::Open {
                reason: "sealed for another epoch",
            });
        }
        let cipher = XChaCha20Poly1305::new((&self.payload_key).into());
        let aad = SealedEnvelope::aad(envelope.epoch);
        cipher
            .decrypt(
                XNonce::from_slice(&envelope.nonce),
                Payload {
                    msg: &envelope.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::Open {
                reason: "authentication failed (wrong key or altered)",
            })
    }

    /// The canonical encoding, **secret included**: send it only to a
    /// member, over an authenticated, encrypted connection.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_version(Self::MAX_ENCODED_LEN);
        w.namespace(&self.namespace)
            .path(&self.prefix)
            .u64(self.epoch)
            .raw(self.secret.as_bytes());
        w.finish()
    }

    /// Decodes a scope.
    ///
    /// # Errors
    /// [`Error::Decode`] for anything but exactly one canonical encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(Self::WHAT, bytes, Self::MAX_ENCODED_LEN)?;
        let namespace = r.namespace("namespace")?;
        let prefix = r.path("prefix")?;
        let epoch = r.u64("epoch")?;
        let secret = ScopeSecret(r.array("secret")?);
        r.finish()?;
        Ok(Self::new(namespace, prefix, epoch, secret))
    }

    /// The namespace.
    pub fn namespace(&self) -> NamespaceId {
        self.namespace
    }

    /// The prefix.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The secret.
    pub fn secret(&self) -> &ScopeSecret {
        &self.secret
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("namespace", &self.namespace)
            .field("prefix", &self.prefix)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// A message sealed with a scope's payload key.
///
/// Encoding: version byte, epoch (`u64`), 24-byte nonce, ciphertext with a
/// `u32` length (plaintext followed by the 16-byte Poly1305 tag). The
/// version byte and epoch are authenticated as associated data.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct SealedEnvelope {
    epoch: u64,
    nonce: [u8; 24],
    ciphertext: Vec<u8>,
}

impl SealedEnvelope {
    /// Length of an encoded envelope, at most: 64 KiB. Gossip frames are far
    /// smaller (4 KiB by default); larger content goes over the direct
    /// channel.
    pub const MAX_ENCODED_LEN: usize = 64 * 1024;
    /// Bytes an envelope adds to its plaintext.
    pub const OVERHEAD: usize = Self::HEADER_LEN + Self::TAG_LEN;
    /// Length of the plaintext an envelope may carry, at most.
    pub const MAX_PLAINTEXT_LEN: usize = Self::MAX_ENCODED_LEN - Self::OVERHEAD;
    const HEADER_LEN: usize = 1 + 8 + 24 + 4;
    const TAG_LEN: usize = 16;
    const WHAT: &'static str = "sealed envelope";

    fn aad(epoch: u64) -> [u8; ENVELOPE_AAD_DOMAIN.len() + 1 + 1 + 8] {
        let mut aad = [0u8; ENVELOPE_AAD_DOMAIN.len() + 1 + 1 + 8];
        let (domain, rest) = aad.split_at_mut(ENVELOPE_AAD_DOMAIN.len());
        domain.copy_from_slice(ENVELOPE_AAD_DOMAIN.as_bytes());
        rest[0] = 0;
        rest[1] = VERSION;
        rest[2..].copy_from_slice(&epoch.to_be_bytes());
        aad
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_version(Self::HEADER_LEN + self.ciphertext.len());
        let len = u32::try_from(self.ciphertext.len()).unwrap_or(u32::MAX);
        w.u64(self.epoch)
            .raw(&self.nonce)
            .u32(len)
            .raw(&self.ciphertext);
        w.finish()
    }

    /// Decodes an envelope (form only; [`Scope::open`] authenticates it).
    ///
    /// # Errors
    /// [`Error::Decode`] for anything but exactly one canonical encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(Self::WHAT, bytes, Self::MAX_ENCODED_LEN)?;
        let epoch = r.u64("epoch")?;
        let nonce = r.array("nonce")?;
        let len = usize::try_from(r.u32("ciphertext")?).unwrap_or(usize::MAX);
        let max = Self::MAX_ENCODED_LEN - Self::HEADER_LEN;
        if len > max {
            return Err(DecodeError::TooLong {
                what: Self::WHAT,
                field: "ciphertext",
                len,
                max,
            }
            .into());
        }
        if len < Self::TAG_LEN {
            return Err(DecodeError::NotCanonical {
                what: Self::WHAT,
                reason: "ciphertext shorter than the authentication tag",
            }
            .into());
        }
        let ciphertext = r.take(len, "ciphertext")?.to_vec();
        r.finish()?;
        Ok(Self {
            epoch,
            nonce,
            ciphertext,
        })
    }

    /// The epoch it was sealed for.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Length of the plaintext inside.
    pub fn plaintext_len(&self) -> usize {
        self.ciphertext.len().saturating_sub(Self::TAG_LEN)
    }
}

/// The current members of a scope: the device ids of the owner's devices
/// and of the grantees' devices, for one epoch, signed by the namespace key.
///
/// Nodes admit connections from the devices on the rosters of scopes they
/// belong to, so members of a scope learn each other's device ids.
///
/// Members are kept sorted and unique (that is also their encoding), at
/// most [`Roster::MAX_MEMBERS`].
///
/// Signed with domain tag `kith/v1/roster`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Roster {
    namespace: NamespaceId,
    prefix: Path,
    epoch: u64,
    members: Vec<DeviceId>,
    signature: [u8; SIGNATURE_LEN],
}

impl Roster {
    /// Domain tag of the signature.
    pub const DOMAIN: &'static str = "kith/v1/roster";
    /// Members a roster may list, at most.
    pub const MAX_MEMBERS: usize = 1024;
    /// Length of the encoding, at most.
    pub const MAX_ENCODED_LEN: usize =
        1 + 32 + MAX_PATH_FIELD_LEN + 8 + 2 + 32 * Self::MAX_MEMBERS + SIGNATURE_LEN;
    const WHAT: &'static str = "roster";

    /// Signs the roster of (`key`'s namespace, `prefix`) at `epoch`.
    /// Duplicates in `members` are dropped.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if there are more than
    /// [`Roster::MAX_MEMBERS`] distinct members.
    pub fn issue(
        key: &NamespaceKey,
        prefix: Path,
        epoch: u64,
        members: impl IntoIterator<Item = DeviceId>,
    ) -> Result<Self> {
        let mut members: Vec<DeviceId> = members.into_iter().collect();
        members.sort_unstable();
        members.dedup();
        if members.len() > Self::MAX_MEMBERS {
            return Err(Error::InvalidArgument {
                reason: "a roster lists at most 1,024 devices",
            });
        }
        let mut roster = Self {
            namespace: key.id(),
            prefix,
            epoch,
            members,
            signature: [0; SIGNATURE_LEN],
        };
        roster.signature = key.sign(Self::DOMAIN, roster.body().as_slice());
        Ok(roster)
    }

    fn body(&self) -> Writer {
        let mut w =
            Writer::with_version(64 + self.prefix.encoded().len() + 32 * self.members.len());
        let count = u16::try_from(self.members.len()).unwrap_or(u16::MAX);
        w.namespace(&self.namespace)
            .path(&self.prefix)
            .u64(self.epoch)
            .u16(count);
        for m in &self.members {
            w.device(m);
        }
        w
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = self.body();
        w.raw(&self.signature);
        w.finish()
    }

    /// Decodes a roster (form only; call [`verify`](Self::verify)).
    ///
    /// # Errors
    /// [`Error::Decode`] for anything but exactly one canonical encoding
    /// (members strictly ascending, at most [`Roster::MAX_MEMBERS`]).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(Self::WHAT, bytes, Self::MAX_ENCODED_LEN)?;
        let namespace = r.namespace("namespace")?;
        let prefix = r.path("prefix")?;
        let epoch = r.u64("epoch")?;
        let count = usize::from(r.u16("member count")?);
        if count > Self::MAX_MEMBERS {
            return Err(DecodeError::TooLong {
                what: Self::WHAT,
                field: "members",
                len: count,
                max: Self::MAX_MEMBERS,
            }
            .into());
        }
        let mut members: Vec<DeviceId> = Vec::with_capacity(count);
        for _ in 0..count {
            let m = r.device("member")?;
            if members.last().is_some_and(|last| *last >= m) {
                return Err(DecodeError::NotCanonical {
                    what: Self::WHAT,
                    reason: "members are not strictly ascending",
                }
                .into());
            }
            members.push(m);
        }
        let signature = r.array("signature")?;
        r.finish()?;
        Ok(Self {
            namespace,
            prefix,
            epoch,
            members,
            signature,
        })
    }

    /// Checks the signature: made by the namespace key, for this type.
    ///
    /// # Errors
    /// [`Error::BadSignature`] or [`Error::InvalidKey`].
    pub fn verify(&self) -> Result<()> {
        keys::verify(
            self.namespace.as_bytes(),
            "namespace id",
            Self::DOMAIN,
            self.body().as_slice(),
            &self.signature,
            Self::WHAT,
        )
    }

    /// Whether `device` is a member.
    pub fn contains(&self, device: &DeviceId) -> bool {
        self.members.binary_search(device).is_ok()
    }

    /// Whether this is the roster of `scope` (same namespace, prefix and
    /// epoch).
    pub fn is_for(&self, scope: &Scope) -> bool {
        self.namespace == scope.namespace
            && self.prefix == scope.prefix
            && self.epoch == scope.epoch
    }

    /// The namespace (the signer).
    pub fn namespace(&self) -> NamespaceId {
        self.namespace
    }

    /// The scope's prefix.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The scope's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The members, sorted.
    pub fn members(&self) -> &[DeviceId] {
        &self.members
    }

    /// The signature bytes.
    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.signature
    }
}

impl fmt::Debug for Roster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Roster")
            .field("namespace", &self.namespace)
            .field("prefix", &self.prefix)
            .field("epoch", &self.epoch)
            .field("members", &self.members.len())
            .finish_non_exhaustive()
    }
}
