//! The node's accept loop. Each incoming connection is accepted with the
//! transport of the protocol it asks for, read from its first packet:
//! kith's own connections (catch-up, blobs, pokes) with kith's transport,
//! whose congestion control may differ per path
//! ([`pacing`](super::pacing)); gossip with the endpoint's. iroh's `Router`
//! accepts every connection with the endpoint's, hence this loop. It shuts
//! down as the router does: the protocols first, then the endpoint.

use std::sync::Arc;

use iroh::Endpoint;
use iroh::endpoint::{Accepting, Incoming, ServerConfig};
use iroh::protocol::ProtocolHandler;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use super::serve::SyncProtocol;
use crate::proto::wire::ALPN;

/// The running accept loop.
#[derive(Debug)]
pub(crate) struct Acceptor {
    stop: parking_lot::Mutex<Option<oneshot::Sender<()>>>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Acceptor {
    /// Accepts `endpoint`'s connections for `sync` (kith's ALPN, with
    /// `ours`) and `gossip` until [`Acceptor::shutdown`].
    pub(crate) fn spawn(
        endpoint: Endpoint,
        sync: SyncProtocol,
        gossip: iroh_gossip::Gossip,
        ours: ServerConfig,
    ) -> Self {
        endpoint.set_alpns(vec![ALPN.to_vec(), iroh_gossip::ALPN.to_vec()]);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(endpoint, sync, gossip, Arc::new(ours), stopped));
        Self {
            stop: parking_lot::Mutex::new(Some(stop)),
            task: tokio::sync::Mutex::new(Some(task)),
        }
    }

    /// Stops accepting, shuts the protocols down and closes the endpoint.
    /// A second call waits for nothing.
    pub(crate) async fn shutdown(&self) {
        if let Some(stop) = self.stop.lock().take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.lock().await.take()
            && let Err(e) = task.await
        {
            tracing::error!(%e, "the accept loop failed");
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().take() {
            task.abort();
        }
    }
}

async fn run(
    endpoint: Endpoint,
    sync: SyncProtocol,
    gossip: iroh_gossip::Gossip,
    ours: Arc<ServerConfig>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut handling = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            Some(ended) = handling.join_next() => {
                if let Err(e) = ended
                    && e.is_panic()
                {
                    tracing::error!(%e, "handling a connection panicked");
                }
            }
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let accepting = if asks_for_kith(&incoming) {
                    incoming.accept_with(ours.clone())
                } else {
                    incoming.accept()
                };
                match accepting {
                    Ok(accepting) => {
                        handling.spawn(handle(accepting, sync.clone(), gossip.clone()));
                    }
                    Err(e) => tracing::debug!(%e, "ignoring a connection: accepting failed"),
                }
            }
        }
    }
    // As iroh's router: the protocols close their connections first, then
    // what is still being handled is cancelled and the endpoint closed.
    ProtocolHandler::shutdown(&sync).await;
    ProtocolHandler::shutdown(&gossip).await;
    handling.abort_all();
    endpoint.close().await;
    while handling.join_next().await.is_some() {}
}

/// Whether the connection's first packet asks for kith's protocol. A
/// first packet that cannot be read is accepted with the endpoint's
/// transport, and its protocol is checked at the handshake.
fn asks_for_kith(incoming: &Incoming) -> bool {
    incoming
        .decrypt()
        .and_then(|initial| initial.alpns())
        .is_some_and(|mut alpns| alpns.any(|alpn| alpn.is_ok_and(|a| a.as_ref() == ALPN)))
}

/// Completes the handshake and hands the connection to its protocol.
async fn handle(mut accepting: Accepting, sync: SyncProtocol, gossip: iroh_gossip::Gossip) {
    let alpn = match accepting.alpn().await {
        Ok(alpn) => alpn,
        Err(e) => {
            tracing::debug!(%e, "ignoring a connection: invalid handshake");
            return;
        }
    };
    let conn = match accepting.await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::debug!(%e, "ignoring a connection: the handshake failed");
            return;
        }
    };
    let handled = if alpn == ALPN {
        sync.accept(conn).await
    } else if alpn == iroh_gossip::ALPN {
        gossip.accept(conn).await
    } else {
        tracing::warn!("ignoring a connection: unsupported protocol");
        return;
    };
    if let Err(e) = handled {
        tracing::debug!(%e, "a connection ended with an error");
    }
}
