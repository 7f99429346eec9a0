//! The kith node: a friends-only sync engine over iroh.
//!
//! A [`Node`] owns a [`Store`](kith_store::Store) holding this person's
//! namespace and the namespaces friends share with it, an iroh endpoint,
//! and the catch-up protocol ([`proto`]) that lets a friend pull everything
//! they may read. A friend is added by their [`Ticket`]; [`Node::grant`]
//! lets a friend read a prefix and [`Node::revoke`] takes it back;
//! [`Node::subscribe`] keeps a friend's namespace synced, retrying while
//! they are offline and resuming after a restart; [`Node::read_blob`] fetches
//! a friend's blob on demand, verified against its hash.
//!
//! Every connection is authenticated by iroh, and a connection gate refuses
//! any endpoint that is not one of this namespace's devices or a friend's
//! before any work is done. The owner's side answers only for paths the
//! requester's valid caps cover; the requester checks that it talks to a
//! serving device of the owner and verifies every signed object it receives.
//!
//! [`Node::delete`] signs a deletion request; friends' nodes apply it when
//! they sync (an offline friend when it comes back, a revoked friend too, for
//! what it was given) and confirm with a signed receipt, which
//! [`Node::receipts`] shows. A further device joins with [`prepare_device`],
//! [`Node::invite_device`] and [`Builder::join_namespace`].
//!
//! Changes also travel live: the owner's device publishes each write into
//! a gossip topic per granted prefix (a *scope*), signed by the device and
//! sealed with a key only current members hold; revoking a friend moves the
//! scope to a new key. Members that miss something notice (heartbeats and
//! counters) and catch up directly; [`Node::live_metrics`] counts both
//! paths. [`Node::revoke_and_delete`] asks one friend to delete what they
//! hold under a revoked prefix.
//!
//! ```no_run
//! # async fn run() -> kith::Result<()> {
//! use kith::{NetworkMode, Node, Path};
//!
//! let alice = Node::builder("alice-data").network(NetworkMode::LocalOnly).spawn().await?;
//! let bob = Node::builder("bob-data").network(NetworkMode::LocalOnly).spawn().await?;
//! alice.add_friend(&bob.ticket()).await?;
//! bob.add_friend(&alice.ticket()).await?;
//! alice.grant(&bob.namespace(), &Path::parse("/feed")?, None).await?;
//! let report = bob.sync_now(&alice.namespace()).await?;
//! println!("{} entries in {:?}", report.entries, report.duration);
//! # Ok(()) }
//! ```

mod cache;
mod error;
mod identity;
mod live;
pub(crate) mod net;
mod node;
pub mod proto;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod sim_live;
mod state;
mod ticket;

pub use cache::{CacheSettings, CacheStatus, Purged};
pub use error::{Error, Result};
pub use iroh::RelayUrl;
pub use kith_caps as caps;
pub use kith_store as store;
pub use kith_types::{DeviceId, NamespaceId, Path, Timestamp};
pub use live::{LiveMetrics, LiveTopic};
pub use net::limits::PeerLimits;
pub use node::{
    Builder, CongestionControl, NetworkMode, Node, PeerStatus, Route, SHUTDOWN_BOUND,
    SHUTDOWN_NETWORK, SHUTDOWN_TASKS, SyncReport, prepare_device,
};
pub use proto::addr::Addr;
pub use state::{DeletionStatus, NodeEvent};
pub use ticket::{DeviceInvite, Ticket};
