//! Live push over iroh-gossip, and the recovery that makes it reliable.
//!
//! One gossip topic per held scope epoch (see [`crate::scopes`]). This
//! device publishes its own writes to its namespace into every covering
//! scope: document changes since the last published heads (heads only when
//! they do not fit the gossip message size), blob announcements and
//! tombstones, each signed by this device and sealed with the scope's key
//! ([`crate::proto::push`]). Members open, verify and apply what they
//! receive. Gossip loses members silently, so the owner's devices also
//! publish heartbeats; a member that sees a gap, or hears nothing for the
//! silence interval, re-joins with fresh bootstrap peers from the roster and
//! catches up over the direct channel. Counters in [`LiveMetrics`] tell how
//! changes arrived.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use iroh_gossip::Gossip;
use iroh_gossip::api::{Event, GossipSender};
use kith_caps::{Roster, Scope};
use kith_store::automerge::ChangeHash;
use kith_store::{ChangeKind, WatchEvent};
use kith_types::{DeviceId, NamespaceId, Path, Timestamp};
use n0_future::StreamExt;
use parking_lot::Mutex;
use rand::seq::IndexedRandom;
use tokio::task::JoinHandle;

use crate::proto::publish::{self, body_budget};
use crate::proto::push::{PushBody, PushKind};
use crate::proto::receive::{Inbox, Outcome};
use crate::state::{FriendReplica, OwnerSource, Shared, Work};

/// Random roster members added to the owner's devices when joining.
const RANDOM_BOOTSTRAP: usize = 2;
/// How long gossip is given to drop the links to a device that is back
/// before the topics are re-joined through it.
const RELINK_PAUSE: Duration = Duration::from_millis(300);
/// Least time between two heartbeats sent because a neighbor arrived.
const NEIGHBOR_HEARTBEAT_GAP: Duration = Duration::from_secs(1);
/// Most data messages of an epoch kept for members re-keyed into it.
const RECENT_MAX: usize = crate::proto::wire::MAX_REKEY_RECENT;
/// Most bytes of them.
const RECENT_BYTES: usize = 256 << 10;
/// How long the topic of a scope's earlier epoch is kept after a new
/// epoch's topic was joined: the new one forms over the links the old one
/// has (not dialing strangers while hundreds of members move at once), and
/// messages in flight on the old one still arrive. Nothing is published
/// into it meanwhile.
const RETIRE_GRACE: Duration = Duration::from_secs(5);

/// The sealed data messages of one own topic, from its first.
#[derive(Debug, Default)]
struct Recent {
    messages: Vec<Vec<u8>>,
    bytes: usize,
}

/// Settings of live push.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LiveConfig {
    /// The gossip message size limit (the same on every node).
    pub(crate) max_message_size: usize,
    /// How often the owner's devices publish heartbeats.
    pub(crate) heartbeat: Duration,
    /// How long a member may hear nothing before it re-joins and catches up.
    pub(crate) silence: Duration,
}

/// Counters of live push on one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveMetrics {
    /// Messages this node published (data, not heartbeats).
    pub published: u64,
    /// Heartbeats this node published.
    pub heartbeats_sent: u64,
    /// Changes applied from gossip (documents, blobs, tombstones), and
    /// from the live messages that came with a scope's key.
    pub applied_live: u64,
    /// Entries received by catch-ups started to recover from a gap,
    /// silence or missing dependencies.
    pub recovered: u64,
    /// Catch-ups started to recover.
    pub recoveries: u64,
    /// Messages dropped: undecryptable, badly signed, from a device
    /// without the right, outside the scope, or refused by the store.
    pub rejected: u64,
    /// Documents announced by heads only because their changes were too
    /// large for one gossip message.
    pub heads_only: u64,
    /// Times a member re-joined a topic after silence.
    pub rejoins: u64,
    /// Topics joined now.
    pub topics: u64,
    /// Topics of earlier epochs still held for a few seconds after a newer
    /// epoch's topic was joined (nothing is published into them).
    pub topics_retiring: u64,
    /// Periodic catch-ups a subscription skipped because live push kept
    /// it up to date.
    pub resyncs_skipped: u64,
    /// Gossip messages this node sent to its neighbors: its own and
    /// relayed data, and gossip's control messages.
    pub gossip_messages_sent: u64,
    /// Bytes of those gossip messages (before QUIC framing).
    pub gossip_bytes_sent: u64,
    /// Gossip connections this node dialed (a topic joined through peers
    /// it is linked to already dials none).
    pub gossip_dials: u64,
    /// Messages received from topics and handled (opened, checked, and
    /// applied or dropped), heartbeats included, and those that came with
    /// a scope's key.
    pub received: u64,
    /// Time spent on them, by stage, in nanoseconds of the thread that
    /// handled them (those that came with a key and were handled before
    /// the topic's listener started are not timed): opening and verifying ...
    pub receive_open_nanos: u64,
    /// ... checking namespace, signer's right, scope and sequence ...
    pub receive_check_nanos: u64,
    /// ... and applying through the store.
    pub receive_apply_nanos: u64,
    /// The whole handling of those messages, waiting for the topic's inbox
    /// included.
    pub receive_nanos: u64,
    /// Turns of the topics' listeners: each woke for a message, a
    /// neighbour's arrival or departure, or a timer. A node at rest wakes
    /// for heartbeats and little else.
    pub listener_wakeups: u64,
}

