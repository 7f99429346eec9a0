//! Decisions: `may_read` (table-driven over every deny reason and the
//! prefix edge cases, and the index agreeing with the linear rule),
//! `may_write`/`may_act`, scopes and grantees, tombstone validity and
//! coverage, receipts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::OnceLock;

use common::*;
use kith_caps::{
    CapId, Decision, DenyReason, DeviceCert, DeviceDecision, DeviceDenyReason, DeviceKey,
    DeviceRevocation, Error, Grants, MAX_CLOCK_SKEW_MICROS, NamespaceId, NamespaceKey, ReadCap,
    Receipt, Revocation, Rights, Scope, ScopeSecret, Tombstone, TombstoneId, deleted_by,
    grantees_of_scope, may_act, may_read, may_write, scopes_covering, tombstone_validity,
};
use kith_types::{Path, Timestamp};
use proptest::prelude::*;

fn person(n: u8) -> NamespaceKey {
    NamespaceKey::from_bytes([n; 32])
}

fn cap(id: u8, grantee: u8, prefix: &str, from: u64, until: Option<u64>) -> ReadCap {
    ReadCap::issue(
        &alice(),
        CapId::from_bytes([id; 16]),
        person(grantee).id(),
        p(prefix),
        t(from),
        until.map(t),
    )
    .unwrap()
}

const BOB: u8 = 0x22;
const CAROL: u8 = 0x23;
const DAVE: u8 = 0x24;
const EVE: u8 = 0x25;
const FRANK: u8 = 0x26;
const GINA: u8 = 0x27;
const HANK: u8 = 0x28;
const IVAN: u8 = 0x29;
const JACK: u8 = 0x2a;
const KATE: u8 = 0x2b;
const HENRY: u8 = 0x2c;
const ZED: u8 = 0x2f;
const MALLORY: u8 = 0x66;

/// Alice's caps and revocations, plus some of Mallory's that must be
/// ignored when deciding about Alice's namespace.
fn world() -> (Vec<ReadCap>, Vec<Revocation>) {
    let mallory = person(MALLORY);
    let caps = vec![
        cap(1, BOB, "/photos", 100, None),
        cap(2, CAROL, "/", 100, Some(1_000)),
        cap(3, DAVE, "/posts/42", 100, None),
        cap(4, EVE, "/photos", 100, Some(200)),
        cap(5, FRANK, "/photos", 5_000, None),
        cap(6, GINA, "/photos", 100, None),
        // Hank: every way to be refused on /a, at once.
        cap(7, HANK, "/a", 100, Some(200)),
        cap(8, HANK, "/a", 100, None),
        cap(9, HANK, "/a", 9_000, None),
        // Ivan: revoked and expired.
        cap(10, IVAN, "/a", 100, None),
        cap(11, IVAN, "/a", 100, Some(300)),
        // Jack: a revoked cap and a valid narrower one.
        cap(12, JACK, "/a", 100, None),
        cap(13, JACK, "/a/b", 100, None),
        // Kate: the root and /photos; the longer prefix is reported.
        cap(14, KATE, "/", 100, None),
        cap(15, KATE, "/photos", 100, None),
        // Mallory's namespace grants Bob /secret and Henry everything: not
        // Alice's caps.
        ReadCap::issue(
            &mallory,
            CapId::from_bytes([16; 16]),
            person(BOB).id(),
            p("/secret"),
            t(0),
            None,
        )
        .unwrap(),
        ReadCap::issue(
            &mallory,
            CapId::from_bytes([17; 16]),
            person(HENRY).id(),
            p("/"),
            t(0),
            None,
        )
        .unwrap(),
    ];
    let revocations = vec![
        Revocation::issue(&alice(), CapId::from_bytes([6; 16]), t(150)),
        Revocation::issue(&alice(), CapId::from_bytes([8; 16]), t(150)),
        Revocation::issue(&alice(), CapId::from_bytes([10; 16]), t(150)),
        Revocation::issue(&alice(), CapId::from_bytes([12; 16]), t(150)),
        // Mallory "revokes" Bob's cap id: not her cap, no effect.
        Revocation::issue(&mallory, CapId::from_bytes([1; 16]), t(150)),
    ];
    (caps, revocations)
}

