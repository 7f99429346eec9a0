//! Journey 1 on the store alone: a small social feed.
//!
//! Alice writes a profile, posts with a photo, and Bob (whose own store holds
//! a replica of Alice's namespace) comments in his namespace. Alice's posts
//! travel to Bob's store as Automerge changes (what the node will send over
//! the network), Bob's timeline merges both namespaces, and Alice deletes a
//! post: Bob's replica applies the deletion, refuses the old post if it
//! arrives again, and the compacted data folder no longer holds its bytes.
//!
//! Run: `cargo run -p kith-examples --bin feed_on_store [-- --data DIR]`.
//! Exits non-zero if any outcome is not what it should be.

use std::io::Read;

use anyhow::{Context, Result, bail, ensure};
use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};
use kith_store::{DocIdentity, EntryKind, Error, Options, RemoteWrite, Store};
use kith_types::{DeviceId, NamespaceId, Path};

fn text(store: &Store, ns: &NamespaceId, path: &Path, key: &str) -> Result<String> {
    let doc = store.document(ns, path)?.context("document missing")?;
    let (value, _) = doc.get(ROOT, key)?.context("field missing")?;
    Ok(value
        .into_scalar()
        .ok()
        .and_then(|s| s.into_string().ok())
        .unwrap_or_default())
}

/// Copies one of `from`'s documents into `to`, sending only what `to` lacks.
fn replicate(from: &Store, to: &Store, ns: &NamespaceId, path: &Path) -> Result<()> {
    let entry = from.get(ns, path)?.context("nothing to replicate")?;
    let EntryKind::Document {
        created, creator, ..
    } = entry.kind
    else {
        bail!("{path} is not a document");
    };
    let theirs = to.heads(ns, path).unwrap_or_default();
    let changes = from.changes_for(ns, path, &theirs)?;
    let identity = DocIdentity { created, creator };
    let write = RemoteWrite {
        device: entry.device,
        timestamp: entry.timestamp,
    };
    to.apply_changes(ns, path, identity, write, &changes)?;
    Ok(())
}

