//! Blob content as content-addressed files: `blobs/<2 hex>/<62 hex>`.
//!
//! Content is streamed into `blobs/tmp/` while it is hashed and encrypted
//! under a key of its own (see [`vault`](crate::vault)), then renamed into
//! place (after an fsync in [`Durability::Sync`](crate::Durability::Sync)
//! mode), so a file at a hash's place always holds exactly that content.
//! The store removes a file once no entry references its hash; files left
//! behind by a crash between the rename and the metadata commit are removed
//! when the store opens.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, mpsc};

use parking_lot::{Condvar, Mutex};

use crate::error::Limit;
use crate::groups::{self, GroupHash, GroupHasher, group_count, group_len};
use crate::vault::{BlobKey, BlobStream};
use crate::{BlobCipher, BlobHash, Error, Result};

/// Read/write buffer size when streaming blob content.
const STREAM_BUFFER: usize = 256 * 1024;

pub(crate) struct BlobFiles {
    dir: PathBuf,
    tmp: PathBuf,
    partial: PathBuf,
    sync: bool,
    /// The cipher new files are encrypted with.
    cipher: BlobCipher,
    /// Blobs with an open [`PartialBlob`]: one download of a blob at a
    /// time, since two appending to the one partial file would store the
    /// content twice over.
    downloading: Arc<Downloads>,
}

/// How long a download waits for another one of the same blob to end.
const DOWNLOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The hashes being downloaded, and a wake-up for those waiting their turn.
#[derive(Debug, Default)]
struct Downloads {
    hashes: Mutex<HashSet<BlobHash>>,
    done: Condvar,
}

/// The right to write a blob's partial file, given back on drop.
#[derive(Debug)]
struct DownloadClaim {
    downloads: Arc<Downloads>,
    hash: BlobHash,
}

impl Drop for DownloadClaim {
    fn drop(&mut self) {
        self.downloads.hashes.lock().remove(&self.hash);
        self.downloads.done.notify_all();
    }
}

/// Content written to a temporary file (encrypted) and hashed, not yet in
/// place. Removed on drop unless committed.
pub(crate) struct TempBlob {
    path: PathBuf,
    pub(crate) hash: BlobHash,
    pub(crate) size: u64,
    /// The key the file is encrypted with, if it is not in the vault yet
    /// (`None`: a finished download, whose key is there already).
    pub(crate) key: Option<BlobKey>,
    /// The content's group hashes ([`groups`](crate::groups)).
    pub(crate) groups: Vec<GroupHash>,
    committed: bool,
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl BlobFiles {
    pub(crate) fn open(dir: PathBuf, sync: bool, cipher: BlobCipher) -> Result<Self> {
        let tmp = dir.join("tmp");
        // Whatever is in tmp/ was never committed.
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        let partial = dir.join("partial");
        fs::create_dir_all(&partial)?;
        Ok(Self {
            dir,
            tmp,
            partial,
            sync,
            cipher,
            downloading: Arc::default(),
        })
    }

    /// Opens (or starts) the resumable download of `hash`, `size` bytes,
    /// encrypted with `key` (`None`: in the clear). Bytes kept from before
    /// are hashed once here (unless `restart`: then they are dropped);
    /// later ones as they are appended. Waits while another download of the
    /// same blob is open, at most [`DOWNLOAD_WAIT`] ([`Error::Busy`] after
    /// that).
    pub(crate) fn partial(
        &self,
        hash: BlobHash,
        size: u64,
        key: Option<&BlobKey>,
        restart: bool,
    ) -> Result<PartialBlob> {
        let claim = {
            let mut hashes = self.downloading.hashes.lock();
            let deadline = std::time::Instant::now() + DOWNLOAD_WAIT;
            while hashes.contains(&hash) {
                if self
                    .downloading
                    .done
                    .wait_until(&mut hashes, deadline)
                    .timed_out()
                    && hashes.contains(&hash)
                {
                    return Err(Error::Busy(hash));
                }
            }
            hashes.insert(hash);
            DownloadClaim {
                downloads: self.downloading.clone(),
                hash,
            }
        };
        let path = self.partial.join(hash.to_hex());
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)?;
        let mut len = file.metadata()?.len();
        if len > size || restart {
            // Longer than the blob can be: not a prefix of it. Start over.
            file.set_len(0)?;
            len = 0;
        }
        // Only whole groups are kept: a download verified group by group
        // writes nothing else, and the rest of a group is asked for again
        // (a complete file, whose last group may be short, stays whole).
        if group_count(size) > 1 && len < size {
            let whole = len - len % group_len(size);
            if whole < len {
                file.set_len(whole)?;
                len = whole;
            }
        }
        Ok(PartialBlob {
            path,
            file,
            len,
            size,
            hash,
            check: Check::Unstarted,
            key: key.cloned(),
            stream: key.map(|k| k.stream(len)),
            _claim: claim,
        })
    }