enum Want {
    Allow(u8),
    Deny(DenyReason),
}

#[test]
fn may_read_table() {
    use DenyReason::*;
    use Want::{Allow, Deny};
    let rows: Vec<(&str, u8, u64, Want)> = vec![
        // Component-wise prefixes.
        ("/photos", BOB, 500, Allow(1)),
        ("/photos/a/b.jpg", BOB, 500, Allow(1)),
        ("/photosecret", BOB, 500, Deny(PrefixDoesNotCover)),
        ("/photosecret/x", BOB, 500, Deny(PrefixDoesNotCover)),
        ("/photo", BOB, 500, Deny(PrefixDoesNotCover)),
        ("/", BOB, 500, Deny(PrefixDoesNotCover)),
        ("/PHOTOS/a", BOB, 500, Deny(PrefixDoesNotCover)),
        // A cap with no expiry stays valid.
        ("/photos/a", BOB, u64::MAX, Allow(1)),
        // The root prefix covers everything, the root itself included.
        ("/", CAROL, 500, Allow(2)),
        ("/anything/at/all", CAROL, 500, Allow(2)),
        // Validity window: issued_at inclusive, expires_at exclusive.
        ("/x", CAROL, 100, Allow(2)),
        ("/x", CAROL, 99, Deny(NotYetValid)),
        ("/x", CAROL, 999, Allow(2)),
        ("/x", CAROL, 1_000, Deny(Expired)),
        // An exact path as prefix.
        ("/posts/42", DAVE, 500, Allow(3)),
        ("/posts/42/comments/1", DAVE, 500, Allow(3)),
        ("/posts/4", DAVE, 500, Deny(PrefixDoesNotCover)),
        ("/posts/420", DAVE, 500, Deny(PrefixDoesNotCover)),
        ("/posts", DAVE, 500, Deny(PrefixDoesNotCover)),
        // One reason each.
        ("/photos/a", EVE, 500, Deny(Expired)),
        ("/photos/a", FRANK, 500, Deny(NotYetValid)),
        ("/photos/a", FRANK, 5_000, Allow(5)),
        ("/photos/a", GINA, 500, Deny(Revoked)),
        ("/photos/a", ZED, 500, Deny(NoCap)),
        // Precedence among several refusing caps.
        ("/a/x", HANK, 500, Deny(NotYetValid)),
        ("/a/x", IVAN, 500, Deny(Expired)),
        ("/a/x", IVAN, 200, Allow(11)),
        ("/b", HANK, 500, Deny(PrefixDoesNotCover)),
        // A valid cap wins over a revoked one; the longest valid prefix is named.
        ("/a/b/c", JACK, 500, Allow(13)),
        ("/a/x", JACK, 500, Deny(Revoked)),
        ("/photos/x", KATE, 500, Allow(15)),
        ("/posts/x", KATE, 500, Allow(14)),
        // Another namespace's caps and revocations count for nothing here.
        ("/secret", BOB, 500, Deny(PrefixDoesNotCover)),
        ("/secret", HENRY, 500, Deny(NoCap)),
    ];
    let (caps, revocations) = world();
    let alice_ns = alice().id();
    let grants = Grants::new(alice_ns, caps.clone(), revocations.clone());
    assert_eq!(grants.len(), 15, "Mallory's caps are left out of the index");
    for (path, who, now, want) in rows {
        let path = p(path);
        let who = person(who).id();
        let now = t(now);
        let linear = may_read(&alice_ns, &path, &who, &caps, &revocations, now);
        let indexed = grants.may_read(&path, &who, now);
        let context = format!("{path} for {who:?} at {now}");
        match want {
            Want::Allow(id) => {
                let want_id = CapId::from_bytes([id; 16]);
                assert_eq!(
                    linear.cap().map(ReadCap::id),
                    Some(want_id),
                    "linear: {context}"
                );
                assert_eq!(
                    indexed.cap().map(ReadCap::id),
                    Some(want_id),
                    "index: {context}"
                );
                assert!(indexed.is_allowed());
            }
            Want::Deny(reason) => {
                assert_eq!(linear, Decision::Deny(reason), "linear: {context}");
                assert_eq!(indexed, Decision::Deny(reason), "index: {context}");
                assert!(indexed.cap().is_none());
            }
        }
    }
}

