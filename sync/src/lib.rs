//! The kith node: owns a store, an iroh endpoint and the sync protocols.
//!
//! Not built yet. Today it re-exports the store so that applications have one
//! crate to depend on.

pub use kith_caps as caps;
pub use kith_store as store;
pub use kith_types::{DeviceId, NamespaceId, Path, Timestamp};
