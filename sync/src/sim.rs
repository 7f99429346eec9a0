//! A seeded simulation of catch-up: one owner and several friends, real
//! stores in temporary folders, the real [`Serve`] and [`Fetch`] state
//! machines, and an in-memory transport that can cut a sync short at any
//! message. No network, no clock-driven waiting: a run of a few hundred steps
//! takes well under a second per seed.
//!
//! Properties checked:
//! - **Safety, at every step:** the owner never sends an entry or document
//!   outside the requester's current grants, even to a friend that asks for
//!   more than it may read; a friend never holds a path of the owner's
//!   namespace outside the prefixes it was ever granted.
//! - **Convergence:** after every friend completes one uninterrupted sync,
//!   each holds exactly the owner's entries under its current grants (same
//!   document heads), and nothing the owner deleted.

use std::collections::BTreeSet;
use std::sync::Arc;

use kith_caps::{CapId, DeviceRevocation, ReadCap, Revocation, Tombstone, TombstoneId};
use kith_store::automerge::ROOT;
use kith_store::automerge::transaction::Transactable;
use kith_store::{RecordKind, RecordOp};
use kith_types::{NamespaceId, Path, Timestamp};

use crate::cache::{CacheSettings, FriendCache};
use crate::identity::Identity;
use crate::proto::fetch::Fetch;
use crate::proto::serve::{Output, Serve};
use crate::proto::wire::{Message, RefusalCode};
use crate::state::{FriendReplica, NoNetwork, OwnerSource, Shared};
use crate::ticket::Ticket;

/// A small deterministic generator.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

pub(crate) fn node(dir: &std::path::Path) -> Arc<Shared> {
    let identity = Identity::load_or_create(dir).unwrap();
    let store = kith_store::Store::open(
        dir.join("store"),
        kith_store::Options::new(identity.device()),
    )
    .unwrap();
    let everything = CacheSettings {
        budget: u64::MAX,
        max_age: None,
    };
    let cache = FriendCache::open(&store, &identity.namespace, everything, Vec::new()).unwrap();
    Arc::new(Shared::open(store, identity, cache, Arc::new(NoNetwork), 0).unwrap())
}

pub(crate) fn ticket(s: &Shared) -> Ticket {
    Ticket {
        namespace: s.namespace(),
        cert: s.identity.cert.clone(),
        addrs: Vec::new(),
        relays: Vec::new(),
    }
}

/// Runs one sync of `friend` with `owner`, delivering at most `budget`
/// messages (then the sync is cut short, as by a lost connection). A
/// `dishonest` friend rewrites its requests to ask for every prefix from the
/// start and for documents outside its grants. Every entry and document the
/// owner sends is checked against `granted`, the friend's valid caps now.
/// Returns whether the sync completed.
pub(crate) fn sync(
    owner: &Shared,
    friend: &Shared,
    budget: usize,
    dishonest: bool,
    granted: &[Path],
) -> bool {
    let now = Timestamp::wall_clock();
    let mut serve = Serve::new(friend.identity.device());
    let mut fetch = Fetch::new(
        owner.namespace(),
        friend.namespace(),
        owner.identity.device(),
    );
    let mut to_owner = vec![Fetch::hello(&friend.identity.cert, &[])];
    let mut delivered = 0;
    let covered = |p: &Path| granted.iter().any(|g| g.is_prefix_of(p));
    while !to_owner.is_empty() {
        let mut to_friend = Vec::new();
        for mut msg in std::mem::take(&mut to_owner) {
            delivered += 1;
            if delivered > budget {
                return false;
            }
            if dishonest {
                msg = match msg {
                    Message::Sync { .. } => Message::Sync {
                        cursors: PREFIXES
                            .iter()
                            .map(|p| (Path::parse(p).unwrap(), 0))
                            .collect(),
                    },
                    Message::WantDocs { mut items } => {
                        for p in PREFIXES {
                            items.push((Path::parse(&format!("{p}/0/0")).unwrap(), Vec::new()));
                        }
                        Message::WantDocs { items }
                    }
                    other => other,
                };
            }
            for out in serve.handle(msg, now, &OwnerSource(owner)).unwrap() {
                if let Output::Send(m) = out {
                    match &m {
                        Message::Entries { items } => {
                            for e in items {
                                assert!(
                                    covered(&e.path),
                                    "the owner sent entry {} outside {granted:?}",
                                    e.path
                                );
                            }
                        }
                        Message::Doc { path, .. } => {
                            assert!(
                                covered(path),
                                "the owner sent document {path} outside {granted:?}"
                            );
                        }
                        _ => {}
                    }
                    to_friend.push(m);
                }
            }
        }
        for msg in to_friend {
            delivered += 1;
            if delivered > budget {
                return false;
            }
            match fetch.handle(msg, now, &FriendReplica(friend)) {
                Ok(replies) => to_owner.extend(replies),
                // A dishonest friend's own state machine may be confused by
                // answers to requests it did not make; that ends its sync.
                Err(_) if dishonest => return false,
                Err(e) => panic!("honest sync failed: {e}"),
            }
        }
    }
    fetch.is_done()
}

