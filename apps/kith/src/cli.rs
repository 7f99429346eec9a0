//! The command line: arguments (clap) and what each command does. Every
//! command goes through the HTTP API ([`Client`]): the running daemon's, or
//! the same API in this process when no daemon runs and the command needs
//! no network.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, header};
use base64::Engine;
use clap::{Args, Parser, Subcommand};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use kith::Timestamp;
use serde_json::{Value, json};

use crate::client::{self, Client};
use crate::daemon::{self, Daemon, ServeOptions};
use crate::error::Error;
use crate::feed::percent_encode;
pub use crate::output::Failure;
use crate::output::{human_duration, json_text, print_json, short, time_text};
use crate::receipts;

/// The `kith` command line.
#[derive(Debug, Parser)]
#[command(
    name = "kith",
    version,
    about = "A private, friends-only feed and sync engine: your data on your devices, shared with the friends you choose."
)]
pub struct Cli {
    /// The data folder (default: the platform's data folder, `kith` in it).
    #[arg(long, global = true, env = "KITH_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format of commands that print data.
#[derive(Debug, Clone, Copy, Args)]
pub struct Output {
    /// Print JSON instead of text: indented on a terminal, one line per
    /// object when piped.
    #[arg(long)]
    pub json: bool,
}

/// A command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create this person's identity (namespace) and print its id.
    Init {
        /// The name friends see in your profile.
        #[arg(long)]
        name: Option<String>,
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// Print the namespace id, device id and name.
    Id {
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// Run the node, the HTTP API and the web page.
    Serve(ServeArgs),
    /// Show your profile, or change its name, bio or picture (friends see
    /// them beside your posts).
    Profile {
        /// The name friends see.
        #[arg(long)]
        name: Option<String>,
        /// A few words about you.
        #[arg(long)]
        bio: Option<String>,
        /// An image file (PNG, JPEG, GIF, WebP or SVG; at most 2 MiB) as
        /// your profile picture.
        #[arg(long, value_name = "FILE")]
        avatar: Option<PathBuf>,
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// Show the network: where this device is, and for every device of
    /// yours and your friends whether it is reachable, directly or through
    /// which relay, its round-trip time, the last sync and live message,
    /// and what is still owed to it (needs the daemon).
    Status {
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// Print an invite ticket for a friend (needs the daemon).
    Ticket {
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// Add, list or remove friends.
    #[command(subcommand)]
    Friend(FriendCommand),
    /// Let FRIEND read everything under PREFIX.
    Grant {
        /// A friend's name or namespace id.
        friend: String,
        /// A path prefix such as /feed/close.
        prefix: String,
        /// Until when, such as 30d, 12h or 45m (default: until revoked).
        #[arg(long)]
        expires: Option<String>,
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// List the grants you gave.
    Grants {
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// Take back FRIEND's grants under PREFIX.
    Revoke {
        /// A friend's name or namespace id.
        friend: String,
        /// A path prefix.
        prefix: String,
        /// Also ask the friend's nodes to delete what they were given.
        #[arg(long)]
        delete: bool,
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// Write a document or a blob at PATH.
    Put(PutArgs),
    /// Print (or save) the entry at PATH of your namespace or a friend's.
    Get {
        /// `[NAMESPACE|FRIEND] PATH`.
        #[arg(num_args = 1..=2, value_name = "[NAMESPACE|FRIEND] PATH", required = true)]
        args: Vec<String>,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "F")]
        out: Option<PathBuf>,
        /// Documents as JSON like every command's `--json` (indented on a
        /// terminal, one line when piped or written with --out); with --out,
        /// a blob's description.
        #[arg(long)]
        json: bool,
    },
    /// List entries under PREFIX of your namespace or a friend's.
    Ls {
        /// `[NAMESPACE|FRIEND] [PREFIX]`.
        #[arg(num_args = 0..=2, value_name = "[NAMESPACE|FRIEND] [PREFIX]")]
        args: Vec<String>,
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// Delete everything under PATH (friends who were served it delete it
    /// too and confirm with receipts).
    Rm {
        /// The path (a prefix: everything under it goes). `/` is refused
        /// unless `--all` is given too.
        path: String,
        /// Say explicitly that friends' copies are to be deleted too (they
        /// always are).
        #[arg(long)]
        remote: bool,
        /// With the path `/`: delete the whole namespace, here and on every
        /// friend's device.
        #[arg(long)]
        all: bool,
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// Show who confirmed each deletion, and since when the others are
    /// pending; `--wait` waits until all have confirmed.
    Receipts {
        /// Only deletions of this path.
        path: Option<String>,
        /// Wait until every friend's device has confirmed, printing each
        /// receipt as it arrives (needs the daemon). Gives up after
        /// --timeout, naming who is still pending, with exit code 1.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in seconds (default 60).
        #[arg(long, value_name = "SECS", requires = "wait")]
        timeout: Option<u64>,
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// Catch up with FRIEND now and print a report (needs the daemon).
    Sync {
        /// A friend's name or namespace id.
        friend: String,
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// Friends' data kept here: how much, the budget beyond which the
    /// oldest is purged, and purging it now (it is fetched again from its
    /// owner when read). Without a subcommand, shows it.
    Cache {
        /// What to do.
        #[command(subcommand)]
        cmd: Option<CacheCommand>,
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// Post, read the timeline, comment.
    #[command(subcommand)]
    Feed(FeedCommand),
    /// Add another device of the same person.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Use kith from web apps on other sites: export the page as static
    /// files for any web server, and allow or revoke the web origins that
    /// may use this node's HTTP API (each with a token of its own).
    #[command(subcommand)]
    Web(WebCommand),
    /// Run an iroh relay (with QUIC address discovery) for yourself and your
    /// friends: nodes behind NATs reach each other through it. It sees only
    /// encrypted QUIC packets between devices it cannot read. Point nodes at
    /// it with `kith serve --relay URL`.
    Relay(Box<crate::relay::RelayArgs>),
    /// Start three local nodes (alice, bob, carol), befriended, with sample
    /// posts and grants, each serving its page; print the three URLs.
    Demo {
        /// Keep the demo's data here (default: a temporary folder removed
        /// at exit).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Output format (`--json`: the URLs as JSON).
        #[command(flatten)]
        out: Output,
    },
}

/// `kith serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the node listens for friends (default: any port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Where the HTTP API and page listen (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = daemon::DEFAULT_HTTP)]
    pub http: SocketAddr,
    /// Loopback only: no relays, no outside lookups.
    #[arg(long, conflicts_with_all = ["relay", "relay_ca", "discovery"])]
    pub local_only: bool,
    /// Relays and discovery.
    #[command(flatten)]
    pub net: NetArgs,
    /// Serve the API only, no web page.
    #[arg(long)]
    pub headless: bool,
    /// Seconds between re-syncs of each friend (default 30).
    #[arg(long, hide = true, env = "KITH_RESYNC_SECS")]
    pub resync_secs: Option<u64>,
    /// Output format (`--json`: the namespace, HTTP address and page URL).
    #[command(flatten)]
    pub out: Output,
}

/// Which relays and discovery a node uses (`kith serve`, `kith device join`).
#[derive(Debug, Args)]
pub struct NetArgs {
    /// Use this iroh relay (repeatable) instead of iroh's public ones, for
    /// example one you run with `kith relay`. Also `relays = [...]` in the
    /// data folder's `config.toml`.
    #[arg(long, value_name = "URL")]
    pub relay: Vec<String>,
    /// Trust this certificate (PEM) for relays and the discovery server
    /// beside the public authorities: a self-hosted relay's own. Also
    /// `relay_ca = "FILE"` in `config.toml`.
    #[arg(long, value_name = "FILE")]
    pub relay_ca: Option<PathBuf>,
    /// Find devices by key through this pkarr server (a self-hosted
    /// iroh-dns-server's `/pkarr` URL) instead of iroh's public one; with
    /// `--relay`, nothing of iroh's public services is used. `none`: no
    /// lookups by key. Also `discovery = "URL"` in `config.toml`.
    #[arg(long, value_name = "URL")]
    pub discovery: Option<String>,
    /// Congestion control of the QUIC connections: `auto` (the default:
    /// catch-up and blobs use BBR on paths with a round trip of 20 ms or
    /// more, which random loss on mobile data or busy Wi-Fi slows much
    /// less, and CUBIC on shorter ones; live posts always CUBIC), `cubic`
    /// or `bbr` for every connection. Also `congestion = "bbr"` in
    /// `config.toml`.
    #[arg(long, value_name = "NAME")]
    pub congestion: Option<String>,
}

impl NetArgs {
    /// These flags over the data folder's `config.toml`.
    fn load(self, data: &FsPath) -> Result<daemon::NetworkConfig, Error> {
        daemon::NetworkConfig::load(
            data,
            self.relay,
            self.relay_ca,
            self.discovery,
            self.congestion,
        )
    }
}

/// `kith put`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("content").required(true).args(["text", "file", "json"])))]
pub struct PutArgs {
    /// The path, such as /notes/today.
    pub path: String,
    /// Text: stored as the document `{ "text": TEXT }`.
    pub text: Option<String>,
    /// A file: stored as a blob.
    #[arg(long, value_name = "F")]
    pub file: Option<PathBuf>,
    /// A JSON object: stored as a document.
    #[arg(long, value_name = "JSON")]
    pub json: Option<String>,
    /// The blob's media type (default: guessed from the file name).
    #[arg(long, value_name = "TYPE")]
    pub media_type: Option<String>,
}

/// `kith friend …`.
#[derive(Debug, Subcommand)]
pub enum FriendCommand {
    /// Add a friend by their ticket (they may read your /profile and
    /// friends' posts, and you sync theirs).
    Add {
        /// Their ticket (`kith ticket` on their side).
        ticket: String,
        /// What to call them.
        #[arg(long)]
        name: Option<String>,
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// List friends and what each may read.
    Ls {
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// Remove a friend.
    Rm {
        /// A friend's name or namespace id.
        friend: String,
    },
}

/// `kith cache …`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Show what friends' data is kept here and the settings.
    Show {
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// Keep at most SIZE of friends' documents and blobs (like 500MB or
    /// 2GiB); the least recently written or read beyond it are purged now
    /// and from then on.
    Budget {
        /// The size.
        size: String,
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// Also purge friends' data not written or read for AGE (like 365d or
    /// 8w), or `off` to keep it while the budget allows.
    Age {
        /// The age, or `off`.
        age: String,
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// Purge all friends' documents and blobs kept here now. Posts stay in
    /// the timeline and are fetched again from their authors when read
    /// (while those are reachable); your own data is never purged.
    Purge {
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
}

/// `kith web …`.
#[derive(Debug, Subcommand)]
pub enum WebCommand {
    /// Write the feed page's files into DIR (created if missing; it may hold
    /// only an earlier export) for any static web server. Opened from
    /// there, the page asks to pair with your node.
    Export {
        /// The folder to write.
        dir: PathBuf,
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// Let the web app at ORIGIN use this node: approve the pairing request
    /// whose code its page shows (`--code`), or, without a request, allow
    /// the origin and print its token (for a program given it by hand).
    Allow {
        /// The app's origin: scheme://host[:port], e.g. https://app.example.org.
        origin: String,
        /// The code the app's page shows (check that it is the same).
        #[arg(long)]
        code: Option<String>,
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// Stop the web app at ORIGIN using this node: its token stops working
    /// at once (open event streams end too).
    Revoke {
        /// An allowed origin, as `kith web ls` lists it.
        origin: String,
    },
    /// List the allowed origins and the pairing requests waiting.
    Ls {
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
}

/// `kith feed …`.
#[derive(Debug, Subcommand)]
pub enum FeedCommand {
    /// Post TEXT.
    Post {
        /// The text.
        text: String,
        /// Who sees it: friends, close or me.
        #[arg(long, default_value = "friends")]
        audience: String,
        /// Attach a file (repeatable).
        #[arg(long, value_name = "FILE")]
        attach: Vec<PathBuf>,
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// Your posts and friends', newest first, with comments: the newest
    /// page, or the page before CURSOR; `--all` reads every page.
    Timeline {
        /// Posts per page (1 to 500; default 50).
        #[arg(long)]
        limit: Option<usize>,
        /// Start after this cursor (printed at the end of the previous page).
        #[arg(long, value_name = "CURSOR", conflicts_with = "all")]
        before: Option<String>,
        /// Read every page, one after the other, down to the oldest post.
        #[arg(long)]
        all: bool,
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// Comment on a post (`ID` or `AUTHOR/ID`).
    Comment {
        /// The post: its id, or author (name or id) and id as AUTHOR/ID.
        post: String,
        /// The comment.
        text: String,
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
}

/// `kith device …`.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// On a device of yours: certify a new device (its id from `kith device
    /// join` there) and print its invite (needs the daemon).
    Invite {
        /// The new device's id.
        device: String,
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// On the new device: without INVITE, prepare and print this device's
    /// id; with the invite, join and copy the namespace.
    Join {
        /// The invite from `kith device invite`.
        invite: Option<String>,
        /// Loopback only (tests).
        #[arg(long, conflicts_with_all = ["relay", "relay_ca", "discovery"])]
        local_only: bool,
        /// Relays and discovery.
        #[command(flatten)]
        net: NetArgs,
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
}

/// Transfers from this size on show a progress bar on a terminal.
const LARGE_TRANSFER: u64 = 4 << 20;

type CliResult<T = ()> = std::result::Result<T, Failure>;

/// The data folder: `--data`, `KITH_DATA`, or the platform's.
pub fn data_dir(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        dirs::data_dir()
            .map(|d| d.join("kith"))
            .unwrap_or_else(|| PathBuf::from("kith-data"))
    })
}

fn show_progress(out: Output) -> bool {
    !out.json && std::io::stderr().is_terminal()
}

fn spinner(show: bool, message: String) -> Option<ProgressBar> {
    if !show {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(100));
    Some(bar)
}

/// A progress bar for a transfer of `len` bytes, on a terminal and only
/// for large ones.
fn byte_bar(len: u64) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() || len < LARGE_TRANSFER {
        return None;
    }
    let b = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
    {
        b.set_style(style);
    }
    Some(b)
}

fn need_daemon(data: &FsPath, what: &str) -> Failure {
    Failure::new(
        format!(
            "{what} needs the daemon, and none runs for {}",
            data.display()
        ),
        Some("start it with `kith serve` (in another terminal), then try again"),
    )
}

/// The daemon of `data`, or a failure saying it must run.
async fn daemon_client(data: &FsPath, what: &str) -> CliResult<Client> {
    Client::daemon(data)
        .await?
        .ok_or_else(|| need_daemon(data, what))
}

fn url_path(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty())
        .map(percent_encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// A media type from a file name's extension.
pub fn guess_media_type(path: &FsPath) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "pdf" => "application/pdf",
        "txt" | "md" => "text/plain; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// Runs a command.
///
/// # Errors
/// A [`Failure`] to print (exit code 1).
pub async fn run(cli: Cli) -> CliResult {
    let data = data_dir(cli.data);
    match cli.command {
        Command::Serve(args) => serve(&data, args).await,
        Command::Demo { dir, out } => crate::demo::run(dir, out.json).await.map_err(Into::into),
        Command::Relay(args) => crate::relay::run(*args).await.map_err(Into::into),
        Command::Web(WebCommand::Export { dir, out }) => web_export(&dir, &out),
        Command::Device(DeviceCommand::Join {
            invite,
            local_only,
            net,
            out,
        }) => device_join(&data, invite, local_only, net, out).await,
        Command::Init { name, out } => {
            let client = Client::open(&data, false).await?;
            let result = init(&client, name, out).await;
            client.close().await?;
            result
        }
        command => {
            let client = Client::connect(&data).await.map_err(|e| match e {
                Error::Unavailable(m) if m.contains("no kith identity") => {
                    Failure::new(m, Some("`kith init --name NAME` creates one"))
                }
                other => other.into(),
            })?;
            let result = command_with(&data, &client, command).await;
            client.close().await?;
            result
        }
    }
}

async fn init(client: &Client, name: Option<String>, out: Output) -> CliResult {
    if let Some(name) = name {
        let _: Value = client
            .call(Method::PUT, "/api/profile", Some(&json!({ "name": name })))
            .await?;
    }
    let id: Value = client.call(Method::GET, "/api/id", None).await?;
    if out.json {
        print_json(&id);
    } else {
        // The id alone on standard output (scripts keep it); what it is and
        // what to do next on standard error.
        out!("{}", id["namespace"].as_str().unwrap_or(""));
        eprintln!(
            "this is your namespace id: your identity in kith, the key friends know you by (kept in this data folder)"
        );
        eprintln!(
            "next: `kith serve` runs your node and page; `kith ticket` (while it runs) prints a ticket to give a friend"
        );
    }
    Ok(())
}

async fn serve(data: &FsPath, args: ServeArgs) -> CliResult {
    if let Some(info) = daemon::daemon_info(data)
        && Client::daemon(data).await?.is_some()
    {
        return Err(Failure::new(
            format!(
                "a daemon already runs for {} (http://{}, process {})",
                data.display(),
                info.http,
                info.pid
            ),
            None,
        ));
    }
    let mut options = ServeOptions::new(data);
    options.listen = args.listen;
    options.http = args.http;
    options.local_only = args.local_only;
    options.network = args.net.load(data)?;
    options.headless = args.headless;
    options.resync = args.resync_secs.map(Duration::from_secs);
    let d = Daemon::start(options).await?;
    // Caught before the line that says the daemon serves: a SIGTERM right
    // after it stops the daemon cleanly instead of killing the process.
    let stop = daemon::StopSignals::listen();
    let ns = d.node().namespace().to_string();
    if args.out.json {
        print_json(&json!({
            "namespace": ns,
            "http": d.addr().to_string(),
            "url": (!args.headless).then(|| d.page_url()),
        }));
    } else {
        out!("kith serving namespace {ns}");
        if args.headless {
            out!(
                "API: http://{} (token in {})",
                d.addr(),
                data.join(daemon::TOKEN_FILE).display()
            );
        } else {
            out!("open {}", d.page_url());
        }
    }
    let _ = std::io::stdout().flush();
    stop.wait().await;
    d.shutdown().await?;
    Ok(())
}

async fn device_join(
    data: &FsPath,
    invite: Option<String>,
    local_only: bool,
    net: NetArgs,
    out: Output,
) -> CliResult {
    let Some(invite) = invite else {
        let device = kith::prepare_device(data).map_err(Error::from)?;
        if out.json {
            print_json(&json!({ "device": device.to_string() }));
        } else {
            out!("{device}");
            eprintln!(
                "on a device of yours run `kith device invite {device}`, then here `kith device join INVITE`"
            );
        }
        return Ok(());
    };
    let invite: kith::DeviceInvite = invite.parse().map_err(Error::from)?;
    let mut builder = kith::Node::builder(data)
        .join_namespace(invite)
        .cache_keep(crate::profile::kept_prefixes());
    if local_only {
        builder = builder.network(kith::NetworkMode::LocalOnly);
    } else {
        let net = net.load(data)?;
        builder = builder
            .network(net.mode()?)
            .relay_ca(net.relay_ca.clone())
            .congestion_control(net.congestion);
    }
    let node = builder.spawn().await.map_err(Error::from)?;
    let bar = spinner(show_progress(out), "copying your namespace".into());
    let report = node.sync_now(&node.namespace()).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let ns = node.namespace();
    node.shutdown().await.map_err(Error::from)?;
    let report = report.map_err(Error::from)?;
    if out.json {
        print_json(&json!({ "namespace": ns.to_string(), "entries": report.entries }));
    } else {
        out!(
            "joined namespace {ns}: {} entries copied; run `kith serve` to keep this device in sync",
            report.entries
        );
    }
    Ok(())
}

async fn command_with(data: &FsPath, c: &Client, command: Command) -> CliResult {
    match command {
        Command::Id { out } => {
            let id: Value = c.call(Method::GET, "/api/id", None).await?;
            if out.json {
                print_json(&id);
            } else {
                out!("namespace {}", id["namespace"].as_str().unwrap_or(""));
                out!("device    {}", id["device"].as_str().unwrap_or(""));
                out!("name      {}", id["name"].as_str().unwrap_or(""));
            }
        }
        Command::Status { out } => {
            if !c.is_daemon() {
                return Err(need_daemon(data, "the network status"));
            }
            let st: Value = c.call(Method::GET, "/api/status", None).await?;
            if out.json {
                print_json(&st);
            } else {
                print_status(&st);
            }
        }
        Command::Ticket { out } => {
            if !c.is_daemon() {
                return Err(need_daemon(
                    data,
                    "a ticket (it carries the node's addresses)",
                ));
            }
            let t: Value = c.call(Method::GET, "/api/ticket", None).await?;
            if out.json {
                print_json(&t);
            } else {
                out!("{}", t["ticket"].as_str().unwrap_or(""));
            }
        }
        Command::Friend(f) => friend(c, f).await?,
        Command::Web(w) => web(c, w).await?,
        Command::Cache { cmd, out } => cache(c, cmd, out).await?,
        Command::Profile {
            name,
            bio,
            avatar,
            out,
        } => profile(c, name, bio, avatar, out).await?,
        Command::Grant {
            friend,
            prefix,
            expires,
            out,
        } => {
            let g: Value = c
                .call(
                    Method::POST,
                    "/api/grants",
                    Some(&json!({ "friend": friend, "prefix": prefix, "expires": expires })),
                )
                .await?;
            if out.json {
                print_json(&g);
            } else {
                out!(
                    "{} may read {} (grant {})",
                    g["name"].as_str().unwrap_or(""),
                    g["prefix"].as_str().unwrap_or(""),
                    g["id"].as_str().unwrap_or("")
                );
            }
        }
        Command::Grants { out } => {
            let gs: Value = c.call(Method::GET, "/api/grants", None).await?;
            if out.json {
                print_json(&gs);
            } else {
                for g in gs.as_array().into_iter().flatten() {
                    let state = if g["revoked"].as_bool() == Some(true) {
                        "revoked".to_string()
                    } else {
                        match g["expires"].as_u64() {
                            Some(e) => format!("until {}", time_text(e)),
                            None => "active".into(),
                        }
                    };
                    out!(
                        "{:<16} {:<24} {} {}",
                        g["name"].as_str().unwrap_or(""),
                        g["prefix"].as_str().unwrap_or(""),
                        state,
                        g["id"].as_str().unwrap_or("")
                    );
                }
            }
        }
        Command::Revoke {
            friend,
            prefix,
            delete,
            out,
        } => {
            let r: Value = c
                .call(
                    Method::POST,
                    "/api/revoke",
                    Some(&json!({ "friend": friend, "prefix": prefix, "delete": delete })),
                )
                .await?;
            if out.json {
                print_json(&r);
            } else {
                let n = r["revoked"].as_array().map_or(0, Vec::len);
                out!("revoked {n} grant(s) of {friend} under {prefix}");
                if let Some(d) = r["deletion"].as_str() {
                    out!("deletion requested: {d} (`kith receipts` shows confirmations)");
                }
            }
        }
        Command::Put(args) => put(c, args).await?,
        Command::Get { args, out, json } => get(c, args, out, json).await?,
        Command::Ls { args, out } => ls(c, args, out).await?,
        Command::Rm {
            path,
            remote,
            all,
            out,
        } => {
            let root = url_path(&path).is_empty();
            if all && !root {
                return Err(Failure::new(
                    format!("--all deletes the whole namespace; it takes the path /, not {path}"),
                    Some("leave out --all to delete only what is under the path"),
                ));
            }
            let target = if all {
                let id: Value = c.call(Method::GET, "/api/id", None).await?;
                let me = id["namespace"].as_str().unwrap_or("");
                format!("/api/everything?confirm={me}")
            } else {
                format!("/api/entry/{}?remote={remote}", url_path(&path))
            };
            let r: Value = c.call(Method::DELETE, &target, None).await?;
            if out.json {
                print_json(&r);
            } else {
                out!(
                    "deleted {path} (deletion {}); friends who hold it confirm with receipts: `kith receipts {path}`",
                    r["deletion"].as_str().unwrap_or("")
                );
            }
        }
        Command::Receipts {
            path,
            wait,
            timeout,
            out,
        } => {
            if wait {
                if !c.is_daemon() {
                    return Err(need_daemon(data, "waiting for receipts"));
                }
                let timeout = Duration::from_secs(timeout.unwrap_or(receipts::DEFAULT_WAIT_SECS));
                receipts::wait(c, path.as_deref(), timeout, out.json).await?;
            } else {
                let list = receipts::deletions_of(c, path.as_deref()).await?;
                if out.json {
                    print_json(&Value::Array(list));
                } else {
                    for line in receipts::text(&list, Timestamp::wall_clock().as_micros()) {
                        out!("{line}");
                    }
                }
            }
        }
        Command::Sync { friend, out } => {
            if !c.is_daemon() {
                return Err(need_daemon(data, "syncing"));
            }
            let bar = spinner(show_progress(out), format!("syncing with {friend}"));
            let r: crate::error::Result<Value> = c
                .call(
                    Method::POST,
                    &format!("/api/sync/{}", percent_encode(&friend)),
                    None,
                )
                .await;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let r = r?;
            if out.json {
                print_json(&r);
            } else {
                let n = |k: &str| r[k].as_u64().unwrap_or(0);
                if n("docs") + n("tombstones") + n("blobs_fetched") == 0 {
                    // Everything had arrived already (live, or by an
                    // earlier catch-up).
                    out!(
                        "up to date with {friend}: nothing was missing ({} entries checked in {} ms)",
                        n("entries"),
                        n("duration_ms")
                    );
                } else {
                    out!(
                        "synced with {friend}: {} documents, {} deletions, {} blobs, {} bytes in {} ms",
                        n("docs"),
                        n("tombstones"),
                        n("blobs_fetched"),
                        n("bytes_received"),
                        n("duration_ms")
                    );
                }
                if n("refused") > 0 {
                    out!(
                        "  {} items were refused or held back: {friend} has not granted them to you",
                        n("refused")
                    );
                }
            }
        }
        Command::Feed(f) => feed(c, f).await?,
        Command::Device(DeviceCommand::Invite { device, out }) => {
            let d = daemon_client(
                data,
                "inviting a device (the invite carries the node's addresses)",
            )
            .await?;
            let r: Value = d
                .call(
                    Method::POST,
                    "/api/devices",
                    Some(&json!({ "device": device })),
                )
                .await?;
            if out.json {
                print_json(&r);
            } else {
                out!("{}", r["invite"].as_str().unwrap_or(""));
            }
        }
        Command::Serve(_)
        | Command::Relay(_)
        | Command::Demo { .. }
        | Command::Init { .. }
        | Command::Device(DeviceCommand::Join { .. }) => {}
    }
    Ok(())
}

async fn profile(
    c: &Client,
    name: Option<String>,
    bio: Option<String>,
    avatar: Option<PathBuf>,
    out: Output,
) -> CliResult {
    // Read the picture first: a missing file changes nothing.
    let picture = match &avatar {
        Some(file) => Some((
            std::fs::read(file)
                .map_err(|e| Failure::new(format!("cannot read {}: {e}", file.display()), None))?,
            guess_media_type(file),
        )),
        None => None,
    };
    if name.is_some() || bio.is_some() {
        let _: Value = c
            .call(
                Method::PUT,
                "/api/profile",
                Some(&json!({ "name": name, "bio": bio })),
            )
            .await?;
    }
    if let Some((bytes, media_type)) = picture {
        let req = Request::builder()
            .method(Method::PUT)
            .uri("/api/profile/avatar")
            .header(header::CONTENT_TYPE, media_type)
            .body(Body::from(bytes))
            .map_err(|e| Failure::new(format!("bad request: {e}"), None))?;
        let _: Value = c.send_for_json(req).await?;
    }
    let p: Value = c.call(Method::GET, "/api/profile", None).await?;
    if out.json {
        print_json(&p);
    } else {
        out!("name    {}", p["name"].as_str().unwrap_or(""));
        out!("bio     {}", p["bio"].as_str().unwrap_or(""));
        match p["avatar"].as_object() {
            Some(a) => out!(
                "picture {}, {} bytes",
                a.get("media_type").and_then(Value::as_str).unwrap_or(""),
                a.get("size").and_then(Value::as_u64).unwrap_or(0)
            ),
            None => out!("picture none"),
        }
    }
    Ok(())
}

fn web_export(dir: &std::path::Path, out: &Output) -> CliResult {
    let files = crate::web::export(dir)?;
    if out.json {
        print_json(&json!({ "dir": dir.display().to_string(), "files": files }));
    } else {
        out!(
            "wrote {} files of the page into {}",
            files.len(),
            dir.display()
        );
        eprintln!(
            "serve that folder with any web server; opened from there, the page asks to pair with your node (`kith web allow ORIGIN --code CODE`)"
        );
    }
    Ok(())
}

async fn cache(c: &Client, cmd: Option<CacheCommand>, out: Output) -> CliResult {
    let out = match &cmd {
        Some(
            CacheCommand::Show { out: o }
            | CacheCommand::Budget { out: o, .. }
            | CacheCommand::Age { out: o, .. }
            | CacheCommand::Purge { out: o },
        ) => Output {
            json: o.json || out.json,
        },
        None => out,
    };
    let (r, did): (Value, Option<&str>) = match cmd {
        None | Some(CacheCommand::Show { .. }) => {
            (c.call(Method::GET, "/api/cache", None).await?, None)
        }
        Some(CacheCommand::Budget { size, .. }) => {
            crate::http::parse_size(&size)?;
            let body = json!({ "budget": size });
            let r = c.call(Method::PUT, "/api/cache", Some(&body)).await?;
            (r, Some("budget set"))
        }
        Some(CacheCommand::Age { age, .. }) => {
            let body = if age == "off" {
                json!({ "max_age": null })
            } else {
                crate::http::parse_duration(&age)?;
                json!({ "max_age": age })
            };
            let r = c.call(Method::PUT, "/api/cache", Some(&body)).await?;
            (r, Some("age limit set"))
        }
        Some(CacheCommand::Purge { .. }) => {
            let r = c.call(Method::POST, "/api/cache/purge", None).await?;
            (r, Some("purged"))
        }
    };
    if out.json {
        print_json(&r);
        return Ok(());
    }
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    if let Some(did) = did {
        let p = &r["purged"];
        out!(
            "{did}: {} documents and {} blobs of friends purged ({} freed); they are fetched again from their owners when read",
            n(&p["documents"]),
            n(&p["blobs"]),
            crate::output::human_bytes(n(&p["bytes"]))
        );
    }
    let age = match r["max_age"].as_u64() {
        Some(secs) => format!(
            "purged after {} without a write or read",
            crate::output::human_duration(secs.saturating_mul(1000))
        ),
        None => "no age limit".to_string(),
    };
    out!(
        "friends' data kept here: {} documents ({}) and {} blobs ({}), {} of a {} budget; {age}",
        n(&r["documents"]),
        crate::output::human_bytes(n(&r["document_bytes"])),
        n(&r["blobs"]),
        crate::output::human_bytes(n(&r["blob_bytes"])),
        crate::output::human_bytes(n(&r["bytes"])),
        crate::output::human_bytes(n(&r["budget"])),
    );
    Ok(())
}

async fn web(c: &Client, w: WebCommand) -> CliResult {
    match w {
        WebCommand::Export { .. } => {}
        WebCommand::Allow { origin, code, out } => {
            let r: Value = c
                .call(
                    Method::POST,
                    "/api/web/origins",
                    Some(&json!({ "origin": origin, "code": code })),
                )
                .await?;
            let origin = r["origin"].as_str().unwrap_or("");
            if out.json {
                print_json(&r);
            } else if r["paired"].as_bool() == Some(true) {
                out!("allowed {origin}: its page is paired and connects now");
            } else {
                out!("{}", r["token"].as_str().unwrap_or(""));
                eprintln!(
                    "allowed {origin}: the line above is its token, accepted only on requests from {origin} (`Authorization: Bearer TOKEN`); `kith web revoke {origin}` takes it back"
                );
            }
        }
        WebCommand::Revoke { origin } => {
            let uri = format!("/api/web/origins?origin={}", percent_encode(&origin));
            let _: Value = c.call(Method::DELETE, &uri, None).await?;
            out!("revoked {origin}: its token no longer works");
        }
        WebCommand::Ls { out } => {
            let r: Value = c.call(Method::GET, "/api/web/origins", None).await?;
            if out.json {
                print_json(&r);
            } else {
                print_origins(&r["origins"]);
                for p in r["pending"].as_array().into_iter().flatten() {
                    out!(
                        "waiting: {} with the code {} (lapses in {} s)",
                        p["origin"].as_str().unwrap_or(""),
                        p["code"].as_str().unwrap_or(""),
                        p["expires_in_s"].as_u64().unwrap_or(0)
                    );
                }
            }
        }
    }
    Ok(())
}

/// The allowed web origins, one a line.
fn print_origins(origins: &Value) {
    let origins = origins.as_array().cloned().unwrap_or_default();
    if origins.is_empty() {
        out!("no web origins allowed (`kith web allow ORIGIN`)");
    }
    let now = Timestamp::wall_clock().as_micros() / 1000;
    for o in origins {
        let ago = o["added_ms"]
            .as_u64()
            .map(|ms| format!("{} ago", human_duration(now.saturating_sub(ms))))
            .unwrap_or_default();
        out!(
            "web origin {} (allowed {ago})",
            o["origin"].as_str().unwrap_or("")
        );
    }
}

async fn friend(c: &Client, f: FriendCommand) -> CliResult {
    match f {
        FriendCommand::Add { ticket, name, out } => {
            let r: Value = c
                .call(
                    Method::POST,
                    "/api/friends",
                    Some(&json!({ "ticket": ticket, "name": name })),
                )
                .await?;
            if out.json {
                print_json(&r);
            } else {
                out!(
                    "added {} ({}); they may read {}",
                    r["name"].as_str().unwrap_or(""),
                    r["namespace"].as_str().unwrap_or(""),
                    r["prefixes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        FriendCommand::Ls { out } => {
            let r: Value = c.call(Method::GET, "/api/friends", None).await?;
            if out.json {
                print_json(&r);
            } else {
                for f in r.as_array().into_iter().flatten() {
                    let list = |k: &str| {
                        f[k].as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(" ")
                    };
                    out!(
                        "{:<16} {}  may read: {}  shares: {}",
                        f["name"].as_str().unwrap_or(""),
                        f["namespace"].as_str().unwrap_or(""),
                        list("prefixes"),
                        list("shared_with_me")
                    );
                }
            }
        }
        FriendCommand::Rm { friend } => {
            let _: Value = c
                .call(
                    Method::DELETE,
                    &format!("/api/friends/{}", percent_encode(&friend)),
                    None,
                )
                .await?;
            out!("removed {friend}");
        }
    }
    Ok(())
}

async fn put(c: &Client, args: PutArgs) -> CliResult {
    let target = format!("/api/entry/{}", url_path(&args.path));
    let (content_type, body) = if let Some(text) = args.text {
        (
            "application/json".to_string(),
            Body::from(json!({ "text": text }).to_string()),
        )
    } else if let Some(j) = args.json {
        let v: Value = serde_json::from_str(&j)
            .map_err(|e| Failure::new(format!("--json is not valid JSON: {e}"), None))?;
        if !v.is_object() {
            return Err(Failure::new("--json must be a JSON object", None));
        }
        ("application/json".to_string(), Body::from(v.to_string()))
    } else if let Some(file) = args.file {
        let media = args
            .media_type
            .unwrap_or_else(|| guess_media_type(&file).to_string());
        let f = tokio::fs::File::open(&file)
            .await
            .map_err(|e| Failure::new(format!("cannot read {}: {e}", file.display()), None))?;
        let size = f.metadata().await.map(|m| m.len()).unwrap_or(0);
        let bar = byte_bar(size);
        let stream = tokio_util::io::ReaderStream::new(f).inspect(move |chunk| {
            if let (Some(b), Ok(c)) = (&bar, chunk) {
                b.inc(c.len() as u64);
                if b.position() >= size {
                    b.finish_and_clear();
                }
            }
        });
        (media, Body::from_stream(stream))
    } else {
        return Err(Failure::new("give TEXT, --file F or --json JSON", None));
    };
    let req = Request::builder()
        .method(Method::PUT)
        .uri(target)
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .map_err(|e| Failure::new(format!("bad request: {e}"), None))?;
    let r: Value = c.send_for_json(req).await?;
    out!(
        "wrote {} at {}",
        r["kind"].as_str().unwrap_or(""),
        r["path"].as_str().unwrap_or("")
    );
    Ok(())
}

async fn get(c: &Client, args: Vec<String>, out: Option<PathBuf>, json_out: bool) -> CliResult {
    let (ns, path) = match args.as_slice() {
        [path] => ("me".to_string(), path.clone()),
        [ns, path] => (ns.clone(), path.clone()),
        _ => return Err(Failure::new("give [NAMESPACE|FRIEND] PATH", None)),
    };
    let res = c
        .get(&format!(
            "/api/entry/{}/{}",
            percent_encode(&ns),
            url_path(&path)
        ))
        .await?;
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let media_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let len = res
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if is_json {
        let bytes = client::read_body(res).await?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        // Without --json the document is shown to be read; with it, as
        // every command's --json (one line when piped), also in a file.
        let pretty = !json_out || (out.is_none() && std::io::stdout().is_terminal());
        let text = json_text(&v, pretty);
        match out {
            Some(f) => std::fs::write(&f, text + "\n")
                .map_err(|e| Failure::new(format!("cannot write {}: {e}", f.display()), None))?,
            None => out!("{text}"),
        }
        return Ok(());
    }
    let bar = match (&out, len) {
        (Some(_), Some(len)) if !json_out => byte_bar(len),
        _ => None,
    };
    let mut sink: Box<dyn Write> = match &out {
        Some(f) => Box::new(std::io::BufWriter::new(std::fs::File::create(f).map_err(
            |e| Failure::new(format!("cannot write {}: {e}", f.display()), None),
        )?)),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut stream = res.into_body().into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Failure::new(format!("the answer broke off: {e}"), None))?;
        sink.write_all(&chunk)
            .map_err(|e| Failure::new(format!("cannot write: {e}"), None))?;
        if let Some(b) = &bar {
            b.inc(chunk.len() as u64);
        }
    }
    sink.flush()
        .map_err(|e| Failure::new(format!("cannot write: {e}"), None))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let (true, Some(f)) = (json_out, &out) {
        print_json(&json!({
            "path": path,
            "kind": "blob",
            "media_type": media_type,
            "size": len,
            "out": f.display().to_string(),
        }));
    }
    Ok(())
}

async fn ls(c: &Client, args: Vec<String>, out: Output) -> CliResult {
    let (ns, prefix) = match args.as_slice() {
        [] => ("me".to_string(), "/".to_string()),
        [one] if one.starts_with('/') => ("me".to_string(), one.clone()),
        [one] => (one.clone(), "/".to_string()),
        [ns, prefix] => (ns.clone(), prefix.clone()),
        _ => return Err(Failure::new("give [NAMESPACE|FRIEND] [PREFIX]", None)),
    };
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut q = format!(
            "/api/entries/{}?limit=1000&prefix={}",
            percent_encode(&ns),
            percent_encode(&prefix)
        );
        if let Some(a) = &after {
            q.push_str(&format!("&after={}", percent_encode(a)));
        }
        let page: Value = c.call(Method::GET, &q, None).await?;
        all.extend(page["entries"].as_array().cloned().unwrap_or_default());
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    if out.json {
        print_json(&Value::Array(all));
    } else {
        for e in all {
            out!(
                "{:<40} {:<8} {:>10} {}",
                e["path"].as_str().unwrap_or(""),
                e["kind"].as_str().unwrap_or(""),
                e["size"],
                e["media_type"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

/// How long `kith feed timeline` waits for purged posts to come back.
const LOADING_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn print_post(p: &Value) {
    out!(
        "{} {} ({}) {}",
        time_text(p["time"].as_u64().unwrap_or(0)),
        p["author_name"].as_str().unwrap_or(""),
        p["audience"].as_str().unwrap_or(""),
        p["id"].as_str().unwrap_or("")
    );
    if p["loading"] == true {
        out!(
            "    (not here: purged from the cache; it loads when {} is reachable)",
            p["author_name"].as_str().unwrap_or("its author")
        );
    }
    for line in p["text"].as_str().unwrap_or("").lines() {
        out!("    {line}");
    }
    for a in p["attachments"].as_array().into_iter().flatten() {
        out!(
            "    [{} {} {} bytes]",
            a["name"].as_str().unwrap_or(""),
            a["media_type"].as_str().unwrap_or(""),
            a["size"]
        );
    }
    for cm in p["comments"].as_array().into_iter().flatten() {
        out!(
            "    > {}: {}",
            cm["author_name"].as_str().unwrap_or(""),
            cm["text"].as_str().unwrap_or("")
        );
    }
}

/// `kith feed timeline`: one page (the newest, or the one after `before`),
/// or with `all` every page in turn; says how to read the next page.
async fn timeline(
    c: &Client,
    limit: Option<usize>,
    before: Option<String>,
    all: bool,
    out: &Output,
) -> CliResult {
    let mut before = before;
    let mut shown = 0usize;
    loop {
        let mut route = String::from("/api/feed");
        let mut sep = '?';
        if let Some(n) = limit {
            route.push_str(&format!("{sep}limit={n}"));
            sep = '&';
        }
        if let Some(cursor) = &before {
            route.push_str(&format!("{sep}before={}", percent_encode(cursor)));
        }
        let mut t: Value = c.call(Method::GET, &route, None).await?;
        // Friends' posts purged from the cache come back from their
        // authors (the daemon fetches them as it answers): wait a little.
        let started = std::time::Instant::now();
        let mut said = false;
        while c.is_daemon() && started.elapsed() < LOADING_WAIT {
            let loading = t["posts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["loading"] == true)
                .count();
            if loading == 0 {
                break;
            }
            if !said && !out.json {
                eprintln!("fetching {loading} purged posts again from their authors…");
                said = true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            t = c.call(Method::GET, &route, None).await?;
        }
        let posts = t["posts"].as_array().cloned().unwrap_or_default();
        let next = t["next"].as_str().map(str::to_string);
        shown += posts.len();
        if out.json && all {
            for p in &posts {
                print_json(p);
            }
        } else if out.json {
            print_json(&t);
        } else {
            if shown == 0 {
                out!("no posts yet");
            }
            for p in &posts {
                print_post(p);
            }
        }
        match next {
            Some(cursor) if all => before = Some(cursor),
            Some(cursor) => {
                if !out.json {
                    let limit = limit.map(|n| format!(" --limit {n}")).unwrap_or_default();
                    out!("older posts: kith feed timeline{limit} --before {cursor}");
                }
                return Ok(());
            }
            None => return Ok(()),
        }
    }
}

async fn feed(c: &Client, f: FeedCommand) -> CliResult {
    match f {
        FeedCommand::Post {
            text,
            audience,
            attach,
            out,
        } => {
            let mut attachments = Vec::new();
            for file in attach {
                let data = std::fs::read(&file).map_err(|e| {
                    Failure::new(format!("cannot read {}: {e}", file.display()), None)
                })?;
                let name = file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("attachment")
                    .to_string();
                attachments.push(json!({
                    "name": name,
                    "media_type": guess_media_type(&file),
                    "data": base64::engine::general_purpose::STANDARD.encode(data),
                }));
            }
            let p: Value = c
                .call(
                    Method::POST,
                    "/api/feed/posts",
                    Some(
                        &json!({ "text": text, "audience": audience, "attachments": attachments }),
                    ),
                )
                .await?;
            if out.json {
                print_json(&p);
            } else {
                out!(
                    "posted {} to {} at {}",
                    p["id"].as_str().unwrap_or(""),
                    p["audience"].as_str().unwrap_or(""),
                    p["path"].as_str().unwrap_or("")
                );
            }
            if let Some(warning) = unheard(c, &p).await? {
                eprintln!("{warning}");
            }
        }
        FeedCommand::Timeline {
            limit,
            before,
            all,
            out,
        } => timeline(c, limit, before, all, &out).await?,
        FeedCommand::Comment { post, text, out } => {
            let (author, id) = match post.rsplit_once('/') {
                Some((a, i)) => (a.to_string(), i.to_string()),
                None => {
                    let route = format!("/api/feed/posts/{}", percent_encode(&post));
                    let t: Value = c.call(Method::GET, &route, None).await?;
                    let author = t["posts"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|p| p["id"] == post.as_str())
                        .and_then(|p| p["author"].as_str())
                        .ok_or_else(|| {
                            Failure::new(
                                format!("no post {post:?} in your timeline"),
                                Some("`kith feed timeline` shows post ids"),
                            )
                        })?
                        .to_string();
                    (author, post.clone())
                }
            };
            let r: Value = c
                .call(
                    Method::POST,
                    "/api/feed/comments",
                    Some(&json!({ "post": { "author": author, "id": id }, "text": text })),
                )
                .await?;
            if out.json {
                print_json(&r);
            } else {
                out!("commented at {}", r["path"].as_str().unwrap_or(""));
            }
        }
    }
    Ok(())
}

/// Prints `GET /api/status` for a person.
fn print_status(st: &Value) {
    let list = |v: &Value| -> String {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    out!("this device {}", short(st["device"].as_str().unwrap_or("")));
    out!("  listening at {}", list(&st["addresses"]));
    let now = Timestamp::wall_clock().as_micros() / 1000;
    let ago = |v: &Value| match v.as_u64() {
        Some(ms) => format!("{} ago", human_duration(now.saturating_sub(ms))),
        None => "never".to_string(),
    };
    print_origins(&st["web_origins"]);
    let peers = st["peers"].as_array().cloned().unwrap_or_default();
    if peers.is_empty() {
        out!("no other devices known yet: add a friend with `kith friend add TICKET`");
    }
    for p in peers {
        let who = if p["own"].as_bool() == Some(true) {
            "your device".to_string()
        } else {
            p["name"].as_str().unwrap_or("friend").to_string()
        };
        let how = match (p["route"].as_str(), p["via"].as_str()) {
            (Some("direct"), Some(via)) => format!("direct to {via}"),
            (Some("relay"), Some(via)) => format!("through relay {via}"),
            _ if p["reachable"].as_bool() == Some(true) => "reachable".to_string(),
            _ => "not reachable now".to_string(),
        };
        let rtt = p["rtt_ms"]
            .as_f64()
            .map(|r| format!(", {r:.0} ms"))
            .unwrap_or_default();
        out!(
            "{who} {}: {how}{rtt}",
            short(p["device"].as_str().unwrap_or(""))
        );
        out!(
            "  last sync {}, last live message {}",
            ago(&p["last_sync_ms"]),
            ago(&p["last_live_ms"])
        );
        let mut owed = Vec::new();
        if p["owed_keys"].as_bool() == Some(true) {
            owed.push("a new scope key");
        }
        if p["owed_deletions"].as_bool() == Some(true) {
            owed.push("a deletion");
        }
        if !owed.is_empty() {
            out!("  still owed: {}", owed.join(", "));
        }
        if let Some(e) = p["last_error"]["error"].as_str()
            && p["reachable"].as_bool() != Some(true)
        {
            out!("  last error: {e}");
        }
    }
}

/// A warning when no friend may read the post `p` yet (its audience was
/// granted to nobody), so that it reaches no one; none for the private
/// audience.
async fn unheard(c: &Client, p: &Value) -> Result<Option<String>, Failure> {
    let (Some(path), Some(audience)) = (p["path"].as_str(), p["audience"].as_str()) else {
        return Ok(None);
    };
    if audience == "me" {
        return Ok(None);
    }
    let grants: Value = c.call(Method::GET, "/api/grants", None).await?;
    // Grant times are in microseconds.
    let now = Timestamp::wall_clock().as_micros();
    let covers = |g: &Value| {
        let prefix = g["prefix"].as_str().unwrap_or("");
        let live = g["revoked"] != true && g["expires"].as_u64().is_none_or(|e| e > now);
        live && (prefix == "/" || path == prefix || path.starts_with(&format!("{prefix}/")))
    };
    if grants.as_array().is_some_and(|a| a.iter().any(covers)) {
        return Ok(None);
    }
    Ok(Some(format!(
        "note: no friend may read the {audience} audience yet, so this post reaches no one; `kith grant FRIEND {}` shares it",
        path.rsplit_once('/').map(|(d, _)| d).unwrap_or(path)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