#[test]
fn grants_use_the_hash_index_for_grantees_with_many_prefixes() {
    // More prefixes than the path has ancestors: the index looks up
    // ancestors by hash instead of scanning prefixes.
    let mut caps: Vec<ReadCap> = (0..12)
        .map(|i| cap(100 + i, BOB, &format!("/p{i}"), 100, None))
        .collect();
    caps.push(cap(120, BOB, "/p3/deep", 100, Some(200)));
    let grants = Grants::new(alice().id(), caps.clone(), []);
    let bob = person(BOB).id();
    for path in ["/p3", "/p3/x", "/p3/deep/x", "/p11/y", "/p12", "/p", "/"] {
        let path = p(path);
        assert_eq!(
            grants.may_read(&path, &bob, t(500)),
            may_read(&alice().id(), &path, &bob, &caps, &[], t(500)),
            "{path}"
        );
    }
    assert_eq!(
        grants
            .may_read(&p("/p3/deep/x"), &bob, t(500))
            .cap()
            .map(ReadCap::id),
        Some(CapId::from_bytes([103; 16]))
    );
    assert_eq!(
        grants.may_read(&p("/p12"), &bob, t(500)),
        Decision::Deny(DenyReason::PrefixDoesNotCover)
    );
}

#[test]
fn grants_update_incrementally() {
    let alice_ns = alice().id();
    let bob = person(BOB).id();
    let mut grants = Grants::new(alice_ns, [], []);
    assert!(grants.is_empty());
    let c = cap(1, BOB, "/photos", 100, None);
    grants.insert(c.clone());
    grants.insert(c.clone());
    assert_eq!(grants.len(), 1, "a duplicate cap is not added twice");
    assert!(grants.may_read(&p("/photos/x"), &bob, t(500)).is_allowed());
    grants.revoke(&Revocation::issue(&person(MALLORY), c.id(), t(600)));
    assert!(grants.may_read(&p("/photos/x"), &bob, t(500)).is_allowed());
    grants.revoke(&Revocation::issue(&alice(), c.id(), t(600)));
    assert!(grants.is_revoked(&c.id()));
    assert_eq!(
        grants.may_read(&p("/photos/x"), &bob, t(500)),
        Decision::Deny(DenyReason::Revoked)
    );
    // A revocation that arrives before its cap still applies.
    let c2 = cap(2, BOB, "/docs", 100, None);
    grants.revoke(&Revocation::issue(&alice(), c2.id(), t(600)));
    grants.insert(c2);
    assert_eq!(
        grants.may_read(&p("/docs/x"), &bob, t(500)),
        Decision::Deny(DenyReason::Revoked)
    );
    assert_eq!(grants.namespace(), alice_ns);
    assert_eq!(grants.caps().len(), 2);
}

/// A pool of caps and revocations signed once (signing is slow in debug
/// builds), from which the property test picks.
fn pool() -> &'static (Vec<ReadCap>, Vec<Revocation>) {
    static POOL: OnceLock<(Vec<ReadCap>, Vec<Revocation>)> = OnceLock::new();
    POOL.get_or_init(|| {
        let prefixes = ["/", "/a", "/a/b", "/ab", "/a/b/c", "/b", "/c", "/d", "/e"];
        let windows = [(0, None), (100, Some(200)), (300, None), (0, Some(1_000))];
        let mut caps = Vec::new();
        let mut i = 0u8;
        for (g, grantee) in [BOB, CAROL, DAVE].into_iter().enumerate() {
            for (k, prefix) in prefixes.iter().enumerate() {
                // Bob gets every prefix (hash lookups), the others a few.
                if g > 0 && k % (g + 2) != 0 {
                    continue;
                }
                let (from, until) = windows[(k + g) % windows.len()];
                caps.push(cap(i, grantee, prefix, from, until));
                i += 1;
            }
        }
        let revocations = caps
            .iter()
            .map(|c| Revocation::issue(&alice(), c.id(), t(50)))
            .collect();
        (caps, revocations)
    })
}