    /// Checks a complete partial download against its hash and moves it into
    /// place. Call with the store's blob lock held.
    pub(crate) fn finish_partial(&self, mut partial: PartialBlob) -> Result<Vec<GroupHash>> {
        // The claim is held until the blob is in place (or the download
        // dropped), so a download waiting its turn finds it stored.
        if !partial.is_complete() {
            return Err(Error::BadRange {
                start: 0,
                end: partial.len,
                size: partial.size,
            });
        }
        let groups = if let Check::Groups { groups, .. } = &mut partial.check {
            // Every group was verified as it arrived.
            std::mem::take(groups)
        } else {
            let (actual, groups) = partial.whole_hasher()?.finalize();
            if actual != partial.hash {
                let _ = fs::remove_file(&partial.path);
                return Err(Error::HashMismatch {
                    expected: partial.hash,
                    actual,
                });
            }
            groups
        };
        let PartialBlob {
            path,
            file,
            size,
            hash,
            _claim,
            ..
        } = partial;
        if self.sync {
            file.sync_all()?;
        }
        drop(file);
        let temp = TempBlob {
            path,
            hash,
            size,
            key: None,
            groups: Vec::new(),
            committed: false,
        };
        self.commit(temp)?;
        Ok(groups)
    }

    /// A fresh key for a new blob file, under the cipher new files use.
    pub(crate) fn new_key(&self) -> BlobKey {
        BlobKey::random(self.cipher)
    }

    /// Hashes of every partial download, for garbage collection on open.
    pub(crate) fn partials(&self) -> Result<Vec<BlobHash>> {
        let mut out = Vec::new();
        for file in fs::read_dir(&self.partial)? {
            let file = file?;
            match file.file_name().to_str().map(str::parse::<BlobHash>) {
                Some(Ok(h)) => out.push(h),
                _ => {
                    let _ = fs::remove_file(file.path());
                }
            }
        }
        Ok(out)
    }

    /// Removes a partial download.
    pub(crate) fn remove_partial(&self, hash: &BlobHash) {
        let _ = fs::remove_file(self.partial.join(hash.to_hex()));
    }

    fn path_of(&self, hash: &BlobHash) -> PathBuf {
        let hex = hash.to_hex();
        self.dir.join(&hex[..2]).join(&hex[2..])
    }

    /// Streams `reader` into a temporary file, hashing as it goes and
    /// encrypting under a new key; refuses content longer than `max` bytes
    /// without reading much past it.
    ///
    /// Content larger than one buffer is hashed on the calling thread while
    /// a second thread writes the previous buffers, so the speed is that of
    /// the slower of hashing and writing, not of both in turn. At most
    /// `PIPELINE_DEPTH + 2` buffers of [`STREAM_BUFFER`] bytes are in memory.
    pub(crate) fn write_temp(&self, mut reader: impl Read, max: u64) -> Result<TempBlob> {
        let name = format!("{}-{:016x}", std::process::id(), rand_suffix());
        let path = self.tmp.join(name);
        let mut file = File::create(&path)?;
        let key = self.new_key();
        let mut stream = key.stream(0);
        let mut temp = TempBlob {
            path,
            hash: BlobHash::from_bytes([0; 32]),
            size: 0,
            key: Some(key),
            groups: Vec::new(),
            committed: false,
        };
        let mut hasher = GroupHasher::new();
        let mut first = vec![0u8; STREAM_BUFFER];
        let n = read_full(&mut reader, &mut first)?;
        first.truncate(n);
        temp.size = n as u64;
        check_blob_size(temp.size, max)?;
        hasher.update(&first);
        if n < STREAM_BUFFER {
            stream.apply(&mut first);
            file.write_all(&first)?;
        } else {
            let sizes = (&mut temp.size, max);
            file = pipeline(file, stream, first, &mut reader, &mut hasher, sizes)?;
        }
        if self.sync {
            file.sync_all()?;
        }
        (temp.hash, temp.groups) = hasher.finalize();
        Ok(temp)
    }

