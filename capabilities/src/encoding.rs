//! The one canonical binary encoding that every type in this crate uses.
//!
//! This module is the wire format's specification; `FORMAT.md` beside the
//! crate's `Cargo.toml` lists the exact layout of every type, and the test
//! vectors in `tests/vectors/` pin them.
//!
//! # Rules
//!
//! - An encoding starts with **one version byte** for its type (currently
//!   `1` for every type). A decoder refuses any other value with
//!   [`DecodeError::UnknownVersion`].
//! - Fields follow in a **fixed order**; there are no maps, no floats, no
//!   optional trailing fields and no varints.
//! - Integers (timestamps, epochs) are **big-endian, fixed width** (`u64`:
//!   8 bytes; lengths and counts: `u16`, or `u32` for envelope ciphertext).
//! - Keys and ids are their **raw bytes** (32 for namespace and device ids,
//!   16 for capability and tombstone ids).
//! - An optional timestamp is a **tag byte** `0` (absent) or `1` followed by
//!   the 8-byte timestamp; any other tag is refused.
//! - A path is a **`u16` length** followed by the path's order-preserving
//!   encoding (`kith_types::Path::encoded`: each component followed by NUL),
//!   at most `kith_types::MAX_ENCODED_PATH_LEN` bytes, validated in full.
//! - Lists are a **`u16` count** followed by the items; a list whose items
//!   form a set (roster members) must be **strictly ascending**, so that one
//!   set has one encoding.
//! - Bit flags are one byte; **undefined bits are refused**.
//! - A signed object ends with its **64-byte ed25519 signature**. What is
//!   signed is `domain tag || 0x00 || every encoded byte before the
//!   signature` (version byte included), with a domain tag per type such as
//!   `kith/v1/readcap`, so no signature of one type can be presented as
//!   another. Signatures are checked with `verify_strict`.
//! - A decoder **consumes the whole input**: trailing bytes are refused with
//!   [`DecodeError::TrailingBytes`], and inputs longer than the type's
//!   maximum are refused before anything is read.
//!
//! Because of these rules, `decode(encode(x)) == x` for every value and
//! `encode(decode(b)) == b` for every accepted input.

use kith_types::{DeviceId, MAX_ENCODED_PATH_LEN, NamespaceId, Path, Timestamp};

use crate::error::DecodeError;

/// Version byte of every type's current encoding.
pub(crate) const VERSION: u8 = 1;

/// Length of an ed25519 signature.
pub(crate) const SIGNATURE_LEN: usize = 64;

/// Encoded length of a path field at most (length prefix + bytes).
pub(crate) const MAX_PATH_FIELD_LEN: usize = 2 + MAX_ENCODED_PATH_LEN;

/// Encoded length of an optional timestamp at most.
pub(crate) const OPT_TIMESTAMP_LEN: usize = 9;

