//! `fanout`: one owner, N friends on loopback; the owner writes 1 KiB
//! changes under a granted prefix, one every 200 ms; for each (change,
//! friend) the time until the friend has applied it, how many arrived live
//! (gossip) rather than by recovery (catch-up), what the owner uploaded per
//! change, and the memory of one friend node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kith::Path;
use kith::store::{ChangeKind, WatchEvent};

use crate::Options;
use crate::rawgossip;
use crate::report::Figure;
use crate::swarm::{Swarm, process_cpu, quantile, run_async, sizes, until};

/// Size of each change's text.
const CHANGE_BYTES: usize = 1024;
/// How long the owner's upload is measured with nothing to publish.
const IDLE_WINDOW: Duration = Duration::from_secs(5);
/// How long after the last write every friend must have every change.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) fn run(opts: &Options) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for n in sizes(opts, &[1, 10, 50, 250]) {
        figures.extend(run_async(fanout(opts.scaled(50), n))?);
    }
    Ok(figures)
}

/// What one fan-out run measured.
pub(crate) struct Measured {
    /// Every (change, friend) latency in ms, sorted.
    pub(crate) latencies: Vec<f64>,
    /// How many of them arrived live.
    pub(crate) live: u64,
    /// The owner's upload for the changes, less its idle rate (bytes).
    pub(crate) sent: f64,
    /// The owner's upload rate with nothing to publish (bytes/s).
    pub(crate) idle_rate: f64,
    /// CPU time of the process per change applied by a friend (µs), less
    /// its idle rate: publishing, relaying, receiving, storing.
    pub(crate) cpu_per_delivery_us: f64,
    /// CPU time of the process at rest, in cores (1.0: one core busy).
    pub(crate) idle_cores: f64,
    /// Per message a friend received from a topic (heartbeats included),
    /// the time its handling took, µs: open and verify, check, apply, and
    /// the whole (waiting for the topic's inbox included).
    pub(crate) receive_us: [f64; 4],
}

/// The owner of `swarm` writes `changes` changes of [`CHANGE_BYTES`], one
/// every 200 ms; waits until every friend has applied every one.
pub(crate) async fn measure(swarm: &Swarm, changes: usize) -> Result<Measured> {
    let n = swarm.friends.len();
    let me = swarm.owner.namespace();
    // (friend, change) → when the friend applied it.
    let arrivals: Arc<Mutex<HashMap<(usize, usize), Instant>>> = Arc::default();
    let mut watchers = Vec::new();
    for (fi, f) in swarm.friends.iter().enumerate() {
        let mut w = f.watch(&me, &Path::parse("/feed/c")?);
        let arrivals = arrivals.clone();
        watchers.push(tokio::spawn(async move {
            while let Some(ev) = w.recv().await {
                if let WatchEvent::Change(c) = ev
                    && let ChangeKind::Put { path, .. } = c.kind
                    && let Some(i) = path.components().last().and_then(|s| s.parse().ok())
                    && let Ok(mut a) = arrivals.lock()
                {
                    a.entry((fi, i)).or_insert_with(Instant::now);
                }
            }
        }));
    }
    let live_before: u64 = swarm
        .friends
        .iter()
        .map(|f| f.live_metrics().applied_live)
        .sum();
    swarm.settle().await;
    let receipts_before = receive_totals(swarm);
    let sent_before = (Instant::now(), swarm.owner.bytes_sent());
    let cpu_before = process_cpu();
    crate::profile("enable");
    let mut written = Vec::with_capacity(changes);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    eprintln!("  fanout: writing {changes} changes to {n} friends …");
    for i in 0..changes {
        tick.tick().await;
        written.push(Instant::now());
        // Random letters: a change that does not compress below its size.
        let text: String = (0..CHANGE_BYTES)
            .map(|_| char::from(b'a' + rand::random_range(0..26u8)))
            .collect();
        swarm.write(&format!("/feed/c/{i}"), &text).await?;
    }
    let all = n * changes;
    let converged = until(
        "every friend applying every change",
        CONVERGE_TIMEOUT,
        || arrivals.lock().map(|a| a.len()).unwrap_or(0) >= all,
    )
    .await;
    crate::profile("disable");
    if let Err(e) = converged {
        let a = arrivals.lock().map(|a| a.clone()).unwrap_or_default();
        for (fi, f) in swarm.friends.iter().enumerate() {
            let missing: Vec<usize> = (0..changes)
                .filter(|i| !a.contains_key(&(fi, *i)))
                .collect();
            if !missing.is_empty() {
                eprintln!(
                    "  friend {fi} misses changes {missing:?}; {:?}",
                    f.live_metrics()
                );
            }
        }
        bail!("{e}: {} of {all} applied", a.len());
    }
    // Upload until every friend has everything (gossip and any recovery
    // catch-ups the owner served), less the idle rate over the same time.
    let total = (swarm.owner.bytes_sent() - sent_before.1) as f64;
    let cpu = process_cpu() - cpu_before;
    let receipts = receive_totals(swarm);
    let duration = sent_before.0.elapsed().as_secs_f64();
    // What the owner sends with nothing to publish (heartbeats, QUIC
    // keep-alives and path checks on every connection), measured once all
    // is delivered, to tell it apart from what the changes cost.
    let idle_start = (Instant::now(), swarm.owner.bytes_sent(), process_cpu());
    crate::profile_window("idle", "enable");
    tokio::time::sleep(IDLE_WINDOW).await;
    crate::profile_window("idle", "disable");
    let idle_secs = idle_start.0.elapsed().as_secs_f64();
    let idle_rate = (swarm.owner.bytes_sent() - idle_start.1) as f64 / idle_secs;
    let idle_cpu_rate = (process_cpu() - idle_start.2) / idle_secs;
    let sent = total - idle_rate * duration;
    let live: u64 = swarm
        .friends
        .iter()
        .map(|f| f.live_metrics().applied_live)
        .sum::<u64>()
        - live_before;
    let mut lat: Vec<f64> = arrivals
        .lock()
        .map(|a| {
            a.iter()
                .map(|((_, i), t)| (*t - written[*i]).as_secs_f64() * 1e3)
                .collect()
        })
        .unwrap_or_default();
    lat.sort_by(f64::total_cmp);
    for w in watchers {
        w.abort();
    }
    let received = (receipts[0] - receipts_before[0]).max(1.0);
    let per = |i: usize| (receipts[i] - receipts_before[i]) / 1e3 / received;
    Ok(Measured {
        latencies: lat,
        live,
        sent,
        idle_rate,
        cpu_per_delivery_us: (cpu - idle_cpu_rate * duration).max(0.0) * 1e6 / all as f64,
        idle_cores: idle_cpu_rate,
        receive_us: [per(1), per(2), per(3), per(4)],
    })
}

