//! The `fanout` scenario's peer: raw iroh-gossip with the same shape of
//! work (one publisher, N subscribers in this process on loopback, 50
//! messages of the size of kith's sealed 1 KiB change, one every 200 ms),
//! without kith's signing, sealing, storing or recovery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use iroh::address_lookup::memory::MemoryLookup;
use iroh::protocol::Router;
use iroh_gossip::api::Event;
use iroh_gossip::net::Gossip;
use n0_future::StreamExt;

use crate::site::Site;
use crate::swarm::{process_cpu, settle, until};

/// Bytes per message: about what kith broadcasts for a 1 KiB change (the
/// Automerge change, heads and path, signature, sealing).
pub(crate) const MESSAGE_BYTES: usize = 1400;

/// What raw gossip measured: latencies (ms, sorted), the publisher's
/// upload per message in bytes (less its idle rate), the share delivered.
pub(crate) struct Raw {
    pub(crate) latencies: Vec<f64>,
    pub(crate) upload_per_message: f64,
    pub(crate) delivered: f64,
    /// CPU time of the process per message delivered to a subscriber (µs),
    /// less its idle rate.
    pub(crate) cpu_per_delivery_us: f64,
    /// CPU time of the process at rest, in cores (1.0: one core busy).
    pub(crate) idle_cores: f64,
}

/// Runs `messages` broadcasts from one publisher to `n` subscribers.
pub(crate) async fn run(n: usize, messages: usize) -> Result<Raw> {
    run_at(&vec![Site::Loopback; n + 1], messages).await
}

/// [`run`] with the publisher at `sites[0]` and a subscriber at each other.
pub(crate) async fn run_at(sites: &[Site], messages: usize) -> Result<Raw> {
    let n = sites.len().saturating_sub(1);
    let lookup = MemoryLookup::new();
    let mut nodes = Vec::with_capacity(n + 1);
    for site in sites {
        let endpoint = site.endpoint(&lookup, Vec::new()).await?;
        let gossip = Gossip::builder().spawn(endpoint.clone());
        let router = Router::builder(endpoint.clone())
            .accept(iroh_gossip::ALPN, gossip.clone())
            .spawn();
        nodes.push((endpoint, gossip, router));
    }
    let topic = iroh_gossip::TopicId::from_bytes(rand::random());
    let publisher_id = nodes[0].0.id();
    let (sender, _publisher_events) = nodes[0]
        .1
        .subscribe(topic, Vec::new())
        .await
        .context("subscribing the publisher")?
        .split();
    let arrivals: Arc<Mutex<HashMap<(usize, u32), Instant>>> = Arc::default();
    let mut tasks = Vec::new();
    let mut joined = Vec::new();
    for i in 1..=n {
        // The publisher and two random earlier subscribers, as kith joins.
        let mut bootstrap = vec![publisher_id];
        for _ in 0..2.min(i - 1) {
            bootstrap.push(nodes[1 + rand::random_range(0..i - 1)].0.id());
        }
        let (_, mut events) = nodes[i]
            .1
            .subscribe(topic, bootstrap)
            .await
            .context("subscribing")?
            .split();
        let arrivals = arrivals.clone();
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        joined.push(flag.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(event)) = events.next().await {
                match event {
                    Event::NeighborUp(_) => flag.store(true, std::sync::atomic::Ordering::Relaxed),
                    Event::Received(msg) => {
                        if let Some(idx) = msg.content.get(..4)
                            && let Ok(idx) = <[u8; 4]>::try_from(idx)
                            && let Ok(mut a) = arrivals.lock()
                        {
                            a.entry((i, u32::from_be_bytes(idx)))
                                .or_insert_with(Instant::now);
                        }
                    }
                    _ => {}
                }
            }
        }));
    }
    until(
        "raw gossip subscribers joining",
        Duration::from_secs(120),
        || {
            joined
                .iter()
                .all(|f| f.load(std::sync::atomic::Ordering::Relaxed))
        },
    )
    .await?;
    let sent = |nodes: &[(iroh::Endpoint, Gossip, Router)]| {
        let m = &nodes[0].0.metrics().socket;
        m.send_ipv4.get() + m.send_ipv6.get()
    };
    // Let the membership settle as kith's swarm does.
    settle(|| sent(&nodes)).await;
    let start = (Instant::now(), sent(&nodes));
    let cpu_start = process_cpu();
    crate::profile_window("raw", "enable");
    let mut written = Vec::with_capacity(messages);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    for i in 0..messages {
        tick.tick().await;
        let mut msg = vec![0u8; MESSAGE_BYTES];
        msg[..4].copy_from_slice(&(i as u32).to_be_bytes());
        msg[4..].iter_mut().for_each(|b| *b = rand::random());
        written.push(Instant::now());
        sender
            .broadcast(Bytes::from(msg))
            .await
            .context("broadcasting")?;
    }
    let all = n * messages;
    // Raw gossip has no recovery: whoever is cut off stays so.
    let _ = until("raw gossip delivering", Duration::from_secs(10), || {
        arrivals.lock().map(|a| a.len()).unwrap_or(0) >= all
    })
    .await;
    crate::profile_window("raw", "disable");
    let total = (sent(&nodes) - start.1) as f64;
    let cpu = process_cpu() - cpu_start;
    let duration = start.0.elapsed().as_secs_f64();
    let idle = (Instant::now(), sent(&nodes), process_cpu());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_secs = idle.0.elapsed().as_secs_f64();
    let idle_rate = (sent(&nodes) - idle.1) as f64 / idle_secs;
    let idle_cpu_rate = (process_cpu() - idle.2) / idle_secs;
    let (latencies, delivered) = {
        let a = arrivals
            .lock()
            .map_err(|_| anyhow::anyhow!("arrivals lock poisoned"))?;
        let mut l: Vec<f64> = a
            .iter()
            .map(|((_, i), t)| (*t - written[*i as usize]).as_secs_f64() * 1e3)
            .collect();
        l.sort_by(f64::total_cmp);
        (l, a.len() as f64 / all as f64)
    };
    for t in tasks {
        t.abort();
    }
    for (_, _, router) in nodes {
        let _ = tokio::time::timeout(Duration::from_secs(10), router.shutdown()).await;
    }
    if latencies.is_empty() {
        bail!("raw gossip delivered nothing");
    }
    let deliveries = (delivered * all as f64).max(1.0);
    Ok(Raw {
        upload_per_message: (total - idle_rate * duration).max(0.0) / messages as f64,
        cpu_per_delivery_us: (cpu - idle_cpu_rate * duration).max(0.0) * 1e6 / deliveries,
        idle_cores: idle_cpu_rate,
        latencies,
        delivered,
    })
}
