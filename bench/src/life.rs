//! Scenario `life`: a person's whole life in one store.
//!
//! One store holds the person and 250 friends, each with 1,000 posts
//! written through the feed (`feed::create_post`, as `kith feed post` and
//! `POST /api/feed` write them), in turn, so the timeline interleaves
//! everyone; every fourth post has a comment by the next person in the
//! round (`feed::comment`), every hundredth a 64 KiB photo of random bytes.
//! The timeline index is caught up after every 1,000 writes, as `kith
//! serve` does after a burst. Figures (scaled by `--scale`):
//!
//! - the first timeline page (50 posts, `timeline::page`), median of 20,
//!   beside the same page of a store of about 500 posts by the same people
//!   (the page must not grow with the data), and beside the whole timeline read at once
//!   (`feed::timeline`, what `GET /api/feed` did before paging), once;
//! - a page of 50 deep in the past (90 % of the way back), median of 20,
//!   found by walking the whole timeline in pages of 500; the walk must see
//!   every post exactly once, newest first, or the scenario fails;
//! - start-up: `Store::open` after a clean close, median of 5, beside an
//!   empty store's; and the first page after that open (names loaded, the
//!   index caught up), median of 5;
//! - the store's size on disk, beside the bytes of text and photos written;
//! - the store's size with a budget for friends' data (a quarter of what is
//!   held), purged, compacted and closed, beside its size without one
//!   (also compacted and closed); a node opens the store with an identity
//!   of its own, so all 251 people count as friends there; and the time of
//!   that purge;
//! - a friend's fresh node catching up one person's 1,000 posts with their
//!   comments and photos over loopback (`sync_now`, photos fetched
//!   eagerly), median of 3, beside iroh-docs catching up as many entries
//!   carrying as many bytes in all.
//!
//! `KITH_LIFE_DIR=DIR` writes the store into `DIR` (empty or absent) and
//! leaves it there, so that it can be looked at or profiled.

use std::collections::HashSet;
use std::path::Path as FsPath;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use kith::store::Store;
use kith::{NamespaceId, Node};
use kith_app::feed::{self, Audience, NewAttachment};
use kith_app::names::Names;
use kith_app::timeline::{self, Cursor};
use rand::RngExt;

use crate::Options;
use crate::catchup::median;
use crate::peers::{self, DocsStore};
use crate::report::Figure;
use crate::site::Site;
use crate::startup::{median_duration, options, person};

const SCENARIO: &str = "life";
/// The person's friends.
const FRIENDS: u32 = 250;
/// Posts each person writes.
const POSTS_EACH: usize = 1_000;
/// One post in this many has a comment.
const COMMENT_EVERY: usize = 4;
/// One post in this many has a photo.
const PHOTO_EVERY: usize = 100;
/// A photo's size.
const PHOTO_SIZE: usize = 64 << 10;
/// Posts in a page, as the page asks for.
const PAGE: usize = 50;
/// Most posts in a page while walking the whole timeline (the walk takes
/// at least 20 pages).
const WALK_PAGE: usize = timeline::MAX_LIMIT;
/// Posts (about; the same people, in turn) of the small store the first
/// page is compared with.
const SMALL: usize = 500;
/// Writes between two catch-ups of the timeline index.
const INDEX_EVERY: usize = 1_000;
const ROUNDS: usize = 20;
const OPENS: usize = 5;
const CATCHUPS: usize = 3;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What writing a life put in the store.
#[derive(Debug, Default)]
struct Written {
    posts: usize,
    comments: usize,
    photos: usize,
    /// Bytes of post and comment text and of photos.
    content: u64,
}

/// Writes `each` posts for every one of `people` (in turn, with comments
/// and photos as the module says) through the feed, catching the timeline
/// index up every [`INDEX_EVERY`] writes.
fn write_life(store: &Store, people: &[NamespaceId], each: usize) -> Result<Written> {
    let names = Names::load(store, people[0], &people[1..])?;
    let mut rng = rand::rng();
    let mut written = Written::default();
    let started = Instant::now();
    let mut last_said = Instant::now();
    let total = each * people.len();
    for n in 0..total {
        let i = n % people.len();
        let author = &people[i];
        let text = format!(
            "post {n}: an afternoon at the lake with friends, a cold swim and a long walk home"
        );
        let mut attachments = Vec::new();
        if n % PHOTO_EVERY == PHOTO_EVERY / 2 {
            let mut data = vec![0; PHOTO_SIZE];
            rng.fill(&mut data[..]);
            attachments.push(NewAttachment {
                name: "photo.jpg".into(),
                media_type: "image/jpeg".into(),
                data,
            });
            written.photos += 1;
            written.content += PHOTO_SIZE as u64;
        }
        let post = feed::create_post(store, author, &text, Audience::Friends, attachments, &names)?;
        written.posts += 1;
        written.content += text.len() as u64;
        if n % COMMENT_EVERY == 0 {
            let by = &people[(i + 1) % people.len()];
            let text = format!("comment on post {n}: that looks lovely");
            feed::comment(store, by, author, &post.id, &text, &names)?;
            written.comments += 1;
            written.content += text.len() as u64;
        }
        if (n + 1) % INDEX_EVERY == 0 {
            timeline::catch_up(store, people, &mut |_| true)?;
        }
        if last_said.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "  {} of {total} posts written ({:.0?})",
                n + 1,
                started.elapsed()
            );
            last_said = Instant::now();
        }
    }
    timeline::catch_up(store, people, &mut |_| true)?;
    Ok(written)
}