fn simple_path() -> impl Strategy<Value = Path> {
    prop::collection::vec(prop_oneof!["a", "b", "ab", "c", "z"], 0..5)
        .prop_map(|cs| Path::from_components(cs).unwrap())
}

proptest! {
    #[test]
    fn index_agrees_with_the_linear_rule(
        cap_mask in any::<u32>(),
        revoked_mask in any::<u32>(),
        path in simple_path(),
        who in prop_oneof![Just(BOB), Just(CAROL), Just(DAVE), Just(ZED)],
        now in prop_oneof![Just(0u64), Just(150), Just(250), Just(500), Just(2_000)],
    ) {
        let (all_caps, all_revs) = pool();
        let caps: Vec<ReadCap> = all_caps.iter().enumerate()
            .filter(|(i, _)| cap_mask >> (i % 32) & 1 == 1)
            .map(|(_, c)| c.clone())
            .collect();
        let revs: Vec<Revocation> = all_revs.iter().enumerate()
            .filter(|(i, _)| revoked_mask >> (i % 32) & 1 == 1)
            .map(|(_, r)| r.clone())
            .collect();
        let alice_ns = alice().id();
        let who = person(who).id();
        let linear = may_read(&alice_ns, &path, &who, &caps, &revs, t(now));
        let grants = Grants::new(alice_ns, caps.clone(), revs.clone());
        let indexed = grants.may_read(&path, &who, t(now));
        prop_assert_eq!(linear, indexed);
        if let Decision::Allow(c) = indexed {
            prop_assert!(c.covers(&path));
            prop_assert_eq!(c.grantee(), who);
            prop_assert!(c.check_time(t(now)).is_ok());
            prop_assert!(!revs.iter().any(|r| r.revokes(c)));
        }
        // Grantees of each scope agree too.
        for prefix in grants.granted_prefixes(t(now)) {
            prop_assert_eq!(
                grants.grantees_of_scope(&prefix, t(now)),
                grantees_of_scope(&alice_ns, &prefix, &caps, &revs, t(now))
            );
        }
    }
}

#[test]
fn scopes_and_their_grantees() {
    let (caps, revocations) = world();
    let alice_ns = alice().id();
    let grants = Grants::new(alice_ns, caps.clone(), revocations.clone());
    let now = t(500);
    let photos: BTreeSet<NamespaceId> = [BOB, KATE].map(|g| person(g).id()).into();
    assert_eq!(grants.grantees_of_scope(&p("/photos"), now), photos);
    assert_eq!(
        grantees_of_scope(&alice_ns, &p("/photos"), &caps, &revocations, now),
        photos
    );
    // Carol's root cap puts her in the root scope only, and only until it
    // expires.
    let root: BTreeSet<NamespaceId> = [CAROL, KATE].map(|g| person(g).id()).into();
    assert_eq!(grants.grantees_of_scope(&Path::root(), now), root);
    let later: BTreeSet<NamespaceId> = [KATE].map(|g| person(g).id()).into();
    assert_eq!(grants.grantees_of_scope(&Path::root(), t(1_000)), later);
    assert!(grants.grantees_of_scope(&p("/nothing"), now).is_empty());
    let prefixes = grants.granted_prefixes(now);
    assert!(prefixes.contains(&p("/photos")) && prefixes.contains(&p("/a/b")));
    assert!(!prefixes.contains(&p("/photosecret")));

    let mut rng = rand::rng();
    let scopes = [
        Scope::generate(alice_ns, Path::root(), &mut rng),
        Scope::generate(alice_ns, p("/photos"), &mut rng),
        Scope::generate(alice_ns, p("/photos/2024"), &mut rng),
        Scope::generate(alice_ns, p("/posts"), &mut rng),
        Scope::generate(person(MALLORY).id(), Path::root(), &mut rng),
    ];
    let covering = |path: &str| -> Vec<String> {
        scopes_covering(&alice_ns, &p(path), &scopes)
            .into_iter()
            .map(|s| s.prefix().to_string())
            .collect()
    };
    assert_eq!(covering("/photos/2024/x"), ["/", "/photos", "/photos/2024"]);
    assert_eq!(covering("/photosecret"), ["/"]);
    assert_eq!(covering("/posts"), ["/", "/posts"]);
}

