//! What the node knows, and the store-backed views the protocol reads and
//! writes through.
//!
//! Split by subject: [`shared`] is the handle; [`known`], [`book`] and
//! [`records`] are data; [`addrs`] is where devices are; [`friends`], [`scopes`] and [`deletions`] are what
//! the node does with them; [`early`] holds the live messages that came with a key; [`source`] and [`replica`] are the views the
//! protocol reads and writes through.

mod addrs;
mod book;
mod deletions;
mod early;
mod friends;
mod known;
mod records;
mod replica;
mod scopes;
mod shared;
mod source;

pub use deletions::DeletionStatus;
pub(crate) use replica::FriendReplica;
#[cfg(test)]
pub(crate) use shared::NoNetwork;
pub use shared::NodeEvent;
pub(crate) use shared::{Admission, Shared, Work};
pub(crate) use source::OwnerSource;
