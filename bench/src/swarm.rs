//! One owner and N friends on loopback, all in this process, with `/feed`
//! granted to every friend and live push formed: the set-up of the
//! `fanout`, `revoke` and `delete` scenarios.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kith::caps::CapId;
use kith::store::automerge::ROOT;
use kith::store::automerge::transaction::Transactable;
use kith::{CongestionControl, Node, Path};

use crate::site::Site;

/// How long the swarm may take to form before the scenario gives up.
const FORM_TIMEOUT: Duration = Duration::from_secs(600);

/// The nodes of one run; their data folders live as long as it does.
pub(crate) struct Swarm {
    pub(crate) owner: Node,
    pub(crate) friends: Vec<Node>,
    /// The `/feed` cap granted to each friend, in the same order.
    pub(crate) caps: Vec<CapId>,
    /// Resident memory the friend nodes added, per friend (bytes).
    pub(crate) memory_per_friend: f64,
    _dir: tempfile::TempDir,
}

async fn node(site: &Site, dir: &std::path::Path, congestion: CongestionControl) -> Result<Node> {
    site.kith(dir, |b| {
        // Only live push and its recovery move data in these scenarios.
        // Heartbeats at the default interval (5 s), as a user's node sends
        // them: every heartbeat is received, checked and forwarded by all
        // N friends, like a change (at one a second, as this once was, the
        // owner's heartbeats alone took about 0.1 cores at 250 friends).
        b.congestion_control(congestion)
            .resync_interval(Duration::from_secs(3600))
    })
    .await
}

/// Resident set size of this process in bytes (Linux), 0 elsewhere.
pub(crate) fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Polls `done` every 10 ms until it holds; an error after `limit`.
pub(crate) async fn until(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<Duration> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            bail!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(start.elapsed())
}

impl Swarm {
    /// Spawns the owner and `n` friends, befriends them, grants `/feed` to
    /// each, and waits until every friend is on the owner's full roster
    /// with at least one gossip neighbor in the topic.
    pub(crate) async fn form(n: usize) -> Result<Self> {
        Self::form_at(&vec![Site::Loopback; n + 1]).await
    }

    /// [`Swarm::form`] with the owner at `sites[0]` and a friend at each
    /// other site.
    pub(crate) async fn form_at(sites: &[Site]) -> Result<Self> {
        Self::form_with(sites, CongestionControl::default()).await
    }

    /// [`Swarm::form_at`] with this congestion control on every node.
    pub(crate) async fn form_with(sites: &[Site], congestion: CongestionControl) -> Result<Self> {
        let n = sites.len().saturating_sub(1);
        let dir = tempfile::tempdir()?;
        let owner = node(&sites[0], &dir.path().join("owner"), congestion).await?;
        let before = rss();
        let mut friends = Vec::with_capacity(n);
        for (i, site) in sites.iter().enumerate().skip(1) {
            friends.push(node(site, &dir.path().join(format!("f{i}")), congestion).await?);
        }
        let feed = Path::parse("/feed")?;
        let mut caps = Vec::with_capacity(n);
        for f in &friends {
            owner.add_friend(&f.ticket()).await?;
            f.add_friend(&owner.ticket()).await?;
        }
        for f in &friends {
            caps.push(owner.grant(&f.namespace(), &feed, None).await?.id());
        }
        for f in &friends {
            f.subscribe(&owner.namespace()).await?;
        }
        let start = Instant::now();
        let members = n + 1;
        let formed = until("forming the swarm", FORM_TIMEOUT, || {
            let full = |node: &Node| {
                node.live_topics()
                    .iter()
                    .any(|t| t.members == members && t.neighbors > 0)
            };
            full(&owner) && friends.iter().all(full)
        })
        .await;
        if let Err(e) = formed {
            let lonely = friends
                .iter()
                .filter(|f| f.live_topics().iter().all(|t| t.neighbors == 0))
                .count();
            return Err(e).with_context(|| format!("{lonely} of {n} friends without neighbors"));
        }
        eprintln!("  formed in {:.1} s", start.elapsed().as_secs_f64());
        let memory_per_friend = rss().saturating_sub(before) as f64 / n.max(1) as f64;
        Ok(Self {
            owner,
            friends,
            caps,
            memory_per_friend,
            _dir: dir,
        })
    }

    /// Waits until the set-up's catch-ups are over (see [`settle`]).
    pub(crate) async fn settle(&self) {
        settle(|| self.owner.bytes_sent()).await;
    }

    /// Writes a document with `text` at `path` in the owner's namespace.
    pub(crate) async fn write(&self, path: &str, text: &str) -> Result<()> {
        let store = self.owner.store().clone();
        let (ns, path, text) = (self.owner.namespace(), Path::parse(path)?, text.to_string());
        tokio::task::spawn_blocking(move || {
            store
                .edit_document(&ns, &path, |d| d.put(ROOT, "text", text))
                .map(|_| ())
        })
        .await??;
        Ok(())
    }

    /// Stops every node.
    pub(crate) async fn shutdown(self) -> Result<()> {
        let mut all = vec![tokio::spawn(self.owner.shutdown())];
        all.extend(self.friends.into_iter().map(|f| tokio::spawn(f.shutdown())));
        for t in all {
            t.await??;
        }
        Ok(())
    }
}

/// Waits until a node's upload has settled, by its `sent` byte counter:
/// two 5 s windows in a row whose rates differ by less than a quarter (at
/// most 90 s). Set-up traffic (rosters sent to members, gossip membership)
/// comes in bursts with quiet seconds between them, so a shorter look ends
/// too early and the bursts land in what is measured next; 5 s also spans
/// the QUIC keep-alive period.
pub(crate) async fn settle(sent: impl Fn() -> u64) {
    const WINDOW: Duration = Duration::from_secs(5);
    let start = Instant::now();
    let mut last = sent();
    let mut previous: Option<f64> = None;
    while start.elapsed() < Duration::from_secs(90) {
        tokio::time::sleep(WINDOW).await;
        let now = sent();
        let rate = (now - last) as f64 / WINDOW.as_secs_f64();
        last = now;
        if let Some(p) = previous
            && (rate - p).abs() <= 0.25 * rate.max(p) + 1024.0
        {
            return;
        }
        previous = Some(rate);
    }
    eprintln!("  upload did not settle within 90 s; measuring anyway");
}

/// Runs `scenario` on a fresh multi-threaded runtime.
pub(crate) fn run_async<T>(scenario: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?
        .block_on(scenario)
}

/// The friend counts a scenario runs with: `--friends`, or `default` with
/// only its first entry below `--scale 0.1`.
pub(crate) fn sizes(opts: &crate::Options, default: &[usize]) -> Vec<usize> {
    if !opts.friends.is_empty() {
        return opts.friends.clone();
    }
    default
        .iter()
        .copied()
        .enumerate()
        .filter(|(i, _)| *i == 0 || opts.scale >= 0.1)
        .map(|(_, n)| n)
        .collect()
}

/// The `q` quantile of sorted `values`.
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// CPU time this process has used so far (user and system, all threads),
/// in seconds, from `/proc/self/stat` (10 ms resolution); 0 where there is
/// no such file.
pub(crate) fn process_cpu() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): state is the
    // first, utime the 12th, stime the 13th; in clock ticks of 1/100 s.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}
