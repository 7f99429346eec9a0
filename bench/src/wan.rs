//! `wan`: kith on an impaired link, beside its peers on the same link in the
//! same run. The link is a namespace network ([`crate::netns`]) whose router
//! delays and drops packets in a user-space shim; each figure names the
//! link it ran on.
//!
//! - Fresh catch-up of 10,000 documents of ~1 KiB (as in `catchup`) over a
//!   direct path with 100 ms round-trip time and 1 % loss each way, beside
//!   iroh-docs (file store) on the same hosts.
//! - The same with UDP between the hosts dropped, so that both reach each
//!   other only through an iroh relay (iroh-relay's own server, run on a
//!   third host of the same network, midway: 25 ms and 0.5 % loss on each
//!   hop, so the relayed path is as long and as lossy as the direct one).
//! - A 64 MiB blob fetched through that relay, beside a raw iroh stream
//!   moving the same bytes through the same relay.
//! - Live push from an owner to 50 friends, each on a host of its own, with
//!   50 ms one-way latency on every path: p50/p99 of (change, friend), as in
//!   `fanout`, beside raw iroh-gossip on the same hosts.
//!
//! kith runs with each congestion control: auto (the default: BBR for its
//! own connections on long paths, CUBIC for gossip), CUBIC everywhere and
//! BBR everywhere.
//!
//! kith's route is checked after each catch-up (`Node::peers`): direct on
//! the direct link, the relay's URL on the relay-only one; a run that used
//! the other path is an error, not a figure. Needs root (see
//! [`crate::netns`]); elsewhere the scenario says why and measures nothing,
//! except under `CI=true`, where that is an error.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use iroh_relay::server::{CertConfig, QuicConfig, RelayConfig, Server, ServerConfig, TlsConfig};
use kith::{CongestionControl, Node, Route};
use rustls_pki_types::PrivateKeyDer;

use crate::Options;
use crate::catchup::{blob_round, fresh_catchup, median, pair_with, raw_stream_rate};
use crate::fanout;
use crate::netns::{Host, Impairment, Net, RELAY_HOST};
use crate::peers::{self, DocsStore};
use crate::rawgossip;
use crate::report::Figure;
use crate::site::{RelayAt, Site};
use crate::swarm::{Swarm, quantile, run_async};

const SCENARIO: &str = "wan";
/// Rounds of each catch-up and transfer (medians are reported).
const ROUNDS: usize = 3;
/// The catch-up link: 50 ms each way (100 ms round trip), 1 % loss each way.
const LOSSY: Impairment = Impairment {
    delay: Duration::from_millis(50),
    loss: 0.01,
};
/// The live-push link: 50 ms each way, no loss.
const SLOW: Impairment = Impairment {
    delay: Duration::from_millis(50),
    loss: 0.0,
};

/// Runs the `wan` scenario.
pub(crate) fn run(opts: &Options) -> Result<Vec<Figure>> {
    if let Some(why) = crate::netns::unavailable() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            bail!("the wan scenario cannot run under CI=true: {why}");
        }
        eprintln!("  wan: skipped: {why}");
        return Ok(Vec::new());
    }
    run_async(wan(opts))
}

async fn wan(opts: &Options) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let n = opts.scaled(10_000);
    {
        let mut net = Net::new(LOSSY, 0x7761_6e31)?;
        let owner_host = net.host(1, 2)?;
        let friend_host = net.host(2, 2)?;
        let relay_host = net.host(RELAY_HOST, 1)?;
        let (relay, relay_at) = start_relay(&relay_host).await?;
        eprintln!("  wan: catch-up over a direct path, 100 ms RTT, 1 % loss …");
        let direct = [Site::on(&owner_host, None), Site::on(&friend_host, None)];
        figures.extend(catchups(n, &direct, Via::Direct, "direct, 100 ms RTT, 1 % loss").await?);
        net.relay_only()?;
        let via = [
            Site::on(&owner_host, Some(relay_at.clone())),
            Site::on(&friend_host, Some(relay_at.clone())),
        ];
        eprintln!("  wan: catch-up through the relay only …");
        figures.extend(catchups(n, &via, Via::Relay, "relay only, 100 ms RTT, 1 % loss").await?);
        eprintln!("  wan: a blob through the relay …");
        // At least 1 MiB: smaller blobs come with the catch-up itself.
        figures.push(blob(opts.scaled(64 << 20).max(1 << 20) as u64, &via).await?);
        let stats = &net.stats;
        eprintln!(
            "  wan: the shim forwarded {} packets and dropped {}",
            stats.forwarded.load(std::sync::atomic::Ordering::Relaxed),
            stats.dropped.load(std::sync::atomic::Ordering::Relaxed)
        );
        relay_host
            .handle()
            .spawn(relay.shutdown())
            .await?
            .context("stopping the relay")?;
    }
    figures.extend(live_push(opts).await?);
    Ok(figures)
}

