//! kith's store: a namespaced, hierarchical, durable store of Automerge
//! documents and blobs on [fjall].
//!
//! Every person's data lives in a namespace ([`NamespaceId`]); inside it, a
//! tree of [`Path`]s, each holding an Automerge document or a blob reference
//! ([`Entry`]). The store keeps:
//!
//! - **documents** as Automerge chunks (a snapshot plus incremental changes,
//!   rewritten as one snapshot every 16 chunks), including changes queued
//!   for missing dependencies, which survive restarts;
//! - **blobs** as content-addressed files named by BLAKE3 hash, streamed in
//!   and out (never whole in memory), stored once however many paths refer
//!   to them, deleted when the last reference goes;
//! - a **change log** per namespace (every write gets the next sequence
//!   number; [`Store::changes_since`]) and **watchers** ([`Store::watch`]);
//! - **tombstones**: [`Store::apply_tombstone`] deletes a subtree, erases
//!   it before returning (see below) and refuses anything older than the
//!   deletion from then on; [`Store::compact`] reclaims the space;
//! - opaque **records** (signed capabilities, receipts, an outbox) written
//!   atomically with the data they relate to;
//! - **derived indexes** ([`Store::write_index`], [`Store::index_scan`]):
//!   ordered opaque keys an application derives from the change log, such
//!   as a timeline by time.
//!
//! **Erasure.** Every document and blob is encrypted at rest
//! (XChaCha20-Poly1305 for document chunks; AES-256-CTR for blob files
//! where the CPU has AES instructions, else XChaCha20: [`BlobCipher`])
//! under a random key of its own, kept in the `vault` file, whose slots are
//! overwritten in place. Deleting an item (a tombstone, a replaced
//! document or blob, a purged blob) destroys its key, durably, before the
//! call returns: every copy of its bytes left in fjall's journal and tables
//! is then ciphertext that nothing in the data folder opens. Paths, sizes,
//! heads and blob hashes are not encrypted and leave with compaction. See
//! the vault module's docs for the order of writes and what this does not
//! protect against.
//!
//! Writes that belong together are one fjall batch. With the default
//! [`Durability::Buffered`] a write that returned `Ok` survives a crash of
//! the process; [`Durability::Sync`] also survives power loss.
//!
//! The store knows nothing of the network or of capabilities: it stores
//! what it is given and enforces only its own rules (paths, limits,
//! tombstones, document identity). The API is blocking and thread-safe.
//!
//! ```
//! use automerge::{ReadDoc, transaction::Transactable};
//! use kith_store::{Options, Store};
//! use kith_types::{DeviceId, NamespaceId, Path};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path(), Options::new(DeviceId::from_bytes([1; 32])))?;
//! let me = NamespaceId::from_bytes([2; 32]);
//! let post = Path::parse("/posts/first")?;
//!
//! store.edit_document(&me, &post, |doc| doc.put(automerge::ROOT, "text", "hello"))?
//!     .0?;
//! let doc = store.document(&me, &post)?.expect("just written");
//! assert!(doc.get(automerge::ROOT, "text")?.is_some());
//!
//! let photo = Path::parse("/photos/cat.jpg")?;
//! store.put_blob(&me, &photo, &b"not really a jpeg"[..], "image/jpeg")?;
//! let page = store.list(&me, &Path::root(), None, 100)?;
//! assert_eq!(page.entries.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod blobs;
mod codec;
mod entry;
mod error;
pub mod groups;
mod index;
mod keys;
mod options;
mod preload;
mod records;
mod store;
mod vault;
mod watch;

pub use automerge;
pub use blobs::{BlobReader, PartialBlob};
pub use entry::{BlobHash, Entry, EntryKind, MAX_MEDIA_TYPE_LEN};
pub use error::{Error, Limit, Result};
pub use index::{IndexOp, MAX_INDEX_KEY_LEN, MAX_INDEX_VALUE_LEN};
pub use kith_types::{DeviceId, NamespaceId, Path, Timestamp};
pub use options::{BlobCipher, Durability, Limits, Options};
pub use records::{MAX_RECORD_ID_LEN, RecordKind, RecordOp};
pub use store::{
    ApplyOutcome, Change, ChangeKind, DocIdentity, Page, Recovery, RemoteChanges, RemoteWrite,
    Store, StoredRecord, TombstoneOutcome,
};
pub use watch::{WATCH_CAPACITY, WatchEvent, Watcher};