pub(crate) fn paths(
    s: &Shared,
    ns: &NamespaceId,
) -> Vec<(Path, Option<Vec<kith_store::automerge::ChangeHash>>)> {
    s.store
        .list(ns, &Path::root(), None, 10_000)
        .unwrap()
        .entries
        .into_iter()
        .map(|(p, e)| (p, e.heads().map(<[_]>::to_vec)))
        .collect()
}

/// The owner writes `v` into the document at `path`.
pub(crate) fn write(owner: &Shared, path: &Path, v: i64) {
    owner
        .store
        .edit_document(&owner.namespace(), path, |d| d.put(ROOT, "v", v))
        .unwrap()
        .0
        .unwrap();
}

/// The owner deletes everything under `prefix` now, keeping the signed
/// tombstone for friends.
pub(crate) fn delete(owner: &Shared, prefix: Path) {
    let key = owner.identity.namespace_key.as_ref().unwrap();
    let me = owner.namespace();
    let t = Tombstone::issue(
        key,
        TombstoneId::random(&mut rand::rng()),
        prefix,
        owner.store.clock().now(),
    );
    let record = RecordOp::put(RecordKind::Tombstone, me, t.id().as_bytes(), &t.encode());
    owner
        .store
        .apply_tombstone(&me, t.prefix(), t.up_to(), &[record])
        .unwrap();
}

const PREFIXES: [&str; 3] = ["/feed", "/photos", "/private"];

