//! Scenario `caps`: the cost of kith's capability checks, each beside its
//! ceiling or the naive alternative in the same run.
//!
//! - `verify_<type>`: signatures verified per second by each signed type's
//!   `verify()` (key decompression, domain-separated message, strict
//!   check), against ed25519-dalek's `verify_strict` alone with a
//!   ready-made key on a message of the same size: the physical limit.
//! - `may_read`: decisions per second, and the median time of one decision,
//!   with 250 grantees holding 1,000 caps (some expired, some revoked, some
//!   not yet valid) through the `Grants` index, against the linear scan of
//!   `may_read` on the same queries.
//! - `seal` / `open`: MB/s of sealing and opening 4 KiB gossip payloads
//!   with a scope's payload key (XChaCha20-Poly1305, envelope encoding
//!   included).
//!
//! Rounds of kith and peer alternate, and each figure is the median of its
//! rounds.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use ed25519_dalek::{Signer, SigningKey};
use kith_caps::{
    CapId, DeviceCert, DeviceKey, Grants, NamespaceKey, ReadCap, Receipt, Revocation, Rights,
    Roster, Scope, SealedEnvelope, Tombstone, TombstoneId, may_read,
};
use kith_types::{NamespaceId, Path, Timestamp};
use rand::RngExt;

use crate::Options;
use crate::report::Figure;

const SCENARIO: &str = "caps";
const ROUNDS: usize = 5;
const GRANTEES: usize = 250;
const CAPS: usize = 1_000;
const PAYLOAD: usize = 4 * 1024;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Runs the scenario.
pub(crate) fn run(opts: &Options) -> Result<Vec<Figure>> {
    let mut figures = verification(opts)?;
    figures.extend(decisions(opts)?);
    figures.extend(sealing(opts)?);
    Ok(figures)
}

/// Verifies `check` `n` times; returns verifications per second.
fn time_verify(n: usize, check: &dyn Fn() -> bool) -> Result<f64> {
    let start = Instant::now();
    for _ in 0..n {
        ensure!(black_box(check()), "a valid signature did not verify");
    }
    Ok(rate(n, start.elapsed()))
}

fn verification(opts: &Options) -> Result<Vec<Figure>> {
    let mut rng = rand::rng();
    let alice = NamespaceKey::generate(&mut rng);
    let phone = DeviceKey::generate(&mut rng);
    let friend = NamespaceKey::generate(&mut rng);
    let laptop = DeviceKey::generate(&mut rng);
    let now = Timestamp::from_micros(1_000_000);
    let cert = DeviceCert::issue(&alice, phone.id(), Rights::ALL, now, None)?;
    let laptop_cert = DeviceCert::issue(&friend, laptop.id(), Rights::NONE, now, None)?;
    let cap = ReadCap::issue(
        &alice,
        CapId::random(&mut rng),
        friend.id(),
        Path::parse("/posts/friends")?,
        now,
        None,
    )?;
    let tomb = Tombstone::issue(
        &alice,
        TombstoneId::random(&mut rng),
        Path::parse("/photos/2024")?,
        now,
    );
    let receipt = Receipt::issue(&laptop, friend.id(), tomb.id(), now);
    let roster = Roster::issue(
        &alice,
        Path::parse("/posts/friends")?,
        1,
        (0..8).map(|_| DeviceKey::generate(&mut rand::rng()).id()),
    )?;

    // Each type: its check, and the length of what its signature covers
    // (domain tag, separator, encoding without the signature).
    type Case<'a> = (&'static str, usize, Box<dyn Fn() -> bool + 'a>);
    let signed_len = |domain: &str, encoded: usize| domain.len() + 1 + encoded - 64;
    let cases: Vec<Case<'_>> = vec![
        (
            "verify_device_cert",
            signed_len(DeviceCert::DOMAIN, cert.encode().len()),
            Box::new(|| cert.verify().is_ok()),
        ),
        (
            "verify_read_cap",
            signed_len(ReadCap::DOMAIN, cap.encode().len()),
            Box::new(|| cap.verify().is_ok()),
        ),
        (
            "verify_tombstone",
            signed_len(Tombstone::DOMAIN, tomb.encode().len()),
            Box::new(|| tomb.verify().is_ok()),
        ),
        (
            // The receipt's check includes its device cert's signature:
            // two signatures per call, counted as two.
            "verify_receipt",
            signed_len(Receipt::DOMAIN, receipt.encode().len()),
            Box::new(|| receipt.verify(&laptop_cert).is_ok()),
        ),
        (
            "verify_roster",
            signed_len(Roster::DOMAIN, roster.encode().len()),
            Box::new(|| roster.verify().is_ok()),
        ),
    ];

    let n = opts.scaled(4_000);
    let raw_key = SigningKey::generate(&mut rng);
    let raw_verifying = raw_key.verifying_key();
    let mut figures = Vec::new();
    for (name, msg_len, check) in &cases {
        let msg: Vec<u8> = (0..*msg_len).map(|i| i as u8).collect();
        let sig = raw_key.sign(&msg);
        let raw = || raw_verifying.verify_strict(&msg, &sig).is_ok();
        let per_call = if *name == "verify_receipt" { 2.0 } else { 1.0 };
        let (mut kith, mut peer) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            kith.push(time_verify(n, check.as_ref())? * per_call);
            peer.push(time_verify(n, &raw)?);
        }
        figures.push(
            Figure::new(SCENARIO, *name, median(kith), "sigs/s")
                .with_peer("ed25519-dalek verify_strict", median(peer)),
        );
    }
    Ok(figures)
}