/// A scope's gossip topic this node has joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveTopic {
    /// The scope's namespace.
    pub namespace: NamespaceId,
    /// The scope's prefix.
    pub prefix: Path,
    /// The scope's epoch (it grows with every re-key).
    pub epoch: u64,
    /// Devices on the scope's roster, as this node knows it.
    pub members: usize,
    /// Direct gossip neighbors in the topic now (0: cut off; the node
    /// re-joins through roster members with backoff).
    pub neighbors: usize,
    /// Times a gossip neighbor left this topic since it was joined.
    pub neighbors_lost: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    published: AtomicU64,
    heartbeats_sent: AtomicU64,
    applied_live: AtomicU64,
    pub(crate) recovered: AtomicU64,
    recoveries: AtomicU64,
    rejected: AtomicU64,
    heads_only: AtomicU64,
    resyncs_skipped: AtomicU64,
    rejoins: AtomicU64,
    topics: AtomicU64,
    topics_retiring: AtomicU64,
    received: AtomicU64,
    receive_open_nanos: AtomicU64,
    receive_check_nanos: AtomicU64,
    receive_apply_nanos: AtomicU64,
    receive_nanos: AtomicU64,
    listener_wakeups: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn add_nanos(c: &AtomicU64, nanos: u64) {
    c.fetch_add(nanos, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> LiveMetrics {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LiveMetrics {
            published: g(&self.published),
            heartbeats_sent: g(&self.heartbeats_sent),
            applied_live: g(&self.applied_live),
            recovered: g(&self.recovered),
            recoveries: g(&self.recoveries),
            rejected: g(&self.rejected),
            heads_only: g(&self.heads_only),
            resyncs_skipped: g(&self.resyncs_skipped),
            rejoins: g(&self.rejoins),
            topics: g(&self.topics),
            topics_retiring: g(&self.topics_retiring),
            received: g(&self.received),
            receive_open_nanos: g(&self.receive_open_nanos),
            receive_check_nanos: g(&self.receive_check_nanos),
            receive_apply_nanos: g(&self.receive_apply_nanos),
            receive_nanos: g(&self.receive_nanos),
            listener_wakeups: g(&self.listener_wakeups),
            ..LiveMetrics::default()
        }
    }
}

struct Topic {
    scope: Scope,
    sender: GossipSender,
    /// This device's counter in this scope.
    counter: Arc<AtomicU64>,
    /// How the topic is doing, as its listener sees it.
    health: Arc<Health>,
    /// When a heartbeat last went out because a neighbor arrived.
    last_heartbeat: Mutex<Option<std::time::Instant>>,
    /// The devices this node joined the topic through.
    contacts: Mutex<HashSet<DeviceId>>,
    task: JoinHandle<()>,
}

/// What a topic's listener last saw.
#[derive(Debug, Default)]
struct Health {
    /// Direct gossip neighbors in this topic now.
    neighbors: AtomicU64,
    /// Times a neighbor left.
    lost: AtomicU64,
    /// When a message of the scope last passed every check (data or
    /// heartbeat), with nothing found missing.
    in_step: Mutex<Option<std::time::Instant>>,
}

/// The live-push layer of a node.
pub(crate) struct Live {
    gossip: Gossip,
    shared: Arc<Shared>,
    config: LiveConfig,
    session: u64,
    topics: Mutex<HashMap<[u8; 32], Topic>>,
    /// Topics of epochs a newer epoch of the same scope replaced, and when
    /// each is left ([`RETIRE_GRACE`]). Nothing is published into them.
    retiring: Mutex<HashMap<[u8; 32], (Topic, tokio::time::Instant)>>,
    /// This device's counter per topic of its namespace, kept while the
    /// topic is left and joined again (a re-link): members must see the
    /// changes published meanwhile as a gap.
    topic_counters: Mutex<HashMap<[u8; 32], Arc<AtomicU64>>>,
    /// Per own topic, the sealed data messages published into it since its
    /// epoch began, while they are few ([`RECENT_MAX`], [`RECENT_BYTES`]);
    /// `None` once they are not all kept. A member re-keyed into the epoch
    /// gets them with the key.
    recent: Mutex<HashMap<[u8; 32], Option<Recent>>>,
    pub(crate) counters: Arc<Counters>,
    requests: tokio::sync::mpsc::Sender<Work>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// One reconciliation at a time (a topic is joined once).
    reconciling: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("topics", &self.topics.lock().len())
            .finish_non_exhaustive()
    }
}

impl Live {
    /// The counters, with what the gossip layer sent.
    pub(crate) fn metrics(&self) -> LiveMetrics {
        let g = self.gossip.metrics();
        LiveMetrics {
            gossip_messages_sent: g.msgs_data_sent.get() + g.msgs_ctrl_sent.get(),
            gossip_bytes_sent: g.msgs_data_sent_size.get() + g.msgs_ctrl_sent_size.get(),
            gossip_dials: g.actor_tick_dialer_success.get(),
            ..self.counters.snapshot()
        }
    }

