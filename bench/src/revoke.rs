//! `revoke`: one owner, N friends on live push; the owner revokes one
//! friend's grant. Measured: the time from `revoke` until every remaining
//! friend has joined the scope's new epoch, and until the owner's next
//! post has reached all of them. The revoked friend must receive nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kith::Path;

use crate::Options;
use crate::report::Figure;
use crate::swarm::{Swarm, quantile, run_async, sizes, until};

/// How long the remaining friends may take to move and receive.
const TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) fn run(opts: &Options) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for n in sizes(opts, &[2, 10, 50, 250]) {
        figures.extend(run_async(revoke(n.max(2)))?);
    }
    Ok(figures)
}

async fn revoke(n: usize) -> Result<Vec<Figure>> {
    eprintln!("  revoke: forming an owner and {n} friends …");
    let swarm = Swarm::form(n).await?;
    swarm.settle().await;
    let me = swarm.owner.namespace();
    let epoch = |node: &kith::Node| node.live_topics().first().map_or(0, |t| t.epoch);
    let old = epoch(&swarm.owner);
    // What every node's gossip sent and dialed while the swarm moved.
    let gossip = |swarm: &Swarm| {
        std::iter::once(&swarm.owner)
            .chain(&swarm.friends)
            .map(|n| {
                let m = n.live_metrics();
                (m.gossip_messages_sent, m.gossip_dials)
            })
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    };
    let gossip_before = gossip(&swarm);
    crate::profile("enable");
    let start = Instant::now();
    swarm.owner.revoke(swarm.caps[0]).await?;
    swarm.write("/feed/after", "after the revoke").await?;
    let post = Path::parse("/feed/after")?;
    let remaining = &swarm.friends[1..];
    let mut moved: HashMap<usize, Duration> = HashMap::new();
    let mut received: HashMap<usize, Duration> = HashMap::new();
    until(
        "the remaining friends moving and receiving",
        TIMEOUT,
        || {
            for (i, f) in remaining.iter().enumerate() {
                if !moved.contains_key(&i) && epoch(f) > old {
                    moved.insert(i, start.elapsed());
                }
                if !received.contains_key(&i)
                    && f.store().document(&me, &post).ok().flatten().is_some()
                {
                    received.insert(i, start.elapsed());
                }
            }
            moved.len() == remaining.len() && received.len() == remaining.len()
        },
    )
    .await?;
    crate::profile("disable");
    let gossip_after = gossip(&swarm);
    let revoked = &swarm.friends[0];
    if revoked.store().document(&me, &post)?.is_some() {
        bail!("the revoked friend received a post written after the revoke");
    }
    if revoked.sync_now(&me).await.is_ok_and(|r| r.entries > 0) {
        bail!("the revoked friend's catch-up brought entries after the revoke");
    }
    let ms = |m: &HashMap<usize, Duration>| {
        let mut v: Vec<f64> = m.values().map(|d| d.as_secs_f64() * 1e3).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let (moved, received) = (ms(&moved), ms(&received));
    swarm.shutdown().await?;
    Ok(vec![
        Figure::new(
            "revoke",
            format!("n{n}_new_epoch_p50"),
            quantile(&moved, 0.5),
            "ms",
        ),
        Figure::new(
            "revoke",
            format!("n{n}_new_epoch_all"),
            quantile(&moved, 1.0),
            "ms",
        ),
        Figure::new(
            "revoke",
            format!("n{n}_next_post_p50"),
            quantile(&received, 0.5),
            "ms",
        ),
        Figure::new(
            "revoke",
            format!("n{n}_next_post_all"),
            quantile(&received, 1.0),
            "ms",
        ),
        Figure::new(
            "revoke",
            format!("n{n}_gossip_messages_per_friend"),
            (gossip_after.0 - gossip_before.0) as f64 / n as f64,
            "messages",
        ),
        Figure::new(
            "revoke",
            format!("n{n}_gossip_dials"),
            (gossip_after.1 - gossip_before.1) as f64,
            "dials",
        ),
    ])
}
