//! The live messages that came with a `Rekey`
//! ([`crate::proto::wire::Message::Rekey`]): the first messages of a new
//! epoch, which reached no one on the forming topic.
//!
//! Who receives them depends on whether the topic's listener runs yet. If
//! it does not, the `Rekey` handler receives them itself, right after the
//! key is stored (with every check of a gossip message, through the same
//! [`Inbox`]), so the post written meanwhile is in the store without
//! waiting for the topic to be joined; the inbox (with its sequence state)
//! and what receiving asked for are handed to the listener when it starts.
//! If the listener runs, it is handed the messages. Either way they are
//! received before anything from gossip on that topic, and in one inbox.

use std::collections::{HashMap, HashSet};
use std::mem;

use kith_caps::Scope;
use kith_types::{DeviceId, Timestamp};
use parking_lot::Mutex;

use crate::proto::fetch::Replica;
use crate::proto::receive::{Inbox, Outcome};

/// The messages that came with a `Rekey`, by topic id.
#[derive(Debug)]
pub(crate) struct EarlyPushes {
    topics: Mutex<HashMap<[u8; 32], Slot>>,
    /// Woken when a topic whose listener runs gained messages.
    pub(crate) arrived: tokio::sync::Notify,
    /// Blobs up to this size are fetched as soon as they are announced
    /// (as the listener's inbox does).
    eager_blob_size: u64,
}

#[derive(Debug, Default)]
struct Slot {
    /// The topic's listener has started.
    listening: bool,
    /// Not received yet.
    pending: Vec<Vec<u8>>,
    /// Received before the listener started, with this inbox.
    inbox: Option<Inbox>,
    /// What receiving them asked for, for the listener to settle.
    outcomes: Vec<Outcome>,
}

impl EarlyPushes {
    pub(crate) fn new(eager_blob_size: u64) -> Self {
        Self {
            topics: Mutex::new(HashMap::new()),
            arrived: tokio::sync::Notify::new(),
            eager_blob_size,
        }
    }

    /// Keeps `pushes` (the latest a `Rekey` brought, one list per topic)
    /// for whoever receives them; wakes the listeners that run.
    pub(crate) fn arrive(&self, pushes: impl IntoIterator<Item = ([u8; 32], Vec<Vec<u8>>)>) {
        let mut wake = false;
        let mut topics = self.topics.lock();
        for (topic, messages) in pushes {
            let slot = topics.entry(topic).or_default();
            wake |= slot.listening;
            slot.pending.extend(messages);
        }
        drop(topics);
        if wake {
            self.arrived.notify_waiters();
        }
    }

    /// Receives now the messages kept for `scope`'s topic, through
    /// `replica`, unless its listener runs (which receives them). Returns
    /// how many were received. Blocks (the store applies them).
    pub(crate) fn receive_now(
        &self,
        scope: &Scope,
        me: DeviceId,
        replica: &impl Replica,
        now: Timestamp,
    ) -> usize {
        // Held while receiving: a listener starting meanwhile waits and
        // then takes this inbox, so the topic's messages go through one.
        let mut topics = self.topics.lock();
        let Some(slot) = topics.get_mut(scope.topic_id().as_bytes()) else {
            return 0;
        };
        if slot.listening || slot.pending.is_empty() {
            return 0;
        }
        let inbox = slot.inbox.get_or_insert_with(|| self.inbox(scope, me));
        let pending = mem::take(&mut slot.pending);
        let n = pending.len();
        for bytes in pending {
            slot.outcomes.push(inbox.receive(replica, &bytes, now));
        }
        n
    }

    /// Marks the listener of `scope`'s topic (for device `me`) as started,
    /// and hands it its inbox: the one the messages that came with the key
    /// were received with, and what receiving them asked for, or a new
    /// one. Messages not received yet wait for [`EarlyPushes::take`].
    pub(crate) fn claim(&self, scope: &Scope, me: DeviceId) -> (Inbox, Vec<Outcome>) {
        let mut topics = self.topics.lock();
        let slot = topics.entry(*scope.topic_id().as_bytes()).or_default();
        slot.listening = true;
        let inbox = slot.inbox.take().unwrap_or_else(|| self.inbox(scope, me));
        (inbox, mem::take(&mut slot.outcomes))
    }

    fn inbox(&self, scope: &Scope, me: DeviceId) -> Inbox {
        Inbox::new(scope.clone(), me, self.eager_blob_size)
    }

    /// The messages that arrived for `topic` since its listener last took
    /// them.
    pub(crate) fn take(&self, topic: &[u8; 32]) -> Vec<Vec<u8>> {
        self.topics
            .lock()
            .get_mut(topic)
            .map(|slot| mem::take(&mut slot.pending))
            .unwrap_or_default()
    }

    /// Forgets the topics not in `wanted` (scopes no longer held).
    pub(crate) fn retain(&self, wanted: &HashSet<[u8; 32]>) {
        self.topics.lock().retain(|id, _| wanted.contains(id));
    }
}
