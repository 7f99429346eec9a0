//! The one byte codec of sync's own encodings: the catch-up wire
//! ([`super::wire`]), live-push bodies ([`super::push`]) and the records
//! the node keeps (cursors, what a device was served, held scopes).
//!
//! Integers are big-endian; byte strings carry a `u32` length, strings and
//! paths a `u16` one, lists a `u16` count. [`Dec`] checks every length
//! against what is left (and against the caller's bound) before it takes
//! or allocates anything, so hostile input costs no more than its size.

use kith_types::{MAX_ENCODED_PATH_LEN, Path};

/// A decoding failure: the bytes are not a valid encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed message: {0}")]
pub struct WireError(pub &'static str);

/// Writes an encoding.
#[derive(Debug, Default)]
pub(crate) struct Enc(pub(crate) Vec<u8>);

impl Enc {
    /// An encoding that starts with `version`.
    pub(crate) fn versioned(version: u8) -> Self {
        Self(vec![version])
    }
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    /// Bytes as they are (a fixed-size field).
    pub(crate) fn raw(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    /// A byte string with a `u32` length.
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(v);
    }
    /// A string with a `u16` length (cut at 65,535 bytes).
    pub(crate) fn str(&mut self, v: &str) {
        let len = v.len().min(usize::from(u16::MAX));
        self.u16(len as u16);
        self.0.extend_from_slice(&v.as_bytes()[..len]);
    }
    /// A path with a `u16` length (paths are at most
    /// [`MAX_ENCODED_PATH_LEN`] bytes).
    pub(crate) fn path(&mut self, p: &Path) {
        self.u16(p.encoded().len() as u16);
        self.0.extend_from_slice(p.encoded());
    }
    /// A list with a `u16` count (cut at 65,535 items).
    pub(crate) fn list<T>(&mut self, items: &[T], mut each: impl FnMut(&mut Self, &T)) {
        self.u16(items.len().min(usize::from(u16::MAX)) as u16);
        for item in items.iter().take(usize::from(u16::MAX)) {
            each(self, item);
        }
    }
    /// The bytes written.
    pub(crate) fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Reads an encoding, refusing anything truncated or over its bounds.
#[derive(Debug)]
pub(crate) struct Dec<'a>(pub(crate) &'a [u8]);

impl<'a> Dec<'a> {
    /// Reads `bytes`, which must start with `version`.
    pub(crate) fn versioned(bytes: &'a [u8], version: u8) -> Result<Self, WireError> {
        let mut d = Self(bytes);
        if d.u8()? != version {
            return Err(WireError("unknown version"));
        }
        Ok(d)
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        self.take(N)?.try_into().map_err(|_| WireError("truncated"))
    }
    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    /// A byte string of at most `max` bytes.
    pub(crate) fn bytes(&mut self, max: usize) -> Result<&'a [u8], WireError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(WireError("byte string too long"));
        }
        self.take(len)
    }
    /// A UTF-8 string of at most `max` bytes.
    pub(crate) fn str(&mut self, max: usize) -> Result<String, WireError> {
        let len = usize::from(self.u16()?);
        if len > max {
            return Err(WireError("string too long"));
        }
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| WireError("string is not UTF-8"))
    }
    pub(crate) fn path(&mut self) -> Result<Path, WireError> {
        let len = usize::from(self.u16()?);
        if len > MAX_ENCODED_PATH_LEN {
            return Err(WireError("path too long"));
        }
        Path::from_encoded(self.take(len)?).map_err(|_| WireError("invalid path"))
    }
    /// A list of at most `max` items.
    pub(crate) fn list<T>(
        &mut self,
        max: usize,
        mut each: impl FnMut(&mut Self) -> Result<T, WireError>,
    ) -> Result<Vec<T>, WireError> {
        let n = usize::from(self.u16()?);
        if n > max {
            return Err(WireError("too many items"));
        }
        // Every item takes at least one byte: a count larger than what is
        // left is refused before allocating.
        if n > self.0.len() {
            return Err(WireError("truncated"));
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(each(self)?);
        }
        Ok(out)
    }
    /// Whether everything was read.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Fails unless everything was read.
    pub(crate) fn end(&self) -> Result<(), WireError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(WireError("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn every_field_round_trips(
            a in any::<u8>(), b in any::<u16>(), c in any::<u32>(), d in any::<u64>(),
            bytes in prop::collection::vec(any::<u8>(), 0..300),
            text in "\\PC{0,40}",
            parts in prop::collection::vec("[a-z0-9]{1,8}", 1..4),
            list in prop::collection::vec(any::<u64>(), 0..50),
        ) {
            let path = Path::parse(&format!("/{}", parts.join("/"))).unwrap();
            let mut e = Enc::versioned(7);
            e.u8(a);
            e.u16(b);
            e.u32(c);
            e.u64(d);
            e.bytes(&bytes);
            e.str(&text);
            e.path(&path);
            e.list(&list, |e, v| e.u64(*v));
            let encoded = e.finish();
            let mut r = Dec::versioned(&encoded, 7).unwrap();
            prop_assert_eq!(r.u8().unwrap(), a);
            prop_assert_eq!(r.u16().unwrap(), b);
            prop_assert_eq!(r.u32().unwrap(), c);
            prop_assert_eq!(r.u64().unwrap(), d);
            prop_assert_eq!(r.bytes(bytes.len()).unwrap(), &bytes[..]);
            prop_assert_eq!(r.str(text.len()).unwrap(), text);
            prop_assert_eq!(r.path().unwrap(), path);
            prop_assert_eq!(r.list(list.len(), |r| r.u64()).unwrap(), list);
            prop_assert!(r.end().is_ok());
            // Every cut of the encoding is refused, never read past.
            for cut in 0..encoded.len() {
                let mut r = Dec(&encoded[..cut]);
                let whole = (|| -> Result<(), WireError> {
                    r.u8()?; r.u8()?; r.u16()?; r.u32()?; r.u64()?;
                    r.bytes(usize::MAX)?; r.str(usize::MAX)?; r.path()?;
                    r.list(usize::MAX, |r| r.u64())?;
                    r.end()
                })();
                prop_assert!(whole.is_err());
            }
        }

        #[test]
        fn bounds_are_checked_before_taking(len in 1usize..100) {
            let mut e = Enc::default();
            e.bytes(&vec![0; len]);
            let encoded = e.finish();
            prop_assert!(Dec(&encoded).bytes(len - 1).is_err());
        }
    }
}
