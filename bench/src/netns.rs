//! A small network of Linux network namespaces for the `wan` scenario: hosts
//! each in a namespace of their own, joined by veth pairs to one router
//! namespace, whose forwarding goes through a user-space delay and loss
//! shim on a TUN device (this kernel has no `netem`).
//!
//! ```text
//!   host h1 (10.97.1.2) ──veth── ┐
//!   host h2 (10.97.2.2) ──veth── ├ router: every forwarded packet goes
//!   …                            │ into `shim0` (policy routing), waits
//!   relay   (10.97.250.2) ─veth─ ┘ `delay`, is lost with `loss`, and
//!                                  comes back out to its destination
//! ```
//!
//! Every packet between two hosts passes the shim once, so a host pair's
//! round-trip time is twice the shim's delay. A path through the relay host
//! passes it twice each way; packets to or from the relay get half the
//! delay and half the loss, so the relayed path is as long and as lossy as
//! the direct one (the relay sits midway). With [`Net::relay_only`] the
//! router drops UDP between hosts other than the relay, so devices reach
//! each other only through the relay (whose traffic is TCP over the same
//! impaired hops).
//!
//! Code runs "on" a host through a tokio runtime whose threads were started
//! inside that host's namespace ([`Host::handle`]): sockets belong to the
//! namespace of the thread that creates them, and threads inherit the
//! namespace of the thread that starts them. Everything is created by this
//! process under names with its process id, and removed when the [`Net`] is
//! dropped. It needs root, `ip` (iproute2) and `/dev/net/tun`; `nft`
//! (nftables) for [`Net::relay_only`].

use std::fs::File;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::{RngExt, SeedableRng};

/// The third octet of the relay host's address.
pub(crate) const RELAY_HOST: u8 = 250;
/// The TUN device of the shim, inside the router namespace.
const SHIM_DEV: &str = "shim0";
/// The routing table that sends forwarded packets into the shim.
const SHIM_TABLE: &str = "100";

/// Why the network cannot be built here, if it cannot.
pub(crate) fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("it needs root (network namespaces, a TUN device)".into());
    }
    for tool in ["ip", "nft"] {
        let found = Command::new(tool)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!(
                "`{tool}` is missing (Debian: apt-get install iproute2 nftables)"
            ));
        }
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing".into());
    }
    None
}

/// Runs one command; its stderr in the error when it fails.
fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// How the router treats forwarded packets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Impairment {
    /// Added to every packet each time it crosses the router.
    pub(crate) delay: Duration,
    /// Share of packets dropped each time they cross the router.
    pub(crate) loss: f64,
}

/// The shim's counters.
#[derive(Debug, Default)]
pub(crate) struct ShimStats {
    /// Packets that crossed the router.
    pub(crate) forwarded: AtomicU64,
    /// Packets the shim dropped.
    pub(crate) dropped: AtomicU64,
}

/// The namespace network; removed on drop.
pub(crate) struct Net {
    prefix: String,
    router: String,
    namespaces: Vec<String>,
    stop: Arc<AtomicBool>,
    shim: Vec<std::thread::JoinHandle<()>>,
    /// What the shim did so far.
    pub(crate) stats: Arc<ShimStats>,
}

/// A host of the network: its namespace, address and a runtime inside it.
pub(crate) struct Host {
    /// The host's address.
    pub(crate) ip: Ipv4Addr,
    handle: tokio::runtime::Handle,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Host {
    /// A handle to the runtime whose threads live in this host's namespace:
    /// what is spawned on it opens its sockets there.
    pub(crate) fn handle(&self) -> tokio::runtime::Handle {
        self.handle.clone()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // Hosts are dropped from async code, where a runtime may not
            // block on its own shutdown.
            rt.shutdown_background();
        }
    }
}

impl Net {
    /// Builds the router and its shim with `impairment`.
    pub(crate) fn new(impairment: Impairment, seed: u64) -> Result<Self> {
        let prefix = format!("kb{}", std::process::id());
        let router = format!("{prefix}-r");
        let mut net = Self {
            prefix,
            router: router.clone(),
            namespaces: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            shim: Vec::new(),
            stats: Arc::default(),
        };
        net.add_ns(&router)?;
        for sysctl in [
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            "net.ipv6.conf.all.disable_ipv6=1",
        ] {
            run(&["ip", "netns", "exec", &router, "sysctl", "-qw", sysctl])?;
        }
        net.start_shim(impairment, seed)?;
        run(&[
            "ip",
            "netns",
            "exec",
            &router,
            "sysctl",
            "-qw",
            &format!("net.ipv4.conf.{SHIM_DEV}.rp_filter=0"),
        ])?;
        run(&[
            "ip", "-n", &router, "route", "add", "default", "dev", SHIM_DEV, "table", SHIM_TABLE,
        ])?;
        Ok(net)
    }

    fn add_ns(&mut self, ns: &str) -> Result<()> {
        run(&["ip", "netns", "add", ns])?;
        self.namespaces.push(ns.to_string());
        run(&["ip", "-n", ns, "link", "set", "lo", "up"])
    }