/// The median time of the first page, and that it is full.
fn first_page(store: &Store, people: &[NamespaceId], names: &Names) -> Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let page = timeline::page(store, &people[0], &people[1..], names, None, PAGE)?;
        times.push(started.elapsed());
        ensure!(!page.posts.is_empty(), "the first page is empty");
    }
    Ok(median_duration(times))
}

/// Walks the whole timeline in pages of up to [`WALK_PAGE`]; fails unless it
/// sees every one of `posts` posts exactly once, newest first. Returns the
/// cursor nearest 90 % of the way back.
fn walk(store: &Store, people: &[NamespaceId], names: &Names, posts: usize) -> Result<Cursor> {
    let mut seen = HashSet::with_capacity(posts);
    let mut before: Option<Cursor> = None;
    let mut deep = None;
    let mut last_time = u64::MAX;
    let limit = (posts / 20).clamp(1, WALK_PAGE);
    loop {
        let page = timeline::page(
            store,
            &people[0],
            &people[1..],
            names,
            before.as_ref(),
            limit,
        )?;
        for post in &page.posts {
            ensure!(
                post.time <= last_time,
                "post {} at {} after one at {last_time}: not newest first",
                post.id,
                post.time
            );
            last_time = post.time;
            ensure!(
                seen.insert((post.author.clone(), post.id.clone())),
                "post {} of {} seen twice",
                post.id,
                post.author
            );
        }
        match page.next {
            Some(next) => {
                if deep.is_none() && seen.len() * 10 >= posts * 9 {
                    deep = Some(next);
                }
                before = Some(next);
            }
            None => break,
        }
    }
    ensure!(
        seen.len() == posts,
        "walked {} of {posts} posts",
        seen.len()
    );
    deep.or(before)
        .context("the timeline has a single page: nothing is deep in the past")
}

fn deep_page(
    store: &Store,
    people: &[NamespaceId],
    names: &Names,
    at: &Cursor,
) -> Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let page = timeline::page(store, &people[0], &people[1..], names, Some(at), PAGE)?;
        times.push(started.elapsed());
        ensure!(!page.posts.is_empty(), "the deep page is empty");
    }
    Ok(median_duration(times))
}

/// Median `Store::open` of `dir` after a clean close, and median time from
/// that open to the first page.
fn start_up(dir: &FsPath, people: &[NamespaceId]) -> Result<(Duration, Duration)> {
    let (mut opens, mut pages) = (Vec::new(), Vec::new());
    for _ in 0..OPENS {
        let started = Instant::now();
        let store = Store::open(dir, options())?;
        opens.push(started.elapsed());
        let names = Names::load(&store, people[0], &people[1..])?;
        let page = timeline::page(&store, &people[0], &people[1..], &names, None, PAGE)?;
        pages.push(started.elapsed());
        ensure!(
            !page.posts.is_empty(),
            "the first page after a start is empty"
        );
        drop(store);
    }
    Ok((median_duration(opens), median_duration(pages)))
}

/// Bytes a folder takes on disk (allocated blocks, as `du` counts them:
/// fjall's journal files are pre-allocated sparse files).
fn dir_size(dir: &FsPath) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.blocks() * 512
        };
    }
    Ok(total)
}

fn file_size(path: &FsPath) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