/// The caps, revocations, grantees and prefixes of the decision bench.
struct World {
    caps: Vec<ReadCap>,
    revocations: Vec<Revocation>,
    grantees: Vec<NamespaceId>,
    prefixes: Vec<Path>,
}

/// 250 grantees with 1,000 caps between them over a few dozen prefixes.
fn grants_world(alice: &NamespaceKey, now: Timestamp) -> Result<World> {
    let mut rng = rand::rng();
    let grantees: Vec<NamespaceId> = (0..GRANTEES)
        .map(|_| NamespaceKey::generate(&mut rand::rng()).id())
        .collect();
    let mut prefixes = vec![
        Path::root(),
        Path::parse("/posts")?,
        Path::parse("/posts/friends")?,
        Path::parse("/posts/close")?,
        Path::parse("/photos")?,
        Path::parse("/profile")?,
    ];
    for i in 0..30 {
        prefixes.push(Path::parse(&format!("/albums/{i}"))?);
    }
    let micros = now.as_micros();
    let mut caps = Vec::with_capacity(CAPS);
    for i in 0..CAPS {
        let grantee = grantees[i % GRANTEES];
        let prefix = prefixes[rng.random_range(1..prefixes.len())].clone();
        // Mostly valid; some expired, some not yet valid.
        let (from, until) = match i % 10 {
            0 => (micros - 2_000, Some(micros - 1_000)),
            1 => (micros + 1_000, None),
            _ => (micros - 1_000, Some(micros + 1_000_000)),
        };
        caps.push(ReadCap::issue(
            alice,
            CapId::random(&mut rng),
            grantee,
            prefix,
            Timestamp::from_micros(from),
            until.map(Timestamp::from_micros),
        )?);
    }
    let revocations = caps
        .iter()
        .step_by(20)
        .map(|c| Revocation::issue(alice, c.id(), now))
        .collect();
    Ok(World {
        caps,
        revocations,
        grantees,
        prefixes,
    })
}

