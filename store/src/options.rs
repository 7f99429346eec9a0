//! How a store is opened: durability and limits.

use kith_types::DeviceId;

/// How far a write has gone when the call that made it returns `Ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Every write is handed to the operating system before the call returns
    /// (fjall's journal flushed to OS buffers; blob files written and renamed
    /// without fsync). Survives a crash or `kill -9` of the process; the last
    /// writes may be lost if the *machine* loses power or the OS crashes.
    /// The default: fast, and what a process crash needs.
    #[default]
    Buffered,
    /// Every write is fsynced before the call returns (journal `fsync`, blob
    /// file and its folder `fsync`). Survives power loss, at the cost of one
    /// or more disk flushes per write.
    Sync,
}

/// Bounds on what the store accepts. Exceeding one is
/// [`Error::TooLarge`](crate::Error::TooLarge), never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest stored size of one document (all its saved chunks), bytes.
    pub max_document_size: u64,
    /// Largest change (bytes given to one apply or produced by one edit).
    pub max_change_size: u64,
    /// Largest total of queued changes with missing dependencies per document.
    pub max_pending_size: u64,
    /// Largest blob, bytes.
    pub max_blob_size: u64,
    /// Largest opaque record (capability, receipt, outbox message …), bytes.
    pub max_record_size: u64,
}

/// The largest value fjall stores in one key (values are below 2^32 bytes);
/// document and record limits are clamped under it.
pub(crate) const MAX_VALUE_SIZE: u64 = (1 << 31) - 1;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_document_size: 64 << 20,
            max_change_size: 16 << 20,
            max_pending_size: 16 << 20,
            max_blob_size: 64 << 30,
            max_record_size: 1 << 20,
        }
    }
}

impl Limits {
    /// The limits clamped to what the storage engine can hold.
    pub(crate) fn clamped(self) -> Self {
        Self {
            max_document_size: self.max_document_size.min(MAX_VALUE_SIZE),
            max_change_size: self.max_change_size.min(MAX_VALUE_SIZE),
            max_pending_size: self.max_pending_size.min(MAX_VALUE_SIZE),
            max_blob_size: self.max_blob_size,
            max_record_size: self.max_record_size.min(MAX_VALUE_SIZE),
        }
    }
}

/// Options for [`Store::open`](crate::Store::open).
#[derive(Debug, Clone)]
pub struct Options {
    /// The device this store belongs to: the writer recorded for local edits
    /// and the Automerge actor of its changes.
    pub device: DeviceId,
    /// See [`Durability`].
    pub durability: Durability,
    /// See [`Limits`].
    pub limits: Limits,
    /// fjall block cache size, bytes.
    pub cache_size: u64,
    /// The cipher new blob files are encrypted with at rest (files already
    /// stored keep theirs). Default: [`BlobCipher::for_this_machine`].
    pub blob_cipher: BlobCipher,
}

/// The stream cipher of a blob file at rest. Each blob file has a random
/// key of its own in the vault, so both run from a fixed starting nonce or
/// counter; both keep the file as long as its content and can start at
/// any offset (range reads, resumed downloads). The content itself is
/// authenticated by its BLAKE3 hash, not by the cipher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlobCipher {
    /// XChaCha20: fast in software on any CPU. Every blob file stored
    /// before AES was offered is XChaCha20.
    XChaCha20,
    /// AES-256 in counter mode: several times faster than XChaCha20 where
    /// the CPU has AES instructions, much slower where it has none.
    Aes256Ctr,
}

impl BlobCipher {
    /// AES-256-CTR where this CPU has AES instructions the cipher's
    /// implementation uses (AES-NI on x86 and x86-64), else XChaCha20.
    pub fn for_this_machine() -> Self {
        if hardware_aes() {
            Self::Aes256Ctr
        } else {
            Self::XChaCha20
        }
    }
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn hardware_aes() -> bool {
    std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("sse2")
}

// The `aes` crate uses ARMv8's AES instructions only when built with
// `--cfg aes_armv8`; without them XChaCha20 is the faster choice.
#[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
fn hardware_aes() -> bool {
    false
}

impl Options {
    /// Defaults for a device: buffered durability, default limits, 64 MiB cache.
    pub fn new(device: DeviceId) -> Self {
        Self {
            device,
            durability: Durability::default(),
            limits: Limits::default(),
            cache_size: 64 << 20,
            blob_cipher: BlobCipher::for_this_machine(),
        }
    }

    /// Sets the durability mode.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets the limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the cipher of new blob files.
    pub fn blob_cipher(mut self, cipher: BlobCipher) -> Self {
        self.blob_cipher = cipher;
        self
    }
}
