//! Journey 4: request remote deletion.
//!
//! Alice posts with a photo; Bob and Carol, who may read `/feed`, have both.
//! Alice deletes the post: her node signs a deletion request and pushes it
//! to every friend device that was served the post; their nodes delete the
//! post with its history and the photo's bytes, and each confirms with a
//! signed receipt. Alice sees 2 of 2 confirmations, awaited as receipt
//! events. Then "revoke and delete": Alice revokes Carol and asks Carol's
//! node alone to delete what it holds under `/feed`; Bob keeps his copy.
//!
//! Run: `cargo run -p kith-examples --bin remote_delete`.
//! Exits non-zero if any outcome is not what it should be.

use std::collections::HashMap;

use anyhow::{Context, Result, bail, ensure};
use kith::caps::TombstoneId;
use kith::{DeletionStatus, NamespaceId, Node, NodeEvent, Path};
use kith_examples::{
    Circle, WAIT, alice_and_two_friends, holds, init_log, step, until, write_text,
};
use tokio::sync::broadcast::error::RecvError;

/// Waits, on receipt events, until `n` friend devices confirmed `deletion`.
async fn until_confirmed(
    owner: &Node,
    deletion: TombstoneId,
    n: usize,
) -> Result<Vec<DeletionStatus>> {
    let mut events = owner.events();
    println!("  … waiting until {n} friend devices confirm");
    let waited = tokio::time::timeout(WAIT, async {
        loop {
            // Read after subscribing: no receipt slips between the two.
            let status = owner.receipts(deletion).await?;
            if status.iter().filter(|s| s.confirmed.is_some()).count() >= n {
                return Ok(status);
            }
            match events.recv().await {
                Ok(NodeEvent::Receipt { .. }) | Err(RecvError::Lagged(_)) => {}
                Ok(_) => {}
                Err(RecvError::Closed) => bail!("the node stopped"),
            }
        }
    })
    .await;
    waited.with_context(|| format!("{n} confirmations: not within {WAIT:?}"))?
}

fn print_receipts(status: &[DeletionStatus], names: &HashMap<NamespaceId, &str>) {
    for s in status {
        let who = names.get(&s.namespace).copied().unwrap_or("someone");
        match s.confirmed {
            Some(at) => println!(
                "  {who}'s device {} deleted it (signed receipt, at {} µs)",
                s.device.fmt_short(),
                at.as_micros()
            ),
            None => println!("  {who}'s device {}: pending", s.device.fmt_short()),
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    init_log();
    let dir = tempfile::tempdir()?;
    let Circle {
        alice,
        bob,
        carol,
        carols_grant: carols,
    } = step(
        "alice, bob and carol start and befriend",
        alice_and_two_friends(dir.path()),
    )
    .await?;
    let me = alice.namespace();
    let names = HashMap::from([(bob.namespace(), "bob"), (carol.namespace(), "carol")]);
    let feed = Path::parse("/feed")?;

    // A post with a photo beside it.
    write_text(&alice, "/feed/p1", "A picture of the lake").await?;
    let photo = b"\xFF\xD8 pretend this is a jpeg of the lake".repeat(200);
    let photo_path = Path::parse("/feed/p1/photo.jpg")?;
    let entry = alice
        .store()
        .put_blob(&me, &photo_path, &photo[..], "image/jpeg")?;
    let hash = entry.blob_hash().context("the photo is a blob")?;
    for friend in [&bob, &carol] {
        until(
            friend,
            &me,
            "/feed",
            "the post and its photo reach a friend",
            || {
                Ok(holds(friend, &me, "/feed/p1")?
                    && friend.store().get(&me, &photo_path)?.is_some())
            },
        )
        .await?;
        // Small photos are fetched as soon as they are announced, larger
        // ones when read; `fetch` makes sure the bytes are here.
        step("a friend fetches the photo", friend.fetch(&me, &photo_path)).await?;
        ensure!(
            friend.store().has_blob(&hash),
            "the photo's bytes are missing"
        );
    }
    println!(
        "alice posted /feed/p1 with a {} byte photo; bob and carol hold both",
        photo.len()
    );

    let deletion = step(
        "alice deletes /feed/p1",
        alice.delete(&Path::parse("/feed/p1")?),
    )
    .await?;
    println!("\nalice deletes /feed/p1 (deletion {deletion})");
    let status = until_confirmed(&alice, deletion, 2).await?;
    print_receipts(&status, &names);
    ensure!(status.len() == 2, "expected 2 devices, got {status:?}");
    println!("confirmed on 2 of 2 friends' devices");
    for friend in [&bob, &carol] {
        ensure!(
            !holds(friend, &me, "/feed/p1")? && friend.store().get(&me, &photo_path)?.is_none(),
            "a friend still holds the deleted post"
        );
        ensure!(
            !friend.store().has_blob(&hash),
            "a friend still stores the photo's bytes"
        );
    }
    println!("neither friend holds the post or the photo's bytes any more");

    // Revoke and delete: carol's grant goes, and so does what she holds.
    write_text(&alice, "/feed/p2", "Later post").await?;
    for friend in [&bob, &carol] {
        until(friend, &me, "/feed", "/feed/p2 reaches a friend", || {
            holds(friend, &me, "/feed/p2")
        })
        .await?;
    }
    let (_, deletion) = step(
        "alice revokes carol and asks her node to delete",
        alice.revoke_and_delete(carols.id()),
    )
    .await?;
    println!("\nalice revokes carol's /feed and asks her node to delete it (deletion {deletion})");
    let status = until_confirmed(&alice, deletion, 1).await?;
    print_receipts(&status, &names);
    ensure!(
        status.len() == 1 && status[0].namespace == carol.namespace(),
        "only carol's device is asked: {status:?}"
    );
    let carol_holds = carol.store().list(&me, &feed, None, 10)?.entries.len();
    ensure!(
        carol_holds == 0,
        "carol still holds {carol_holds} entries under /feed"
    );
    ensure!(holds(&bob, &me, "/feed/p2")?, "bob lost his copy");
    ensure!(holds(&alice, &me, "/feed/p2")?, "alice lost her own post");
    println!("carol holds nothing of alice's /feed; bob and alice keep /feed/p2");

    step("the three nodes stop", async {
        tokio::try_join!(alice.shutdown(), bob.shutdown(), carol.shutdown())
    })
    .await?;
    println!(
        "\nok: deleted on every friend's device, confirmed 2/2; revoke and delete confirmed 1/1"
    );
    Ok(())
}
