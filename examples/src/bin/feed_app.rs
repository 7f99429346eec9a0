//! Journey 1: a small social feed built on the store.
//!
//! A feed is ordinary documents and blobs at paths, so the grants on those
//! paths decide who sees what. This program uses the layout of the `kith`
//! app:
//!
//! - `/profile`: a document `{ name, bio }`, and `/profile/avatar`, an
//!   image blob beside it;
//! - posts: documents `{ text, time }` under their audience's prefix:
//!   `/feed/friends/<id>` (every friend) or `/feed/close/<id>` (close
//!   friends); a photo is a blob beside its post, at `<post>/photo.jpg`, so
//!   deleting a post deletes its photo;
//! - comments: documents `{ on, text, time }` at `/feed/comments/<id>` in the
//!   commenter's own namespace, `on` naming the post.
//!
//! Alice writes her profile and posts while a watch on her `/feed` reports
//! each write. Bob, her friend, may read her profile, her friends' posts
//! and her comments, not her close friends' posts; he posts and comments in
//! his own namespace. Each timeline merges both namespaces, newest first.
//!
//! Run: `cargo run -p kith-examples --bin feed_app`.
//! Exits non-zero if any outcome is not what it should be.

use anyhow::{Context, Result, ensure};
use kith::store::automerge::transaction::Transactable;
use kith::store::automerge::{ROOT, ReadDoc};
use kith::store::{ChangeKind, EntryKind, WatchEvent};
use kith::{NamespaceId, Node, Path};
use kith_examples::{befriend, init_log, local, read_blob, step, text_field};

/// What a friend may read: the profile, friends' posts and comments.
const FRIEND_PREFIXES: [&str; 3] = ["/profile", "/feed/friends", "/feed/comments"];

/// A post as a timeline shows it.
#[derive(Debug)]
struct Post {
    author: String,
    path: String,
    text: String,
    time: u64,
    photo: Option<u64>,
    comments: Vec<String>,
}

/// A new id: the store's clock in microseconds, as 16 hex digits, so ids
/// sort by time and never repeat on one device.
fn new_id(node: &Node) -> String {
    format!("{:016x}", node.store().clock().now().as_micros())
}

/// Writes a document with `fields` (text values) and the current `time` at
/// `prefix/<new id>`; returns its path.
fn write_doc(node: &Node, prefix: &str, fields: &[(&str, &str)]) -> Result<Path> {
    let path = Path::parse(prefix)?.join(&new_id(node))?;
    let time = node.store().clock().now().as_micros();
    node.store()
        .edit_document(&node.namespace(), &path, |d| {
            for (key, value) in fields {
                d.put(ROOT, *key, *value)?;
            }
            d.put(ROOT, "time", time)
        })?
        .0?;
    Ok(path)
}

/// The posts of `author` that `node` holds, with the comments of
/// `commenters` on them.
fn posts_of(node: &Node, author: &NamespaceId, commenters: &[NamespaceId]) -> Result<Vec<Post>> {
    let store = node.store();
    let name = store
        .document(author, &Path::parse("/profile")?)?
        .and_then(|d| text_field(&d, "name"))
        .unwrap_or_else(|| author.fmt_short());
    let mut comments = Vec::new();
    for c in commenters {
        for (path, _) in store
            .list(c, &Path::parse("/feed/comments")?, None, 1000)?
            .entries
        {
            if let Some(doc) = store.document(c, &path)? {
                comments.push((text_field(&doc, "on"), text_field(&doc, "text")));
            }
        }
    }
    let mut posts = Vec::new();
    for audience in ["/feed/friends", "/feed/close"] {
        let prefix = Path::parse(audience)?;
        let entries = store.list(author, &prefix, None, 1000)?.entries;
        for (path, _) in entries.iter().filter(|(p, _)| p.len() == prefix.len() + 1) {
            let Some(doc) = store.document(author, path)? else {
                continue;
            };
            let photo = entries.iter().find_map(|(p, e)| match &e.kind {
                EntryKind::Blob { size, .. } if p.parent().as_ref() == Some(path) => Some(*size),
                _ => None,
            });
            let on = Some(format!("{author}{path}"));
            posts.push(Post {
                author: name.clone(),
                path: path.to_string(),
                text: text_field(&doc, "text").unwrap_or_default(),
                time: doc
                    .get(ROOT, "time")?
                    .and_then(|(v, _)| v.as_u64())
                    .unwrap_or(0),
                photo,
                comments: comments
                    .iter()
                    .filter(|(target, _)| *target == on)
                    .filter_map(|(_, text)| text.clone())
                    .collect(),
            });
        }
    }
    Ok(posts)
}

/// Everyone's posts `node` holds, newest first.
fn timeline(node: &Node, people: &[NamespaceId]) -> Result<Vec<Post>> {
    let mut all = Vec::new();
    for author in people {
        all.extend(posts_of(node, author, people)?);
    }
    all.sort_by_key(|p| std::cmp::Reverse(p.time));
    Ok(all)
}

