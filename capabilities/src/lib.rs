//! kith's capabilities: who may read, write and delete what.
//!
//! Every person owns a namespace named by an ed25519 public key; the secret
//! half is their [`NamespaceKey`]. With it they sign everything other
//! people's nodes must be able to check without asking anyone: a
//! [`DeviceCert`] per device that acts for them (with [`Rights`] to write
//! and serve) and its [`DeviceRevocation`]; a [`ReadCap`] per friend and
//! prefix, and its [`Revocation`]; [`Tombstone`]s (deletion requests, also
//! signable by a device with the write right); and the [`Roster`] of each
//! gossip [`Scope`]. Friends' devices answer tombstones with signed
//! [`Receipt`]s. Decisions ([`may_read`], [`Grants`], [`may_write`],
//! [`scopes_covering`], [`grantees_of_scope`], [`tombstone_validity`]) are
//! pure functions of these objects and the current time.
//!
//! This crate is the security core of kith and is deliberately small: it
//! does **no IO** (no clock, no disk, no network; time and randomness are
//! passed in), and **no input makes it panic**: every decoder refuses bad
//! bytes with a typed [`DecodeError`]. Every signed type has exactly one
//! canonical binary encoding (see the [`encoding` rules](crate#wire-format)
//! and `FORMAT.md`), its signature covers a per-type domain tag so it cannot
//! be replayed as another type, and signatures are checked with ed25519's
//! `verify_strict`.
//!
//! What it does not do: store objects, send them, or decide *when* to
//! check them. The sync layer decodes and verifies every object when it
//! arrives and keeps only verified ones; the decision functions trust that.
//!
//! # Wire format
//!
//! One version byte, fixed-order fixed-width big-endian fields, `u16`
//! length-prefixed paths, tagged options, strictly ascending sets, the
//! 64-byte signature last over `domain tag || 0x00 || encoding before the
//! signature`; trailing bytes, unknown versions, unknown flag bits and
//! oversize fields are refused. The full layout of every type is in
//! `FORMAT.md`, pinned by the test vectors in `tests/vectors/`.
//!
//! # Example
//!
//! ```
//! use kith_caps::{CapId, Decision, DenyReason, Grants, NamespaceKey, ReadCap, Revocation};
//! use kith_types::{Path, Timestamp};
//!
//! let mut rng = rand::rng();
//! let alice = NamespaceKey::generate(&mut rng);
//! let bob = NamespaceKey::generate(&mut rng).id();
//! let now = Timestamp::from_micros(1_000);
//!
//! // Alice lets Bob read /photos.
//! let cap = ReadCap::issue(&alice, CapId::random(&mut rng), bob, Path::parse("/photos")?, now, None)?;
//!
//! // Bob's node receives the bytes and checks them.
//! let received = ReadCap::decode(&cap.encode())?;
//! received.verify()?;
//!
//! let grants = Grants::new(alice.id(), [received], []);
//! let later = Timestamp::from_micros(2_000);
//! assert!(grants.may_read(&Path::parse("/photos/beach.jpg")?, &bob, later).is_allowed());
//! assert_eq!(
//!     grants.may_read(&Path::parse("/photosecret")?, &bob, later),
//!     Decision::Deny(DenyReason::PrefixDoesNotCover),
//! );
//!
//! // Alice changes her mind.
//! let revocation = Revocation::issue(&alice, cap.id(), later);
//! let grants = Grants::new(alice.id(), [cap], [revocation]);
//! assert_eq!(
//!     grants.may_read(&Path::parse("/photos/beach.jpg")?, &bob, later),
//!     Decision::Deny(DenyReason::Revoked),
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cert;
mod decide;
mod encoding;
mod error;
mod keys;
mod push;
mod random_id;
mod readcap;
mod scope;
mod tombstone;

pub use cert::{DeviceCert, DeviceRevocation, Rights};
pub use decide::{
    Decision, DenyReason, DeviceDecision, DeviceDenyReason, Grants, deleted_by, grantees_of_scope,
    may_act, may_read, may_write, scopes_covering, tombstone_validity,
};
pub use error::{DecodeError, Error, Result};
pub use keys::{DeviceKey, NamespaceKey};
pub use kith_types::{DeviceId, NamespaceId, Path, Timestamp};
pub use push::SignedPush;
/// The random source that sealing and key generation take.
pub use rand::CryptoRng;
pub use readcap::{CapId, ReadCap, Revocation};
pub use scope::{Roster, Scope, ScopeSecret, SealedEnvelope, TopicId};
pub use tombstone::{MAX_CLOCK_SKEW_MICROS, Receipt, Tombstone, TombstoneId, TombstoneSigner};

/// Length of an ed25519 signature in every encoding.
pub const SIGNATURE_LEN: usize = encoding::SIGNATURE_LEN;
