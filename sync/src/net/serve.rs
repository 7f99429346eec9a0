//! Serving catch-up streams to friends and own devices.

use std::io::Read;
use std::sync::Arc;

use iroh::endpoint::{Connection, RecvStream, SendStream, VarInt};
use iroh::protocol::{AcceptError, ProtocolHandler};
use kith_caps::Scope;
use kith_store::BlobHash;
use kith_types::{DeviceId, Timestamp};

use tokio::sync::mpsc::Sender;

use super::frames::{read_msg, write_blob_chunk, write_msg};
use super::limits::{PeerBudget, PeerBudgets};
use crate::error::{Error, Result};
use crate::proto::serve::{Output, Serve};
use crate::proto::wire::{BLOB_CHUNK, Message, RefusalCode};
use crate::state::{FriendReplica, OwnerSource, Shared, Work};

/// QUIC close code for a peer disconnected for exceeding its limits.
const RATE_LIMITED_CODE: u32 = 429;

/// How long streams being served get to end once the node shuts down.
const SHUTDOWN_STREAMS: std::time::Duration = std::time::Duration::from_secs(1);

/// The catch-up protocol handler, given its connections by the accept loop.
#[derive(Debug, Clone)]
pub(crate) struct SyncProtocol {
    pub(crate) shared: Arc<Shared>,
    /// What each peer may still ask for.
    budgets: Arc<PeerBudgets>,
    /// Where a poke's sync is asked of the node.
    requests: Sender<Work>,
    /// The streams being served, aborted when the accept loop shuts down (so
    /// none holds the store after the node stopped).
    pub(crate) streams: Arc<parking_lot::Mutex<tokio::task::JoinSet<()>>>,
    /// Where accepted connections are offered for this node's own requests.
    connections: Arc<std::sync::OnceLock<std::sync::Weak<super::connections::Connections>>>,
}

impl SyncProtocol {
    pub(crate) fn new(shared: Arc<Shared>, budgets: PeerBudgets, requests: Sender<Work>) -> Self {
        Self {
            shared,
            budgets: Arc::new(budgets),
            requests,
            streams: Arc::default(),
            connections: Arc::default(),
        }
    }

    /// Offers accepted connections to `connections`, and serves the
    /// streams opened on the connections it dials.
    pub(crate) fn pair(&self, connections: &Arc<super::connections::Connections>) {
        let _ = self.connections.set(Arc::downgrade(connections));
        let this = self.clone();
        connections.serve_with(move |conn| this.serve_dialed(conn));
    }
}

/// How long a disconnected peer's last frames may take to be delivered.
const FLUSH_BEFORE_CLOSE: std::time::Duration = std::time::Duration::from_secs(2);

/// Records a refusal of `remote`. Once it has been refused too often, its
/// last frames are flushed (for a bounded time, so it learns why) and its
/// connection is closed. Returns whether it was disconnected.
async fn note_refusal(
    budget: &PeerBudget,
    conn: &Connection,
    send: &mut SendStream,
    remote: DeviceId,
) -> bool {
    if !budget.refused() {
        return false;
    }
    tracing::info!(remote = %remote.fmt_short(), "disconnecting a peer that keeps exceeding its limits");
    let _ = send.finish();
    let _ = tokio::time::timeout(FLUSH_BEFORE_CLOSE, send.stopped()).await;
    conn.close(
        VarInt::from_u32(RATE_LIMITED_CODE),
        b"too many refused requests",
    );
    true
}

impl SyncProtocol {
    /// Serves the streams a device opens on `conn`, which this node dialed.
    pub(crate) fn serve_dialed(&self, conn: Connection) {
        let this = self.clone();
        self.streams.lock().spawn(async move {
            this.serve_connection(conn).await;
        });
    }