fn main() -> Result<()> {
    let temp = tempfile::tempdir()?;
    let data = match std::env::args().skip_while(|a| a != "--data").nth(1) {
        Some(dir) => {
            println!("data folder: {dir}");
            std::path::PathBuf::from(dir)
        }
        None => {
            println!(
                "data folder: {} (temporary; pass --data DIR to keep it)",
                temp.path().display()
            );
            temp.path().to_path_buf()
        }
    };
    let alice_ns = NamespaceId::from_bytes([0xA1; 32]);
    let bob_ns = NamespaceId::from_bytes([0xB0; 32]);
    let alice = Store::open(
        data.join("alice"),
        Options::new(DeviceId::from_bytes([0xA2; 32])),
    )?;
    let bob = Store::open(
        data.join("bob"),
        Options::new(DeviceId::from_bytes([0xB2; 32])),
    )?;

    // Alice: profile, two posts, a photo.
    let profile = Path::parse("/profile")?;
    alice
        .edit_document(&alice_ns, &profile, |d| d.put(ROOT, "name", "Alice"))?
        .0?;
    let post1 = Path::parse("/posts/friends/0001")?;
    let post2 = Path::parse("/posts/friends/0002")?;
    alice
        .edit_document(&alice_ns, &post1, |d| {
            d.put(ROOT, "text", "First post from the lake")
        })?
        .0?;
    alice
        .edit_document(&alice_ns, &post2, |d| {
            d.put(ROOT, "text", "Second post: a picture")
        })?
        .0?;
    let photo = Path::parse("/posts/friends/0002/photo.jpg")?;
    let picture = b"\xFF\xD8 pretend this is a jpeg of the lake".repeat(100);
    let photo_entry = alice.put_blob(&alice_ns, &photo, &picture[..], "image/jpeg")?;
    println!(
        "alice wrote a profile, 2 posts and a {} byte photo",
        picture.len()
    );

    // Alice's posts reach Bob's replica as changes; an edit sends only the delta.
    for path in [&profile, &post1, &post2] {
        replicate(&alice, &bob, &alice_ns, path)?;
    }
    alice
        .edit_document(&alice_ns, &post1, |d| {
            d.put(ROOT, "text", "First post from the lake (edited)")
        })?
        .0?;
    replicate(&alice, &bob, &alice_ns, &post1)?;
    ensure!(
        text(&bob, &alice_ns, &post1, "text")?.ends_with("(edited)"),
        "edit did not reach bob"
    );
    // The photo entry and its bytes, verified against the hash.
    let hash = photo_entry.blob_hash().context("photo is a blob")?;
    bob.put_blob_entry(
        &alice_ns,
        &photo,
        RemoteWrite {
            device: photo_entry.device,
            timestamp: photo_entry.timestamp,
        },
        hash,
        picture.len() as u64,
        "image/jpeg",
    )?;
    bob.import_blob(hash, alice.read_blob(&hash, ..)?)?;
    let mut fetched = Vec::new();
    bob.read_blob(&hash, ..)?.read_to_end(&mut fetched)?;
    ensure!(fetched == picture, "photo differs");

    // Bob comments on Alice's post, in his own namespace.
    let comment = Path::parse("/comments/0001")?;
    bob.edit_document(&bob_ns, &comment, |d| {
        d.put(ROOT, "on", format!("{alice_ns}{post1}"))?;
        d.put(ROOT, "text", "Beautiful!")
    })?
    .0?;

    // Bob's timeline: posts of both namespaces, with comments.
    println!("\nbob's timeline:");
    let name = text(&bob, &alice_ns, &profile, "name")?;
    let posts = bob.list(&alice_ns, &Path::parse("/posts")?, None, 100)?;
    let mut shown = 0;
    for (path, entry) in &posts.entries {
        if entry.blob_hash().is_some() {
            println!("    [photo {path}, {} bytes]", picture.len());
            continue;
        }
        println!("  {name}: {}", text(&bob, &alice_ns, path, "text")?);
        shown += 1;
        for (c, _) in bob
            .list(&bob_ns, &Path::parse("/comments")?, None, 100)?
            .entries
        {
            if text(&bob, &bob_ns, &c, "on")? == format!("{alice_ns}{path}") {
                println!("    Bob: {}", text(&bob, &bob_ns, &c, "text")?);
            }
        }
    }
    ensure!(shown == 2, "expected 2 posts on the timeline, saw {shown}");

    // Alice deletes post 2 and its photo; Bob's replica applies the deletion.
    println!("\nalice deletes /posts/friends/0002 …");
    let when = alice.clock().now();
    alice.apply_tombstone(&alice_ns, &post2, when, &[])?;
    let out = bob.apply_tombstone(&alice_ns, &post2, when, &[])?;
    println!(
        "bob removed {} entries and {} blob(s)",
        out.removed, out.blobs_deleted
    );
    ensure!(
        out.removed == 2 && out.blobs_deleted == 1,
        "deletion incomplete: {out:?}"
    );
    ensure!(!bob.has_blob(&hash), "photo bytes still stored");
    // A stale copy of the old post arriving again is refused.
    let stale = bob.apply_changes(
        &alice_ns,
        &post2,
        DocIdentity {
            created: when,
            creator: DeviceId::from_bytes([0xA2; 32]),
        },
        RemoteWrite {
            device: DeviceId::from_bytes([0xA2; 32]),
            timestamp: when,
        },
        &automerge::AutoCommit::new().save(),
    );
    ensure!(
        matches!(stale, Err(Error::Tombstoned { .. })),
        "old post came back: {stale:?}"
    );
    bob.compact()?;
    println!("bob's store refused the deleted post when it arrived again, and compacted");
    let left = bob
        .list(&alice_ns, &Path::parse("/posts")?, None, 100)?
        .entries
        .len();
    ensure!(left == 1, "expected 1 post left, found {left}");
    println!("\nok: feed written, replicated, commented, deleted and compacted");
    Ok(())
}