fn run(seed: u64, friends: usize, steps: usize) {
    let dirs: Vec<_> = (0..=friends)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let owner = node(dirs[0].path());
    let friends: Vec<Arc<Shared>> = dirs[1..].iter().map(|d| node(d.path())).collect();
    for f in &friends {
        owner.add_friend(&ticket(f)).unwrap();
        f.add_friend(&ticket(&owner)).unwrap();
    }
    let key = owner.identity.namespace_key.as_ref().unwrap();
    let me = owner.namespace();
    let mut rng = Rng(seed | 1);
    // Per friend: caps currently valid, and prefixes ever granted.
    let mut current: Vec<Vec<ReadCap>> = vec![Vec::new(); friends.len()];
    let mut ever: Vec<BTreeSet<Path>> = vec![BTreeSet::new(); friends.len()];
    for step in 0..steps {
        match rng.below(10) {
            0 => {
                let f = rng.below(friends.len() as u64) as usize;
                let prefix = Path::parse(PREFIXES[rng.below(2) as usize]).unwrap();
                let cap = ReadCap::issue(
                    key,
                    CapId::random(&mut rand::rng()),
                    friends[f].namespace(),
                    prefix.clone(),
                    owner.store.clock().now(),
                    None,
                )
                .unwrap();
                owner.store_own_cap(&cap).unwrap();
                ever[f].insert(prefix);
                current[f].push(cap);
            }
            1 => {
                let f = rng.below(friends.len() as u64) as usize;
                if !current[f].is_empty() {
                    let i = rng.below(current[f].len() as u64) as usize;
                    let cap = current[f].remove(i);
                    let rev = Revocation::issue(key, cap.id(), owner.store.clock().now());
                    owner.store_own_revocation(&rev).unwrap();
                }
            }
            2 => {
                let prefix = Path::parse(PREFIXES[rng.below(3) as usize])
                    .unwrap()
                    .join(&format!("{}", rng.below(4)))
                    .unwrap();
                delete(&owner, prefix);
            }
            3..=6 => {
                let path = Path::parse(PREFIXES[rng.below(3) as usize])
                    .unwrap()
                    .join(&format!("{}", rng.below(4)))
                    .unwrap()
                    .join(&format!("{}", rng.below(3)))
                    .unwrap();
                write(&owner, &path, step as i64);
            }
            _ => {
                let f = rng.below(friends.len() as u64) as usize;
                let budget = if rng.below(3) == 0 {
                    rng.below(8) as usize
                } else {
                    usize::MAX
                };
                let dishonest = rng.below(4) == 0;
                let granted: Vec<Path> = current[f].iter().map(|c| c.prefix().clone()).collect();
                sync(&owner, &friends[f], budget, dishonest, &granted);
            }
        }
        // Safety: nothing outside what each friend was ever granted.
        for (f, friend) in friends.iter().enumerate() {
            for (path, _) in paths(friend, &me) {
                assert!(
                    ever[f].iter().any(|p| p.is_prefix_of(&path)),
                    "seed {seed} step {step}: friend {f} holds {path}, granted only {:?}",
                    ever[f]
                );
            }
        }
    }
    // Convergence: one complete sync each.
    let owner_entries = paths(&owner, &me);
    for (f, friend) in friends.iter().enumerate() {
        let granted_now: Vec<Path> = current[f].iter().map(|c| c.prefix().clone()).collect();
        assert!(
            sync(&owner, friend, usize::MAX, false, &granted_now),
            "seed {seed}: friend {f} could not complete a sync"
        );
        let held = paths(friend, &me);
        let granted: Vec<&Path> = current[f].iter().map(ReadCap::prefix).collect();
        let under = |p: &Path| granted.iter().any(|g| g.is_prefix_of(p));
        let want: Vec<_> = owner_entries
            .iter()
            .filter(|(p, _)| under(p))
            .cloned()
            .collect();
        let have: Vec<_> = held.iter().filter(|(p, _)| under(p)).cloned().collect();
        assert_eq!(
            have, want,
            "seed {seed}: friend {f} differs from the owner under {granted:?}"
        );
        // Nothing the owner deleted survives anywhere at the friend.
        for (path, _) in &held {
            if let Some(t) = owner.store.covering_tombstone(&me, path) {
                let entry = friend.store.get(&me, path).unwrap().unwrap();
                let created = match entry.kind {
                    kith_store::EntryKind::Document { created, .. } => created,
                    kith_store::EntryKind::Blob { .. } => entry.timestamp,
                };
                assert!(created > t, "seed {seed}: friend {f} kept deleted {path}");
            }
        }
    }
}

/// An owner and a friend (nodes in `dirs`) who befriended each other; the
/// friend may read `/feed`, where the owner wrote one document.
pub(crate) fn friends_with_a_post(dirs: &[tempfile::TempDir; 2]) -> (Arc<Shared>, Arc<Shared>) {
    let owner = node(dirs[0].path());
    let friend = node(dirs[1].path());
    owner.add_friend(&ticket(&friend)).unwrap();
    friend.add_friend(&ticket(&owner)).unwrap();
    let cap = ReadCap::issue(
        owner.identity.namespace_key.as_ref().unwrap(),
        CapId::random(&mut rand::rng()),
        friend.namespace(),
        Path::parse("/feed").unwrap(),
        owner.store.clock().now(),
        None,
    )
    .unwrap();
    owner.store_own_cap(&cap).unwrap();
    write(&owner, &Path::parse("/feed/post").unwrap(), 1);
    (owner, friend)
}