/// Which path a kith transfer must have taken.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Via {
    Direct,
    Relay,
}

/// Starts iroh-relay's server (HTTPS relay and QUIC address discovery, a
/// self-signed certificate for the host's address) on `host`.
async fn start_relay(host: &Host) -> Result<(Server, Arc<RelayAt>)> {
    let name = host.ip.to_string();
    let made = rcgen::generate_simple_self_signed(vec![name.clone()])
        .context("making the relay's certificate")?;
    let key = PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![made.cert.der().clone()], key)?;
    let mut relay = RelayConfig::new(std::net::SocketAddr::from(([0, 0, 0, 0], 80)));
    relay.tls = Some(TlsConfig::new(
        std::net::SocketAddr::from(([0, 0, 0, 0], 443)),
        CertConfig::Manual {
            server_config: tls.clone(),
        },
    ));
    let mut quic = QuicConfig::new(std::net::SocketAddr::from(([0, 0, 0, 0], 7842)));
    quic.server_config = Some(tls);
    let mut config = ServerConfig::default();
    config.relay = Some(relay);
    config.quic = Some(quic);
    let server = host
        .handle()
        .spawn(Server::spawn(config))
        .await?
        .context("starting the relay")?;
    let at = RelayAt {
        url: format!("https://{name}/").parse()?,
        ca: made.cert.der().to_vec(),
    };
    Ok((server, Arc::new(at)))
}

/// The congestion controls kith is measured with, and how figures name
/// them.
const CONGESTION: [(CongestionControl, &str); 3] = [
    (CongestionControl::Auto, "auto (the default)"),
    (CongestionControl::Cubic, "CUBIC everywhere"),
    (CongestionControl::Bbr, "BBR everywhere"),
];

/// kith's fresh catch-up of `n` documents from `sites[0]` to `sites[1]`
/// (median of [`ROUNDS`]), beside iroh-docs with a file store.
async fn catchups(n: usize, sites: &[Site; 2], path: Via, link: &str) -> Result<Vec<Figure>> {
    let mut kith = vec![Vec::new(); CONGESTION.len()];
    for _ in 0..ROUNDS {
        for ((congestion, _), times) in CONGESTION.iter().zip(&mut kith) {
            times.push(kith_catchup(n, sites, path, *congestion).await?);
        }
    }
    let (mut complete, mut entries, mut stalled) = (Vec::new(), Vec::new(), 0);
    for _ in 0..ROUNDS {
        let dir = tempfile::tempdir()?;
        match peers::iroh_docs_catchup_at(
            n,
            1024,
            DocsStore::File(dir.path().to_path_buf()),
            &sites[0],
            &sites[1],
        )
        .await
        {
            Ok(run) => {
                if let Some(d) = run.entries {
                    entries.push(d.as_secs_f64());
                }
                match run.complete {
                    Some(d) => complete.push(d.as_secs_f64()),
                    None => {
                        stalled += 1;
                        eprintln!(
                            "  wan: iroh-docs ({link}) stalled: {}",
                            run.stall.unwrap_or_default()
                        );
                    }
                }
            }
            Err(e) => eprintln!("  wan: iroh-docs ({link}) failed a round: {e:#}"),
        }
    }
    let mut figures = Vec::new();
    for ((_, how), times) in CONGESTION.iter().zip(kith) {
        let name = format!("fresh catch-up ({n} docs × ~1 KiB), {link}, {how}");
        let kith = median(times);
        let before = figures.len();
        if !complete.is_empty() {
            figures.push(Figure::new(SCENARIO, name.clone(), kith, "s").with_peer(
                format!("iroh-docs, file store ({stalled} of {ROUNDS} rounds stalled)"),
                median(complete.clone()),
            ));
        }
        if complete.len() < ROUNDS && !entries.is_empty() {
            // Where iroh-docs's content downloads stalled, the time its
            // entries took is a bound it could only have exceeded.
            figures.push(Figure::new(SCENARIO, name.clone(), kith, "s").with_peer(
                format!("iroh-docs entries alone, content stalled in {stalled} of {ROUNDS} rounds"),
                median(entries.clone()),
            ));
        }
        if figures.len() == before {
            figures.push(Figure::new(SCENARIO, name, kith, "s"));
        }
    }
    Ok(figures)
}