fn dev(n: u8) -> DeviceKey {
    DeviceKey::from_bytes([n; 32])
}

#[test]
fn may_write_and_may_act_table() {
    use DeviceDenyReason::*;
    let alice_ns = alice().id();
    let cert = |n: u8, rights: Rights, from: u64, until: Option<u64>| {
        DeviceCert::issue(&alice(), dev(n).id(), rights, t(from), until.map(t)).unwrap()
    };
    let certs = vec![
        cert(1, Rights::WRITE | Rights::SERVE, 100, None),
        cert(2, Rights::SERVE, 100, None),
        cert(3, Rights::WRITE, 100, Some(200)),
        cert(4, Rights::WRITE, 1_000, None),
        cert(5, Rights::WRITE, 100, None),
        // Device 6 was revoked at 300 and certified again at 400.
        cert(6, Rights::WRITE, 100, None),
        cert(6, Rights::WRITE, 400, None),
        // Mallory certifies device 7 for her namespace, not Alice's.
        DeviceCert::issue(&person(MALLORY), dev(7).id(), Rights::ALL, t(0), None).unwrap(),
        // Device 8: revoked at 150, and its newer cert lacks the right.
        cert(8, Rights::WRITE, 100, None),
        cert(8, Rights::NONE, 200, None),
    ];
    let revocations = vec![
        DeviceRevocation::issue(&alice(), dev(5).id(), t(300)),
        DeviceRevocation::issue(&alice(), dev(6).id(), t(300)),
        DeviceRevocation::issue(&alice(), dev(8).id(), t(150)),
        // Mallory cannot revoke Alice's device.
        DeviceRevocation::issue(&person(MALLORY), dev(1).id(), t(300)),
    ];
    let rows: Vec<(u8, u64, Result<Timestamp, DeviceDenyReason>)> = vec![
        (1, 500, Ok(t(100))),
        (1, 100, Ok(t(100))),
        (1, 99, Err(NotYetValid)),
        (2, 500, Err(MissingRight)),
        (3, 150, Ok(t(100))),
        (3, 200, Err(Expired)),
        (4, 500, Err(NotYetValid)),
        (5, 500, Err(Revoked)),
        (5, 200, Err(Revoked)),
        (6, 500, Ok(t(400))),
        (6, 350, Err(NotYetValid)),
        (7, 500, Err(NoCert)),
        (8, 500, Err(MissingRight)),
        (9, 500, Err(NoCert)),
    ];
    for (n, now, want) in rows {
        let got = may_write(&alice_ns, &dev(n).id(), &certs, &revocations, t(now));
        match want {
            Ok(issued) => {
                assert!(got.is_allowed(), "device {n} at {now}: {got:?}");
                assert_eq!(got.cert().map(DeviceCert::issued_at), Some(issued));
            }
            Err(reason) => assert_eq!(got, DeviceDecision::Deny(reason), "device {n} at {now}"),
        }
    }
    // Serving needs the serve right.
    let serve = |n| {
        may_act(
            &alice_ns,
            &dev(n).id(),
            Rights::SERVE,
            &certs,
            &revocations,
            t(500),
        )
    };
    assert!(serve(1).is_allowed());
    assert!(serve(2).is_allowed());
    assert_eq!(serve(6), DeviceDecision::Deny(MissingRight));
    assert!(
        may_act(
            &alice_ns,
            &dev(2).id(),
            Rights::NONE,
            &certs,
            &revocations,
            t(500)
        )
        .is_allowed()
    );
}