fn decisions(opts: &Options) -> Result<Vec<Figure>> {
    let mut rng = rand::rng();
    let alice = NamespaceKey::generate(&mut rng);
    let namespace = alice.id();
    let now = Timestamp::from_micros(1_000_000_000);
    let World {
        caps,
        revocations,
        grantees,
        prefixes,
    } = grants_world(&alice, now)?;
    let grants = Grants::new(namespace, caps.clone(), revocations.clone());
    ensure!(grants.len() == CAPS, "every cap is indexed");

    // Queries: half under a prefix the requester holds a cap on (most of
    // them allowed), half a random grantee or a stranger on a random prefix
    // (mostly refused), each two components below the prefix.
    let stranger = NamespaceKey::generate(&mut rng).id();
    let queries: Vec<(Path, NamespaceId)> = (0..4_096)
        .map(|i| {
            let (prefix, who) = if i % 2 == 0 {
                let cap = &caps[rng.random_range(0..caps.len())];
                (cap.prefix(), cap.grantee())
            } else if i % 16 == 1 {
                (&prefixes[rng.random_range(0..prefixes.len())], stranger)
            } else {
                (
                    &prefixes[rng.random_range(0..prefixes.len())],
                    grantees[rng.random_range(0..grantees.len())],
                )
            };
            let path = prefix
                .join(&format!("item-{i}"))
                .and_then(|p| p.join("comments"))
                .context("query path")?;
            Ok((path, who))
        })
        .collect::<Result<_>>()?;
    let allowed = queries
        .iter()
        .filter(|(p, who)| grants.may_read(p, who, now).is_allowed())
        .count();
    for (p, who) in queries.iter().take(256) {
        ensure!(
            grants.may_read(p, who, now) == may_read(&namespace, p, who, &caps, &revocations, now),
            "the index and the linear scan disagree"
        );
    }
    eprintln!(
        "  may_read: {} of {} queries allowed",
        allowed,
        queries.len()
    );

    let n = opts.scaled(400_000);
    let linear_n = opts.scaled(20_000);
    let (mut rates, mut medians, mut linear_rates, mut linear_medians) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        // Throughput.
        let start = Instant::now();
        for i in 0..n {
            let (path, who) = &queries[i % queries.len()];
            black_box(grants.may_read(black_box(path), black_box(who), now));
        }
        rates.push(rate(n, start.elapsed()));
        let start = Instant::now();
        for i in 0..linear_n {
            let (path, who) = &queries[i % queries.len()];
            black_box(may_read(&namespace, path, who, &caps, &revocations, now));
        }
        linear_rates.push(rate(linear_n, start.elapsed()));

        // One decision at a time (the clock's own cost, ~20 ns, included).
        let mut times = Vec::with_capacity(queries.len());
        for (path, who) in &queries {
            let start = Instant::now();
            black_box(grants.may_read(black_box(path), black_box(who), now));
            times.push(start.elapsed().as_nanos() as f64);
        }
        medians.push(median(times));
        let mut times = Vec::with_capacity(1_024);
        for (path, who) in queries.iter().take(1_024) {
            let start = Instant::now();
            black_box(may_read(&namespace, path, who, &caps, &revocations, now));
            times.push(start.elapsed().as_nanos() as f64);
        }
        linear_medians.push(median(times));
    }
    Ok(vec![
        Figure::new(
            SCENARIO,
            "may_read (250 grantees, 1,000 caps)",
            median(rates),
            "decisions/s",
        )
        .with_peer("linear scan", median(linear_rates)),
        Figure::new(SCENARIO, "may_read median", median(medians), "ns")
            .with_peer("linear scan", median(linear_medians)),
    ])
}

fn sealing(opts: &Options) -> Result<Vec<Figure>> {
    let mut rng = rand::rng();
    let scope = Scope::generate(
        NamespaceKey::generate(&mut rng).id(),
        Path::parse("/posts")?,
        &mut rng,
    );
    let payload: Vec<u8> = (0..PAYLOAD).map(|i| i as u8).collect();
    let count = opts.scaled(64 * 1024 * 1024) / PAYLOAD + 1;
    let total = (count * PAYLOAD) as f64 / 1e6;
    let (mut seal, mut open) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let mut sealed = Vec::with_capacity(count);
        for _ in 0..count {
            sealed.push(scope.seal(&payload, &mut rng)?.encode());
        }
        seal.push(total / start.elapsed().as_secs_f64());
        let start = Instant::now();
        for bytes in &sealed {
            let envelope = SealedEnvelope::decode(bytes)?;
            let plain = scope.open(&envelope)?;
            ensure!(plain.len() == PAYLOAD, "opened the wrong length");
        }
        open.push(total / start.elapsed().as_secs_f64());
    }
    Ok(vec![
        Figure::new(SCENARIO, "seal 4 KiB payloads", median(seal), "MB/s"),
        Figure::new(SCENARIO, "open 4 KiB payloads", median(open), "MB/s"),
    ])
}
