//! The async driver: iroh endpoint, connection gate, and the tasks that run
//! the [`proto`](crate::proto) state machines over QUIC streams.

pub(crate) mod accept;
pub(crate) mod addrs;
pub(crate) mod connections;
pub(crate) mod fetch;
pub(crate) mod frames;
pub(crate) mod gate;
pub(crate) mod limits;
pub(crate) mod pacing;
pub(crate) mod serve;
