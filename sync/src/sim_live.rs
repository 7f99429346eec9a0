//! A seeded simulation of live push: one owner and several friends with
//! real stores, the protocol's own halves of live push
//! ([`crate::proto::publish`] and [`crate::proto::receive`], with its
//! sequencer), and catch-up through the real state machines (as in
//! [`crate::sim`]); no gossip driver, gate or channel. The gossip layer is a lossy
//! in-memory network that drops, reorders and replays messages, and takes
//! friends offline for a while.
//!
//! Properties checked:
//! - **Safety, at every step:** a friend never holds a path outside the
//!   granted prefix, and replayed envelopes (captured earlier, delivered
//!   again after a deletion) never bring deleted data back.
//! - **Convergence:** once the owner's next heartbeat reaches every friend,
//!   each holds exactly the owner's documents under the prefix (same heads),
//!   with no catch-up other than those the live layer itself asked for
//!   (a gap, missing dependencies, a receipt to deliver, or silence).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use kith_caps::{CapId, DeviceKey, ReadCap, Scope};
use kith_store::automerge::ChangeHash;
use kith_types::{Path, Timestamp};

use crate::proto::publish::{self, Built, body_budget};
use crate::proto::push::{PushBody, PushKind};
use crate::proto::receive::{Inbox, Outcome};
use crate::sim::{Rng, delete, node, paths, sync, ticket, write};
use crate::state::{FriendReplica, OwnerSource, Shared};

/// Gossip message size used by the simulation (the default).
const MAX_MESSAGE: usize = 4096;
/// Steps a member may hear nothing before it catches up (its silence
/// watchdog).
const SILENCE: u32 = 40;
/// Documents written under `/feed` (many are written only once, so a lost
/// message is not always followed by one that depends on it).
const PATHS: u64 = 30;

/// Signs and seals `body` for `scope` as `by`'s device.
fn seal(by: &Shared, scope: &Scope, body: &PushBody) -> Vec<u8> {
    publish::seal(
        &by.identity.device_key,
        scope,
        body,
        MAX_MESSAGE,
        &mut rand::rng(),
    )
    .unwrap()
}

/// The push message for `change` in `by`'s own namespace.
fn build(
    by: &Shared,
    change: &kith_store::ChangeKind,
    since: Option<Vec<ChangeHash>>,
) -> Option<Built> {
    let me = by.identity.device();
    publish::build(
        &OwnerSource(by),
        me,
        change,
        since,
        body_budget(MAX_MESSAGE),
    )
    .unwrap()
}

/// `member` receives `bytes` on `inbox`'s scope.
fn receive(member: &Shared, inbox: &mut Inbox, bytes: &[u8]) -> Outcome {
    inbox.receive(&FriendReplica(member), bytes, Timestamp::wall_clock())
}

struct Member {
    shared: Arc<Shared>,
    inbox: Inbox,
    queue: VecDeque<Vec<u8>>,
    offline: bool,
    quiet: u32,
    catch_ups: u32,
}

impl Member {
    /// Handles one received envelope, and catches up when asked to.
    fn handle(&mut self, owner: &Shared, bytes: &[u8]) {
        let outcome = receive(&self.shared, &mut self.inbox, bytes);
        self.quiet = 0;
        if outcome.recover || outcome.sync {
            self.catch_up(owner);
        }
    }

    /// One complete catch-up with the owner under `/feed`.
    fn catch_up(&mut self, owner: &Shared) {
        self.catch_ups += 1;
        let feed = [Path::parse("/feed").unwrap()];
        assert!(sync(owner, &self.shared, usize::MAX, false, &feed));
    }
}