/// Runs the scenario.
pub(crate) fn run(opts: &Options) -> Result<Vec<Figure>> {
    let people: Vec<NamespaceId> = (0..=FRIENDS).map(person).collect();
    let each = opts.scaled(POSTS_EACH);
    let dir = tempfile::tempdir()?;
    let at = std::env::var_os("KITH_LIFE_DIR").map_or_else(|| dir.path().join("life"), Into::into);
    let store = Store::open(&at, options())?;
    let started = Instant::now();
    let written = write_life(&store, &people, each)?;
    eprintln!(
        "  wrote {} posts, {} comments, {} photos in {:.1?}",
        written.posts,
        written.comments,
        written.photos,
        started.elapsed()
    );
    let names = Names::load(&store, people[0], &people[1..])?;
    let first = first_page(&store, &people, &names)?;

    let small_at = dir.path().join("small");
    let small = Store::open(&small_at, options())?;
    let small_each = SMALL.div_ceil(people.len()).min(each);
    let small_posts = write_life(&small, &people, small_each)?.posts;
    let small_first = first_page(&small, &people, &names)?;
    drop(small);

    let started = Instant::now();
    let whole = feed::timeline(&store, &people[0], &people[1..], &names)?;
    let whole_time = started.elapsed();
    ensure!(
        whole.len() == written.posts,
        "the whole timeline has {} of {} posts",
        whole.len(),
        written.posts
    );
    drop(whole);

    let started = Instant::now();
    let deep_at = walk(&store, &people, &names, written.posts)?;
    eprintln!(
        "  walked all {} posts in pages of up to {WALK_PAGE} in {:.1?}, each once, newest first",
        written.posts,
        started.elapsed()
    );
    let deep = deep_page(&store, &people, &names, &deep_at)?;
    drop(store);

    let size = dir_size(&at)?;
    let journal: u64 = std::fs::read_dir(at.join("db"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".jnl"))
        .map(|e| file_size(&e.path()))
        .sum();
    eprintln!(
        "  store folder: {:.1} MB; journal {:.1} MB, tables {:.1} MB, blobs {:.1} MB, vault {:.1} MB",
        size as f64 / 1e6,
        journal as f64 / 1e6,
        dir_size(&at.join("db").join("keyspaces"))? as f64 / 1e6,
        dir_size(&at.join("blobs"))? as f64 / 1e6,
        file_size(&at.join("vault")) as f64 / 1e6,
    );
    let (open, to_page) = start_up(&at, &people)?;
    let empty = dir.path().join("empty");
    drop(Store::open(&empty, options())?);
    let (empty_open, _) = {
        let mut v = Vec::new();
        for _ in 0..OPENS {
            let started = Instant::now();
            drop(Store::open(&empty, options())?);
            v.push(started.elapsed());
        }
        (median_duration(v), ())
    };

    let budget = if std::env::var_os("KITH_LIFE_DIR").is_some() {
        eprintln!("  (KITH_LIFE_DIR is set: the store is kept as written, without a budget)");
        None
    } else {
        Some(with_budget(&at, dir.path())?)
    };

    let (catchup, entries, bytes) = friend_catchup(each)?;
    let peer = runtime()?.block_on(async {
        let mut times = Vec::new();
        for _ in 0..CATCHUPS {
            let docs = tempfile::tempdir()?;
            let size = (bytes / entries.max(1) as u64).max(1) as usize;
            match peers::iroh_docs_catchup(
                entries,
                size,
                DocsStore::File(docs.path().to_path_buf()),
            )
            .await
            {
                Ok(run) => times.push(run.duration.as_secs_f64()),
                Err(e) => eprintln!("iroh-docs failed a round: {e:#}"),
            }
        }
        anyhow::Ok(times)
    })?;

    let posts = written.posts;
    let first_page = Figure::new(
        SCENARIO,
        format!("first timeline page ({PAGE} of {posts} posts)"),
        ms(first),
        "ms",
    );
    let mut figures = vec![
        first_page.clone().with_peer(
            format!("the same page at {small_posts} posts"),
            ms(small_first),
        ),
        first_page.with_peer(
            "the whole timeline at once (feed::timeline, before paging)",
            ms(whole_time),
        ),
        Figure::new(
            SCENARIO,
            format!("a page of {PAGE}, 90 % of the way back"),
            ms(deep),
            "ms",
        )
        .with_peer("the first page", ms(first)),
        Figure::new(
            SCENARIO,
            format!(
                "Store::open ({posts} posts, {} comments, {} photos)",
                written.comments, written.photos
            ),
            ms(open),
            "ms",
        )
        .with_peer("Store::open, empty store", ms(empty_open)),
        Figure::new(SCENARIO, "start-up to the first page", ms(to_page), "ms"),
        Figure::new(SCENARIO, "store size on disk", size as f64 / 1e6, "MB")
            .with_peer("text and photos written", written.content as f64 / 1e6),
    ];
    if let Some(b) = budget {
        figures.push(
            Figure::new(
                SCENARIO,
                format!(
                    "store size with a budget of {:.0} MB for friends' data (compacted)",
                    b.budget as f64 / 1e6
                ),
                b.with as f64 / 1e6,
                "MB",
            )
            .with_peer(
                format!(
                    "without a budget ({:.0} MB of friends' data held, compacted)",
                    b.held as f64 / 1e6
                ),
                b.without as f64 / 1e6,
            ),
        );
        figures.push(Figure::new(
            SCENARIO,
            format!(
                "purging {} documents and {} photos down to the budget",
                b.purged.documents, b.purged.blobs
            ),
            b.purge.as_secs_f64(),
            "s",
        ));
    }
    let name = format!("a friend's catch-up of one person's {each} posts ({entries} entries)");
    let figure = Figure::new(SCENARIO, name, catchup, "s");
    figures.push(if peer.is_empty() {
        figure
    } else {
        figure.with_peer(
            "iroh-docs, file store, as many entries and bytes",
            median(peer),
        )
    });
    Ok(figures)
}

