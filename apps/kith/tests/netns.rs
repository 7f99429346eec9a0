#![allow(clippy::unwrap_used, clippy::expect_used)]
//! kith across a small internet made of network namespaces, with the real
//! `kith` binary: a "public" segment with a relay (`kith relay`, iroh's own
//! relay server, self-signed), and alice, bob, carol and alice's backup
//! device each behind a router namespace doing NAT (nftables masquerade).
//!
//! Variants: routers that let hole punching succeed (the friends end up on
//! direct paths); routers that drop UDP between the peers, so only the
//! relay works; a device that moves to another network mid-run. Every
//! address is the test's own, inside namespaces it creates and removes;
//! nothing is sent anywhere else (nodes use only the test's relay, with no
//! lookups by key). Needs root (it creates namespaces): without it the
//! tests skip with a message, except under `CI=true`, where they fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{KITH, POLL, first_line};
use serde_json::Value;

/// How long something across the namespaces may take.
const WAIT: Duration = Duration::from_secs(60);
/// How long a live post may take.
const LIVE: Duration = Duration::from_secs(10);
/// The relay's address on the public segment.
const RELAY_IP: &str = "10.99.0.2";

/// Whether these tests can run here; if not, why (and under `CI=true` that
/// is a failure).
fn can_run() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let tools = ["ip", "nft"].iter().all(|t| {
        Command::new(t)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if root && tools {
        return true;
    }
    let why = if root {
        "`ip` (iproute2) or `nft` (nftables) is missing"
    } else {
        "they need root to create network namespaces"
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the network-namespace tests cannot run under CI=true: {why}"
    );
    eprintln!("skipping the network-namespace tests: {why}");
    false
}

/// Runs `cmd` and fails the test with its output if it fails.
fn sh(cmd: &[&str]) {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How the routers treat traffic between the peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nat {
    /// Masquerade only: hole punching succeeds.
    Open,
    /// Masquerade, and UDP towards another router is dropped: only the
    /// relay connects the peers.
    RelayOnly,
}

/// A network of namespaces, removed when dropped.
struct Net {
    tag: String,
    namespaces: Vec<String>,
    /// Next free index on the public segment.
    next: u8,
}

/// One host behind its router.
#[derive(Debug, Clone)]
struct Host {
    ns: String,
    router: String,
}

static NETS: AtomicU32 = AtomicU32::new(0);

impl Net {
    /// The public segment with the relay host.
    fn new() -> Self {
        let tag = format!(
            "k{}{}",
            std::process::id() % 100_000,
            NETS.fetch_add(1, Ordering::Relaxed)
        );
        let mut net = Self {
            tag,
            namespaces: Vec::new(),
            next: 10,
        };
        let public = net.add_ns("pub");
        sh(&["ip", "-n", &public, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", &public, "link", "set", "br0", "up"]);
        let relay = net.add_ns("relay");
        net.link_to_public(&relay, "eth0", "prelay", &format!("{RELAY_IP}/24"));
        net
    }

    fn public(&self) -> String {
        format!("{}-pub", self.tag)
    }

    fn relay(&self) -> String {
        format!("{}-relay", self.tag)
    }

    fn add_ns(&mut self, role: &str) -> String {
        let ns = format!("{}-{role}", self.tag);
        sh(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// A veth from `ns` (named `dev`, with `addr`) to the public bridge.
    fn link_to_public(&self, ns: &str, dev: &str, peer: &str, addr: &str) {
        let public = self.public();
        sh(&[
            "ip", "-n", ns, "link", "add", dev, "type", "veth", "peer", "name", peer, "netns",
            &public,
        ]);
        sh(&["ip", "-n", &public, "link", "set", peer, "master", "br0"]);
        sh(&["ip", "-n", &public, "link", "set", peer, "up"]);
        sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
        sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
    }

    /// A host named `role` on LAN `192.168.LAN.0/24` behind a router doing
    /// `nat` on the public segment.
    fn host(&mut self, role: &str, lan: u8, nat: Nat) -> Host {
        let router = self.router(role, nat);
        let ns = self.add_ns(role);
        sh(&[
            "ip", "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", "lan0",
            "netns", &router,
        ]);
        self.lan_up(&router, "lan0", lan);
        sh(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("192.168.{lan}.2/24"),
            "dev",
            "eth0",
        ]);
        sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        sh(&[
            "ip",
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            &format!("192.168.{lan}.1"),
        ]);
        Host { ns, router }
    }

    /// A router namespace for `role`: WAN on the public segment, NAT (its
    /// LAN is added by the caller).
    fn router(&mut self, role: &str, nat: Nat) -> String {
        let router = self.add_ns(&format!("r{role}"));
        let wan = self.next;
        self.next += 1;
        self.link_to_public(
            &router,
            "wan",
            &format!("p{role}"),
            &format!("10.99.0.{wan}/24"),
        );
        sh(&[
            "ip",
            "netns",
            "exec",
            &router,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        // Unsolicited UDP from outside is dropped before its connection
        // entry is confirmed, as home routers do: otherwise the entry would
        // take the port a hole punch needs, and masquerade would map the
        // next outgoing packet elsewhere.
        let mut rules = String::from(
            "table ip nat {\n  chain post {\n    type nat hook postrouting priority 100; policy accept;\n    oifname \"wan\" masquerade\n  }\n}\ntable ip filter {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    iifname \"wan\" ct state new meta l4proto udp drop\n  }\n",
        );
        if nat == Nat::RelayOnly {
            // Nothing but the relay's UDP crosses between the peers.
            rules.push_str(&format!(
                "  chain peers {{\n    type filter hook forward priority 0; policy accept;\n    ip daddr 10.99.0.0/24 ip daddr != {RELAY_IP} meta l4proto udp drop\n    ip saddr 10.99.0.0/24 ip saddr != {RELAY_IP} meta l4proto udp drop\n  }}\n"
            ));
        }
        rules.push_str("}\n");
        let file = std::env::temp_dir().join(format!("{router}.nft"));
        std::fs::write(&file, rules).unwrap();
        sh(&[
            "ip",
            "netns",
            "exec",
            &router,
            "nft",
            "-f",
            file.to_str().unwrap(),
        ]);
        let _ = std::fs::remove_file(file);
        router
    }

    fn lan_up(&self, router: &str, dev: &str, lan: u8) {
        sh(&[
            "ip",
            "-n",
            router,
            "addr",
            "add",
            &format!("192.168.{lan}.1/24"),
            "dev",
            dev,
        ]);
        sh(&["ip", "-n", router, "link", "set", dev, "up"]);
    }

    /// Moves `host` to a new network: a second router (its own public
    /// address), LAN `192.168.LAN.0/24`; the old link goes down.
    fn move_host(&mut self, host: &mut Host, lan: u8, nat: Nat) {
        let router = self.router(&format!("{lan}m"), nat);
        sh(&[
            "ip", "-n", &host.ns, "link", "add", "eth1", "type", "veth", "peer", "name", "lan0",
            "netns", &router,
        ]);
        self.lan_up(&router, "lan0", lan);
        sh(&["ip", "-n", &host.ns, "link", "set", "eth0", "down"]);
        sh(&[
            "ip",
            "-n",
            &host.ns,
            "addr",
            "add",
            &format!("192.168.{lan}.2/24"),
            "dev",
            "eth1",
        ]);
        sh(&["ip", "-n", &host.ns, "link", "set", "eth1", "up"]);
        sh(&[
            "ip",
            "-n",
            &host.ns,
            "route",
            "replace",
            "default",
            "via",
            &format!("192.168.{lan}.1"),
        ]);
        host.router = router;
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A process in a namespace, killed when dropped.
struct Proc {
    child: Child,
    started: Value,
}

impl Proc {
    /// Runs `kith ARGS…` in `ns` and waits for its first line.
    fn start(ns: &str, args: &[&str]) -> Self {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, KITH])
            .args(args)
            .env_remove("KITH_DATA")
            .env("KITH_RESYNC_SECS", "3600")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let line = first_line(child.stdout.take().unwrap(), "kith in a namespace", WAIT);
        let started = serde_json::from_str(&line).unwrap_or(Value::String(line));
        Self { child, started }
    }

    /// Stops it as a service manager would (SIGTERM) and waits.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "kith did not stop");
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A person's device: a data folder used from its host's namespace.
#[derive(Debug, Clone)]
struct Device {
    host: Host,
    data: PathBuf,
}

impl Device {
    fn kith(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.host.ns, KITH, "--data"])
            .arg(&self.data)
            .args(args)
            .env_remove("KITH_DATA")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kith(args);
        assert!(
            out.status.success(),
            "kith {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// `kith serve` through the test's relay only.
    fn serve(&self, relay: &Relay) -> Proc {
        self.serve_with(relay, "none")
    }

    /// `kith serve` through the test's relay, with lookups by key at
    /// `discovery` (`none`: none).
    fn serve_with(&self, relay: &Relay, discovery: &str) -> Proc {
        Proc::start(
            &self.host.ns,
            &[
                "--data",
                self.data.to_str().unwrap(),
                "serve",
                "--http",
                "127.0.0.1:0",
                "--relay",
                &relay.url,
                "--relay-ca",
                relay.cert.to_str().unwrap(),
                "--discovery",
                discovery,
                "--headless",
                "--json",
            ],
        )
    }

    fn ticket(&self) -> String {
        self.ok(&["ticket"]).trim().to_string()
    }

    fn id(&self) -> Value {
        self.json(&["id"])
    }

    fn timeline(&self) -> Vec<String> {
        self.json(&["feed", "timeline"])["posts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["text"].as_str().unwrap().to_string())
            .collect()
    }

    /// The status this device's daemon gives of `other`'s device.
    fn peer(&self, other: &Device) -> Value {
        let device = other.id()["device"].clone();
        self.json(&["status"])["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["device"] == device)
            .cloned()
            .unwrap_or(Value::Null)
    }
}

/// The test's relay.
struct Relay {
    proc: Proc,
    url: String,
    cert: PathBuf,
}

fn relay(net: &Net, dir: &Path) -> Relay {
    relay_with(net, dir, &[])
}

/// The discovery server's pkarr URL, when the relay runs one.
fn pkarr_url() -> String {
    format!("http://{RELAY_IP}:8080/pkarr")
}

fn relay_with(net: &Net, dir: &Path, extra: &[&str]) -> Relay {
    let cert = dir.join("relay-cert.pem");
    let mut args = vec![
        "relay",
        "--http",
        "0.0.0.0:80",
        "--https",
        "0.0.0.0:443",
        "--quic",
        "0.0.0.0:7842",
        "--self-signed",
        RELAY_IP,
        "--write-cert",
        cert.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    let proc = Proc::start(&net.relay(), &args);
    let url = proc.started["url"].as_str().unwrap().to_string();
    assert_eq!(url, format!("https://{RELAY_IP}/"));
    Relay { proc, url, cert }
}

/// Checks `f` every [`POLL`] until it holds, for at most `within`; returns
/// how long it took.
fn eventually(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting until {what}"
        );
        std::thread::sleep(POLL * 3);
    }
    start.elapsed()
}

/// A device named `name` in `dir`, on a host behind its own router.
fn device(net: &mut Net, dir: &Path, name: &str, lan: u8, nat: Nat) -> Device {
    Device {
        host: net.host(name, lan, nat),
        data: dir.join(name),
    }
}

fn befriend(a: &Device, an: &str, b: &Device, bn: &str) {
    let (ta, tb) = (a.ticket(), b.ticket());
    a.ok(&["friend", "add", &tb, "--name", bn]);
    b.ok(&["friend", "add", &ta, "--name", an]);
}

/// The journeys every variant runs: friends by ticket, live posts, the
/// path the friends are on, catch-up after one side was offline, blobs,
/// revoke, remote deletion with receipts, and the backup serving bob with
/// the phone stopped.
fn journeys(nat: Nat) {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut net = Net::new();
    let relay = relay(&net, dir.path());
    let alice = device(&mut net, dir.path(), "alice", 1, nat);
    let bob = device(&mut net, dir.path(), "bob", 2, nat);
    let carol = device(&mut net, dir.path(), "carol", 3, nat);
    let backup = device(&mut net, dir.path(), "backup", 4, nat);
    for (d, name) in [(&alice, "alice"), (&bob, "bob"), (&carol, "carol")] {
        d.ok(&["init", "--name", name]);
    }
    let a = alice.serve(&relay);
    let ticket: kith::Ticket = alice.ticket().parse().unwrap();
    assert_eq!(
        ticket.relays,
        vec![relay.url.clone()],
        "the ticket names the relay"
    );
    let b = bob.serve(&relay);
    let _c = carol.serve(&relay);
    befriend(&alice, "alice", &bob, "bob");
    befriend(&alice, "alice", &carol, "carol");

    // Live posts.
    alice.ok(&["feed", "post", "hello across the routers"]);
    for d in [&bob, &carol] {
        let took = eventually("the first post arrives", WAIT, || {
            d.timeline()
                .contains(&"hello across the routers".to_string())
        });
        eprintln!("{nat:?}: live post in {took:?}");
    }

    // The path: direct after hole punching, or through the relay.
    let want = match nat {
        Nat::Open => "direct",
        Nat::RelayOnly => "relay",
    };
    let took = eventually(&format!("bob reaches alice {want}"), WAIT, || {
        let p = bob.peer(&alice);
        eprintln!("{p}");
        p["route"] == want
    });
    let seen = bob.peer(&alice);
    eprintln!(
        "{nat:?}: bob → alice {} via {} after {took:?}",
        seen["route"], seen["via"]
    );
    if nat == Nat::Open {
        assert!(
            seen["via"].as_str().unwrap().starts_with("10.99.0."),
            "direct to alice's public address: {seen}"
        );
    } else {
        assert_eq!(seen["via"], relay.url.as_str(), "{seen}");
    }

    // Catch-up after bob was offline.
    b.stop();
    alice.ok(&["feed", "post", "while bob was away"]);
    let b = bob.serve(&relay);
    let took = eventually("bob catches up after a restart", WAIT, || {
        bob.timeline().contains(&"while bob was away".to_string())
    });
    eprintln!("{nat:?}: catch-up after restart in {took:?}");

    // A blob.
    let photo: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = dir.path().join("photo.jpg");
    std::fs::write(&file, &photo).unwrap();
    alice.ok(&[
        "put",
        "/feed/friends/photo.jpg",
        "--file",
        file.to_str().unwrap(),
    ]);
    let got = dir.path().join("got.jpg");
    eventually("bob fetches the photo", WAIT, || {
        bob.kith(&[
            "get",
            "alice",
            "/feed/friends/photo.jpg",
            "--out",
            got.to_str().unwrap(),
        ])
        .status
        .success()
    });
    assert_eq!(std::fs::read(&got).unwrap(), photo);

    // Revoke: carol loses the close friends; the next close post reaches
    // bob only.
    alice.ok(&["grant", "bob", "/feed/close"]);
    alice.ok(&["grant", "carol", "/feed/close"]);
    alice.ok(&["revoke", "carol", "/feed/close"]);
    alice.ok(&["feed", "post", "close friends only", "--audience", "close"]);
    eventually("the close post reaches bob", WAIT, || {
        bob.timeline().contains(&"close friends only".to_string())
    });
    carol.ok(&["sync", "alice"]);
    assert!(
        !carol.timeline().contains(&"close friends only".to_string()),
        "a revoked friend received a later post"
    );

    // Remote deletion, confirmed by both friends with receipts.
    let post = alice.json(&["feed", "post", "delete me later"]);
    let path = post["path"].as_str().unwrap().to_string();
    for d in [&bob, &carol] {
        eventually("the post to delete arrives", WAIT, || {
            d.timeline().contains(&"delete me later".to_string())
        });
    }
    let rm = alice.json(&["rm", &path, "--remote"]);
    let deletion = rm["deletion"].as_str().unwrap().to_string();
    let took = eventually("both friends confirm the deletion", WAIT, || {
        alice
            .json(&["receipts", &path])
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == deletion.as_str() && d["confirmed"] == 2)
    });
    eprintln!("{nat:?}: receipts in {took:?}");
    for d in [&bob, &carol] {
        assert_eq!(d.kith(&["get", "alice", &path]).status.code(), Some(1));
    }

    // Alice's backup, behind its own router; with the phone stopped, bob
    // catches up from the backup knowing only the phone's ticket.
    let joined = backup.json(&["device", "join"])["device"]
        .as_str()
        .unwrap()
        .to_string();
    let invite = alice.ok(&["device", "invite", &joined]).trim().to_string();
    let out = backup.kith(&[
        "device",
        "join",
        &invite,
        "--relay",
        &relay.url,
        "--relay-ca",
        relay.cert.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _k = backup.serve(&relay);
    alice.ok(&["feed", "post", "from the phone to its backup"]);
    eventually("the phone's post reaches the backup", WAIT, || {
        backup
            .timeline()
            .contains(&"from the phone to its backup".to_string())
    });
    // Bob learns where the backup is from the phone's catch-up.
    eventually("bob learns the backup's address", WAIT, || {
        bob.ok(&["sync", "alice"]);
        bob.peer(&backup)["addresses"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    a.stop();
    backup.ok(&["feed", "post", "from the backup, the phone is off"]);
    let synced = bob.json(&["sync", "alice"]);
    assert_eq!(
        synced["device"],
        backup.id()["device"],
        "served by the backup"
    );
    eventually("the backup's post reaches bob", WAIT, || {
        bob.timeline()
            .contains(&"from the backup, the phone is off".to_string())
    });
    drop(b);
}

#[test]
fn across_nats_that_let_hole_punching_succeed() {
    journeys(Nat::Open);
}

#[test]
fn across_nats_where_only_the_relay_connects() {
    journeys(Nat::RelayOnly);
}

#[test]
fn a_device_that_moves_to_another_network_is_reached_again() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut net = Net::new();
    let relay = relay(&net, dir.path());
    let mut alice = device(&mut net, dir.path(), "alice", 1, Nat::Open);
    let bob = device(&mut net, dir.path(), "bob", 2, Nat::Open);
    alice.ok(&["init", "--name", "alice"]);
    bob.ok(&["init", "--name", "bob"]);
    let _a = alice.serve(&relay);
    let _b = bob.serve(&relay);
    befriend(&alice, "alice", &bob, "bob");
    alice.ok(&["feed", "post", "before moving"]);
    eventually("the first post arrives", LIVE, || {
        bob.timeline().contains(&"before moving".to_string())
    });
    eventually("bob reaches alice directly", WAIT, || {
        bob.peer(&alice)["route"] == "direct"
    });
    let before = bob.peer(&alice)["via"].clone();

    // Alice's device moves to another network (a new public address).
    net.move_host(&mut alice.host, 9, Nat::Open);
    alice.ok(&["feed", "post", "after moving"]);
    let took = eventually("the post after moving arrives", WAIT, || {
        bob.timeline().contains(&"after moving".to_string())
    });
    eprintln!("moved: the post arrived after {took:?}");
    let took = eventually("bob reaches alice again at her new address", WAIT, || {
        let p = bob.peer(&alice);
        p["reachable"] == true && p["route"].is_string() && p["via"] != before
    });
    eprintln!(
        "moved: bob reaches alice again after {took:?}: {}",
        bob.peer(&alice)
    );
}

#[test]
fn a_friend_known_only_by_key_is_found_through_the_discovery_server() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut net = Net::new();
    let data = dir.path().join("discovery");
    let relay = relay_with(
        &net,
        dir.path(),
        &[
            "--discovery-http",
            "0.0.0.0:8080",
            "--discovery-dns",
            "0.0.0.0:5300",
            "--discovery-data",
            data.to_str().unwrap(),
        ],
    );
    assert_eq!(relay.proc.started["discovery"], pkarr_url().as_str());
    let alice = device(&mut net, dir.path(), "alice", 1, Nat::Open);
    let bob = device(&mut net, dir.path(), "bob", 2, Nat::Open);
    alice.ok(&["init", "--name", "alice"]);
    bob.ok(&["init", "--name", "bob"]);
    let _a = alice.serve_with(&relay, &pkarr_url());
    let _b = bob.serve_with(&relay, &pkarr_url());
    // Tickets without any address or relay: each can find the other only
    // by key, through the discovery server.
    let bare = |d: &Device| {
        let mut t: kith::Ticket = d.ticket().parse().unwrap();
        t.addrs.clear();
        t.relays.clear();
        t.to_string()
    };
    let (ta, tb) = (bare(&alice), bare(&bob));
    alice.ok(&["friend", "add", &tb, "--name", "bob"]);
    bob.ok(&["friend", "add", &ta, "--name", "alice"]);
    alice.ok(&["feed", "post", "found by key"]);
    let took = eventually("bob finds alice by key and gets her post", WAIT, || {
        let _ = bob.kith(&["sync", "alice"]);
        bob.timeline().contains(&"found by key".to_string())
    });
    eprintln!("found by key after {took:?}: {}", bob.peer(&alice));
}