    /// Serves every stream the remote opens on `conn` until it closes.
    async fn serve_connection(&self, conn: Connection) {
        let remote = DeviceId::from_bytes(*conn.remote_id().as_bytes());
        let budget = self.budgets.of(remote);
        loop {
            let (mut send, recv) = match conn.accept_bi().await {
                Ok(s) => s,
                Err(_) => break, // the peer closed the connection
            };
            let Ok(permit) = budget.streams.clone().try_acquire_owned() else {
                tracing::info!(remote = %remote.fmt_short(), "too many concurrent streams; refusing one");
                let msg = Message::refused(
                    RefusalCode::RateLimited,
                    None,
                    "too many concurrent requests",
                );
                let _ = write_msg(&mut send, &msg).await;
                if note_refusal(&budget, &conn, &mut send, remote).await {
                    break;
                }
                let _ = send.finish();
                continue;
            };
            let shared = self.shared.clone();
            let requests = self.requests.clone();
            let budget = budget.clone();
            let conn = conn.clone();
            let mut streams = self.streams.lock();
            // Results of streams that ended are not needed.
            while streams.try_join_next().is_some() {}
            streams.spawn(async move {
                let stream = serve_stream(shared, &requests, &budget, &conn, remote, send, recv);
                if let Err(e) = stream.await {
                    tracing::debug!(remote = %remote.fmt_short(), %e, "catch-up stream ended with an error");
                }
                drop(permit);
            });
        }
    }
}

impl ProtocolHandler for SyncProtocol {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let remote = DeviceId::from_bytes(*conn.remote_id().as_bytes());
        if let Some(connections) = self.connections.get().and_then(std::sync::Weak::upgrade) {
            connections.offer(remote, &conn);
        }
        self.serve_connection(conn).await;
        Ok(())
    }

    async fn shutdown(&self) {
        let mut streams = std::mem::take(&mut *self.streams.lock());
        streams.abort_all();
        let _ = tokio::time::timeout(SHUTDOWN_STREAMS, async {
            while streams.join_next().await.is_some() {}
        })
        .await;
    }
}

async fn serve_stream(
    shared: Arc<Shared>,
    requests: &Sender<Work>,
    budget: &PeerBudget,
    conn: &Connection,
    remote: DeviceId,
    mut send: SendStream,
    mut recv: RecvStream,
) -> Result<()> {
    let mut session = Serve::new(remote);
    let mut refused_before = 0;
    loop {
        let msg = match read_msg(&mut recv).await {
            Ok(Some((msg, _))) => msg,
            Ok(None) => break,
            Err(Error::Wire(e)) => {
                tracing::info!(remote = %remote.fmt_short(), %e, "malformed frame; closing the stream");
                let _ = write_msg(
                    &mut send,
                    &Message::refused(RefusalCode::Malformed, None, e.to_string()),
                )
                .await;
                note_refusal(budget, conn, &mut send, remote).await;
                break;
            }
            Err(e) => return Err(e),
        };
        if !budget.allow_request() {
            let msg = Message::refused(
                RefusalCode::RateLimited,
                None,
                "too many requests; slow down",
            );
            write_msg(&mut send, &msg).await?;
            if note_refusal(budget, conn, &mut send, remote).await {
                return Ok(());
            }
            continue;
        }
        if matches!(msg, Message::Poke | Message::Back) && session.requester().is_none() {
            poked(&shared, requests, remote, msg == Message::Back);
            break;
        }
        if session.requester().is_none()
            && let Message::Rekey { items, recent } = msg
        {
            let shared = shared.clone();
            let answer =
                tokio::task::spawn_blocking(move || rekeyed(&shared, remote, &items, recent))
                    .await
                    .unwrap_or_else(|e| {
                        tracing::error!(%e, "storing pushed scopes failed");
                        Message::refused(RefusalCode::Internal, None, "internal error")
                    });
            write_msg(&mut send, &answer).await?;
            break;
        }
        let shared2 = shared.clone();
        let (returned, outputs) = tokio::task::spawn_blocking(move || {
            let outputs = session.handle(msg, Timestamp::wall_clock(), &OwnerSource(&shared2));
            (session, outputs)
        })
        .await
        .map_err(|e| Error::Protocol(format!("serving task failed: {e}")))?;
        session = returned;
        let outputs = match outputs {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(%e, "serving a request failed");
                let _ = write_msg(
                    &mut send,
                    &Message::refused(RefusalCode::Internal, None, "internal error"),
                )
                .await;
                break;
            }
        };
        let mut close = false;
        for out in outputs {
            match out {
                Output::Send(m) => {
                    let n = write_msg(&mut send, &m).await?;
                    budget.pace(n as usize).await;
                }
                Output::StreamBlob {
                    hash,
                    offset,
                    groups,
                } => stream_blob(&shared, budget, &mut send, hash, offset, groups).await?,
                Output::Close => close = true,
            }
        }
        let refused = session.stats().refused;
        for _ in refused_before..refused {
            if note_refusal(budget, conn, &mut send, remote).await {
                return Ok(());
            }
        }
        refused_before = refused;
        if close {
            break;
        }
    }
    let _ = send.finish();
    Ok(())
}