async fn kith_catchup(
    n: usize,
    sites: &[Site; 2],
    path: Via,
    congestion: CongestionControl,
) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let (owner, friend) = pair_with(dir.path(), &sites[0], &sites[1], congestion).await?;
    let report = fresh_catchup(&owner, &friend, n).await?;
    check_route(&friend, &owner, path).await?;
    owner.shutdown().await?;
    friend.shutdown().await?;
    Ok(report.duration.as_secs_f64())
}

/// Fails unless `friend` reaches `owner`'s device the way `path` says.
async fn check_route(friend: &Node, owner: &Node, path: Via) -> Result<()> {
    let peers = friend.peers().await?;
    let route = peers
        .iter()
        .find(|p| p.namespace == owner.namespace())
        .and_then(|p| p.route.clone());
    match (path, &route) {
        (Via::Direct, Some(Route::Direct(_))) | (Via::Relay, Some(Route::Relay(_))) => Ok(()),
        _ => bail!("expected a {path:?} path to the owner, got {route:?}"),
    }
}

/// A blob of `size` bytes fetched through the relay, beside a raw iroh
/// stream through it (MB/s, medians of [`ROUNDS`]).
async fn blob(size: u64, sites: &[Site; 2]) -> Result<Figure> {
    let mut kith = Vec::new();
    let mut raw = Vec::new();
    let cipher = kith::store::BlobCipher::for_this_machine();
    for round in 0..ROUNDS {
        let done = blob_round(size, round as u64, sites, cipher).await?;
        check_route(&done.friend, &done.owner, Via::Relay).await?;
        kith.push(done.rate);
        done.shutdown().await?;
        // The raw stream goes from the owner's host to the friend's, as
        // the blob did.
        raw.extend(raw_stream_rate(size, sites, None).await);
    }
    let mut figure = Figure::new(
        SCENARIO,
        format!(
            "blob fetch ({}, verified), relay only, 100 ms RTT, 1 % loss",
            if size >= 1 << 20 {
                format!("{} MiB", size >> 20)
            } else {
                format!("{} KiB", size >> 10)
            }
        ),
        median(kith),
        "MB/s",
    );
    if !raw.is_empty() {
        figure = figure.with_peer("raw iroh stream, same relay", median(raw));
    }
    Ok(figure)
}

/// Live push to 50 friends on hosts of their own, 50 ms one way.
async fn live_push(opts: &Options) -> Result<Vec<Figure>> {
    let friends = opts.scaled(50).max(2);
    let changes = opts.scaled(50).max(3);
    eprintln!("  wan: live push to {friends} friends, 50 ms one way …");
    let mut net = Net::new(SLOW, 0x7761_6e32)?;
    let mut hosts = Vec::with_capacity(friends + 1);
    for i in 0..=friends {
        hosts.push(net.host(1 + i as u8, if i == 0 { 2 } else { 1 })?);
    }
    let sites: Vec<Site> = hosts.iter().map(|h| Site::on(h, None)).collect();
    let mut kith = Vec::new();
    for (congestion, how) in CONGESTION {
        let swarm = Swarm::form_with(&sites, congestion).await?;
        let measured = fanout::measure(&swarm, changes).await?;
        swarm.shutdown().await?;
        kith.push((how, measured.latencies));
    }
    eprintln!("  wan: the same with raw iroh-gossip …");
    let raw = rawgossip::run_at(&sites, changes).await?;
    let peer = "raw iroh-gossip (CUBIC), same hosts";
    let mut figures = Vec::new();
    for (how, lat) in kith {
        for (q, at) in [("p50", 0.5), ("p99", 0.99)] {
            figures.push(
                Figure::new(
                    SCENARIO,
                    format!("live push to {friends} friends, 50 ms one way, {how}, {q}"),
                    quantile(&lat, at),
                    "ms",
                )
                .with_peer(peer, quantile(&raw.latencies, at)),
            );
        }
    }
    Ok(figures)
}