fn show(whose: &str, posts: &[Post]) {
    println!("\n{whose} timeline, newest first:");
    for p in posts {
        println!("  {}: {}  ({})", p.author, p.text, p.path);
        if let Some(size) = p.photo {
            println!("      [photo, {size} bytes]");
        }
        for c in &p.comments {
            println!("      > {c}");
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    init_log();
    let dir = tempfile::tempdir()?;
    let alice = step(
        "alice's node starts",
        local(&dir.path().join("alice")).spawn(),
    )
    .await?;
    let bob = step("bob's node starts", local(&dir.path().join("bob")).spawn()).await?;
    let (a, b) = (alice.namespace(), bob.namespace());
    step("alice and bob exchange tickets", befriend(&alice, &bob)).await?;
    for prefix in FRIEND_PREFIXES {
        step(
            "alice grants bob",
            alice.grant(&b, &Path::parse(prefix)?, None),
        )
        .await?;
        step(
            "bob grants alice",
            bob.grant(&a, &Path::parse(prefix)?, None),
        )
        .await?;
    }
    println!("alice and bob are friends: each may read the other's {FRIEND_PREFIXES:?}");

    // Everything below blocks on the store, which is fine in a program
    // this small; a server would use `spawn_blocking`.
    let mut watch = alice.watch(&a, &Path::parse("/feed")?);
    let profile = Path::parse("/profile")?;
    alice
        .store()
        .edit_document(&a, &profile, |d| {
            d.put(ROOT, "name", "Alice")?;
            d.put(ROOT, "bio", "Swims in cold lakes")
        })?
        .0?;
    let avatar = br##"<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><circle cx="4" cy="4" r="4" fill="#fa0"/></svg>"##;
    alice
        .store()
        .put_blob(&a, &profile.join("avatar")?, &avatar[..], "image/svg+xml")?;
    bob.store()
        .edit_document(&b, &profile, |d| d.put(ROOT, "name", "Bob"))?
        .0?;

    let lake = write_doc(
        &alice,
        "/feed/friends",
        &[("text", "Morning swim at the lake")],
    )?;
    let photo = b"\xFF\xD8 pretend this is a jpeg of the lake".repeat(500);
    alice
        .store()
        .put_blob(&a, &lake.join("photo.jpg")?, &photo[..], "image/jpeg")?;
    write_doc(
        &alice,
        "/feed/close",
        &[("text", "Close friends: dinner on Friday?")],
    )?;
    println!(
        "alice wrote her profile (with a picture), 2 posts and a {} byte photo",
        photo.len()
    );

    // The watch saw each write under /feed, in order.
    let mut seen = Vec::new();
    while let Some(event) = watch.try_recv() {
        if let WatchEvent::Change(change) = event
            && let ChangeKind::Put { path, entry } = change.kind
        {
            println!("  watch: {} {path}", entry.kind_name());
            seen.push(path);
        }
    }
    ensure!(
        seen.len() == 3,
        "the watch reported {} writes, not 3",
        seen.len()
    );

    // Bob catches up with alice and posts; then he comments on her post.
    let report = step("bob catches up with alice", bob.sync_now(&a)).await?;
    println!("\nbob caught up with alice: {} entries", report.entries);
    write_doc(&bob, "/feed/friends", &[("text", "Fresh bread, anyone?")])?;
    let on = format!("{a}{lake}");
    write_doc(
        &bob,
        "/feed/comments",
        &[("on", on.as_str()), ("text", "Brr, brave!")],
    )?;
    step("alice catches up with bob", alice.sync_now(&b)).await?;

    // Bob reads alice's photo through his node (fetched from her if needed).
    let fetched = step(
        "bob reads alice's photo",
        read_blob(&bob, &a, &format!("{lake}/photo.jpg")),
    )
    .await?;
    ensure!(
        fetched == photo,
        "the photo bob read differs: {} bytes, not {}",
        fetched.len(),
        photo.len()
    );
    let avatar_at_bob = bob.store().get(&a, &profile.join("avatar")?)?;
    ensure!(avatar_at_bob.is_some(), "alice's picture did not reach bob");

    let people = [a, b];
    let mine = timeline(&alice, &people)?;
    show("alice's", &mine);
    let his = timeline(&bob, &people)?;
    show("bob's", &his);

    ensure!(mine.len() == 3, "alice sees {} posts, not 3", mine.len());
    ensure!(
        mine.windows(2).all(|w| w[0].time >= w[1].time),
        "alice's timeline is not newest first"
    );
    ensure!(
        mine[0].author == "Bob",
        "bob's post, the newest, comes first"
    );
    let post = mine
        .iter()
        .find(|p| p.path == lake.to_string())
        .context("alice's lake post is missing")?;
    ensure!(
        post.photo == Some(photo.len() as u64) && post.comments == ["Brr, brave!"],
        "the lake post lacks its photo or bob's comment: {post:?}"
    );
    ensure!(his.len() == 2, "bob sees {} posts, not 2", his.len());
    ensure!(
        his.iter().all(|p| !p.path.starts_with("/feed/close")),
        "a close friends' post reached bob, who is not a close friend"
    );

    step("both nodes stop", async {
        tokio::try_join!(alice.shutdown(), bob.shutdown())
    })
    .await?;
    println!(
        "\nok: profile, posts by audience, a photo, comments, watched and merged newest first"
    );
    Ok(())
}