/// A device of a friend (or of this namespace) says something is owed to
/// this node: sync with that namespace now.
/// A known device pokes this one (`back`: it says it has just started or
/// moved): the node catches up with its namespace (and, if it is back,
/// re-links to it).
fn poked(shared: &Shared, requests: &Sender<Work>, remote: DeviceId, back: bool) {
    let Some(namespace) = shared.known.read().acting_for(&remote, &shared.namespace()) else {
        tracing::info!(remote = %remote.fmt_short(), back, "ignoring a poke from a device that is no friend's");
        return;
    };
    let request = if back {
        Work::Back {
            device: remote,
            namespace,
        }
    } else {
        Work::Sync {
            namespace,
            recovery: false,
        }
    };
    if let Err(e) = requests.try_send(request) {
        tracing::warn!(%e, "could not queue the work a poke asks for");
    }
}

/// A device of a friend (or of this namespace) sends the scopes of its
/// namespace this node belongs to now, alone on a stream (a new epoch, a
/// grown roster): they are checked as in a catch-up (a roster signed by
/// that namespace, a prefix this node may read under the caps it holds)
/// and stored, and the answer is `ScopesAck`. The recent pushes that came
/// with them are then received at once (with every check of a gossip
/// message), or by their topic's listener if it has started, before
/// anything from gossip (`state/early.rs`). Anything
/// refused (a scope under a grant this node has not received yet, say)
/// answers `Refused`, and the sender falls back to a poke and a catch-up.
fn rekeyed(
    shared: &Shared,
    remote: DeviceId,
    items: &[(Vec<u8>, Vec<u8>)],
    recent: Vec<(u16, Vec<u8>)>,
) -> Message {
    let me = shared.namespace();
    let Some(owner) = shared.known.read().acting_for(&remote, &me) else {
        tracing::info!(remote = %remote.fmt_short(), "ignoring scopes from a device that is no friend's");
        return Message::refused(RefusalCode::Unauthorized, None, "not a friend of this node");
    };
    let prefixes = match shared.caps_from(&owner) {
        Ok((caps, revocations)) => crate::proto::fetch::readable_prefixes(
            &me,
            owner,
            caps,
            revocations,
            Timestamp::wall_clock(),
        ),
        Err(e) => {
            tracing::warn!(%e, "could not read the caps held; refusing pushed scopes");
            return Message::refused(RefusalCode::Internal, None, "internal error");
        }
    };
    let checked = crate::proto::fetch::check_scopes(&owner, &prefixes, items);
    if checked.outside + checked.invalid > 0 {
        tracing::info!(
            remote = %remote.fmt_short(),
            outside = checked.outside,
            invalid = checked.invalid,
            "refusing pushed scopes; a catch-up will bring them"
        );
        return Message::refused(
            RefusalCode::Unauthorized,
            None,
            "a scope outside the grants held here, or invalid",
        );
    }
    // Kept before the scopes are stored: a listener that starts once they
    // are finds them.
    let mut by_topic: std::collections::HashMap<[u8; 32], (&Scope, Vec<Vec<u8>>)> =
        std::collections::HashMap::new();
    for (index, push) in recent {
        if let Some((scope, roster)) = checked.ok.get(usize::from(index))
            && roster.contains(&shared.identity.device())
        {
            by_topic
                .entry(*scope.topic_id().as_bytes())
                .or_insert_with(|| (scope, Vec::new()))
                .1
                .push(push);
        }
    }
    // One list per topic, the latest: what the owner published so far.
    let scopes: Vec<&Scope> = by_topic.values().map(|(scope, _)| *scope).collect();
    shared
        .early
        .arrive(by_topic.into_iter().map(|(id, (_, pushes))| (id, pushes)));
    if let Err(e) = shared.store_scopes(&owner, &checked.ok) {
        tracing::warn!(%e, "could not store pushed scopes");
        return Message::refused(RefusalCode::Internal, None, "internal error");
    }
    tracing::debug!(remote = %remote.fmt_short(), scopes = checked.ok.len(), "stored pushed scopes");
    // The key is stored: what came with it is received now, unless the
    // topic's listener has started and takes it.
    for scope in scopes {
        let received = shared.early.receive_now(
            scope,
            shared.identity.device(),
            &FriendReplica(shared),
            Timestamp::wall_clock(),
        );
        if received > 0 {
            tracing::debug!(prefix = %scope.prefix(), received, "received the messages that came with the key");
        }
    }
    Message::ScopesAck
}

