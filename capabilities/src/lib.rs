//! kith's capabilities: who may read, write and delete what.
//!
//! Not built yet; the types shared with the store live in `kith-types`.

pub use kith_types::{NamespaceId, Path, Timestamp};