    /// Moves the content into place (or drops it if the same content is
    /// already there). Call with the store's blob lock held.
    pub(crate) fn commit(&self, mut temp: TempBlob) -> Result<()> {
        let dest = self.path_of(&temp.hash);
        if dest.exists() {
            return Ok(()); // de-duplicated; the temp file is removed on drop
        }
        let parent = dest.parent().unwrap_or(&self.dir);
        fs::create_dir_all(parent)?;
        fs::rename(&temp.path, &dest)?;
        temp.committed = true;
        if self.sync {
            sync_dir(parent)?;
        }
        Ok(())
    }

    pub(crate) fn exists(&self, hash: &BlobHash) -> bool {
        self.path_of(hash).is_file()
    }

    /// Removes a blob's file. Call with the store's blob lock held.
    pub(crate) fn remove(&self, hash: &BlobHash) -> Result<bool> {
        match fs::remove_file(self.path_of(hash)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens `start..end` of a blob (`end` `None`: to the end), decrypted
    /// with `key` (`None`: a file in the clear).
    pub(crate) fn reader(
        &self,
        hash: &BlobHash,
        start: u64,
        end: Option<u64>,
        key: Option<&BlobKey>,
    ) -> Result<BlobReader> {
        let mut file = match File::open(self.path_of(hash)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::BlobMissing(*hash)),
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata()?.len();
        let end = end.unwrap_or(size);
        if start > end || end > size {
            return Err(Error::BadRange { start, end, size });
        }
        file.seek(SeekFrom::Start(start))?;
        Ok(BlobReader {
            inner: file.take(end - start),
            len: end - start,
            stream: key.map(|k| k.stream(start)),
        })
    }

    /// Every blob hash with a file, for garbage collection on open.
    pub(crate) fn all(&self) -> Result<Vec<BlobHash>> {
        let mut out = Vec::new();
        for shard in fs::read_dir(&self.dir)? {
            let shard = shard?;
            let name = shard.file_name();
            let Some(prefix) = name.to_str().filter(|n| n.len() == 2) else {
                continue;
            };
            for file in fs::read_dir(shard.path())? {
                let file = file?;
                let rest = file.file_name();
                let Some(rest) = rest.to_str() else { continue };
                match format!("{prefix}{rest}").parse::<BlobHash>() {
                    Ok(h) => out.push(h),
                    Err(_) => {
                        tracing::warn!(file = ?file.path(), "unexpected file among blobs, left alone")
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Buffers in flight between the hashing and the writing thread.
const PIPELINE_DEPTH: usize = 4;

fn check_blob_size(size: u64, max: u64) -> Result<()> {
    if size > max {
        return Err(Error::TooLarge {
            limit: Limit::BlobSize,
            size,
            max,
        });
    }
    Ok(())
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Hashes on this thread while a scoped thread encrypts and writes;
/// returns the file.
fn pipeline(
    file: File,
    mut stream: BlobStream,
    first: Vec<u8>,
    reader: &mut impl Read,
    hasher: &mut GroupHasher,
    (size, max): (&mut u64, u64),
) -> Result<File> {
    let (full_tx, full_rx) = mpsc::sync_channel::<Vec<u8>>(PIPELINE_DEPTH);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> io::Result<File> {
            let mut out = file;
            for mut buf in full_rx {
                stream.apply(&mut buf);
                out.write_all(&buf)?;
                // The reader may be gone already; then the buffer is dropped.
                let _ = empty_tx.send(buf);
            }
            Ok(out)
        });
        let mut read_result = Ok(());
        if full_tx.send(first).is_ok() {
            read_result = loop {
                let mut buf = empty_rx.try_recv().unwrap_or_default();
                buf.resize(STREAM_BUFFER, 0);
                let n = match read_full(reader, &mut buf) {
                    Ok(n) => n,
                    Err(e) => break Err(Error::from(e)),
                };
                if n == 0 {
                    break Ok(());
                }
                buf.truncate(n);
                *size += n as u64;
                if let Err(e) = check_blob_size(*size, max) {
                    break Err(e);
                }
                hasher.update(&buf);
                // A send fails only if the writer stopped; its error is
                // reported by `join` below.
                if full_tx.send(buf).is_err() || n < STREAM_BUFFER {
                    break Ok(());
                }
            };
        }
        drop(full_tx);
        let written = writer
            .join()
            .map_err(|_| Error::Io(io::Error::other("blob writer thread panicked")))?;
        read_result?;
        Ok(written?)
    })
}

fn sync_dir(dir: &FsPath) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// A unique-enough suffix for temporary names (time and a counter).
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    kith_types::Timestamp::wall_clock()
        .as_micros()
        .rotate_left(20)
        ^ n
}

/// Checks the group at `offset` against its group hash.
fn check_group(
    groups: &[GroupHash],
    group_len: u64,
    offset: u64,
    bytes: &[u8],
    hash: BlobHash,
) -> Result<()> {
    let expected = groups.get((offset / group_len) as usize);
    if expected == Some(&groups::group_hash(offset, bytes)) {
        Ok(())
    } else {
        Err(Error::GroupMismatch { hash, offset })
    }
}

/// A stream over (a range of) a blob's content. Reading never loads more than
/// the caller's buffer into memory.
#[derive(Debug)]
pub struct BlobReader {
    inner: io::Take<File>,
    len: u64,
    /// Decrypts what is read (`None`: a file stored in the clear).
    stream: Option<BlobStream>,
}

impl BlobReader {
    /// Number of bytes this reader yields in total.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(stream) = &mut self.stream {
            stream.apply(&mut buf[..n]);
        }
        Ok(n)
    }
}

/// A resumable download of a blob: bytes received so far, kept in
/// `blobs/partial/` across restarts until the whole blob is there and
/// verified. See [`Store::resume_import`](crate::Store::resume_import).
///
/// Given the blob's group hashes ([`PartialBlob::verify_groups`]), it
/// verifies the bytes it already holds and then each group as it arrives,
/// and writes only verified groups; without them, the whole content is
/// verified against the blob's hash at the end.
#[derive(Debug)]
pub struct PartialBlob {
    path: PathBuf,
    file: File,
    /// Bytes in the file.
    len: u64,
    size: u64,
    hash: BlobHash,
    check: Check,
    /// The key the file is encrypted with (`None`: in the clear).
    key: Option<BlobKey>,
    /// Encrypts what is appended (`None`: stored in the clear).
    stream: Option<BlobStream>,
    /// This is the blob's only open download.
    _claim: DownloadClaim,
}

/// How a download's bytes are verified.
#[derive(Debug)]
enum Check {
    /// Not decided yet: nothing was appended since the download was opened.
    Unstarted,
    /// Against the blob's hash once complete: the bytes so far are hashed.
    Whole(Box<GroupHasher>),
    /// Group by group as each one arrives, against group hashes checked
    /// against the blob's hash; the group being received waits in memory.
    Groups {
        groups: Vec<GroupHash>,
        group_len: u64,
        pending: Vec<u8>,
    },
}

impl PartialBlob {
    /// Verified bytes kept so far: where the download resumes.
    pub fn offset(&self) -> u64 {
        self.len
    }

    /// The blob's full size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The blob's hash.
    pub fn hash(&self) -> BlobHash {
        self.hash
    }

    /// Whether every byte has arrived.
    pub fn is_complete(&self) -> bool {
        let pending = match &self.check {
            Check::Groups { pending, .. } => pending.len(),
            _ => 0,
        };
        self.len == self.size && pending == 0
    }

    /// Takes the blob's group hashes (as [`groups::encode`]d by the
    /// sender), checks them against the blob's hash, and verifies the bytes
    /// kept from before against them; from then on each group is verified
    /// as it arrives, before it is written. Blocks (reads what is kept).
    ///
    /// # Errors
    /// [`Error::BadGroups`] if the group hashes are not the blob's;
    /// [`Error::GroupMismatch`] if the bytes kept do not match (the
    /// download is then of no use: [`Store::discard_import`] it and start
    /// over); [`Error::Io`]. Once bytes were appended, [`Error::BadRange`].
    ///
    /// [`Store::discard_import`]: crate::Store::discard_import
    pub fn verify_groups(&mut self, encoded: &[u8]) -> Result<()> {
        if !matches!(self.check, Check::Unstarted) {
            return Err(Error::BadRange {
                start: self.len,
                end: self.len,
                size: self.size,
            });
        }
        let groups = groups::decode(encoded)
            .filter(|g| groups::check(g, self.size, &self.hash))
            .ok_or(Error::BadGroups(self.hash))?;
        if groups.is_empty() {
            // One group: the blob's hash is its only check.
            self.check = Check::Whole(Box::new(self.whole_hasher()?));
            return Ok(());
        }
        let group_len = group_len(self.size);
        let mut reader = self.read_kept()?;
        let mut buf = vec![0u8; group_len as usize];
        let mut offset = 0;
        while offset < self.len {
            let n = (self.len - offset).min(group_len) as usize;
            reader.read_exact(&mut buf[..n])?;
            check_group(&groups, group_len, offset, &buf[..n], self.hash)?;
            offset += n as u64;
        }
        self.check = Check::Groups {
            groups,
            group_len,
            pending: Vec::new(),
        };
        Ok(())
    }

    /// Appends received bytes. With group hashes, a group is written once
    /// it is complete and verified. Blocks.
    ///
    /// # Errors
    /// [`Error::TooLarge`] past the blob's size; [`Error::GroupMismatch`]
    /// for a group that does not match its hash (nothing of it is kept, and
    /// the download can go on from its start); [`Error::Io`].
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.append_owned(bytes.to_vec())
    }

    /// [`PartialBlob::append`] of a buffer it may encrypt in place: the
    /// groups it holds whole are verified and written without a copy.
    ///
    /// # Errors
    /// As [`PartialBlob::append`].
    pub fn append_owned(&mut self, mut bytes: Vec<u8>) -> Result<()> {
        if matches!(self.check, Check::Unstarted) {
            self.check = Check::Whole(Box::new(self.whole_hasher()?));
        }
        let pending_len = match &self.check {
            Check::Groups { pending, .. } => pending.len() as u64,
            _ => 0,
        };
        let end = self.len + pending_len + bytes.len() as u64;
        if end > self.size {
            return Err(Error::TooLarge {
                limit: Limit::BlobSize,
                size: end,
                max: self.size,
            });
        }
        let Check::Groups {
            groups,
            group_len,
            pending,
        } = &mut self.check
        else {
            if let Check::Whole(hasher) = &mut self.check {
                hasher.update(&bytes);
            }
            Self::write_to(&mut self.file, &mut self.stream, &mut bytes)?;
            self.len += bytes.len() as u64;
            return Ok(());
        };
        let (group_len, size, hash) = (*group_len, self.size, self.hash);
        let mut rest: &mut [u8] = &mut bytes;
        while !rest.is_empty() {
            if !pending.is_empty() || (rest.len() as u64) < group_len.min(size - self.len) {
                // A group split across buffers waits in memory until whole.
                let whole = group_len.min(size - self.len) as usize;
                let take = (whole - pending.len()).min(rest.len());
                pending.extend_from_slice(&rest[..take]);
                rest = &mut rest[take..];
                if pending.len() < whole {
                    break;
                }
                let mut group = std::mem::take(pending);
                check_group(groups, group_len, self.len, &group, hash)?;
                Self::write_to(&mut self.file, &mut self.stream, &mut group)?;
                self.len += group.len() as u64;
                continue;
            }
            // The whole groups at the front, checked where they lie, then
            // encrypted in place and written at once.
            let mut verified = 0usize;
            let mut mismatch = None;
            loop {
                let at = self.len + verified as u64;
                let whole = group_len.min(size - at) as usize;
                if whole == 0 || rest.len() - verified < whole {
                    break;
                }
                let group = &rest[verified..verified + whole];
                if let Err(e) = check_group(groups, group_len, at, group, hash) {
                    mismatch = Some(e);
                    break;
                }
                verified += whole;
            }
            let (good, after) = rest.split_at_mut(verified);
            Self::write_to(&mut self.file, &mut self.stream, good)?;
            self.len += verified as u64;
            if let Some(e) = mismatch {
                return Err(e);
            }
            rest = after;
        }
        Ok(())
    }

    /// Encrypts `bytes` in place and writes them at the end of the file.
    fn write_to(file: &mut File, stream: &mut Option<BlobStream>, bytes: &mut [u8]) -> Result<()> {
        if let Some(stream) = stream {
            stream.apply(bytes);
        }
        file.write_all(bytes)?;
        Ok(())
    }

    /// The whole-content hasher: the one in use, or a new one over the
    /// bytes kept from before.
    fn whole_hasher(&mut self) -> Result<GroupHasher> {
        if let Check::Whole(hasher) = std::mem::replace(&mut self.check, Check::Unstarted) {
            return Ok(*hasher);
        }
        let mut hasher = GroupHasher::new();
        hasher.update_from(self.read_kept()?)?;
        Ok(hasher)
    }

    /// A reader of the bytes in the file, decrypted.
    fn read_kept(&self) -> Result<BlobReader> {
        let mut file = self.file.try_clone()?;
        file.seek(SeekFrom::Start(0))?;
        Ok(BlobReader {
            inner: file.take(self.len),
            len: self.len,
            stream: self.key.as_ref().map(|k| k.stream(0)),
        })
    }
}
