//! The catch-up protocol, without IO.
//!
//! # Flow
//!
//! A friend's device (the *requester*) opens a QUIC stream to one of the
//! owner's serving devices on ALPN [`wire::ALPN`]. Both ends are
//! authenticated by iroh, and the owner's connection gate has already
//! refused any endpoint that is not its own device or a friend's.
//!
//! 1. requester → `Hello { cert, other_certs }`: its `DeviceCert`, which
//!    must name the device iroh authenticated; the owner checks it and that
//!    its namespace is a friend (or the owner itself, for own devices).
//! 2. owner → `Welcome { caps, revocations, owner_certs, device_revocations }`:
//!    the requester's current read caps, revocations of caps it held, and the
//!    owner's device certificates, so the requester can check that it talks
//!    to a serving device of the owner and which prefixes it may read.
//! 3. requester → `Sync { cursors }`: per granted prefix, the last sequence
//!    number of the *serving device's* change log it has seen (0 the first
//!    time, and for a prefix newly granted).
//! 4. owner → `Tombstones`, `Entries` (metadata of every entry changed after
//!    the cursor under a prefix the requester may read now), `SyncDone
//!    { cursors }`.
//! 5. requester → `WantDocs { (path, heads) }` for every document whose heads
//!    differ from its copy; owner → one `Doc` per document (Automerge changes
//!    the requester lacks, from `save_after` of its heads), then `DocsDone`.
//! 6. The requester applies everything, then saves the new cursors.
//!
//! Blobs travel on their own streams: `Hello`, `Welcome`, `WantBlob { path,
//! hash, offset, groups }`, then `BlobStart`, the blob's group hashes
//! (`BlobGroups`, when asked for), `BlobChunk`s and `BlobEnd`. The owner
//! serves a hash only through a path the requester may read that references
//! it; the requester checks the group hashes against the hash and verifies
//! each group of bytes against its group hash as it arrives, before storing.
//!
//! # Cost of a re-sync
//!
//! The store's change log keeps one record per path at its latest write, so
//! a re-sync reads and sends only what changed after the cursor: a no-change
//! re-sync is a `Hello`, a `Welcome`, a `Sync` and an empty `SyncDone`, a few
//! hundred bytes whatever the size of the namespace. Cursors are per serving
//! device (sequence numbers are local to a device's log), so switching to
//! another device of the owner costs one full metadata pass; documents are
//! still not re-sent, as their heads match.
//!
//! # Why the state machines take traits
//!
//! [`serve::Serve`] and [`fetch::Fetch`] do no IO themselves: they are fed
//! messages and the current time and return what to send. What they read and
//! write goes through [`serve::Source`] and [`fetch::Replica`], which the node
//! implements over its store (blocking calls, run off the async runtime), so
//! a test can drive both ends in memory without a network.

pub mod addr;
pub(crate) mod codec;
mod error;
pub mod fetch;
pub mod publish;
pub mod push;
pub mod receive;
pub mod serve;
pub mod wire;

pub use self::error::{Error, Result};
