//! Keys at rest that a deletion can destroy: crypto-shredding.
//!
//! Every document and every blob file is encrypted under a random 32-byte
//! key of its own. The keys live in one file, `vault`, beside fjall's
//! folder: a 64-byte header, then 32-byte *slots*, each holding one key or
//! 32 zero bytes (free). Which slot belongs to which document or blob is
//! recorded in fjall (the `vault` keyspace); the key bytes never are.
//!
//! fjall is a log-structured store: a deleted value stays in its journal
//! and tables until the journal rotates and compaction rewrites the tables,
//! and each of those copies is a copy of the plaintext if values are stored
//! in the clear. Here each copy is ciphertext, and deleting an item
//! overwrites its slot in place with zeros and fsyncs the file: from then
//! on no file in the data folder holds a key that opens any copy of it.
//! Compaction only reclaims space.
//!
//! Erasure is made durable in this order, so that a crash at any point
//! leaves either the item readable and not deleted, or deleted and its key
//! destroyed (resumed on open):
//! 1. in the batch that removes the item, its slot-map entry is removed and
//!    a *pending erasure* marker for the slot is written;
//! 2. the journal is fsynced;
//! 3. the slot is overwritten with zeros and the vault is fsynced;
//! 4. the marker is removed and the slot is free to be used again.
//!
//! What it does not protect against: file systems that copy on write
//! (btrfs, ZFS, APFS snapshots) and SSD wear levelling may keep the old
//! block of an overwritten slot where the file system no longer shows it,
//! readable with raw access to the device; backups and copies of the data
//! folder made before the deletion hold the key; an attacker who can read
//! the process's memory or the disk while the item exists. Paths (entry
//! keys), sizes, heads and blob hashes are not encrypted; they leave the
//! data folder when [`Store::compact`](crate::Store::compact) runs.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path as FsPath;

use aes::Aes256;
use chacha20::XChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use parking_lot::Mutex;

use crate::{BlobCipher, Error, Result};

/// AES-256 in counter mode, the whole 16-byte block a big-endian counter.
type Aes256Ctr = ctr::Ctr128BE<Aes256>;

/// Magic at the start of the vault file.
const MAGIC: &[u8; 10] = b"kith-vault";
const VERSION: u8 = 1;
/// Header length; slot `i` starts at `HEADER_LEN + 32 * i`.
pub(crate) const HEADER_LEN: u64 = 64;
/// Length of one key.
pub(crate) const KEY_LEN: usize = 32;
/// The file grows by this many slots at a time (zeros), so that most
/// allocations overwrite in place instead of extending the file.
const GROW_SLOTS: u64 = 1024;

/// Leading byte of an encrypted document chunk (an Automerge chunk starts
/// with 0x85).
pub(crate) const SEALED_CHUNK: u8 = 0x01;
const NONCE_LEN: usize = 24;
/// Bytes an encrypted chunk adds: marker, nonce, tag.
pub(crate) const SEALED_OVERHEAD: usize = 1 + NONCE_LEN + 16;

/// A slot number in the vault file.
pub(crate) type Slot = u32;

/// One item's key. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ItemKey([u8; KEY_LEN]);

impl std::fmt::Debug for ItemKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ItemKey(..)")
    }
}

impl ItemKey {
    /// A fresh random key (the thread's CSPRNG, seeded by the OS).
    pub(crate) fn random() -> Self {
        loop {
            let mut bytes = [0u8; KEY_LEN];
            rand::fill(&mut bytes);
            // All zeros marks a free slot; never a key.
            if bytes != [0; KEY_LEN] {
                return Self(bytes);
            }
        }
    }

    /// Encrypts a document chunk stored under the fjall key `aad`.
    /// Encryption fails only past ChaCha's 256 GiB message limit, far above
    /// the store's size limits.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let ct = XChaCha20Poly1305::new((&self.0).into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| Error::Corrupt {
                what: "document chunk",
                why: "too large to encrypt",
            })?;
        let mut out = Vec::with_capacity(ct.len() + 1 + NONCE_LEN);
        out.push(SEALED_CHUNK);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts what [`ItemKey::seal`] made.
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        let unreadable = Error::Corrupt {
            what: "document chunk",
            why: "cannot be decrypted (its key was destroyed, or the bytes were altered)",
        };
        if sealed.len() < SEALED_OVERHEAD || sealed[0] != SEALED_CHUNK {
            return Err(unreadable);
        }
        let (nonce, ct) = sealed[1..].split_at(NONCE_LEN);
        XChaCha20Poly1305::new((&self.0).into())
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| unreadable)
    }
}