    /// Starts live push: topic membership follows the held scopes, this
    /// device's writes are published, heartbeats go out.
    pub(crate) fn start(
        gossip: Gossip,
        shared: Arc<Shared>,
        config: LiveConfig,
        requests: tokio::sync::mpsc::Sender<Work>,
    ) -> Arc<Self> {
        // The store's clock moves forward across restarts: a later start
        // has a later session, so members tell replays of an earlier one
        // apart.
        let session = shared.store.clock().now().as_micros();
        let live = Arc::new(Self {
            gossip,
            shared,
            config,
            session,
            topics: Mutex::new(HashMap::new()),
            retiring: Mutex::new(HashMap::new()),
            topic_counters: Mutex::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
            counters: Arc::new(Counters::default()),
            requests,
            tasks: Mutex::new(Vec::new()),
            reconciling: tokio::sync::Mutex::new(()),
        });
        let tasks = vec![
            tokio::spawn(Self::follow_scopes(Arc::downgrade(&live))),
            tokio::spawn(Self::publish_writes(Arc::downgrade(&live))),
            tokio::spawn(Self::heartbeats(Arc::downgrade(&live))),
        ];
        *live.tasks.lock() = tasks;
        live
    }

    /// The topics joined now.
    pub(crate) fn topics(&self) -> Vec<LiveTopic> {
        let mut out: Vec<LiveTopic> = self
            .topics
            .lock()
            .values()
            .map(|t| LiveTopic {
                namespace: t.scope.namespace(),
                prefix: t.scope.prefix().clone(),
                epoch: t.scope.epoch(),
                members: self.roster_of(&t.scope).map_or(0, |r| r.members().len()),
                neighbors: t.health.neighbors.load(Ordering::Relaxed) as usize,
                neighbors_lost: t.health.lost.load(Ordering::Relaxed),
            })
            .collect();
        out.sort_by(|a, b| (a.namespace, &a.prefix).cmp(&(b.namespace, &b.prefix)));
        out
    }

    /// Whether live push alone keeps this node up to date with `prefixes`
    /// of `namespace`: each lies in a scope whose topic has neighbors and
    /// delivered a message with nothing missing within the silence
    /// interval. A subscription skips its periodic catch-up meanwhile.
    pub(crate) fn in_step(&self, namespace: &NamespaceId, prefixes: &[Path]) -> bool {
        let topics = self.topics.lock();
        !prefixes.is_empty()
            && prefixes.iter().all(|p| {
                topics.values().any(|t| {
                    t.scope.namespace() == *namespace
                        && t.scope.prefix().is_prefix_of(p)
                        && t.health.neighbors.load(Ordering::Relaxed) > 0
                        && t.health
                            .in_step
                            .lock()
                            .is_some_and(|at| at.elapsed() < self.config.silence)
                })
            })
    }

    /// Counts a periodic catch-up skipped because of [`Live::in_step`].
    pub(crate) fn resync_skipped(&self) {
        bump(&self.counters.resyncs_skipped);
    }

    /// Stops every task; the topics' handles go with them.
    pub(crate) async fn shutdown(&self) {
        let mut tasks: Vec<JoinHandle<()>> = self.tasks.lock().drain(..).collect();
        tasks.extend(self.topics.lock().drain().map(|(_, t)| t.task));
        tasks.extend(self.retiring.lock().drain().map(|(_, (t, _))| t.task));
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        // Gossip itself is shut down by the accept loop, with the
        // endpoint (`Node::shutdown`).
    }