/// `of`'s namespace revokes `of`'s device (a lost phone), and `told`, a
/// friend of it, learns the revocation.
pub(crate) fn learn_revocation(told: &Shared, of: &Shared) {
    let revocation = DeviceRevocation::issue(
        of.identity.namespace_key.as_ref().unwrap(),
        of.identity.device(),
        of.store.clock().now(),
    );
    told.known
        .write()
        .friends
        .get_mut(&of.namespace())
        .unwrap()
        .device_revocations
        .push(revocation);
}

/// The first message of a serving session: the owner's answer to `friend`'s
/// Hello.
fn answer_to_hello(owner: &Shared, friend: &Shared) -> Vec<Message> {
    let mut serve = Serve::new(friend.identity.device());
    serve
        .handle(
            Fetch::hello(&friend.identity.cert, &[]),
            Timestamp::wall_clock(),
            &OwnerSource(owner),
        )
        .unwrap()
        .into_iter()
        .filter_map(|out| match out {
            Output::Send(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// The serving side's own check, with no gate in front of it: a device its
/// namespace revoked is refused at Hello.
#[test]
fn a_requester_whose_namespace_revoked_it_is_refused_at_hello() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (owner, friend) = friends_with_a_post(&dirs);
    let welcomed = |msgs: &[Message]| msgs.iter().any(|m| matches!(m, Message::Welcome { .. }));
    assert!(
        welcomed(&answer_to_hello(&owner, &friend)),
        "the friend is served"
    );

    // The friend's namespace revokes the device; the owner learns it.
    learn_revocation(&owner, &friend);
    let answer = answer_to_hello(&owner, &friend);
    assert!(
        !welcomed(&answer),
        "a revoked device was welcomed: {answer:?}"
    );
    assert!(
        answer.iter().any(|m| matches!(
            m,
            Message::Refused {
                code: RefusalCode::BadCertificate,
                ..
            }
        )),
        "no refusal: {answer:?}"
    );
}

/// The fetching side's own check, whatever the device choice: a server its
/// namespace revoked is not believed, even when it does not list its own
/// revocation.
#[test]
fn a_server_whose_namespace_revoked_it_is_not_believed() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (owner, friend) = friends_with_a_post(&dirs);
    let now = Timestamp::wall_clock();
    let fetch = || {
        Fetch::new(
            owner.namespace(),
            friend.namespace(),
            owner.identity.device(),
        )
    };
    // The owner's device does not know it was revoked: its Welcome says
    // nothing of it.
    let welcome = answer_to_hello(&owner, &friend);
    let believed = |fetch: &mut Fetch| {
        welcome
            .iter()
            .map(|m| fetch.handle(m.clone(), now, &FriendReplica(&friend)))
            .collect::<Result<Vec<_>, _>>()
    };
    if let Err(e) = believed(&mut fetch()) {
        panic!("the friend does not accept its owner's Welcome: {e}");
    }
    learn_revocation(&friend, &owner);
    assert!(
        believed(&mut fetch()).is_err(),
        "the friend believed a revoked server"
    );
}

#[test]
fn catch_up_is_safe_and_converges_under_interruptions() {
    for seed in 1..=12u64 {
        run(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), 4, 120);
    }
}

/// A deletion is confirmed when a device's first receipt arrives; a second
/// receipt of the same device (crossing a re-delivery) does not move it.
#[test]
fn the_first_receipt_of_a_device_stands() {
    use crate::proto::serve::Source;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (owner, friend) = friends_with_a_post(&dirs);
    let me = owner.namespace();
    delete(&owner, Path::parse("/feed/post").unwrap());
    let (_, bytes) = owner
        .store
        .records(RecordKind::Tombstone, &me)
        .unwrap()
        .remove(0);
    let id = Tombstone::decode(&bytes).unwrap().id();
    let receipt = |at: u64| {
        kith_caps::Receipt::issue(
            &friend.identity.device_key,
            friend.namespace(),
            id,
            Timestamp::from_micros(at),
        )
    };
    let first = receipt(1_000);
    assert!(OwnerSource(&owner).store_receipt(&first).unwrap());
    assert!(OwnerSource(&owner).store_receipt(&receipt(2_000)).unwrap());
    let stored: Vec<_> = owner
        .store
        .records(RecordKind::Receipt, &me)
        .unwrap()
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(stored, vec![first.encode()]);
}

/// A friend whose every grant was revoked is told, once, that it belongs to
/// none of the owner's scopes, and drops the scope it held (before, it kept
/// listening on an abandoned topic and catching up at every silence).
#[test]
fn a_friend_removed_from_every_scope_drops_what_it_held() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (owner, friend) = friends_with_a_post(&dirs);
    let me = owner.namespace();
    let feed = [Path::parse("/feed").unwrap()];
    assert!(sync(&owner, &friend, usize::MAX, false, &feed));
    assert_eq!(friend.scopes.read().of(&me).len(), 1);
    let key = owner.identity.namespace_key.as_ref().unwrap();
    let cap = owner.known.read().grants.caps()[0].clone();
    let rev = Revocation::issue(key, cap.id(), owner.store.clock().now());
    owner.store_own_revocation(&rev).unwrap();
    assert!(owner.own_scopes().is_empty());
    assert!(sync(&owner, &friend, usize::MAX, false, &[]));
    assert!(
        friend.scopes.read().of(&me).is_empty(),
        "the friend kept a scope it was removed from"
    );
    // Said once: the next catch-up carries no Scopes at all.
    let answer = answer_to_hello(&owner, &friend);
    assert!(!answer.iter().any(|m| matches!(m, Message::Scopes { .. })));
}

