//! `delete`: one owner, N friends holding a post; the owner deletes it.
//! Measured: the time from `delete` until each friend device's signed
//! receipt is listed by the owner (p50 and all N). Also what erasing one
//! post costs on a large store (`erasure.rs`).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kith::Path;

use crate::Options;
use crate::report::Figure;
use crate::swarm::{Swarm, quantile, run_async, sizes, until};

/// How long the friends may take to have the post, and to confirm.
const TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) fn run(opts: &Options) -> Result<Vec<Figure>> {
    let mut figures = crate::erasure::run(opts)?;
    for n in sizes(opts, &[1, 10, 50, 250]) {
        figures.extend(run_async(delete(n))?);
    }
    Ok(figures)
}

async fn delete(n: usize) -> Result<Vec<Figure>> {
    eprintln!("  delete: forming an owner and {n} friends …");
    let swarm = Swarm::form(n).await?;
    let me = swarm.owner.namespace();
    let post = Path::parse("/feed/p1")?;
    swarm.write("/feed/p1", "to be deleted").await?;
    until("every friend holding the post", TIMEOUT, || {
        swarm
            .friends
            .iter()
            .all(|f| f.store().document(&me, &post).ok().flatten().is_some())
    })
    .await?;
    swarm.settle().await;
    let start = Instant::now();
    let tombstone = swarm.owner.delete(&post).await?;
    let mut confirmed: Vec<f64> = Vec::new();
    while confirmed.len() < n {
        if start.elapsed() > TIMEOUT {
            bail!(
                "only {} of {n} receipts within {TIMEOUT:?}",
                confirmed.len()
            );
        }
        let now = start.elapsed().as_secs_f64() * 1e3;
        let count = swarm
            .owner
            .receipts(tombstone)
            .await?
            .iter()
            .filter(|s| s.confirmed.is_some())
            .count();
        confirmed.resize(count.max(confirmed.len()), now);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for f in &swarm.friends {
        if f.store().document(&me, &post)?.is_some() {
            bail!("a friend confirmed the deletion but still holds the post");
        }
    }
    swarm.shutdown().await?;
    Ok(vec![
        Figure::new(
            "delete",
            format!("n{n}_receipts_p50"),
            quantile(&confirmed, 0.5),
            "ms",
        ),
        Figure::new(
            "delete",
            format!("n{n}_receipts_all"),
            quantile(&confirmed, 1.0),
            "ms",
        ),
    ])
}