    fn request(&self, r: Work) {
        match self.requests.try_send(r) {
            Ok(()) => {}
            // The periodic re-sync covers what this would have done.
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("live request queue full; dropping a request");
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                tracing::debug!("the node is stopping; dropping a live request");
            }
        }
    }

    /// Joins and leaves topics as the held scopes change.
    async fn follow_scopes(weak: std::sync::Weak<Self>) {
        let mut version = match weak.upgrade() {
            Some(live) => live.shared.scope_version.subscribe(),
            None => return,
        };
        loop {
            let leave_at = {
                let Some(live) = weak.upgrade() else { return };
                live.reconcile().await;
                live.retiring.lock().values().map(|(_, at)| *at).min()
            };
            let retired = async {
                match leave_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = version.changed() => if changed.is_err() { return },
                () = retired => {}
            }
        }
    }

    /// Joins and leaves topics to match the held scopes now.
    pub(crate) async fn reconcile(self: &Arc<Self>) {
        let _one = self.reconciling.lock().await;
        let me = self.shared.identity.device();
        let wanted: Vec<(Scope, Roster)> = self
            .shared
            .scopes
            .read()
            .all()
            .filter(|(_, r)| r.contains(&me))
            .cloned()
            .collect();
        let wanted_ids: HashSet<[u8; 32]> = wanted
            .iter()
            .map(|(s, _)| *s.topic_id().as_bytes())
            .collect();
        {
            let now = tokio::time::Instant::now();
            let mut topics = self.topics.lock();
            let mut retiring = self.retiring.lock();
            retiring.retain(|id, (t, at)| {
                let keep = *at > now && !wanted_ids.contains(id);
                if !keep {
                    tracing::debug!(prefix = %t.scope.prefix(), epoch = t.scope.epoch(), "leaving an earlier epoch's topic");
                    t.task.abort();
                }
                keep
            });
            let gone: Vec<[u8; 32]> = topics
                .keys()
                .filter(|id| !wanted_ids.contains(*id))
                .copied()
                .collect();
            for id in gone {
                let Some(t) = topics.remove(&id) else {
                    continue;
                };
                // Replaced by a newer epoch of the same scope: kept a
                // while, for the new topic to form over its links.
                let replaced = wanted.iter().any(|(s, _)| earlier_epoch(&t.scope, s));
                if replaced {
                    tracing::debug!(prefix = %t.scope.prefix(), epoch = t.scope.epoch(), "retiring an earlier epoch's topic");
                    retiring.insert(id, (t, now + RETIRE_GRACE));
                } else {
                    tracing::debug!(prefix = %t.scope.prefix(), epoch = t.scope.epoch(), "leaving a scope's topic");
                    t.task.abort();
                }
            }
        }
        self.topic_counters
            .lock()
            .retain(|id, _| wanted_ids.contains(id));
        self.recent.lock().retain(|id, _| wanted_ids.contains(id));
        for (scope, roster) in wanted {
            let id = *scope.topic_id().as_bytes();
            if self.topics.lock().contains_key(&id) {
                continue;
            }
            let moving = self
                .retiring
                .lock()
                .values()
                .any(|(t, _)| earlier_epoch(&t.scope, &scope));
            let (contacts, bootstrap) = self.bootstrap(&scope, &roster, moving);
            let contacts: HashSet<DeviceId> = contacts.into_iter().collect();
            let topic = match gossip_call(
                "joining a topic",
                self.gossip
                    .subscribe(iroh_gossip::TopicId::from_bytes(id), bootstrap),
            )
            .await
            {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(%e, prefix = %scope.prefix(), "could not join a scope's topic");
                    continue;
                }
            };
            let (sender, receiver) = topic.split();
            let health = Arc::new(Health::default());
            let task = tokio::spawn(Self::listen(
                Arc::downgrade(self),
                scope.clone(),
                sender.clone(),
                receiver,
                health.clone(),
            ));
            tracing::debug!(prefix = %scope.prefix(), epoch = scope.epoch(), "joined a scope's topic");
            self.topics.lock().insert(
                id,
                Topic {
                    scope,
                    sender,
                    counter: self.topic_counters.lock().entry(id).or_default().clone(),
                    health,
                    last_heartbeat: Mutex::new(None),
                    contacts: Mutex::new(contacts),
                    task,
                },
            );
        }
        self.counters
            .topics
            .store(self.topics.lock().len() as u64, Ordering::Relaxed);
        self.counters
            .topics_retiring
            .store(self.retiring.lock().len() as u64, Ordering::Relaxed);
        // Pushes for topics no longer held are not needed.
        self.shared.early.retain(&wanted_ids);
    }

    /// The sealed data messages published into own `topic` since its epoch
    /// began, if all of them were kept (empty otherwise).
    pub(crate) fn recent(&self, topic: &[u8; 32]) -> Vec<Vec<u8>> {
        match self.recent.lock().get(topic) {
            Some(Some(r)) => r.messages.clone(),
            _ => Vec::new(),
        }
    }

    /// Keeps a data message published into `topic` with `counter`, while
    /// every message of the epoch is kept and they are few.
    fn keep_recent(&self, topic: [u8; 32], counter: u64, sealed: Option<&[u8]>) {
        let mut all = self.recent.lock();
        let slot = all.entry(topic).or_insert_with(|| Some(Recent::default()));
        let Some(recent) = slot else { return };
        let fits = sealed.is_some_and(|m| {
            recent.messages.len() as u64 + 1 == counter
                && recent.messages.len() < RECENT_MAX
                && recent.bytes + m.len() <= RECENT_BYTES
                && m.len() <= crate::proto::wire::MAX_RECENT_PUSH_LEN
        });
        match sealed {
            Some(m) if fits => {
                recent.bytes += m.len();
                recent.messages.push(m.to_vec());
            }
            _ => *slot = None,
        }
    }

    /// Peers to join a topic through: the scope owner's devices (whose
    /// addresses are known) and a few random members, so that joins do not
    /// all land on one node. A new epoch of a scope this node held
    /// (`moving`) is joined through the owner's devices alone: the owner
    /// made the epoch and is on its topic first, while the other members
    /// join as their key reaches them, and gossip drops a join sent to a
    /// node that is not on the topic yet (the join is lost, and the links
    /// form again by other ways: walks, re-joins, dials). A device of the
    /// owner moving with no other device of its namespace joins through no
    /// one: the members join through it.
    fn bootstrap(
        &self,
        scope: &Scope,
        roster: &Roster,
        moving: bool,
    ) -> (Vec<DeviceId>, Vec<iroh::EndpointId>) {
        let me = self.shared.identity.device();
        // The roster held now: it may have grown since the topic was joined.
        let current = self.roster_of(scope);
        let roster = current.as_ref().unwrap_or(roster);
        let owner_devices: Vec<DeviceId> = self
            .shared
            .known
            .read()
            .devices_of(&scope.namespace(), &self.shared.namespace())
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        let mut peers: Vec<DeviceId> = owner_devices
            .iter()
            .filter(|d| **d != me && roster.contains(d))
            .copied()
            .collect();
        if !moving {
            let others: Vec<DeviceId> = roster
                .members()
                .iter()
                .filter(|m| **m != me && !owner_devices.contains(m))
                .copied()
                .collect();
            peers.extend(others.sample(&mut rand::rng(), RANDOM_BOOTSTRAP).copied());
        }
        let ids = peers
            .iter()
            .filter_map(|d| iroh::EndpointId::from_bytes(d.as_bytes()).ok())
            .collect();
        (peers, ids)
    }

    /// Peers to re-join `scope`'s topic through, noted as its contacts.
    fn rejoin_peers(&self, scope: &Scope, roster: &Roster) -> Vec<iroh::EndpointId> {
        let (devices, ids) = self.bootstrap(scope, roster, false);
        if let Some(t) = self.topics.lock().get(scope.topic_id().as_bytes()) {
            t.contacts.lock().extend(devices);
        }
        ids
    }

    /// The roster held now for `scope`'s epoch.
    fn roster_of(&self, scope: &Scope) -> Option<Roster> {
        self.shared
            .scopes
            .read()
            .of(&scope.namespace())
            .into_iter()
            .find(|(s, _)| s.prefix() == scope.prefix() && s.epoch() == scope.epoch())
            .map(|(_, r)| r)
    }

    /// Receives one topic's messages. A node without gossip neighbors
    /// re-joins through roster members (with backoff); a member that hears
    /// nothing, not even a heartbeat, for the silence interval re-joins and
    /// catches up.
    async fn listen(
        weak: std::sync::Weak<Self>,
        scope: Scope,
        sender: GossipSender,
        mut receiver: iroh_gossip::api::GossipReceiver,
        health: Arc<Health>,
    ) {
        let (silence, roster) = match weak.upgrade() {
            Some(live) => match live.roster_of(&scope) {
                Some(r) => (live.config.silence, r),
                None => return,
            },
            None => return,
        };
        let topic_id = *scope.topic_id().as_bytes();
        // What came with the key, before anything from gossip: the
        // epoch's first messages, which reached no one on the forming
        // topic. The `Rekey` handler received them already if this
        // listener had not started (its inbox goes on here); those that
        // wait are received first thing in the loop.
        let (inbox, watched) = {
            let Some(live) = weak.upgrade() else { return };
            let (inbox, outcomes) = live
                .shared
                .early
                .claim(&scope, live.shared.identity.device());
            for outcome in outcomes {
                bump(&live.counters.received);
                live.settle(&scope, outcome);
            }
            (
                Arc::new(Mutex::new(inbox)),
                scope.namespace() != live.shared.namespace(),
            )
        };
        let mut last_heard = tokio::time::Instant::now();
        let mut lonely = Lonely::new(silence);
        loop {
            // Silence is watched on other namespaces' topics only: on its
            // own, a device with no other device hears nothing, and a
            // deadline long past would wake this loop without end.
            let wake = if watched {
                lonely.next_check().min(last_heard + silence)
            } else {
                lonely.next_check()
            };
            let shared = match weak.upgrade() {
                Some(live) => live.shared.clone(),
                None => return,
            };
            // Messages that came with the key (the epoch's first, or
            // published while this topic had no neighbors).
            let early = shared.early.take(&topic_id);
            if !early.is_empty() {
                tracing::debug!(prefix = %scope.prefix(), messages = early.len(), "receiving the messages that came with the key");
                let Some(live) = weak.upgrade() else { return };
                for bytes in early {
                    let outcome = live.receive(&inbox, bytes).await;
                    live.settle(&scope, outcome);
                }
            }
            let next = tokio::select! {
                next = tokio::time::timeout_at(wake, receiver.next()) => next,
                () = shared.early.arrived.notified() => continue,
            };
            drop(shared);
            let Some(live) = weak.upgrade() else { return };
            bump(&live.counters.listener_wakeups);
            health
                .neighbors
                .store(receiver.neighbors().count() as u64, Ordering::Relaxed);
            if lonely.due(receiver.is_joined()) {
                let peers = live.rejoin_peers(&scope, &roster);
                tracing::debug!(prefix = %scope.prefix(), peers = peers.len(), "no gossip neighbors; re-joining");
                if let Err(e) = gossip_call("re-joining a topic", sender.join_peers(peers)).await {
                    tracing::info!(%e, "re-joining a topic failed");
                }
            }
            if matches!(next, Ok(Some(Ok(Event::Received(_))))) {
                last_heard = tokio::time::Instant::now();
            }
            match next {
                Ok(Some(Ok(Event::Received(msg)))) => {
                    let outcome = live.receive(&inbox, msg.content).await;
                    *health.in_step.lock() =
                        (!outcome.rejected && !outcome.recover).then(std::time::Instant::now);
                    live.settle(&scope, outcome);
                }
                Ok(Some(Ok(Event::NeighborUp(_)))) => {
                    live.heartbeat_now(scope.topic_id().as_bytes()).await;
                }
                Ok(Some(Ok(Event::NeighborDown(_)))) => {
                    bump(&health.lost);
                }
                Ok(Some(Ok(Event::Lagged))) => {
                    tracing::info!(prefix = %scope.prefix(), "fell behind on a topic; catching up");
                    live.recover(scope.namespace());
                }
                Ok(Some(Err(e))) => {
                    tracing::info!(%e, "gossip receive error");
                }
                Ok(None) => {
                    tracing::debug!(prefix = %scope.prefix(), "topic closed");
                    return;
                }
                Err(_) if watched && last_heard.elapsed() >= silence => {
                    // Heard nothing, not even a heartbeat: the mesh may have
                    // lost this node. Re-join through fresh peers, catch up.
                    last_heard = tokio::time::Instant::now();
                    bump(&live.counters.rejoins);
                    let peers = live.rejoin_peers(&scope, &roster);
                    tracing::info!(prefix = %scope.prefix(), peers = peers.len(), "silence on a topic; re-joining and catching up");
                    if let Err(e) =
                        gossip_call("re-joining a topic", sender.join_peers(peers)).await
                    {
                        tracing::info!(%e, "re-joining a topic failed");
                    }
                    live.recover(scope.namespace());
                }
                Err(_) => {}
            }
        }
    }

    /// Opens, verifies and applies one message of a topic in `inbox`,
    /// counting the time each stage took.
    async fn receive<B>(&self, inbox: &Arc<Mutex<Inbox>>, bytes: B) -> Outcome
    where
        B: AsRef<[u8]> + Send + 'static,
    {
        let shared = self.shared.clone();
        let inbox = inbox.clone();
        let handled = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let clock = || u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let (outcome, times) = inbox.lock().receive_timed(
                &FriendReplica(&shared),
                bytes.as_ref(),
                Timestamp::wall_clock(),
                &clock,
            );
            (outcome, times, clock())
        })
        .await;
        match handled {
            Ok((outcome, times, took)) => {
                let c = &self.counters;
                bump(&c.received);
                add_nanos(&c.receive_open_nanos, times.open);
                add_nanos(&c.receive_check_nanos, times.check);
                add_nanos(&c.receive_apply_nanos, times.apply);
                add_nanos(&c.receive_nanos, took);
                outcome
            }
            Err(e) => {
                tracing::error!(%e, "live receive task failed");
                Outcome::default()
            }
        }
    }

    /// Leaves and joins again every topic this node joined through
    /// `device`, which has just started again or moved. iroh-gossip keeps a
    /// joiner's view of its contact as it was (the link to the old process
    /// counts as live, and a neighbor request to it stays pending), so it
    /// would never answer the contact's new joins; a fresh subscription
    /// starts from nothing.
    pub(crate) async fn relink(self: &Arc<Self>, device: DeviceId) {
        let stale: Vec<Topic> = {
            let mut topics = self.topics.lock();
            let ids: Vec<[u8; 32]> = topics
                .iter()
                .filter(|(_, t)| t.contacts.lock().contains(&device))
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| topics.remove(id)).collect()
        };
        if stale.is_empty() {
            return;
        }
        tracing::debug!(device = %device.fmt_short(), topics = stale.len(), "re-joining the topics joined through a device that is back");
        for t in &stale {
            t.task.abort();
        }
        drop(stale);
        // Gossip leaves a topic once both handles are gone.
        tokio::time::sleep(RELINK_PAUSE).await;
        self.reconcile().await;
    }

    /// Publishes a heartbeat into `topic` (of this namespace) now, unless
    /// one went out within [`NEIGHBOR_HEARTBEAT_GAP`]: a neighbor that just
    /// arrived learns the counter and catches up with what it missed (a
    /// change published while the topic had no neighbors reached no one).
    async fn heartbeat_now(&self, topic: &[u8; 32]) {
        let target = {
            let topics = self.topics.lock();
            topics.get(topic).and_then(|t| {
                let mut last = t.last_heartbeat.lock();
                if t.scope.namespace() != self.shared.namespace()
                    || last.is_some_and(|at| at.elapsed() < NEIGHBOR_HEARTBEAT_GAP)
                {
                    return None;
                }
                *last = Some(std::time::Instant::now());
                Some((
                    t.scope.clone(),
                    t.sender.clone(),
                    t.counter.load(Ordering::Relaxed),
                ))
            })
        };
        let Some((scope, sender, counter)) = target else {
            return;
        };
        tracing::debug!(prefix = %scope.prefix(), counter, "a neighbor arrived; sending a heartbeat");
        self.send_heartbeat(&scope, &sender, counter).await;
    }

    fn recover(&self, namespace: NamespaceId) {
        tracing::debug!(ns = %namespace.fmt_short(), "missed something live; catching up");
        bump(&self.counters.recoveries);
        self.request(Work::Sync {
            namespace,
            recovery: true,
        });
    }

    fn settle(&self, scope: &Scope, outcome: Outcome) {
        if let Some(device) = outcome.from
            && !outcome.rejected
        {
            self.shared
                .contact(device, |c| c.live = Some(Timestamp::wall_clock()));
        }
        for _ in 0..outcome.applied {
            bump(&self.counters.applied_live);
        }
        if outcome.applied > 0 {
            // Friends' data grew: the cache looks at it at its next tick.
            self.shared
                .cache_grew
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if outcome.rejected {
            bump(&self.counters.rejected);
        }
        if outcome.recover {
            self.recover(scope.namespace());
        } else if outcome.sync {
            self.request(Work::Sync {
                namespace: scope.namespace(),
                recovery: false,
            });
        }
        if let Some(path) = outcome.fetch {
            self.request(Work::FetchBlob {
                namespace: scope.namespace(),
                path,
            });
        }
    }

    /// Publishes this device's writes to its own namespace.
    async fn publish_writes(weak: std::sync::Weak<Self>) {
        let mut watcher = match weak.upgrade() {
            Some(live) => live
                .shared
                .store
                .watch(&live.shared.namespace(), &Path::root()),
            None => return,
        };
        let mut published: HashMap<Path, Vec<ChangeHash>> = HashMap::new();
        while let Some(event) = watcher.recv().await {
            let Some(live) = weak.upgrade() else { return };
            match event {
                WatchEvent::Lagged => {
                    // Members notice the skipped counter and catch up.
                    for t in live.topics.lock().values() {
                        t.counter.fetch_add(1, Ordering::Relaxed);
                    }
                    published.clear();
                }
                WatchEvent::Change(change) => {
                    let shared = live.shared.clone();
                    let since = match &change.kind {
                        ChangeKind::Put { path, .. } => published.get(path).cloned(),
                        ChangeKind::Tombstone { .. } => None,
                    };
                    let budget = body_budget(live.config.max_message_size);
                    let built = tokio::task::spawn_blocking(move || {
                        let me = shared.identity.device();
                        publish::build(&OwnerSource(&shared), me, &change.kind, since, budget)
                    })
                    .await;
                    match built {
                        Ok(Ok(Some(built))) => {
                            if built.heads_only {
                                bump(&live.counters.heads_only);
                            }
                            if let Some(h) = built.heads {
                                published.insert(built.path.clone(), h);
                            }
                            live.publish(&built.path, built.kind).await;
                        }
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => tracing::warn!(%e, "could not prepare a live message"),
                        Err(e) => tracing::error!(%e, "live publish task failed"),
                    }
                }
            }
        }
    }

    /// Seals `kind` for every own scope that `path` concerns and broadcasts.
    async fn publish(&self, path: &Path, kind: PushKind) {
        let ns = self.shared.namespace();
        let is_tombstone = matches!(kind, PushKind::Tombstone { .. });
        let targets: Vec<(Scope, GossipSender, Arc<AtomicU64>, bool)> = self
            .topics
            .lock()
            .values()
            .filter(|t| {
                t.scope.namespace() == ns
                    && if is_tombstone {
                        t.scope.prefix().overlaps(path)
                    } else {
                        t.scope.prefix().is_prefix_of(path)
                    }
            })
            .map(|t| {
                let alone = t.health.neighbors.load(Ordering::Relaxed) == 0;
                (t.scope.clone(), t.sender.clone(), t.counter.clone(), alone)
            })
            .collect();
        // A scope whose topic is being joined again: the change is counted,
        // so that the members see a gap at the next heartbeat.
        for (scope, _) in self.shared.scopes.read().of(&ns) {
            let id = *scope.topic_id().as_bytes();
            let covers = if is_tombstone {
                scope.prefix().overlaps(path)
            } else {
                scope.prefix().is_prefix_of(path)
            };
            if covers
                && !self.topics.lock().contains_key(&id)
                && let Some(counter) = self.topic_counters.lock().get(&id)
            {
                counter.fetch_add(1, Ordering::Relaxed);
                self.keep_recent(id, 0, None);
            }
        }
        for (scope, sender, counter, alone) in targets {
            if alone {
                // Gossip would carry this to no one (the node has just
                // started, or lost its links): the members are told
                // directly to catch up.
                // Members still owed this epoch get this message with its
                // key ([`Live::recent`]); only the others are told.
                let me = self.shared.identity.device();
                let shared = self.shared.clone();
                let owed: HashSet<DeviceId> =
                    tokio::task::spawn_blocking(move || shared.devices_owed_scopes())
                        .await
                        .ok()
                        .and_then(|r| r.ok())
                        .unwrap_or_default()
                        .into_iter()
                        .collect();
                let members: Vec<DeviceId> = self
                    .roster_of(&scope)
                    .map(|r| {
                        r.members()
                            .iter()
                            .filter(|m| **m != me && !owed.contains(*m))
                            .copied()
                            .collect()
                    })
                    .unwrap_or_default();
                // While every message of the epoch is kept, they go to the
                // members with the key again (no catch-up); else a poke.
                let young = !matches!(
                    self.recent.lock().get(scope.topic_id().as_bytes()),
                    Some(None)
                );
                tracing::debug!(prefix = %scope.prefix(), members = members.len(), owed = owed.len(), young, "no gossip neighbors to publish to; telling the members not owed the key");
                if !members.is_empty() {
                    self.request(if young {
                        Work::Rekey { devices: members }
                    } else {
                        Work::Poke { devices: members }
                    });
                }
            }
            let body = PushBody {
                session: self.session,
                counter: counter.fetch_add(1, Ordering::Relaxed) + 1,
                kind: kind.clone(),
            };
            let sealed = self.seal(&scope, &body);
            if body.kind != PushKind::Heartbeat {
                self.keep_recent(
                    *scope.topic_id().as_bytes(),
                    body.counter,
                    sealed.as_deref(),
                );
            }
            match sealed {
                Some(bytes) => {
                    if let Err(e) =
                        gossip_call("broadcasting", sender.broadcast(Bytes::from(bytes))).await
                    {
                        tracing::info!(%e, "gossip broadcast failed");
                    }
                    bump(&self.counters.published);
                }
                None => {
                    // Too large even as an announcement: members see the
                    // skipped counter at the next heartbeat and catch up.
                    tracing::info!(%path, "live message too large; left to catch-up");
                }
            }
        }
    }

    /// Signs and seals a body; `None` if it does not fit one gossip message.
    fn seal(&self, scope: &Scope, body: &PushBody) -> Option<Vec<u8>> {
        publish::seal(
            &self.shared.identity.device_key,
            scope,
            body,
            self.config.max_message_size,
            &mut rand::rng(),
        )
    }

    /// Publishes heartbeats into the scopes of this namespace.
    async fn heartbeats(weak: std::sync::Weak<Self>) {
        let every = match weak.upgrade() {
            Some(live) => live.config.heartbeat,
            None => return,
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(live) = weak.upgrade() else { return };
            let ns = live.shared.namespace();
            let targets: Vec<(Scope, GossipSender, u64)> = live
                .topics
                .lock()
                .values()
                .filter(|t| t.scope.namespace() == ns)
                .map(|t| {
                    (
                        t.scope.clone(),
                        t.sender.clone(),
                        t.counter.load(Ordering::Relaxed),
                    )
                })
                .collect();
            for (scope, sender, counter) in targets {
                live.send_heartbeat(&scope, &sender, counter).await;
            }
        }
    }

    /// Publishes one heartbeat carrying `counter` into `scope`'s topic.
    async fn send_heartbeat(&self, scope: &Scope, sender: &GossipSender, counter: u64) {
        let body = PushBody {
            session: self.session,
            counter,
            kind: PushKind::Heartbeat,
        };
        if let Some(bytes) = self.seal(scope, &body) {
            if let Err(e) = gossip_call("a heartbeat", sender.broadcast(Bytes::from(bytes))).await {
                tracing::debug!(%e, "heartbeat broadcast failed");
            }
            bump(&self.counters.heartbeats_sent);
        }
    }
}