fn run(seed: u64, friends: usize, steps: usize) {
    let dirs: Vec<_> = (0..=friends)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let owner = node(dirs[0].path());
    let key = owner.identity.namespace_key.as_ref().unwrap();
    let me = owner.namespace();
    let feed = Path::parse("/feed").unwrap();
    // Opening a store waits on the disk: the friends' open side by side.
    let friends: Vec<Arc<Shared>> = std::thread::scope(|s| {
        let opening: Vec<_> = dirs[1..]
            .iter()
            .map(|d| s.spawn(|| node(d.path())))
            .collect();
        opening.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for f in &friends {
        owner.add_friend(&ticket(f)).unwrap();
        f.add_friend(&ticket(&owner)).unwrap();
        let cap = ReadCap::issue(
            key,
            CapId::random(&mut rand::rng()),
            f.namespace(),
            feed.clone(),
            owner.store.clock().now(),
            None,
        )
        .unwrap();
        owner.store_own_cap(&cap).unwrap();
    }
    // Joining: one catch-up each, which also hands over the scope.
    let joining = [feed.clone()];
    for f in &friends {
        assert!(sync(&owner, f, usize::MAX, false, &joining));
    }
    let (scope, _) = owner.own_scopes().into_iter().next().unwrap();
    let mut members: Vec<Member> = friends
        .into_iter()
        .map(|f| Member {
            inbox: Inbox::new(scope.clone(), f.identity.device(), u64::MAX),
            shared: f,
            queue: VecDeque::new(),
            offline: false,
            quiet: 0,
            catch_ups: 1,
        })
        .collect();
    for m in &members {
        let held = m.shared.scopes.read().of(&me);
        assert_eq!(held.len(), 1, "seed {seed}: a friend did not get the scope");
        assert_eq!(held[0].0.topic_id(), scope.topic_id());
    }

    // The first member's gossip links form late: it misses the start.
    members[0].offline = true;
    let mut rng = Rng(seed | 1);
    let session = seed;
    let mut counter = 0u64;
    let mut last_seq = owner.store.current_seq(&me).unwrap();
    let mut published: HashMap<Path, Vec<ChangeHash>> = HashMap::new();
    let mut captured: Vec<Vec<u8>> = Vec::new();
    let mut dead: Vec<u64> = Vec::new();

    // Gossip: each online member gets a copy, unless it is lost (1 in 5);
    // a copy may overtake the one before it.
    let broadcast = |bytes: Vec<u8>, members: &mut Vec<Member>, rng: &mut Rng| {
        for m in members.iter_mut().filter(|m| !m.offline) {
            if rng.below(5) == 0 {
                continue;
            }
            if !m.queue.is_empty() && rng.below(4) == 0 {
                let at = m.queue.len() - 1;
                m.queue.insert(at, bytes.clone());
            } else {
                m.queue.push_back(bytes.clone());
            }
        }
    };

    for step in 0..steps {
        match rng.below(12) {
            0..=5 => {
                let k = rng.below(PATHS);
                let path = if rng.below(5) == 0 {
                    Path::parse(&format!("/private/{k}")).unwrap()
                } else if dead.contains(&k) {
                    continue;
                } else {
                    Path::parse(&format!("/feed/{k}")).unwrap()
                };
                write(&owner, &path, step as i64);
            }
            6 if dead.len() < 3 => {
                let k = rng.below(PATHS);
                if !dead.contains(&k) {
                    dead.push(k);
                    delete(&owner, Path::parse(&format!("/feed/{k}")).unwrap());
                }
            }
            7 => {
                let body = PushBody {
                    session,
                    counter,
                    kind: PushKind::Heartbeat,
                };
                let bytes = seal(&owner, &scope, &body);
                broadcast(bytes, &mut members, &mut rng);
            }
            8 => {
                let i = rng.below(members.len() as u64) as usize;
                members[i].offline = !members[i].offline;
                members[i].queue.clear();
            }
            9 if !captured.is_empty() => {
                // A stale or hostile peer replays an old envelope.
                let old = captured[rng.below(captured.len() as u64) as usize].clone();
                let i = rng.below(members.len() as u64) as usize;
                members[i].queue.push_back(old);
            }
            _ => {}
        }
        // Publish what the owner wrote, as the live layer does.
        for change in owner.store.changes_since(&me, last_seq, 1000).unwrap() {
            last_seq = change.seq;
            let since = match &change.kind {
                kith_store::ChangeKind::Put { path, .. } => published.get(path).cloned(),
                kith_store::ChangeKind::Tombstone { .. } => None,
            };
            let Some(Built {
                path, kind, heads, ..
            }) = build(&owner, &change.kind, since)
            else {
                continue;
            };
            if let Some(h) = heads {
                published.insert(path.clone(), h);
            }
            let concerns = match kind {
                PushKind::Tombstone { .. } => feed.overlaps(&path),
                _ => feed.is_prefix_of(&path),
            };
            if !concerns {
                continue;
            }
            counter += 1;
            let body = PushBody {
                session,
                counter,
                kind,
            };
            let bytes = seal(&owner, &scope, &body);
            captured.push(bytes.clone());
            broadcast(bytes, &mut members, &mut rng);
        }
        // Members handle some of what reached them; the silent ones catch up.
        for m in members.iter_mut().filter(|m| !m.offline) {
            let take = rng.below(m.queue.len() as u64 + 1) as usize;
            if take == 0 {
                m.quiet += 1;
                if m.quiet >= SILENCE {
                    m.quiet = 0;
                    m.catch_up(&owner);
                }
            }
            for _ in 0..take {
                let bytes = m.queue.pop_front().unwrap();
                m.handle(&owner, &bytes);
            }
        }
        // Safety.
        for (i, m) in members.iter().enumerate() {
            for (path, _) in paths(&m.shared, &me) {
                assert!(
                    feed.is_prefix_of(&path),
                    "seed {seed} step {step}: friend {i} holds {path} outside /feed"
                );
            }
        }
    }

    // Everyone back online; the owner's next heartbeat reaches every friend
    // (after whatever is still in flight, some of it replays).
    let body = PushBody {
        session,
        counter,
        kind: PushKind::Heartbeat,
    };
    let heartbeat = seal(&owner, &scope, &body);
    for m in &mut members {
        m.offline = false;
        m.queue.push_back(heartbeat.clone());
        while let Some(bytes) = m.queue.pop_front() {
            m.handle(&owner, &bytes);
        }
    }
    let want: Vec<_> = paths(&owner, &me)
        .into_iter()
        .filter(|(p, _)| feed.is_prefix_of(p))
        .collect();
    for (i, m) in members.iter().enumerate() {
        assert_eq!(
            paths(&m.shared, &me),
            want,
            "seed {seed}: friend {i} differs from the owner after the final heartbeat \
             ({} catch-ups)",
            m.catch_ups
        );
    }
    // Replaying every captured envelope once more changes nothing.
    for m in &mut members {
        for bytes in &captured {
            let _ = receive(&m.shared, &mut m.inbox, bytes);
        }
        assert_eq!(
            paths(&m.shared, &me),
            want,
            "seed {seed}: replayed envelopes changed what a friend holds"
        );
    }
}

/// An owner with a post under `/feed`, and a friend granted `/feed` who
/// caught up (and so holds the scope), each with its inbox for the scope.
struct Pair {
    owner: Arc<Shared>,
    friend: Arc<Shared>,
    scope: Scope,
    inbox: Inbox,
    counter: u64,
    _dirs: [tempfile::TempDir; 2],
}

impl Pair {
    fn new() -> Self {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let (owner, friend) = crate::sim::friends_with_a_post(&dirs);
        let feed = [Path::parse("/feed").unwrap()];
        assert!(sync(&owner, &friend, usize::MAX, false, &feed));
        let (scope, _) = owner.own_scopes().into_iter().next().unwrap();
        let inbox = Inbox::new(scope.clone(), friend.identity.device(), u64::MAX);
        Self {
            owner,
            friend,
            scope,
            inbox,
            counter: 0,
            _dirs: dirs,
        }
    }

    /// The owner writes `path`; the push for it, signed by `key` (the
    /// owner's device key unless another is given) and sealed with the
    /// scope's current key.
    fn push(&mut self, path: &Path, key: Option<&DeviceKey>) -> Vec<u8> {
        write(&self.owner, path, 2);
        self.seal_latest(None, key).1
    }

    /// The push for the owner's latest change, built as its publisher
    /// would with `since` (see [`publish::build`]), signed by `key` (the
    /// owner's device key unless another is given) and sealed with the
    /// scope's current key.
    fn seal_latest(
        &mut self,
        since: Option<Vec<ChangeHash>>,
        key: Option<&DeviceKey>,
    ) -> (Built, Vec<u8>) {
        let me = self.owner.namespace();
        let seq = self.owner.store.current_seq(&me).unwrap();
        let change = self
            .owner
            .store
            .changes_since(&me, seq - 1, 1)
            .unwrap()
            .remove(0);
        let built = build(&self.owner, &change.kind, since).unwrap();
        self.counter += 1;
        let body = PushBody {
            session: 7,
            counter: self.counter,
            kind: built.kind.clone(),
        };
        let key = key.unwrap_or(&self.owner.identity.device_key);
        let bytes = publish::seal(key, &self.scope, &body, MAX_MESSAGE, &mut rand::rng()).unwrap();
        (built, bytes)
    }

    fn receive(&mut self, bytes: &[u8]) -> Outcome {
        receive(&self.friend, &mut self.inbox, bytes)
    }

    /// Whether the friend holds `path` of the owner's namespace.
    fn holds(&self, path: &Path) -> bool {
        self.friend
            .store
            .get(&self.owner.namespace(), path)
            .unwrap()
            .is_some()
    }
}

/// Live receive's own check, with no gate in front of it: a push signed by
/// a device its namespace revoked is not applied, though it is sealed with
/// the scope's current key.
#[test]
fn a_push_from_a_revoked_device_is_not_applied() {
    let mut p = Pair::new();
    let first = Path::parse("/feed/live-1").unwrap();
    let bytes = p.push(&first, None);
    let outcome = p.receive(&bytes);
    assert!(!outcome.rejected && p.holds(&first), "{outcome:?}");

    // The owner's namespace revokes the device (the friend learns it in a
    // catch-up); the device still holds the scope key and pushes.
    crate::sim::learn_revocation(&p.friend, &p.owner);
    let second = Path::parse("/feed/live-2").unwrap();
    let bytes = p.push(&second, None);
    assert!(
        p.receive(&bytes).rejected,
        "a revoked device's push was accepted"
    );
    assert!(!p.holds(&second));
}

/// A device no certificate of the namespace names (here, a key made up by
/// someone who learnt the scope key) cannot write into it.
#[test]
fn a_push_from_an_unknown_device_is_not_applied() {
    let mut p = Pair::new();
    let stranger = DeviceKey::generate(&mut rand::rng());
    let path = Path::parse("/feed/forged").unwrap();
    let bytes = p.push(&path, Some(&stranger));
    assert!(
        p.receive(&bytes).rejected,
        "an unknown device's push was accepted"
    );
    assert!(!p.holds(&path));
}

/// A member of the scope holds its key, but is a reader: a push it signs
/// into the owner's namespace (as if the owner wrote it) is refused by the
/// other members.
#[test]
fn a_member_cannot_push_into_the_owners_namespace() {
    let mut p = Pair::new();
    let dir = tempfile::tempdir().unwrap();
    let other = node(dir.path());
    other.add_friend(&ticket(&p.owner)).unwrap();
    let mut inbox = Inbox::new(p.scope.clone(), other.identity.device(), u64::MAX);
    let path = Path::parse("/feed/by-a-reader").unwrap();
    let reader = p.friend.clone();
    let bytes = p.push(&path, Some(&reader.identity.device_key));
    assert!(
        receive(&other, &mut inbox, &bytes).rejected,
        "a reader's push into the owner's namespace was accepted"
    );
    assert!(
        other
            .store
            .get(&p.owner.namespace(), &path)
            .unwrap()
            .is_none()
    );
}

/// A push whose path lies outside the scope it was sealed for is dropped,
/// even from the owner's own device.
#[test]
fn a_push_outside_the_scope_is_not_applied() {
    let mut p = Pair::new();
    let path = Path::parse("/private/diary").unwrap();
    let bytes = p.push(&path, None);
    assert!(
        p.receive(&bytes).rejected,
        "a push outside /feed was accepted"
    );
    assert!(!p.holds(&path));
}

/// A push captured before a deletion and replayed after it brings nothing
/// back.
#[test]
fn a_replayed_push_after_a_tombstone_changes_nothing() {
    let mut p = Pair::new();
    let path = Path::parse("/feed/soon-gone").unwrap();
    let captured = p.push(&path, None);
    assert!(!p.receive(&captured).rejected);
    assert!(p.holds(&path));
    delete(&p.owner, path.clone());
    let (built, tombstone) = p.seal_latest(None, None);
    assert!(matches!(built.kind, PushKind::Tombstone { .. }));
    let outcome = p.receive(&tombstone);
    assert!(outcome.applied == 1 && outcome.sync, "{outcome:?}");
    assert!(!p.holds(&path));
    let outcome = p.receive(&captured);
    assert_eq!(outcome.applied, 0, "{outcome:?}");
    assert!(!p.holds(&path), "a replayed push brought deleted data back");
}

/// The messages that came with a key, received when the key is stored
/// (before the topic's listener started): applied with every check of a
/// gossip message, and the listener goes on with the same inbox, so the
/// next message follows in sequence and asks for no catch-up.
#[test]
fn messages_that_came_with_the_key_are_received_before_the_listener_starts() {
    let mut p = Pair::new();
    let topic = *p.scope.topic_id().as_bytes();
    let me = p.friend.identity.device();
    let (first, second, third) = (
        Path::parse("/feed/with-the-key-1").unwrap(),
        Path::parse("/feed/with-the-key-2").unwrap(),
        Path::parse("/feed/after-the-key").unwrap(),
    );
    let forged = Path::parse("/feed/forged").unwrap();
    let came = vec![p.push(&first, None), p.push(&second, None)];
    let next = p.push(&third, None);
    let stranger = DeviceKey::generate(&mut rand::rng());
    let forgery = p.push(&forged, Some(&stranger));
    let early = &p.friend.early;
    early.arrive([(topic, came), (topic, vec![forgery])]);
    let replica = FriendReplica(&p.friend);
    let now = Timestamp::wall_clock();
    assert_eq!(early.receive_now(&p.scope, me, &replica, now), 3);
    assert!(p.holds(&first) && p.holds(&second));
    assert!(
        !p.holds(&forged),
        "a forged message that came with the key was applied"
    );
    // Received once: nothing is left for a second call.
    assert_eq!(early.receive_now(&p.scope, me, &replica, now), 0);

    let (mut inbox, outcomes) = early.claim(&p.scope, me);
    assert!(early.take(&topic).is_empty());
    let applied: Vec<(u64, bool)> = outcomes.iter().map(|o| (o.applied, o.rejected)).collect();
    assert_eq!(applied, [(1, false), (1, false), (0, true)]);
    let outcome = receive(&p.friend, &mut inbox, &next);
    assert!(
        outcome.applied == 1 && !outcome.recover,
        "the listener's next message did not follow in sequence: {outcome:?}"
    );
    // A fresh inbox would have taken it for a gap.
    let mut fresh = Inbox::new(p.scope.clone(), me, u64::MAX);
    assert!(receive(&p.friend, &mut fresh, &next).recover);
}

/// Once the topic's listener runs, what comes with a key is left for it.
#[test]
fn messages_that_came_with_the_key_go_to_a_running_listener() {
    let mut p = Pair::new();
    let topic = *p.scope.topic_id().as_bytes();
    let me = p.friend.identity.device();
    let (_, outcomes) = p.friend.early.claim(&p.scope, me);
    assert!(outcomes.is_empty() && p.friend.early.take(&topic).is_empty());
    let path = Path::parse("/feed/for-the-listener").unwrap();
    let bytes = p.push(&path, None);
    p.friend.early.arrive([(topic, vec![bytes.clone()])]);
    let replica = FriendReplica(&p.friend);
    assert_eq!(
        p.friend
            .early
            .receive_now(&p.scope, me, &replica, Timestamp::wall_clock()),
        0
    );
    assert!(!p.holds(&path));
    assert_eq!(p.friend.early.take(&topic), [bytes]);
    assert!(p.friend.early.take(&topic).is_empty());
}

#[test]
fn live_push_converges_and_refuses_replays_under_loss() {
    for seed in 1..=10u64 {
        run(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), 3, 150);
    }
}

/// The same properties at the scale of a real scope: 50 members.
#[test]
fn live_push_converges_at_fifty_members() {
    run(0x5EED_0050, 50, 150);
}

/// A new document goes out whole, as the owner stored it (Automerge's
/// compressed document: smaller than its changes), and a later edit as its
/// changes since the heads published; the friend ends with the owner's
/// heads either way.
#[test]
fn a_new_document_is_pushed_as_stored_and_an_edit_as_its_changes() {
    use kith_store::automerge::ROOT;
    use kith_store::automerge::transaction::Transactable;

    let mut p = Pair::new();
    let me = p.owner.namespace();
    let path = Path::parse("/feed/long").unwrap();
    let deliver = |p: &mut Pair, text: String, since: Option<Vec<ChangeHash>>| {
        p.owner
            .store
            .edit_document(&me, &path, |d| d.put(ROOT, "text", text))
            .unwrap()
            .0
            .unwrap();
        let (built, bytes) = p.seal_latest(since, None);
        let outcome = p.receive(&bytes);
        assert!(outcome.applied == 1 && !outcome.recover, "{outcome:?}");
        let friend_heads = p.friend.store.heads(&me, &path).unwrap();
        assert_eq!(friend_heads, p.owner.store.heads(&me, &path).unwrap());
        built
    };
    // 1 KiB of text: enough for Automerge to compress the document.
    let text: String = (0..1024u32)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect();
    let first = deliver(&mut p, text.clone(), None);
    let PushKind::Doc { changes, .. } = &first.kind else {
        panic!("not a document push: {:?}", first.kind);
    };
    let stored = p.owner.store.document_bytes(&me, &path).unwrap();
    assert!(
        *changes == stored,
        "a new document did not go out as stored ({} bytes sent, {} stored)",
        changes.len(),
        stored.len()
    );
    let as_changes = p.owner.store.changes_for(&me, &path, &[]).unwrap();
    assert!(
        changes.len() < as_changes.len(),
        "the document ({} bytes) is not smaller than its changes ({} bytes)",
        changes.len(),
        as_changes.len()
    );

    let before = p.owner.store.heads(&me, &path).unwrap();
    let second = deliver(&mut p, format!("{text}!"), first.heads.clone());
    let PushKind::Doc { changes, .. } = &second.kind else {
        panic!("not a document push: {:?}", second.kind);
    };
    let edit = p.owner.store.changes_for(&me, &path, &before).unwrap();
    assert!(
        *changes == edit,
        "an edit did not go out as its changes ({} bytes sent, {} in the edit)",
        changes.len(),
        edit.len()
    );
}
