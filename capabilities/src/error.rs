//! The crate's one error type.
//!
//! Decoding problems ([`DecodeError`]) say that bytes are not a well-formed
//! object at all; the other variants of [`Error`] say that a well-formed
//! object is not acceptable (a bad signature, an expired or revoked
//! certificate, a signer without the right). Callers that receive objects
//! from peers log either kind and drop the object; only the latter kind can
//! change with time (an object that is not yet valid may become valid).

use kith_types::{ParseError, Timestamp};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a well-formed encoding of the object.
    #[error("malformed {0}")]
    Decode(#[from] DecodeError),
    /// A signature does not verify (strictly) under the key that must have
    /// made it, for this type's domain tag.
    #[error("bad signature on {what}")]
    BadSignature {
        /// The type whose signature failed.
        what: &'static str,
    },
    /// A namespace or device id is not a usable ed25519 public key.
    #[error("{what} is not a valid ed25519 public key")]
    InvalidKey {
        /// Which key ("namespace id", "device id").
        what: &'static str,
    },
    /// The object is signed correctly but by someone who may not make it:
    /// a certificate for another namespace or device, or a signer that
    /// lacks the right.
    #[error("unauthorized: {reason}")]
    Unauthorized {
        /// Why, in words for a log.
        reason: &'static str,
    },
    /// A certificate or capability has expired.
    #[error("{what} expired at {expired_at}")]
    Expired {
        /// What expired.
        what: &'static str,
        /// When.
        expired_at: Timestamp,
    },
    /// A certificate, capability or tombstone is dated in the future.
    #[error("{what} is not valid before {valid_from}")]
    NotYetValid {
        /// What is not valid yet.
        what: &'static str,
        /// From when it would be valid.
        valid_from: Timestamp,
    },
    /// A certificate has been revoked.
    #[error("{what} has been revoked")]
    Revoked {
        /// What was revoked.
        what: &'static str,
    },
    /// An argument given to a constructor is out of bounds (for example an
    /// expiry that is not after the issue time, or too many roster members).
    #[error("invalid argument: {reason}")]
    InvalidArgument {
        /// Why, in words.
        reason: &'static str,
    },
    /// A payload is larger than a sealed envelope may carry.
    #[error("{what} is {len} bytes; the maximum is {max}")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A sealed envelope could not be opened: it was sealed for another
    /// epoch or scope, or it has been altered.
    #[error("cannot open sealed envelope: {reason}")]
    Open {
        /// Why, in words.
        reason: &'static str,
    },
    /// An exported key's text is not valid.
    #[error("invalid key text: {reason}")]
    KeyText {
        /// Why, in words (never contains the key).
        reason: &'static str,
    },
}

/// Why bytes are not a well-formed encoding.
///
/// Every decoder in this crate returns one of these for any input it does
/// not accept; no input makes a decoder panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended in the middle of a field.
    #[error("{what}: input ends inside {field}")]
    Truncated {
        /// The type being decoded.
        what: &'static str,
        /// The field being read.
        field: &'static str,
    },
    /// The leading version byte is not one this crate understands.
    #[error("{what}: unknown version {version}")]
    UnknownVersion {
        /// The type being decoded.
        what: &'static str,
        /// The version byte found.
        version: u8,
    },
    /// Bytes remain after the last field.
    #[error("{what}: {count} trailing bytes")]
    TrailingBytes {
        /// The type being decoded.
        what: &'static str,
        /// How many bytes remain.
        count: usize,
    },
    /// A field or the whole input is longer than its maximum.
    #[error("{what}: {field} is {len} bytes or items; the maximum is {max}")]
    TooLong {
        /// The type being decoded.
        what: &'static str,
        /// The field (or "input").
        field: &'static str,
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A tag byte (an option flag, a signer kind) has no meaning.
    #[error("{what}: invalid {field} tag {tag}")]
    InvalidTag {
        /// The type being decoded.
        what: &'static str,
        /// The field.
        field: &'static str,
        /// The byte found.
        tag: u8,
    },
    /// A bit-flag byte has bits set that this version does not define.
    #[error("{what}: unknown bits {bits:#04x} in {field}")]
    UnknownBits {
        /// The type being decoded.
        what: &'static str,
        /// The field.
        field: &'static str,
        /// The undefined bits that were set.
        bits: u8,
    },
    /// An encoded path is invalid.
    #[error("{what}: invalid path: {source}")]
    InvalidPath {
        /// The type being decoded.
        what: &'static str,
        /// What is wrong with the path.
        source: ParseError,
    },
    /// The fields are well-formed one by one but break a rule of the type
    /// (roster members not strictly ascending, expiry not after issue, …).
    /// Each object has exactly one encoding, so such bytes are refused.
    #[error("{what}: {reason}")]
    NotCanonical {
        /// The type being decoded.
        what: &'static str,
        /// The rule that is broken.
        reason: &'static str,
    },
}
