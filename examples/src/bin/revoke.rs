//! Journey 3: revoke a friend's access to a path.
//!
//! Alice lets Bob and Carol read `/feed`; both follow her and receive her
//! first post. Alice revokes Carol: her later posts reach Bob and never
//! Carol: not live (the `/feed` scope moved to a new key and gossip topic
//! that Carol's node is not given) and not when Carol asks (Alice's node
//! serves her nothing under `/feed` any more). What Carol already holds
//! stays with her: revoking stops sharing, it does not delete (the
//! `remote_delete` example shows `revoke_and_delete`, which also does).
//!
//! Run: `cargo run -p kith-examples --bin revoke`.
//! Exits non-zero if any outcome is not what it should be.

use anyhow::{Result, ensure};
use kith::Path;
use kith_examples::{
    Circle, WAIT, alice_and_two_friends, holds, init_log, step, until, write_text,
};

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
    let feed = Path::parse("/feed")?;
    println!("alice lets bob and carol read /feed; both follow her");

    write_text(&alice, "/feed/1", "Hello both of you").await?;
    for (friend, name) in [(&bob, "bob"), (&carol, "carol")] {
        until(
            friend,
            &me,
            "/feed",
            &format!("/feed/1 reaches {name}"),
            || holds(friend, &me, "/feed/1"),
        )
        .await?;
    }
    println!("/feed/1 reached bob and carol");

    step("alice revokes carol", alice.revoke(carols.id())).await?;
    let epoch = alice.live_topics().first().map_or(0, |t| t.epoch);
    println!("\nalice revokes carol's grant: /feed moves to a new key (epoch {epoch})");
    ensure!(epoch >= 1, "the /feed scope was not re-keyed");

    write_text(&alice, "/feed/2", "Only bob reads this").await?;
    write_text(&alice, "/feed/3", "And this").await?;
    until(&bob, &me, "/feed", "/feed/2 and /feed/3 reach bob", || {
        Ok(holds(&bob, &me, "/feed/2")? && holds(&bob, &me, "/feed/3")?)
    })
    .await?;
    println!("alice's next posts /feed/2 and /feed/3 reached bob");
    ensure!(
        !holds(&carol, &me, "/feed/2")? && !holds(&carol, &me, "/feed/3")?,
        "a post written after the revocation reached carol live"
    );
    println!("they did not reach carol live");

    // Carol asks for everything she may read: nothing under /feed comes.
    println!("  … carol asks alice for what she may read");
    match tokio::time::timeout(WAIT, carol.sync_now(&me)).await? {
        Ok(report) => {
            println!(
                "carol syncs with alice: {} entries, prefixes served: {:?}",
                report.entries, report.prefixes
            );
            ensure!(
                report.entries == 0 && !report.prefixes.contains(&feed),
                "carol's sync still served /feed: {report:?}"
            );
        }
        Err(kith::Error::Refused { .. }) => println!("carol syncs with alice: refused"),
        Err(other) => return Err(other.into()),
    }
    ensure!(
        !holds(&carol, &me, "/feed/2")? && !holds(&carol, &me, "/feed/3")?,
        "carol's sync brought a post written after the revocation"
    );
    ensure!(
        holds(&carol, &me, "/feed/1")?,
        "what carol held before the revocation should stay with her"
    );
    println!("nor by asking; /feed/1, which she had before, stays with her");

    step("the three nodes stop", async {
        tokio::try_join!(alice.shutdown(), bob.shutdown(), carol.shutdown())
    })
    .await?;
    println!("\nok: after the revocation, alice's posts reach bob and never carol");
    Ok(())
}
