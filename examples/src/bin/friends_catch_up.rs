//! Journey 2 with two real nodes on loopback: Bob subscribes to Alice's
//! feed and receives her posts, and a photo on demand; Alice deletes a post
//! and Bob's copy goes; Alice revokes Bob and he receives nothing after.
//!
//! Run: `cargo run -p kith-examples --bin friends_catch_up`.
//! Exits non-zero if any outcome is not what it should be.

use std::io::Read;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use kith::store::WatchEvent;
use kith::store::automerge::transaction::Transactable;
use kith::store::automerge::{ROOT, ReadDoc};
use kith::{NetworkMode, Node, Path};

async fn post(node: &Node, path: &str, text: &str) -> Result<()> {
    let store = node.store().clone();
    let (ns, path, text) = (node.namespace(), Path::parse(path)?, text.to_string());
    tokio::task::spawn_blocking(move || -> Result<()> {
        store
            .edit_document(&ns, &path, |d| d.put(ROOT, "text", text.as_str()))?
            .0?;
        Ok(())
    })
    .await?
}

fn text(node: &Node, owner: &kith::NamespaceId, path: &Path) -> Result<String> {
    let doc = node
        .store()
        .document(owner, path)?
        .context("document missing")?;
    let (value, _) = doc.get(ROOT, "text")?.context("no text")?;
    Ok(value
        .into_scalar()
        .ok()
        .and_then(|s| s.into_string().ok())
        .unwrap_or_default())
}

#[tokio::main]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let alice = Node::builder(dir.path().join("alice"))
        .network(NetworkMode::LocalOnly)
        .spawn()
        .await?;
    let bob = Node::builder(dir.path().join("bob"))
        .network(NetworkMode::LocalOnly)
        .resync_interval(Duration::from_millis(300))
        .spawn()
        .await?;
    println!(
        "alice is {}\nbob   is {}",
        alice.namespace(),
        bob.namespace()
    );

    // They exchange tickets out of band; Alice lets Bob read /feed.
    alice.add_friend(&bob.ticket()).await?;
    bob.add_friend(&alice.ticket().to_string().parse()?).await?;
    let cap = alice
        .grant(&bob.namespace(), &Path::parse("/feed")?, None)
        .await?;
    println!("alice granted bob /feed");

    post(&alice, "/feed/1", "Morning at the lake").await?;
    post(&alice, "/feed/2", "Picture of the lake below").await?;
    post(&alice, "/diary/1", "Not for anyone else").await?;
    let photo = vec![0xAB; 1 << 20];
    alice.store().put_blob(
        &alice.namespace(),
        &Path::parse("/feed/2/photo.jpg")?,
        &photo[..],
        "image/jpeg",
    )?;

    // Bob subscribes and waits for the three /feed entries to arrive.
    let mut watch = bob
        .store()
        .watch(&alice.namespace(), &Path::parse("/feed")?);
    bob.subscribe(&alice.namespace()).await?;
    let mut arrived = 0;
    while arrived < 3 {
        match tokio::time::timeout(Duration::from_secs(30), watch.recv()).await {
            Ok(Some(WatchEvent::Change(_))) => arrived += 1,
            Ok(Some(WatchEvent::Lagged)) => {}
            Ok(None) | Err(_) => {
                anyhow::bail!("bob's subscription delivered {arrived} of 3 entries")
            }
        }
    }
    println!("\nbob's view of alice's feed:");
    for (path, entry) in bob
        .store()
        .list(&alice.namespace(), &Path::parse("/feed")?, None, 100)?
        .entries
    {
        match entry.blob_hash() {
            Some(_) => {
                let mut reader = bob.read_blob(&alice.namespace(), &path).await?;
                let bytes = tokio::task::spawn_blocking(move || {
                    let mut out = Vec::new();
                    reader.read_to_end(&mut out).map(|_| out)
                })
                .await??;
                ensure!(bytes == photo, "the photo differs");
                println!(
                    "  {path}: a photo of {} bytes, fetched when read and verified",
                    bytes.len()
                );
            }
            None => println!("  {path}: {}", text(&bob, &alice.namespace(), &path)?),
        }
    }
    ensure!(
        bob.store()
            .list(&alice.namespace(), &Path::parse("/diary")?, None, 10)?
            .entries
            .is_empty(),
        "bob received alice's diary"
    );
    println!("  (alice's /diary was not shared and did not arrive)");

    // Alice deletes post 1; Bob's copy goes on his next sync.
    alice.delete(&Path::parse("/feed/1")?).await?;
    let report = bob.sync_now(&alice.namespace()).await?;
    ensure!(report.tombstones == 1, "the deletion did not arrive");
    ensure!(
        bob.store()
            .get(&alice.namespace(), &Path::parse("/feed/1")?)?
            .is_none(),
        "bob still has the deleted post"
    );
    println!("\nalice deleted /feed/1; bob's copy is gone");

    // Alice revokes Bob; her later posts do not reach him.
    alice.revoke(cap.id()).await?;
    post(&alice, "/feed/3", "After the revocation").await?;
    let report = bob.sync_now(&alice.namespace()).await?;
    ensure!(
        report.entries == 0 && report.prefixes.is_empty(),
        "bob still receives: {report:?}"
    );
    ensure!(
        bob.store()
            .get(&alice.namespace(), &Path::parse("/feed/3")?)?
            .is_none(),
        "a post after revocation arrived"
    );
    println!("alice revoked bob; /feed/3 did not reach him (what he had stays with him)");

    alice.shutdown().await?;
    bob.shutdown().await?;
    println!("\nok: subscribed, caught up, fetched, deleted and revoked");
    Ok(())
}
