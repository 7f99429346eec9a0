//! The connection gate: refuses, right after the TLS handshake, every
//! endpoint that is not one of this namespace's devices or a friend's.

use std::collections::HashSet;
use std::sync::Arc;

use iroh::endpoint::{AfterHandshakeOutcome, Connection, EndpointHooks, VarInt};
use kith_types::DeviceId;
use parking_lot::RwLock;

/// QUIC close code sent to refused endpoints.
pub(crate) const REFUSED_CODE: u32 = 403;

/// The set of devices allowed to connect; shared with the node, which keeps
/// it current as friends and devices come and go.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gate {
    allowed: Arc<RwLock<HashSet<DeviceId>>>,
}

impl Gate {
    /// Replaces the allowed set.
    pub(crate) fn set(&self, devices: impl IntoIterator<Item = DeviceId>) {
        *self.allowed.write() = devices.into_iter().collect();
    }

    pub(crate) fn allows(&self, device: &DeviceId) -> bool {
        self.allowed.read().contains(device)
    }
}

impl EndpointHooks for Gate {
    async fn after_handshake<'a>(&'a self, conn: &'a Connection) -> AfterHandshakeOutcome {
        let remote = DeviceId::from_bytes(*conn.remote_id().as_bytes());
        if self.allows(&remote) {
            AfterHandshakeOutcome::Accept
        } else {
            tracing::info!(remote = %remote.fmt_short(), "refused a connection from an unknown device");
            AfterHandshakeOutcome::Reject {
                error_code: VarInt::from_u32(REFUSED_CODE),
                reason: b"not a device of a friend".to_vec(),
            }
        }
    }
}