/// A blob file's key and the cipher it is used with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlobKey {
    pub(crate) key: ItemKey,
    pub(crate) cipher: BlobCipher,
}

impl BlobKey {
    /// A fresh random key for `cipher`.
    pub(crate) fn random(cipher: BlobCipher) -> Self {
        Self {
            key: ItemKey::random(),
            cipher,
        }
    }

    /// A keystream for the blob file, positioned at byte `offset`. Blob
    /// content is authenticated by its BLAKE3 hash when it is stored, so
    /// the file needs only confidentiality, and a stream cipher keeps range
    /// reads and resumed downloads at any offset.
    pub(crate) fn stream(&self, offset: u64) -> BlobStream {
        // One key encrypts one blob's content, so a fixed nonce (counter)
        // is safe.
        let key = (&self.key.0).into();
        match self.cipher {
            BlobCipher::XChaCha20 => {
                let mut cipher = XChaCha20::new(key, (&[0u8; NONCE_LEN]).into());
                cipher.seek(offset);
                BlobStream::XChaCha20(cipher)
            }
            BlobCipher::Aes256Ctr => {
                let mut cipher = Aes256Ctr::new(key, (&[0u8; 16]).into());
                cipher.seek(offset);
                BlobStream::Aes256Ctr(Box::new(cipher))
            }
        }
    }
}

/// Encrypts or decrypts a blob file's bytes in order.
pub(crate) enum BlobStream {
    XChaCha20(XChaCha20),
    Aes256Ctr(Box<Aes256Ctr>),
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlobStream(..)")
    }
}

impl BlobStream {
    /// XORs the next `buf.len()` keystream bytes into `buf`.
    pub(crate) fn apply(&mut self, buf: &mut [u8]) {
        match self {
            Self::XChaCha20(c) => c.apply_keystream(buf),
            Self::Aes256Ctr(c) => c.apply_keystream(buf),
        }
    }
}

/// Whether a stored document chunk is encrypted (else it is a plaintext
/// chunk written before encryption at rest).
pub(crate) fn is_sealed(chunk: &[u8]) -> bool {
    chunk.first() == Some(&SEALED_CHUNK)
}

/// The vault file: slots of keys, overwritten in place.
pub(crate) struct Vault {
    file: File,
    sync: bool,
    state: Mutex<SlotState>,
}

struct SlotState {
    /// Free slots (zero on disk), lowest last.
    free: Vec<Slot>,
    /// Slots in the file.
    len: u64,
}