/// The store with and without a budget for friends' data.
struct Budgeted {
    held: u64,
    budget: u64,
    without: u64,
    with: u64,
    purged: kith::Purged,
    purge: Duration,
}

/// Moves the store at `at` into a node's data folder under `work`, and
/// measures it compacted and closed, then with a budget of a quarter of
/// the friends' data it holds, purged, compacted and closed.
fn with_budget(at: &FsPath, work: &FsPath) -> Result<Budgeted> {
    let data = work.join("node");
    std::fs::create_dir_all(&data)?;
    std::fs::rename(at, data.join("store"))?;
    let open = || {
        Node::builder(&data)
            .network(kith::NetworkMode::LocalOnly)
            .live_push(false)
            .spawn()
    };
    // Compacted and closed: the tables a compaction replaced are removed
    // once the store closes.
    let close = |node: Node| async move {
        let store = node.store().clone();
        tokio::task::spawn_blocking(move || store.compact()).await??;
        node.shutdown().await?;
        anyhow::Ok(())
    };
    runtime()?.block_on(async {
        let node = open().await?;
        let started = Instant::now();
        let held = node.cache_status().await?.bytes();
        eprintln!(
            "  the cache of friends' data read every change log in {:.1?}: {:.1} MB held",
            started.elapsed(),
            held as f64 / 1e6
        );
        close(node).await?;
        let without = dir_size(&data.join("store"))?;
        let node = open().await?;
        let budget = held / 4;
        let started = Instant::now();
        let purged = node
            .set_cache(kith::CacheSettings {
                budget,
                max_age: None,
            })
            .await?;
        let purge = started.elapsed();
        let after = node.cache_status().await?;
        ensure!(
            after.bytes() <= budget,
            "{} bytes held over a budget of {budget}",
            after.bytes()
        );
        close(node).await?;
        let with = dir_size(&data.join("store"))?;
        eprintln!(
            "  a budget of {:.1} MB purged {} documents and {} photos ({:.1} MB) in {purge:.1?}: {:.1} MB on disk, {:.1} MB without",
            budget as f64 / 1e6,
            purged.documents,
            purged.blobs,
            purged.bytes as f64 / 1e6,
            with as f64 / 1e6,
            without as f64 / 1e6
        );
        Ok(Budgeted {
            held,
            budget,
            without,
            with,
            purged,
            purge,
        })
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")
}

/// A friend's fresh node catches up one person's `each` posts, with their
/// comments and photos. Median seconds of [`CATCHUPS`] rounds, the entries
/// moved and the bytes of content they carry.
fn friend_catchup(each: usize) -> Result<(f64, usize, u64)> {
    runtime()?.block_on(async {
        let mut times = Vec::new();
        let mut moved = (0, 0);
        for _ in 0..CATCHUPS {
            let dir = tempfile::tempdir()?;
            let (owner, friend) =
                crate::catchup::pair_at(dir.path(), &Site::Loopback, &Site::Loopback).await?;
            let written = write_own(&owner, each).await?;
            let report = friend.sync_now(&owner.namespace()).await?;
            let entries = written.posts + written.comments + written.photos;
            ensure!(
                report.docs as usize == written.posts + written.comments,
                "caught up {} of {} documents",
                report.docs,
                written.posts + written.comments
            );
            ensure!(
                report.blobs_fetched as usize == written.photos,
                "fetched {} of {} photos",
                report.blobs_fetched,
                written.photos
            );
            times.push(report.duration.as_secs_f64());
            moved = (entries, written.content);
            owner.shutdown().await?;
            friend.shutdown().await?;
        }
        Ok((median(times), moved.0, moved.1))
    })
}

/// The owner's `each` posts, with comments and photos as in the store.
async fn write_own(owner: &Node, each: usize) -> Result<Written> {
    let store = owner.store().clone();
    let me = owner.namespace();
    tokio::task::spawn_blocking(move || write_life(&store, &[me], each)).await?
}
