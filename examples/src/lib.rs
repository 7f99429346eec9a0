//! Runnable kith programs, one per journey, under `src/bin/`:
//!
//! - `feed_app`: a small social feed built on the store (profile, posts by
//!   audience, a photo beside a post, comments, a timeline);
//! - `subscribe`: following a friend, live and after being offline;
//! - `revoke`: a revoked friend receives nothing written after;
//! - `remote_delete`: friends' nodes delete a post and confirm with receipts.
//!
//! Each prints what happens and exits non-zero if an outcome is not what it
//! should be. This library holds the few steps they all take, so that each
//! program shows its journey and little else. Every wait is bounded by
//! [`WAIT`] and announced before it starts ([`step`], [`until`]), so a
//! program that stops shows where it stood; nothing sleeps to wait for an
//! event. With `RUST_LOG` set (`RUST_LOG=kith=debug`), the nodes' log goes
//! to stderr ([`init_log`]).

// The root README's Rust snippets, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeSnippets;

use std::io::Read;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kith::caps::ReadCap;
use kith::store::WatchEvent;
use kith::store::automerge::transaction::Transactable;
use kith::store::automerge::{AutoCommit, ROOT, ReadDoc};
use kith::{Builder, NamespaceId, NetworkMode, Node, Path};

/// How long any awaited outcome may take before the program fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// Sends the nodes' log to stderr when `RUST_LOG` is set (for example
/// `RUST_LOG=kith=debug`); otherwise logs nothing.
pub fn init_log() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// Says what the program waits for, then awaits `fut`, at most [`WAIT`].
///
/// # Errors
/// `fut`'s error, or `what` did not finish within [`WAIT`].
pub async fn step<T, E>(what: &str, fut: impl Future<Output = Result<T, E>>) -> Result<T>
where
    E: Into<anyhow::Error>,
{
    println!("  … {what}");
    match tokio::time::timeout(WAIT, fut).await {
        Ok(out) => out.map_err(Into::into).with_context(|| what.to_string()),
        Err(_) => bail!("{what}: not within {WAIT:?}"),
    }
}

/// A node builder for a data folder, on loopback only (no relays, no
/// outside lookups), as every example runs.
pub fn local(dir: &std::path::Path) -> Builder {
    Node::builder(dir).network(NetworkMode::LocalOnly)
}

/// Makes `a` and `b` friends of each other (tickets exchanged out of band
/// in real use).
///
/// # Errors
/// Store errors.
pub async fn befriend(a: &Node, b: &Node) -> Result<()> {
    a.add_friend(&b.ticket()).await?;
    b.add_friend(&a.ticket()).await?;
    Ok(())
}

/// Alice and two friends of hers, Bob and Carol, who may read her `/feed`
/// and follow her; see [`alice_and_two_friends`].
#[derive(Debug)]
pub struct Circle {
    /// The owner.
    pub alice: Node,
    /// A friend.
    pub bob: Node,
    /// Another friend.
    pub carol: Node,
    /// Alice's grant of `/feed` to Carol.
    pub carols_grant: ReadCap,
}

/// Starts Alice, Bob and Carol on loopback in `dir`. Alice befriends both
/// and lets them read `/feed`; both subscribe to her namespace. They
/// re-sync only hourly, so what reaches them in a program comes live (or by
/// the recovery the live layer starts itself).
///
/// # Errors
/// Start-up errors.
pub async fn alice_and_two_friends(dir: &std::path::Path) -> Result<Circle> {
    let spawn = |name: &str| {
        local(&dir.join(name))
            .resync_interval(Duration::from_secs(3600))
            .spawn()
    };
    let (alice, bob, carol) = (
        spawn("alice").await?,
        spawn("bob").await?,
        spawn("carol").await?,
    );
    let feed = Path::parse("/feed")?;
    befriend(&alice, &bob).await?;
    befriend(&alice, &carol).await?;
    alice.grant(&bob.namespace(), &feed, None).await?;
    let carols_grant = alice.grant(&carol.namespace(), &feed, None).await?;
    bob.subscribe(&alice.namespace()).await?;
    carol.subscribe(&alice.namespace()).await?;
    Ok(Circle {
        alice,
        bob,
        carol,
        carols_grant,
    })
}

/// Writes the document `{ text }` at `path` of the node's own namespace.
///
/// # Errors
/// Store errors (a bad path, a deleted one …).
pub async fn write_text(node: &Node, path: &str, text: &str) -> Result<()> {
    let (store, ns) = (node.store().clone(), node.namespace());
    let (path, text) = (Path::parse(path)?, text.to_string());
    // The store blocks: keep it off the async workers.
    tokio::task::spawn_blocking(move || -> Result<()> {
        store
            .edit_document(&ns, &path, |d| d.put(ROOT, "text", text.as_str()))?
            .0?;
        Ok(())
    })
    .await?
}

/// The text field `key` of a document, if it holds one.
pub fn text_field(doc: &AutoCommit, key: &str) -> Option<String> {
    let (value, _) = doc.get(ROOT, key).ok()??;
    value.into_scalar().ok()?.into_string().ok()
}

/// The `text` field of the document at `path` of `owner` in `node`'s
/// store, if there is one.
///
/// # Errors
/// Store errors.
pub fn read_text(node: &Node, owner: &NamespaceId, path: &str) -> Result<Option<String>> {
    let doc = node.store().document(owner, &Path::parse(path)?)?;
    Ok(doc.and_then(|d| text_field(&d, "text")))
}

/// The whole blob at `path` of `owner`, through `node`: fetched from the
/// owner's devices (and verified against its hash) if it is not here.
///
/// # Errors
/// Nothing at `path`, the owner unreachable, store errors.
pub async fn read_blob(node: &Node, owner: &NamespaceId, path: &str) -> Result<Vec<u8>> {
    let mut reader = node.read_blob(owner, &Path::parse(path)?).await?;
    let bytes = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        reader.read_to_end(&mut out).map(|_| out)
    })
    .await??;
    Ok(bytes)
}

/// Whether `node` holds the document at `path` of `owner`, content included.
///
/// # Errors
/// Store errors.
pub fn holds(node: &Node, owner: &NamespaceId, path: &str) -> Result<bool> {
    Ok(read_text(node, owner, path)?.is_some())
}

/// Waits until `done` holds, checking it again after every change under
/// `prefix` of `owner` in `node`'s store (the node's own watch, no polling).
///
/// # Errors
/// `what` did not happen within [`WAIT`], or `done` failed.
pub async fn until(
    node: &Node,
    owner: &NamespaceId,
    prefix: &str,
    what: &str,
    mut done: impl FnMut() -> Result<bool>,
) -> Result<()> {
    println!("  … waiting until {what}");
    let mut watch = node.watch(owner, &Path::parse(prefix)?);
    let waited = tokio::time::timeout(WAIT, async {
        while !done()? {
            match watch.recv().await {
                Some(WatchEvent::Change(_) | WatchEvent::Lagged) => {}
                None => bail!("the store closed"),
            }
        }
        Ok(())
    })
    .await;
    waited.with_context(|| format!("{what}: not within {WAIT:?}"))?
}

/// Waits until `done` holds for state no watch reports (such as the gossip
/// topics a node has joined), checking it every 50 ms.
///
/// # Errors
/// `what` did not happen within [`WAIT`].
pub async fn until_state(what: &str, mut done: impl FnMut() -> bool) -> Result<()> {
    println!("  … waiting until {what}");
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tokio::time::timeout(WAIT, async {
        while !done() {
            tick.tick().await;
        }
    })
    .await
    .with_context(|| format!("{what}: not within {WAIT:?}"))
}
