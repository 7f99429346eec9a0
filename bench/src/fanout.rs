//! `fanout`: one owner, N friends on loopback; the owner writes 1 KiB
//! changes under a granted prefix, one every 200 ms; for each (change,
//! friend) the time until the friend has applied it, and how many arrived
//! live (gossip) rather than by recovery (catch-up).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kith::store::automerge::ROOT;
use kith::store::automerge::transaction::Transactable;
use kith::store::{ChangeKind, WatchEvent};
use kith::{NetworkMode, Node, Path};

use crate::Options;
use crate::report::Figure;

/// (friend, change, when applied), filled by one watcher task per friend.
#[derive(Default)]
struct Arrivals(std::sync::Mutex<Vec<(usize, usize, Instant)>>);

async fn node(dir: &std::path::Path) -> Result<Node> {
    Ok(Node::builder(dir)
        .network(NetworkMode::LocalOnly)
        .resync_interval(Duration::from_secs(3600))
        .heartbeat_interval(Duration::from_secs(1))
        .spawn()
        .await?)
}

pub(crate) fn run(opts: &Options) -> Result<Vec<Figure>> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?
        .block_on(fanout(opts))
}

async fn fanout(opts: &Options) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let changes = opts.scaled(50);
    let sizes: Vec<usize> = [1usize, 10, 50]
        .into_iter()
        .filter(|n| *n == 1 || opts.scale >= 0.1)
        .collect();
    for n in sizes {
        let dir = tempfile::tempdir()?;
        let owner = node(&dir.path().join("owner")).await?;
        let me = owner.namespace();
        let mut friends = Vec::new();
        for i in 0..n {
            let f = node(&dir.path().join(format!("f{i}"))).await?;
            owner.add_friend(&f.ticket()).await?;
            f.add_friend(&owner.ticket()).await?;
            owner
                .grant(&f.namespace(), &Path::parse("/feed")?, None)
                .await?;
            friends.push(f);
        }
        for f in &friends {
            f.subscribe(&me).await?;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while friends.iter().any(|f| f.live_topics().is_empty()) {
            if Instant::now() > deadline {
                bail!("friends did not join the scope's topic");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let arrivals = Arc::new(Arrivals::default());
        let mut watchers = Vec::new();
        for (fi, f) in friends.iter().enumerate() {
            let mut w = f.watch(&me, &Path::parse("/feed/c")?);
            let arrivals = arrivals.clone();
            watchers.push(tokio::spawn(async move {
                while let Some(ev) = w.recv().await {
                    if let WatchEvent::Change(c) = ev
                        && let ChangeKind::Put { path, .. } = c.kind
                        && let Some(i) = path
                            .components()
                            .last()
                            .and_then(|s| s.parse::<usize>().ok())
                        && let Ok(mut a) = arrivals.0.lock()
                    {
                        a.push((fi, i, Instant::now()));
                    }
                }
            }));
        }
        let live_before: u64 = friends.iter().map(|f| f.live_metrics().applied_live).sum();
        let mut written: HashMap<usize, Instant> = HashMap::new();
        let text = "x".repeat(1024);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        for i in 0..changes {
            tick.tick().await;
            let store = owner.store().clone();
            let path = Path::parse(&format!("/feed/c/{i}"))?;
            let t = text.clone();
            written.insert(i, Instant::now());
            tokio::task::spawn_blocking(move || {
                store
                    .edit_document(&me, &path, |d| d.put(ROOT, "text", t))
                    .map(|_| ())
            })
            .await??;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let got = arrivals.0.lock().map(|a| a.len()).unwrap_or(0);
            if got >= n * changes {
                break;
            }
            if Instant::now() > deadline {
                bail!("only {got} of {} deliveries in time", n * changes);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let live: u64 = friends
            .iter()
            .map(|f| f.live_metrics().applied_live)
            .sum::<u64>()
            - live_before;
        let mut lat: Vec<f64> = arrivals
            .0
            .lock()
            .map(|a| {
                a.iter()
                    .filter_map(|(_, i, t)| written.get(i).map(|w| (*t - *w).as_secs_f64() * 1e3))
                    .collect()
            })
            .unwrap_or_default();
        lat.sort_by(f64::total_cmp);
        let pct = |q: f64| lat[((lat.len() as f64 - 1.0) * q).round() as usize];
        figures.push(Figure::new("fanout", format!("n{n}_p50"), pct(0.5), "ms"));
        figures.push(Figure::new("fanout", format!("n{n}_p99"), pct(0.99), "ms"));
        figures.push(Figure::new("fanout", format!("n{n}_max"), pct(1.0), "ms"));
        figures.push(Figure::new(
            "fanout",
            format!("n{n}_live_share"),
            100.0 * live as f64 / (n * changes) as f64,
            "%",
        ));
        for w in watchers {
            w.abort();
        }
        owner.shutdown().await?;
        for f in friends {
            f.shutdown().await?;
        }
    }
    Ok(figures)
}