/// Sends a blob's content from `offset` as `BlobStart`, its group hashes
/// if `groups` (`BlobGroups`), chunks, `BlobEnd`, paced to the peer's byte
/// budget.
async fn stream_blob(
    shared: &Arc<Shared>,
    budget: &PeerBudget,
    send: &mut SendStream,
    hash: BlobHash,
    offset: u64,
    groups: bool,
) -> Result<()> {
    let store = shared.store.clone();
    type Opened = (u64, Option<Vec<u8>>, kith_store::BlobReader);
    let opened = tokio::task::spawn_blocking(move || -> Result<Opened> {
        let whole = store.read_blob(&hash, ..)?.len();
        // Computed once for a blob stored before they were kept, which
        // also finds content damaged on disk before a byte of it is sent.
        let hashes = if groups {
            Some(store.blob_groups(&hash)?)
        } else {
            None
        };
        let reader = store.read_blob(&hash, offset..)?;
        Ok((whole, hashes, reader))
    })
    .await
    .map_err(|e| Error::Protocol(format!("blob task failed: {e}")))?;
    let (size, hashes, reader) = match opened {
        Ok(v) => v,
        Err(e) => {
            let msg = Message::refused(
                RefusalCode::NotFound,
                None,
                format!("blob not available: {e}"),
            );
            write_msg(send, &msg).await?;
            return Ok(());
        }
    };
    write_msg(send, &Message::BlobStart { size, offset }).await?;
    if let Some(hashes) = hashes {
        let n = write_msg(send, &Message::BlobGroups { hashes }).await?;
        budget.pace(n as usize).await;
    }
    // Reading happens on a blocking thread, a few chunks ahead of the network.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let reader_task = tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        loop {
            let mut buf = vec![0u8; BLOB_CHUNK];
            let mut filled = 0;
            while filled < buf.len() {
                match reader.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
            if filled == 0 {
                return;
            }
            buf.truncate(filled);
            if tx.blocking_send(Ok(buf)).is_err() {
                return;
            }
        }
    });
    while let Some(chunk) = rx.recv().await {
        let bytes = chunk?;
        let n = write_blob_chunk(send, bytes).await?;
        budget.pace(n as usize).await;
    }
    let _ = reader_task.await;
    write_msg(send, &Message::BlobEnd).await?;
    Ok(())
}