/// When a node without gossip neighbors in a topic re-joins it: after
/// [`LONELY_FIRST`], then at doubling intervals up to the silence interval,
/// and again from the start once it has had neighbors.
struct Lonely {
    since: Option<tokio::time::Instant>,
    wait: Duration,
    max: Duration,
}

/// How long a node may be without gossip neighbors before it re-joins.
const LONELY_FIRST: Duration = Duration::from_secs(1);

impl Lonely {
    fn new(max: Duration) -> Self {
        Self {
            since: Some(tokio::time::Instant::now()),
            wait: LONELY_FIRST.min(max),
            max,
        }
    }

    /// When to look again (far off while the node has neighbors).
    fn next_check(&self) -> tokio::time::Instant {
        match self.since {
            Some(t) => t + self.wait,
            None => tokio::time::Instant::now() + self.max,
        }
    }

    /// Whether to re-join now, given whether the node has neighbors.
    fn due(&mut self, joined: bool) -> bool {
        let now = tokio::time::Instant::now();
        if joined {
            self.since = None;
            self.wait = LONELY_FIRST.min(self.max);
            return false;
        }
        let since = *self.since.get_or_insert(now);
        if now < since + self.wait {
            return false;
        }
        self.since = Some(now);
        self.wait = (self.wait * 2).min(self.max);
        true
    }
}

/// How long a call into the local gossip actor may take.
const GOSSIP_CALL: Duration = Duration::from_secs(10);

/// A call into the local gossip actor (join, re-join, broadcast), bounded
/// by [`GOSSIP_CALL`] so that a stuck actor stalls no task for good.
async fn gossip_call<T, E: std::fmt::Display>(
    what: &'static str,
    call: impl Future<Output = std::result::Result<T, E>>,
) -> std::result::Result<T, String> {
    match tokio::time::timeout(GOSSIP_CALL, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "{what}: the gossip actor did not answer within {GOSSIP_CALL:?}"
        )),
    }
}

/// Whether `old` is an earlier epoch of the scope `new` is an epoch of.
fn earlier_epoch(old: &Scope, new: &Scope) -> bool {
    old.namespace() == new.namespace() && old.prefix() == new.prefix() && old.epoch() < new.epoch()
}
