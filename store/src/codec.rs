//! A tiny bounded binary codec for the store's own records.
//!
//! Every stored value starts with a version byte. Fields are fixed-width
//! big-endian integers or length-prefixed byte strings with explicit maximums;
//! a decoder refuses trailing bytes. Stored bytes are treated as untrusted:
//! a damaged value gives [`Error::Corrupt`], never a panic.

use crate::{Error, Result};

/// Appends fields to a buffer.
#[derive(Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn with_version(version: u8) -> Self {
        let mut w = Self {
            buf: Vec::with_capacity(96),
        };
        w.u8(version);
        w
    }

    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn bytes32(&mut self, v: &[u8; 32]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// A byte string of at most `u16::MAX` bytes (callers bound it lower).
    pub(crate) fn short_bytes(&mut self, v: &[u8]) -> &mut Self {
        let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
        self.u16(len);
        self.buf.extend_from_slice(&v[..usize::from(len)]);
        self
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads fields from a stored value.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Starts reading `what`, checking its version byte.
    pub(crate) fn new(buf: &'a [u8], what: &'static str, version: u8) -> Result<Self> {
        let mut r = Self { buf, what };
        let v = r.u8()?;
        if v != version {
            return Err(r.corrupt("unknown version"));
        }
        Ok(r)
    }

    pub(crate) fn corrupt(&self, why: &'static str) -> Error {
        Error::Corrupt {
            what: self.what,
            why,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(self.corrupt("truncated"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.take(N)?;
        bytes.try_into().map_err(|_| self.corrupt("truncated"))
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn bytes32(&mut self) -> Result<[u8; 32]> {
        self.array()
    }

    pub(crate) fn short_bytes(&mut self, max: usize) -> Result<&'a [u8]> {
        let len = usize::from(self.u16()?);
        if len > max {
            return Err(self.corrupt("field too long"));
        }
        self.take(len)
    }

    pub(crate) fn finish(self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt("trailing bytes"))
        }
    }
}
