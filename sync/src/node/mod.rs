//! The node: a store, an iroh endpoint and the catch-up protocol.
//!
//! [`handle`] is the handle and what its parts share; [`builder`] configures
//! and starts a node; [`api`] is its public API, [`pulls`] what it fetches
//! from other devices, [`tasks`] its background tasks, [`reach`] how it
//! finds other devices and is found, [`status`] what it says about them.

mod api;
mod builder;
mod handle;
mod pulls;
mod reach;
mod status;
mod tasks;

pub use api::{SHUTDOWN_BOUND, SHUTDOWN_NETWORK, SHUTDOWN_TASKS};
pub use builder::{Builder, CongestionControl, NetworkMode, prepare_device};
pub use handle::Node;
pub use pulls::SyncReport;
pub use status::{PeerStatus, Route};