/// Over every friend: messages received from topics, and nanoseconds spent
/// opening, checking, applying and handling them in all.
fn receive_totals(swarm: &Swarm) -> [f64; 5] {
    let mut t = [0.0; 5];
    for f in &swarm.friends {
        let m = f.live_metrics();
        for (i, v) in [
            m.received,
            m.receive_open_nanos,
            m.receive_check_nanos,
            m.receive_apply_nanos,
            m.receive_nanos,
        ]
        .into_iter()
        .enumerate()
        {
            t[i] += v as f64;
        }
    }
    t
}

async fn fanout(changes: usize, n: usize) -> Result<Vec<Figure>> {
    eprintln!("  fanout: forming an owner and {n} friends …");
    let swarm = Swarm::form(n).await?;
    let Measured {
        latencies: lat,
        live,
        sent,
        idle_rate,
        cpu_per_delivery_us,
        idle_cores,
        receive_us,
    } = measure(&swarm, changes).await?;
    let all = n * changes;
    let memory = swarm.memory_per_friend;
    swarm.shutdown().await?;
    eprintln!("  fanout: the same with raw iroh-gossip …");
    let raw = rawgossip::run(n, changes).await?;
    let peer = "raw iroh-gossip";
    let mut figures = vec![
        Figure::new("fanout", format!("n{n}_p50"), quantile(&lat, 0.5), "ms")
            .with_peer(peer, quantile(&raw.latencies, 0.5)),
        Figure::new("fanout", format!("n{n}_p99"), quantile(&lat, 0.99), "ms")
            .with_peer(peer, quantile(&raw.latencies, 0.99)),
        Figure::new("fanout", format!("n{n}_max"), quantile(&lat, 1.0), "ms")
            .with_peer(peer, quantile(&raw.latencies, 1.0)),
        Figure::new(
            "fanout",
            format!("n{n}_live_share"),
            100.0 * (live as f64 / all as f64).min(1.0),
            "%",
        )
        .with_peer(format!("{peer}, delivered"), 100.0 * raw.delivered),
        Figure::new(
            "fanout",
            format!("n{n}_upload_per_change"),
            sent.max(0.0) / (changes * CHANGE_BYTES) as f64,
            "× change",
        )
        .with_peer(
            format!("{peer}, {} B messages", rawgossip::MESSAGE_BYTES),
            raw.upload_per_message / CHANGE_BYTES as f64,
        ),
        Figure::new(
            "fanout",
            format!("n{n}_idle_upload"),
            idle_rate / 1e3,
            "kB/s",
        ),
        Figure::new(
            "fanout",
            format!("n{n}_memory_per_friend"),
            memory / 1e6,
            "MB",
        ),
    ];
    // CPU time is read in ticks of 10 ms: a short run may show none.
    if idle_cores > 0.0 && raw.idle_cores > 0.0 {
        figures.push(
            Figure::new("fanout", format!("n{n}_idle_cpu"), idle_cores, "cores")
                .with_peer(peer, raw.idle_cores),
        );
    }
    if cpu_per_delivery_us > 0.0 && raw.cpu_per_delivery_us > 0.0 {
        figures.push(
            Figure::new(
                "fanout",
                format!("n{n}_cpu_per_delivery"),
                cpu_per_delivery_us,
                "µs",
            )
            .with_peer(peer, raw.cpu_per_delivery_us),
        );
    } else {
        eprintln!("  fanout: too little CPU time to measure per delivery at this scale");
    }
    for (stage, us) in ["open_verify", "check_sequence", "apply_store", "whole"]
        .into_iter()
        .zip(receive_us)
    {
        if us > 0.0 {
            figures.push(Figure::new(
                "fanout",
                format!("n{n}_receive_{stage}"),
                us,
                "µs/msg",
            ));
        }
    }
    Ok(figures)
}