impl Vault {
    /// Opens (or creates) the vault at `path` and finds its free slots.
    /// `sync`: fsync after every allocation (the store's `Durability::Sync`).
    pub(crate) fn open(path: &FsPath, sync: bool) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let size = file.metadata()?.len();
        if size == 0 {
            let mut header = [0u8; HEADER_LEN as usize];
            header[..MAGIC.len()].copy_from_slice(MAGIC);
            header[MAGIC.len()] = VERSION;
            write_at(&file, &header, 0)?;
            file.sync_all()?;
        } else {
            let mut header = [0u8; HEADER_LEN as usize];
            read_at(&file, &mut header, 0).map_err(|_| Error::Corrupt {
                what: "vault",
                why: "shorter than its header",
            })?;
            if &header[..MAGIC.len()] != MAGIC || header[MAGIC.len()] != VERSION {
                return Err(Error::Corrupt {
                    what: "vault",
                    why: "not a kith vault of a known version",
                });
            }
        }
        let len = size.saturating_sub(HEADER_LEN) / KEY_LEN as u64;
        let mut free = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut slot: u64 = 0;
        while slot < len {
            let n = ((len - slot) as usize * KEY_LEN).min(buf.len());
            read_at(&file, &mut buf[..n], HEADER_LEN + slot * KEY_LEN as u64)?;
            for key in buf[..n].chunks_exact(KEY_LEN) {
                if key.iter().all(|b| *b == 0) {
                    free.push(slot_number(slot)?);
                }
                slot += 1;
            }
        }
        free.reverse();
        Ok(Self {
            file,
            sync,
            state: Mutex::new(SlotState { free, len }),
        })
    }

    /// Stores `key` in a free slot (growing the file if none is free) and
    /// returns the slot. Written to the OS at once (fsynced too in sync
    /// mode), before any data it encrypts is committed.
    pub(crate) fn allocate(&self, key: &ItemKey) -> Result<Slot> {
        let slot = self.reserve()?;
        if let Err(e) = self.write_keys([(slot, key)]) {
            self.state.lock().free.push(slot);
            return Err(e);
        }
        Ok(slot)
    }

    /// Takes a free slot (growing the file if none is free) for a key that
    /// [`Vault::write_keys`] writes before anything it encrypts is
    /// committed; [`Vault::discard`] it if that never happens.
    pub(crate) fn reserve(&self) -> Result<Slot> {
        let mut state = self.state.lock();
        if let Some(slot) = state.free.pop() {
            return Ok(slot);
        }
        let start = state.len;
        let grown = start + GROW_SLOTS;
        self.file.set_len(HEADER_LEN + grown * KEY_LEN as u64)?;
        for s in (start + 1..grown).rev() {
            state.free.push(slot_number(s)?);
        }
        state.len = grown;
        slot_number(start)
    }

    /// Writes keys into their reserved slots, neighbouring slots in one
    /// write, then (in sync mode) fsyncs once: a batch of new documents
    /// costs one sync, not one per document.
    pub(crate) fn write_keys<'k>(
        &self,
        keys: impl IntoIterator<Item = (Slot, &'k ItemKey)>,
    ) -> Result<()> {
        let mut sorted: Vec<(Slot, &ItemKey)> = keys.into_iter().collect();
        if sorted.is_empty() {
            return Ok(());
        }
        sorted.sort_unstable_by_key(|(slot, _)| *slot);
        let mut run: Vec<u8> = Vec::new();
        let mut run_start = sorted[0].0;
        for (i, (slot, key)) in sorted.iter().enumerate() {
            let next_in_run = i > 0 && u64::from(*slot) == u64::from(sorted[i - 1].0) + 1;
            if i > 0 && !next_in_run {
                write_at(&self.file, &run, offset(run_start))?;
                run.clear();
                run_start = *slot;
            }
            run.extend_from_slice(&key.0);
        }
        write_at(&self.file, &run, offset(run_start))?;
        if self.sync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// The key in `slot`; `None` if the slot is empty (destroyed).
    pub(crate) fn key(&self, slot: Slot) -> Result<Option<ItemKey>> {
        let mut key = [0u8; KEY_LEN];
        match read_at(&self.file, &mut key, offset(slot)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        Ok((key != [0; KEY_LEN]).then_some(ItemKey(key)))
    }

    /// Overwrites `slots` with zeros and fsyncs the file: their keys are
    /// gone. The slots are not free yet: [`Vault::release`] them once
    /// their pending-erasure markers are removed.
    pub(crate) fn destroy(&self, slots: &[Slot]) -> Result<()> {
        if slots.is_empty() {
            return Ok(());
        }
        for slot in slots {
            write_at(&self.file, &[0u8; KEY_LEN], offset(*slot))?;
        }
        self.file.sync_data()?;
        Ok(())
    }

    /// Makes destroyed slots available to new keys.
    pub(crate) fn release(&self, slots: &[Slot]) {
        let mut state = self.state.lock();
        for slot in slots {
            if !state.free.contains(slot) {
                state.free.push(*slot);
            }
        }
    }

    /// Zeroes slots allocated for writes that were never committed (no
    /// data was stored under them), and frees them. No fsync: nothing
    /// encrypted under these keys reached the disk.
    pub(crate) fn discard(&self, slots: &[Slot]) {
        for slot in slots {
            if let Err(e) = write_at(&self.file, &[0u8; KEY_LEN], offset(*slot)) {
                tracing::warn!(slot, %e, "could not clear an unused vault slot");
                return;
            }
        }
        self.release(slots);
    }
}

fn offset(slot: Slot) -> u64 {
    HEADER_LEN + u64::from(slot) * KEY_LEN as u64
}

fn slot_number(slot: u64) -> Result<Slot> {
    Slot::try_from(slot).map_err(|_| Error::Corrupt {
        what: "vault",
        why: "more slots than a slot number can name",
    })
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(unix)]
fn write_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

#[cfg(windows)]
fn write_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = file.seek_write(buf, offset)?;
        buf = &buf[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_chunks_open_only_with_their_key_and_place() {
        let key = ItemKey::random();
        let sealed = key.seal(b"here", b"automerge bytes").unwrap();
        assert!(is_sealed(&sealed));
        assert_eq!(key.open(b"here", &sealed).unwrap(), b"automerge bytes");
        assert!(key.open(b"elsewhere", &sealed).is_err());
        assert!(ItemKey::random().open(b"here", &sealed).is_err());
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(key.open(b"here", &altered).is_err());
    }

    #[test]
    fn blob_streams_seek_and_each_cipher_makes_its_own_stream() {
        let key = ItemKey::random();
        let plain: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let mut streams = Vec::new();
        for cipher in [BlobCipher::XChaCha20, BlobCipher::Aes256Ctr] {
            let key = BlobKey {
                key: key.clone(),
                cipher,
            };
            let mut whole = plain.clone();
            key.stream(0).apply(&mut whole);
            assert_ne!(whole, plain);
            // From an offset inside a block, in pieces of odd lengths.
            let mut tail = whole[1234..].to_vec();
            let mut stream = key.stream(1234);
            for piece in tail.chunks_mut(77) {
                stream.apply(piece);
            }
            assert_eq!(tail, plain[1234..], "{cipher:?}");
            streams.push(whole);
        }
        assert_ne!(streams[0], streams[1], "the ciphers differ");
    }

    #[test]
    fn aes_blob_stream_is_aes_256_ctr() {
        // NIST SP 800-38A, F.5.5 (CTR-AES256.Encrypt), first block, as a
        // check that the stream is standard AES-256-CTR: here with its key
        // and counter block, through the same cipher type.
        let key: [u8; 32] = hex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
        let iv: [u8; 16] = hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
        let mut block: [u8; 16] = hex("6bc1bee22e409f96e93d7e117393172a");
        Aes256Ctr::new((&key).into(), (&iv).into()).apply_keystream(&mut block);
        assert_eq!(block, hex::<16>("601ec313775789a5b7a7f504bbf3d228"));
    }

    fn hex<const N: usize>(s: &str) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn slots_are_reused_after_release_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let vault = Vault::open(&path, false).unwrap();
        let (a, b) = (ItemKey::random(), ItemKey::random());
        let sa = vault.allocate(&a).unwrap();
        let sb = vault.allocate(&b).unwrap();
        assert_ne!(sa, sb);
        vault.destroy(&[sa]).unwrap();
        assert_eq!(vault.key(sa).unwrap(), None);
        vault.release(&[sa]);
        drop(vault);
        let vault = Vault::open(&path, false).unwrap();
        assert_eq!(vault.key(sb).unwrap(), Some(b));
        let c = ItemKey::random();
        assert_eq!(vault.allocate(&c).unwrap(), sa, "the lowest free slot");
        std::fs::write(dir.path().join("other"), b"not a vault at all, no").unwrap();
        assert!(Vault::open(&dir.path().join("other"), false).is_err());
    }

    #[test]
    fn keys_written_together_land_in_their_own_slots() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let vault = Vault::open(&path, true).unwrap();
        let slots: Vec<Slot> = (0..6).map(|_| vault.reserve().unwrap()).collect();
        let keys: Vec<ItemKey> = (0..6).map(|_| ItemKey::random()).collect();
        // Reserved, not written: nothing there yet.
        assert_eq!(vault.key(slots[0]).unwrap(), None);
        // Out of order and with a gap (slot 3 stays unwritten): runs of
        // neighbours are written together, each key into its own slot.
        let order = [4, 0, 2, 1, 5];
        vault
            .write_keys(order.iter().map(|&i| (slots[i], &keys[i])))
            .unwrap();
        drop(vault);
        let vault = Vault::open(&path, true).unwrap();
        for &i in &order {
            assert_eq!(
                vault.key(slots[i]).unwrap().as_ref(),
                Some(&keys[i]),
                "slot {i}"
            );
        }
        assert_eq!(vault.key(slots[3]).unwrap(), None);
    }
}
