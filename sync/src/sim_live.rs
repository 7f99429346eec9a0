//! A seeded simulation of live push: one owner and several friends with
//! real stores, the real message building, sealing, verifying and applying
//! of [`crate::live`], the real [`Sequencer`], and catch-up through the real
//! state machines (as in [`crate::sim`]). The gossip layer is a lossy
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

use kith_caps::{CapId, ReadCap};
use kith_store::automerge::ChangeHash;
use kith_types::Path;
use parking_lot::Mutex;

use crate::live::{body_budget, build, receive, seal};
use crate::proto::push::{PushBody, PushKind, Sequencer};
use crate::sim::{Rng, delete, node, paths, sync, ticket, write};
use crate::state::Shared;

/// Gossip message size used by the simulation (the default).
const MAX_MESSAGE: usize = 4096;
/// Steps a member may hear nothing before it catches up (its silence
/// watchdog).
const SILENCE: u32 = 40;
/// Documents written under `/feed` (many are written only once, so a lost
/// message is not always followed by one that depends on it).
const PATHS: u64 = 30;

struct Member {
    shared: Arc<Shared>,
    sequencer: Mutex<Sequencer>,
    inbox: VecDeque<Vec<u8>>,
    offline: bool,
    quiet: u32,
    catch_ups: u32,
}

impl Member {
    /// Handles one received envelope, and catches up when asked to.
    fn handle(&mut self, owner: &Shared, scope: &kith_caps::Scope, bytes: &[u8]) {
        let outcome = receive(&self.shared, scope, &self.sequencer, bytes, u64::MAX);
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
    let mut members: Vec<Member> = Vec::new();
    for d in &dirs[1..] {
        let f = node(d.path());
        owner.add_friend(&ticket(&f)).unwrap();
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
        members.push(Member {
            shared: f,
            sequencer: Mutex::new(Sequencer::default()),
            inbox: VecDeque::new(),
            offline: false,
            quiet: 0,
            catch_ups: 0,
        });
    }
    // Joining: one catch-up each, which also hands over the scope.
    for m in &mut members {
        m.catch_up(&owner);
    }
    let (scope, _) = owner.own_scopes().into_iter().next().unwrap();
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
            if !m.inbox.is_empty() && rng.below(4) == 0 {
                let at = m.inbox.len() - 1;
                m.inbox.insert(at, bytes.clone());
            } else {
                m.inbox.push_back(bytes.clone());
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
                let bytes = seal(&owner, &scope, &body, MAX_MESSAGE).unwrap();
                broadcast(bytes, &mut members, &mut rng);
            }
            8 => {
                let i = rng.below(members.len() as u64) as usize;
                members[i].offline = !members[i].offline;
                members[i].inbox.clear();
            }
            9 if !captured.is_empty() => {
                // A stale or hostile peer replays an old envelope.
                let old = captured[rng.below(captured.len() as u64) as usize].clone();
                let i = rng.below(members.len() as u64) as usize;
                members[i].inbox.push_back(old);
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
            let Some((path, kind, heads, _)) =
                build(&owner, &change.kind, since, body_budget(MAX_MESSAGE)).unwrap()
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
            let bytes = seal(&owner, &scope, &body, MAX_MESSAGE).unwrap();
            captured.push(bytes.clone());
            broadcast(bytes, &mut members, &mut rng);
        }
        // Members handle some of what reached them; the silent ones catch up.
        for m in members.iter_mut().filter(|m| !m.offline) {
            let take = rng.below(m.inbox.len() as u64 + 1) as usize;
            if take == 0 {
                m.quiet += 1;
                if m.quiet >= SILENCE {
                    m.quiet = 0;
                    m.catch_up(&owner);
                }
            }
            for _ in 0..take {
                let bytes = m.inbox.pop_front().unwrap();
                m.handle(&owner, &scope, &bytes);
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
    let heartbeat = seal(&owner, &scope, &body, MAX_MESSAGE).unwrap();
    for m in &mut members {
        m.offline = false;
        m.inbox.push_back(heartbeat.clone());
        while let Some(bytes) = m.inbox.pop_front() {
            m.handle(&owner, &scope, &bytes);
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
            let _ = receive(&m.shared, &scope, &m.sequencer, bytes, u64::MAX);
        }
        assert_eq!(
            paths(&m.shared, &me),
            want,
            "seed {seed}: replayed envelopes changed what a friend holds"
        );
    }
}

/// Live receive's own check, with no gate in front of it: a push signed by
/// a device its namespace revoked is not applied, though it is sealed with
/// the scope's current key.
#[test]
fn a_push_from_a_revoked_device_is_not_applied() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (owner, friend) = crate::sim::friends_with_a_post(&dirs);
    let me = owner.namespace();
    let feed = [Path::parse("/feed").unwrap()];
    assert!(sync(&owner, &friend, usize::MAX, false, &feed));
    let (scope, _) = owner.own_scopes().into_iter().next().unwrap();
    let sequencer = Mutex::new(Sequencer::default());
    let mut counter = 0;
    let mut push = |path: &str| {
        let path = Path::parse(path).unwrap();
        write(&owner, &path, 2);
        let seq = owner.store.current_seq(&me).unwrap();
        let change = owner
            .store
            .changes_since(&me, seq - 1, 1)
            .unwrap()
            .remove(0);
        let (_, kind, _, _) = build(&owner, &change.kind, None, body_budget(MAX_MESSAGE))
            .unwrap()
            .unwrap();
        counter += 1;
        let body = PushBody {
            session: 7,
            counter,
            kind,
        };
        let bytes = seal(&owner, &scope, &body, MAX_MESSAGE).unwrap();
        (path, receive(&friend, &scope, &sequencer, &bytes, u64::MAX))
    };
    let (first, outcome) = push("/feed/live-1");
    assert!(!outcome.rejected && friend.store.get(&me, &first).unwrap().is_some());

    // The owner's namespace revokes the device (the friend learns it in a
    // catch-up); the device still holds the scope key and pushes.
    crate::sim::learn_revocation(&friend, &owner);
    let (second, outcome) = push("/feed/live-2");
    assert!(outcome.rejected, "a revoked device's push was accepted");
    assert!(friend.store.get(&me, &second).unwrap().is_none());
}

#[test]
fn live_push_converges_and_refuses_replays_under_loss() {
    for seed in 1..=10u64 {
        run(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), 3, 150);
    }
}