#[test]
fn tombstone_validity_and_coverage() {
    let alice_ns = alice().id();
    let now = t(10_000);
    let id = TombstoneId::from_bytes([1; 16]);
    let by_owner = Tombstone::issue(&alice(), id, p("/photos"), t(4_000));
    tombstone_validity(&by_owner, &[], now).unwrap();

    // By a device with a write cert valid at the tombstone's time.
    let phone_cert = device_cert(); // valid from 1_000, write + serve
    let by_phone = Tombstone::issue_by_device(
        &alice_phone(),
        phone_cert.clone(),
        id,
        p("/photos"),
        t(4_000),
    )
    .unwrap();
    tombstone_validity(&by_phone, &[], now).unwrap();
    // ... not once the device is revoked, whatever the tombstone's date.
    let revoked = DeviceRevocation::issue(&alice(), alice_phone().id(), t(9_000));
    assert!(matches!(
        tombstone_validity(&by_phone, &[revoked], now),
        Err(Error::Revoked { .. })
    ));
    // ... a revocation of another namespace does nothing.
    let foreign = DeviceRevocation::issue(&person(MALLORY), alice_phone().id(), t(9_000));
    tombstone_validity(&by_phone, &[foreign], now).unwrap();
    // Dated before its cert, or after the cert expired.
    let early = Tombstone::issue_by_device(&alice_phone(), phone_cert.clone(), id, p("/x"), t(999))
        .unwrap();
    assert!(matches!(
        tombstone_validity(&early, &[], now),
        Err(Error::NotYetValid { .. })
    ));
    let short_cert = DeviceCert::issue(
        &alice(),
        alice_phone().id(),
        Rights::WRITE,
        t(0),
        Some(t(5_000)),
    )
    .unwrap();
    let late =
        Tombstone::issue_by_device(&alice_phone(), short_cert, id, p("/x"), t(6_000)).unwrap();
    assert!(matches!(
        tombstone_validity(&late, &[], now),
        Err(Error::Expired { .. })
    ));

    // Dated in the future: tolerated within the clock skew only.
    let soon = Tombstone::issue(&alice(), id, p("/x"), t(10_000 + MAX_CLOCK_SKEW_MICROS));
    tombstone_validity(&soon, &[], now).unwrap();
    let far = Tombstone::issue(&alice(), id, p("/x"), t(10_001 + MAX_CLOCK_SKEW_MICROS));
    assert!(matches!(
        tombstone_validity(&far, &[], now),
        Err(Error::NotYetValid { .. })
    ));

    // A device cannot sign with someone else's cert, or without the right.
    assert!(matches!(
        Tombstone::issue_by_device(&bob_laptop(), phone_cert.clone(), id, p("/x"), t(4_000)),
        Err(Error::Unauthorized { .. })
    ));
    let reader_cert =
        DeviceCert::issue(&alice(), alice_phone().id(), Rights::SERVE, t(0), None).unwrap();
    assert!(matches!(
        Tombstone::issue_by_device(&alice_phone(), reader_cert, id, p("/x"), t(4_000)),
        Err(Error::Unauthorized { .. })
    ));

    // Coverage: component-wise, at or before the time, same namespace.
    assert!(by_owner.covers(&alice_ns, &p("/photos"), t(4_000)));
    assert!(by_owner.covers(&alice_ns, &p("/photos/a/b"), t(0)));
    assert!(!by_owner.covers(&alice_ns, &p("/photos/a"), t(4_001)));
    assert!(!by_owner.covers(&alice_ns, &p("/photosecret"), t(1)));
    assert!(!by_owner.covers(&alice_ns, &p("/"), t(1)));
    assert!(!by_owner.covers(&bob().id(), &p("/photos/a"), t(1)));
    assert!(by_owner.covers_path(&p("/photos/z")));
    let root = Tombstone::issue(
        &alice(),
        TombstoneId::from_bytes([2; 16]),
        Path::root(),
        t(100),
    );
    let all = [by_owner.clone(), root.clone()];
    assert_eq!(
        deleted_by(&alice_ns, &p("/photos/a"), t(3_000), &all),
        Some(&by_owner)
    );
    assert_eq!(
        deleted_by(&alice_ns, &p("/posts/a"), t(50), &all),
        Some(&root)
    );
    assert_eq!(deleted_by(&alice_ns, &p("/posts/a"), t(3_000), &all), None);
}

/// Re-signs `body` (an encoding without its signature) with a raw key and a
/// domain tag, the way the crate does, to build objects the API refuses to
/// make.
fn resign(seed: [u8; 32], domain: &str, body: &[u8]) -> Vec<u8> {
    use ed25519_dalek::Signer;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let mut msg = domain.as_bytes().to_vec();
    msg.push(0);
    msg.extend_from_slice(body);
    let mut out = body.to_vec();
    out.extend_from_slice(&key.sign(&msg).to_bytes());
    out
}