/// Builds an encoding field by field.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A writer that starts with the version byte.
    pub(crate) fn with_version(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.push(VERSION);
        Self { buf }
    }

    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    pub(crate) fn namespace(&mut self, id: &NamespaceId) -> &mut Self {
        self.raw(id.as_bytes())
    }

    pub(crate) fn device(&mut self, id: &DeviceId) -> &mut Self {
        self.raw(id.as_bytes())
    }

    pub(crate) fn timestamp(&mut self, t: Timestamp) -> &mut Self {
        self.raw(&t.to_be_bytes())
    }

    pub(crate) fn opt_timestamp(&mut self, t: Option<Timestamp>) -> &mut Self {
        match t {
            None => self.u8(0),
            Some(t) => self.u8(1).timestamp(t),
        }
    }

    /// A path: `u16` length, then its encoding. Paths are at most
    /// `MAX_ENCODED_PATH_LEN` (16,384) bytes, so the length always fits.
    pub(crate) fn path(&mut self, path: &Path) -> &mut Self {
        let bytes = path.encoded();
        let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
        self.u16(len).raw(bytes)
    }

    /// A `u16`-length-prefixed byte string; callers guarantee the bound.
    pub(crate) fn bytes16(&mut self, bytes: &[u8]) -> &mut Self {
        let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
        self.u16(len).raw(bytes)
    }

    /// The bytes written so far.
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads an encoding field by field, with the type's name for errors.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    what: &'static str,
    input: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading `input` as a `what`: checks the overall maximum and the
    /// version byte.
    pub(crate) fn new(
        what: &'static str,
        input: &'a [u8],
        max_len: usize,
    ) -> Result<Self, DecodeError> {
        if input.len() > max_len {
            return Err(DecodeError::TooLong {
                what,
                field: "input",
                len: input.len(),
                max: max_len,
            });
        }
        let mut reader = Self {
            what,
            input,
            pos: 0,
        };
        let version = reader.u8("version")?;
        if version != VERSION {
            return Err(DecodeError::UnknownVersion { what, version });
        }
        Ok(reader)
    }

    pub(crate) fn what(&self) -> &'static str {
        self.what
    }

    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.input.len())
            .ok_or(DecodeError::Truncated {
                what: self.what,
                field,
            })?;
        let bytes = &self.input[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn namespace(&mut self, field: &'static str) -> Result<NamespaceId, DecodeError> {
        Ok(NamespaceId::from_bytes(self.array(field)?))
    }

    pub(crate) fn device(&mut self, field: &'static str) -> Result<DeviceId, DecodeError> {
        Ok(DeviceId::from_bytes(self.array(field)?))
    }

    pub(crate) fn timestamp(&mut self, field: &'static str) -> Result<Timestamp, DecodeError> {
        Ok(Timestamp::from_micros(self.u64(field)?))
    }

    pub(crate) fn opt_timestamp(
        &mut self,
        field: &'static str,
    ) -> Result<Option<Timestamp>, DecodeError> {
        match self.u8(field)? {
            0 => Ok(None),
            1 => Ok(Some(self.timestamp(field)?)),
            tag => Err(DecodeError::InvalidTag {
                what: self.what,
                field,
                tag,
            }),
        }
    }

    /// A `u16`-length-prefixed byte string of at most `max` bytes.
    pub(crate) fn bytes16(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(DecodeError::TooLong {
                what: self.what,
                field,
                len,
                max,
            });
        }
        self.take(len, field)
    }

    pub(crate) fn path(&mut self, field: &'static str) -> Result<Path, DecodeError> {
        let bytes = self.bytes16(field, MAX_ENCODED_PATH_LEN)?;
        Path::from_encoded(bytes).map_err(|source| DecodeError::InvalidPath {
            what: self.what,
            source,
        })
    }

    /// Checks that the whole input was read.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        let count = self.input.len() - self.pos;
        if count == 0 {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                what: self.what,
                count,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_refuses_what_it_must() {
        assert!(matches!(
            Reader::new("t", &[], 10),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            Reader::new("t", &[2], 10),
            Err(DecodeError::UnknownVersion { version: 2, .. })
        ));
        assert!(matches!(
            Reader::new("t", &[1; 11], 10),
            Err(DecodeError::TooLong { len: 11, .. })
        ));
        let mut r = Reader::new("t", &[1, 2, 0, 0], 10).unwrap();
        assert!(matches!(
            r.opt_timestamp("x"),
            Err(DecodeError::InvalidTag { tag: 2, .. })
        ));
        let mut r = Reader::new("t", &[1, 0, 5, 1, 2], 10).unwrap();
        assert!(matches!(
            r.bytes16("x", 4),
            Err(DecodeError::TooLong { len: 5, max: 4, .. })
        ));
        let mut r = Reader::new("t", &[1, 0, 3, 1, 2], 10).unwrap();
        assert!(matches!(
            r.bytes16("x", 4),
            Err(DecodeError::Truncated { .. })
        ));
        let r = Reader::new("t", &[1, 9], 10).unwrap();
        assert!(matches!(
            r.finish(),
            Err(DecodeError::TrailingBytes { count: 1, .. })
        ));
    }

    #[test]
    fn fields_round_trip() {
        let path = Path::parse("/a/b").unwrap();
        let mut w = Writer::with_version(64);
        w.u8(7)
            .u16(0x0102)
            .u32(0x0304_0506)
            .u64(u64::MAX)
            .opt_timestamp(None)
            .opt_timestamp(Some(Timestamp::from_micros(5)))
            .path(&path)
            .bytes16(b"xyz");
        let bytes = w.finish();
        let mut r = Reader::new("t", &bytes, 1000).unwrap();
        assert_eq!(r.u8("a").unwrap(), 7);
        assert_eq!(r.u16("b").unwrap(), 0x0102);
        assert_eq!(r.u32("c").unwrap(), 0x0304_0506);
        assert_eq!(r.u64("d").unwrap(), u64::MAX);
        assert_eq!(r.opt_timestamp("e").unwrap(), None);
        assert_eq!(
            r.opt_timestamp("f").unwrap(),
            Some(Timestamp::from_micros(5))
        );
        assert_eq!(r.path("g").unwrap(), path);
        assert_eq!(r.bytes16("h", 3).unwrap(), b"xyz");
        r.finish().unwrap();
    }

    #[test]
    fn invalid_paths_are_refused() {
        // "a" without its terminator.
        let bytes = [1, 0, 1, b'a'];
        let mut r = Reader::new("t", &bytes, 100).unwrap();
        assert!(matches!(r.path("p"), Err(DecodeError::InvalidPath { .. })));
        let mut long = vec![1u8];
        let len = u16::try_from(MAX_ENCODED_PATH_LEN + 1).unwrap();
        long.extend_from_slice(&len.to_be_bytes());
        let mut r = Reader::new("t", &long, 100).unwrap();
        assert!(matches!(r.path("p"), Err(DecodeError::TooLong { .. })));
    }
}
