//! Journey 2: subscribe to a friend's namespace.
//!
//! Two nodes on loopback. Bob follows Alice's `/feed` (and receives
//! nothing else of hers): while both are online her posts reach him live
//! over gossip, without Bob asking for them. A large photo arrives as an
//! entry and its bytes are fetched when Bob reads it; purging Bob's cache of
//! friends' blobs frees them, and reading fetches them again. Then Bob's node stops, Alice posts on, and Bob's node starts again
//! from the same data folder: it catches up by itself (a subscription is
//! kept in the store and resumes after a restart) and rejoins the topic.
//!
//! Run: `cargo run -p kith-examples --bin subscribe`.
//! Exits non-zero if any outcome is not what it should be.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use kith::Path;
use kith_examples::{
    befriend, holds, init_log, local, read_blob, step, until, until_state, write_text,
};

#[tokio::main]
async fn main() -> Result<()> {
    init_log();
    let dir = tempfile::tempdir()?;
    let alice = step(
        "alice's node starts",
        local(&dir.path().join("alice")).spawn(),
    )
    .await?;
    // Bob re-syncs his subscriptions only hourly here, so what reaches him
    // in this program comes live, or by the catch-up a (re)start begins.
    let bob_node = local(&dir.path().join("bob")).resync_interval(Duration::from_secs(3600));
    let bob = step("bob's node starts", bob_node.clone().spawn()).await?;
    let me = alice.namespace();
    step("alice and bob exchange tickets", befriend(&alice, &bob)).await?;
    step(
        "alice grants bob /feed",
        alice.grant(&bob.namespace(), &Path::parse("/feed")?, None),
    )
    .await?;
    println!("alice and bob are friends; alice lets bob read /feed");

    write_text(&alice, "/feed/1", "First post").await?;
    write_text(&alice, "/diary/1", "Not for anyone else").await?;
    step("bob subscribes to alice", bob.subscribe(&me)).await?;
    until(&bob, &me, "/feed", "bob's first catch-up", || {
        holds(&bob, &me, "/feed/1")
    })
    .await?;
    println!("bob subscribed to alice and caught up: /feed/1 is on his node");
    // The catch-up also brought the key of alice's /feed scope, so bob's
    // node joins its gossip topic.
    until_state("bob is linked to alice in the topic of her /feed", || {
        bob.live_topics().iter().any(|t| t.neighbors > 0)
    })
    .await?;

    let before = bob.live_metrics();
    let sent = Instant::now();
    for i in 2..=4 {
        write_text(&alice, &format!("/feed/{i}"), &format!("Live post {i}")).await?;
    }
    until(&bob, &me, "/feed", "alice's posts 2 to 4 reach bob", || {
        Ok(holds(&bob, &me, "/feed/2")?
            && holds(&bob, &me, "/feed/3")?
            && holds(&bob, &me, "/feed/4")?)
    })
    .await?;
    // Bob's node applies what gossip brings, and catches up by itself when
    // gossip shows it missed something (on joining, the first message it
    // hears is past the start of alice's session); whichever comes first
    // brings a post, bob never asks.
    let live = bob.live_metrics().applied_live - before.applied_live;
    println!(
        "alice posted 3 more; they reached bob in {:?} without him syncing ({live} changes applied from gossip, the rest by catch-ups live push started)",
        sent.elapsed()
    );

    // Blobs up to 256 KiB come with their entry; larger ones when read.
    let photo = vec![0xAB; 1 << 20];
    let photo_path = "/feed/4/photo.jpg";
    let entry = alice
        .store()
        .put_blob(&me, &Path::parse(photo_path)?, &photo[..], "image/jpeg")?;
    let hash = entry.blob_hash().context("the photo is a blob")?;
    until(
        &bob,
        &me,
        "/feed/4",
        "the photo's entry reaches bob",
        || Ok(bob.store().get(&me, &Path::parse(photo_path)?)?.is_some()),
    )
    .await?;
    ensure!(
        !bob.store().has_blob(&hash),
        "a 1 MiB photo came before it was read"
    );
    println!("\nalice adds a 1 MiB photo: bob's node has its entry, not yet its bytes");
    ensure!(
        step("bob reads the photo", read_blob(&bob, &me, photo_path)).await? == photo,
        "the photo differs"
    );
    println!("bob reads it: fetched from alice and verified against its hash");
    let purged = step("bob purges his cache of friends' data", bob.purge_cache()).await?;
    ensure!(
        !bob.store().has_blob(&hash),
        "the purged photo is still stored"
    );
    ensure!(
        step(
            "bob reads the photo again",
            read_blob(&bob, &me, photo_path)
        )
        .await?
            == photo,
        "the photo differs"
    );
    println!(
        "bob purges his cache of friends' data ({} documents, {} blobs, {} bytes freed); reading fetches them again",
        purged.documents, purged.blobs, purged.bytes
    );

    step("bob's node stops", bob.shutdown()).await?;
    println!("\nbob's node stopped");
    write_text(&alice, "/feed/5", "Posted while bob was away").await?;
    write_text(&alice, "/feed/6", "Still away?").await?;
    println!("alice posts /feed/5 and /feed/6");

    let bob = step("bob's node starts again", bob_node.spawn()).await?;
    println!("bob's node starts again from the same folder (no subscribe call)");
    until(
        &bob,
        &me,
        "/feed",
        "bob catches up after his restart",
        || Ok(holds(&bob, &me, "/feed/5")? && holds(&bob, &me, "/feed/6")?),
    )
    .await?;
    println!("bob caught up by himself: /feed/5 and /feed/6 arrived");

    until_state("bob is linked to alice in the topic again", || {
        bob.live_topics().iter().any(|t| t.neighbors > 0)
    })
    .await?;
    let before = bob.live_metrics();
    write_text(&alice, "/feed/7", "Welcome back").await?;
    until(&bob, &me, "/feed", "alice's next post reaches bob", || {
        holds(&bob, &me, "/feed/7")
    })
    .await?;
    println!(
        "and /feed/7 reached him without a sync call too ({} changes applied from gossip)",
        bob.live_metrics().applied_live - before.applied_live
    );
    let count = bob
        .store()
        .list(&me, &Path::parse("/feed")?, None, 100)?
        .entries
        .len();
    ensure!(
        count == 8,
        "bob holds {count} of alice's 7 posts and 1 photo"
    );
    ensure!(
        !holds(&bob, &me, "/diary/1")?,
        "alice's /diary, never granted, reached bob"
    );
    println!("alice's /diary, which bob may not read, never reached him");

    step("both nodes stop", async {
        tokio::try_join!(alice.shutdown(), bob.shutdown())
    })
    .await?;
    println!("\nok: followed live, stopped, caught up by itself after a restart");
    Ok(())
}