#[test]
fn tombstones_signed_by_devices_without_authority_are_refused() {
    let id = TombstoneId::from_bytes([3; 16]);
    // A properly signed tombstone whose embedded cert lacks the write
    // right, built by hand (the API refuses to).
    let reader_cert =
        DeviceCert::issue(&alice(), alice_phone().id(), Rights::SERVE, t(0), None).unwrap();
    let template = device_tombstone();
    let mut body = template.encode();
    body.truncate(body.len() - 64);
    let old_cert = device_cert().encode();
    let new_cert = reader_cert.encode();
    assert_eq!(
        old_cert.len(),
        new_cert.len() + 8,
        "the template cert has an expiry"
    );
    // Rebuild the body: header up to the signer tag, then the new cert.
    let header_len = body.len() - old_cert.len() - 2;
    let mut forged = body[..header_len].to_vec();
    forged.extend_from_slice(&u16::try_from(new_cert.len()).unwrap().to_be_bytes());
    forged.extend_from_slice(&new_cert);
    let bytes = resign([0x33; 32], Tombstone::DOMAIN, &forged);
    let tomb = Tombstone::decode(&bytes).unwrap();
    assert!(matches!(tomb.verify(), Err(Error::Unauthorized { .. })));

    // A device of Mallory's namespace signs a tombstone for Alice's.
    let mallory_cert =
        DeviceCert::issue(&person(MALLORY), dev(9).id(), Rights::WRITE, t(0), None).unwrap();
    let theirs = Tombstone::issue_by_device(&dev(9), mallory_cert, id, p("/x"), t(10)).unwrap();
    let mut body = theirs.encode();
    body.truncate(body.len() - 64);
    body[17..49].copy_from_slice(alice().id().as_bytes());
    let bytes = resign([9; 32], Tombstone::DOMAIN, &body);
    let tomb = Tombstone::decode(&bytes).unwrap();
    assert_eq!(tomb.namespace(), alice().id());
    assert!(matches!(tomb.verify(), Err(Error::Unauthorized { .. })));
}

#[test]
fn receipts_are_checked_against_the_right_cert() {
    let receipt = receipt(); // Bob's laptop, applied at 6_000
    receipt.verify(&bob_device_cert()).unwrap();
    // Someone else's cert.
    assert!(matches!(
        receipt.verify(&device_cert()),
        Err(Error::Unauthorized { .. })
    ));
    // A cert of the right device for another namespace.
    let other = DeviceCert::issue(&alice(), bob_laptop().id(), Rights::NONE, t(0), None).unwrap();
    assert!(matches!(
        receipt.verify(&other),
        Err(Error::Unauthorized { .. })
    ));
    // The cert had expired when the receipt was made.
    let expired = DeviceCert::issue(
        &bob(),
        bob_laptop().id(),
        Rights::NONE,
        t(0),
        Some(t(6_000)),
    )
    .unwrap();
    assert!(matches!(
        receipt.verify(&expired),
        Err(Error::Expired { .. })
    ));
    // A receipt signed by another key claiming Bob's laptop.
    let forged = Receipt::issue(&dev(1), bob().id(), receipt.tombstone_id(), t(6_000));
    assert!(matches!(
        forged.verify(&bob_device_cert()),
        Err(Error::Unauthorized { .. })
    ));
    let mut body = receipt.encode();
    body.truncate(body.len() - 64);
    let forged = Receipt::decode(&resign([1; 32], Receipt::DOMAIN, &body)).unwrap();
    assert!(matches!(
        forged.verify(&bob_device_cert()),
        Err(Error::BadSignature { .. })
    ));
}