/// An owner's device hands over where its devices are; a requester keeps
/// the addresses of the devices the owner certified, never those of
/// another namespace's device (a hostile owner steering where its friends
/// dial a third person), and learns where the serving device is.
#[test]
fn handed_over_addresses_are_kept_only_for_the_owners_devices() {
    use crate::proto::addr::Addr;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let third = tempfile::tempdir().unwrap();
    let (owner, friend) = friends_with_a_post(&dirs);
    // A third person, friend of the requester too.
    let carol = node(third.path());
    friend.add_friend(&ticket(&carol)).unwrap();
    let here = Addr::Ip("192.0.2.10:4433".parse().unwrap());
    owner.set_here(vec![here.clone()]);
    let mut welcome = answer_to_hello(&owner, &friend);
    assert!(
        welcome
            .iter()
            .any(|m| matches!(m, Message::Addresses { .. })),
        "no addresses handed over: {welcome:?}"
    );
    // The owner's device also claims to know where carol's device is.
    let fake = Addr::Ip("203.0.113.66:4433".parse().unwrap());
    welcome.push(Message::Addresses {
        devices: vec![(carol.identity.device(), vec![fake.clone()])],
    });
    let mut fetch = Fetch::new(
        owner.namespace(),
        friend.namespace(),
        owner.identity.device(),
    );
    for m in welcome {
        fetch
            .handle(m, Timestamp::wall_clock(), &FriendReplica(&friend))
            .unwrap();
    }
    let learnt = friend.known.read().learnt.clone();
    assert_eq!(
        learnt.get(&owner.identity.device()),
        Some(&vec![here]),
        "the serving device's own address is learnt"
    );
    assert!(
        !learnt
            .get(&carol.identity.device())
            .is_some_and(|a| a.contains(&fake)),
        "a device of another namespace took addresses from this owner"
    );
    // And what is learnt is what the node dials first.
    let (_, dialed) = friend.device_addrs(&owner.identity.device()).unwrap();
    assert_eq!(
        dialed.first(),
        Some(&Addr::Ip("192.0.2.10:4433".parse().unwrap()))
    );
}