    /// Adds host number `n` (1–250) at 10.97.`n`.2 behind the router, with
    /// a runtime of `workers` threads inside its namespace.
    pub(crate) fn host(&mut self, n: u8, workers: usize) -> Result<Host> {
        let ns = format!("{}-h{n}", self.prefix);
        self.add_ns(&ns)?;
        run(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
        ])?;
        let dev = format!("h{n}");
        run(&[
            "ip",
            "-n",
            &self.router,
            "link",
            "add",
            &dev,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns,
        ])?;
        run(&[
            "ip",
            "-n",
            &self.router,
            "addr",
            "add",
            &format!("10.97.{n}.1/24"),
            "dev",
            &dev,
        ])?;
        run(&["ip", "-n", &self.router, "link", "set", &dev, "up"])?;
        run(&[
            "ip",
            "netns",
            "exec",
            &self.router,
            "sysctl",
            "-qw",
            &format!("net.ipv4.conf.{dev}.rp_filter=0"),
        ])?;
        // Everything that comes in from a host goes through the shim; what
        // the shim sends back comes in on its device and is routed normally.
        run(&[
            "ip",
            "-n",
            &self.router,
            "rule",
            "add",
            "iif",
            &dev,
            "lookup",
            SHIM_TABLE,
        ])?;
        let ip = Ipv4Addr::new(10, 97, n, 2);
        run(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "eth0",
        ])?;
        run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
        run(&[
            "ip",
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            &format!("10.97.{n}.1"),
        ])?;
        let runtime = runtime_in(&ns, workers)?;
        Ok(Host {
            ip,
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// From now on the router drops UDP between hosts unless one end is
    /// the relay host: devices reach each other only through the relay.
    pub(crate) fn relay_only(&self) -> Result<()> {
        let relay = Ipv4Addr::new(10, 97, RELAY_HOST, 2);
        let rules = format!(
            "table ip kithbench {{\n  chain forward {{\n    type filter hook forward priority 0; policy accept;\n    \
             meta l4proto udp ip saddr != {relay} ip daddr != {relay} drop\n  }}\n}}\n"
        );
        let file = std::env::temp_dir().join(format!("{}.nft", self.router));
        std::fs::write(&file, rules).context("writing the nftables rules")?;
        let path = file.to_string_lossy().to_string();
        let done = run(&["ip", "netns", "exec", &self.router, "nft", "-f", &path]);
        let _ = std::fs::remove_file(&file);
        done
    }

    fn start_shim(&mut self, impairment: Impairment, seed: u64) -> Result<()> {
        let router = self.router.clone();
        // The device belongs to the namespace of the thread that makes it;
        // it goes away with the last handle to it.
        let tun = std::thread::spawn(move || -> Result<tun::Device> {
            enter(&router)?;
            let mut config = tun::Configuration::default();
            config.tun_name(SHIM_DEV).up();
            tun::create(&config).context("making the shim's TUN device")
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread making the TUN device panicked"))??;
        let reader = Arc::new(tun);
        let writer = reader.clone();
        // Packets to or from the relay host cross the router on each of two
        // hops of a relayed path: they get half the delay and half the
        // loss, so that a path through the relay is as long and as lossy
        // as the direct one (the relay sits midway).
        let relay = Ipv4Addr::new(10, 97, RELAY_HOST, 2).octets();
        let half = Impairment {
            delay: impairment.delay / 2,
            loss: impairment.loss / 2.0,
        };
        let (full_tx, full_rx) = mpsc::channel::<(Instant, Vec<u8>)>();
        let (half_tx, half_rx) = mpsc::channel::<(Instant, Vec<u8>)>();
        let (stop, stats) = (self.stop.clone(), self.stats.clone());
        self.shim.push(std::thread::spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                let n = match reader.recv_timeout(&mut buf, Duration::from_millis(100)) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
                        ) =>
                    {
                        continue;
                    }
                    Err(e) => {
                        eprintln!("  link shim: reading the TUN device failed: {e}");
                        break;
                    }
                };
                stats.forwarded.fetch_add(1, Ordering::Relaxed);
                // IPv4: source at bytes 12..16, destination at 16..20.
                let relayed = n >= 20 && (buf[12..16] == relay || buf[16..20] == relay);
                let (how, tx) = if relayed {
                    (&half, &half_tx)
                } else {
                    (&impairment, &full_tx)
                };
                if how.loss > 0.0 && rng.random_bool(how.loss) {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if tx
                    .send((Instant::now() + how.delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }));
        // Within one queue every packet has the same delay, so due times
        // come in order.
        for rx in [full_rx, half_rx] {
            let writer = writer.clone();
            self.shim.push(std::thread::spawn(move || {
                for (due, packet) in rx {
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    // A packet the kernel refuses (its destination just
                    // went away) is lost, as on a real link.
                    let _ = writer.send(&packet);
                }
            }));
        }
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.shim.drain(..) {
            let _ = t.join();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Moves the calling thread into the named network namespace.
fn enter(ns: &str) -> Result<()> {
    let file = File::open(format!("/var/run/netns/{ns}"))
        .with_context(|| format!("opening network namespace {ns}"))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering network namespace {ns}"))
}

/// A tokio runtime whose threads start inside namespace `ns`.
fn runtime_in(ns: &str, workers: usize) -> Result<tokio::runtime::Runtime> {
    let ns = ns.to_string();
    std::thread::spawn(move || -> Result<tokio::runtime::Runtime> {
        enter(&ns)?;
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .enable_all()
            .build()
            .context("building a runtime in a namespace")
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the thread entering a namespace panicked"))?
}