#[test]
fn device_cert_checks_and_revocation_rule() {
    let cert = device_cert();
    cert.check_authority(Rights::WRITE, &[], t(1_000)).unwrap();
    assert!(matches!(
        cert.check_authority(Rights::WRITE, &[], t(999)),
        Err(Error::NotYetValid { .. })
    ));
    assert!(matches!(
        cert.check_authority(Rights::WRITE, &[], t(1_000_000_000)),
        Err(Error::Expired { .. })
    ));
    let rev_before = DeviceRevocation::issue(&alice(), alice_phone().id(), t(999));
    let rev_at = DeviceRevocation::issue(&alice(), alice_phone().id(), t(1_000));
    assert!(
        !rev_before.revokes(&cert),
        "a cert issued after the revocation stands"
    );
    assert!(rev_at.revokes(&cert));
    assert!(matches!(
        DeviceCert::issue(&alice(), alice_phone().id(), Rights::ALL, t(5), Some(t(5))),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        ReadCap::issue(
            &alice(),
            CapId::from_bytes([0; 16]),
            bob().id(),
            p("/"),
            t(5),
            Some(t(4))
        ),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(Rights::ALL.contains(Rights::WRITE | Rights::SERVE));
    assert!(!Rights::SERVE.contains(Rights::WRITE));
    assert!(Rights::from_bits(4).is_err());
    assert_eq!(format!("{:?}", Rights::ALL), "Rights(write|serve)");
}

#[test]
fn scope_rotation_seal_and_open() {
    let mut rng = rand::rng();
    let scope = Scope::generate(alice().id(), p("/photos"), &mut rng);
    assert_eq!(scope.epoch(), 0);
    let next = scope.next_epoch(&mut rng).unwrap();
    assert_eq!(next.epoch(), 1);
    assert_ne!(next.topic_id(), scope.topic_id());
    assert_ne!(next.secret(), scope.secret());

    let sealed = scope.seal(b"a change", &mut rng).unwrap();
    assert_eq!(scope.open(&sealed).unwrap(), b"a change");
    // A member of the next epoch only cannot read the old epoch, and vice versa.
    assert!(matches!(next.open(&sealed), Err(Error::Open { .. })));
    assert!(matches!(
        scope.open(&next.seal(b"x", &mut rng).unwrap()),
        Err(Error::Open { .. })
    ));
    // Same epoch, another secret (another scope): refused.
    let other = Scope::new(alice().id(), p("/photos"), 0, ScopeSecret::random(&mut rng));
    assert!(matches!(other.open(&sealed), Err(Error::Open { .. })));
    // Two seals of the same plaintext differ (random nonces).
    assert_ne!(
        scope.seal(b"x", &mut rng).unwrap(),
        scope.seal(b"x", &mut rng).unwrap()
    );
    // Too large.
    let big = vec![0u8; kith_caps::SealedEnvelope::MAX_PLAINTEXT_LEN + 1];
    assert!(matches!(
        scope.seal(&big, &mut rng),
        Err(Error::TooLarge { .. })
    ));
    // The topic depends on the secret and the epoch only; the payload key
    // is a different value.
    let a = Scope::new(alice().id(), p("/a"), 7, ScopeSecret::from_bytes([1; 32]));
    let b = Scope::new(bob().id(), p("/b"), 7, ScopeSecret::from_bytes([1; 32]));
    assert_eq!(a.topic_id(), b.topic_id());
    assert!(a.covers(&alice().id(), &p("/a/x")) && !a.covers(&alice().id(), &p("/ab")));
    // Secrets never show in Debug.
    assert!(!format!("{a:?}").contains("0101"));
    assert!(!format!("{a:?}").contains(&a.topic_id().to_string()[..16]));
    assert!(format!("{:?}", a.secret()).contains("hidden"));

    let roster = roster();
    assert!(roster.contains(&alice_phone().id()) && !roster.contains(&dev(1).id()));
    assert!(roster.is_for(&common::scope()));
    assert!(!roster.is_for(&a));
    let too_many = (0..=1024u32).map(|i| {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&i.to_be_bytes());
        kith_caps::DeviceId::from_bytes(b)
    });
    assert!(matches!(
        kith_caps::Roster::issue(&alice(), p("/"), 0, too_many),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn objects_with_invalid_keys_are_refused() {
    // A namespace id that is not a curve point.
    let mut bytes = revocation().encode();
    let mut found = false;
    for candidate in 0..=255u8 {
        bytes[1..33].copy_from_slice(&[candidate; 32]);
        if let Err(Error::InvalidKey { .. }) = Revocation::decode(&bytes).unwrap().verify() {
            found = true;
            break;
        }
    }
    assert!(found, "some 32-byte pattern is not a valid point");
    let _ = Timestamp::ZERO;
}
