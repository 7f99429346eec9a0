//! Erasure: a deleted post leaves no readable bytes on any node that held
//! it, and a friend's receipt is only signed once that is so.
//!
//! Three real `kith serve --local-only` daemons (alice, bob, carol) run as
//! separate processes. Alice posts a text with a unique marker and a photo
//! of random bytes; bob and carol sync and read the photo, so both are
//! stored on their side. After `kith rm`, the tests scan every file under
//! each data folder byte by byte and prove:
//!
//! - neither the marker text nor a 64-byte window from the middle of the
//!   photo occurs in any file of alice's, bob's or carol's data folder;
//! - the deleted items' keys are shredded: some keys of bob's and carol's
//!   vault (`<data>/store/vault`: a 64-byte header starting `kith-vault`,
//!   then 32-byte key slots, zero when empty) are gone, and none of those
//!   32-byte keys occurs in any file of that folder any more;
//! - alice then holds both friends' confirmed receipts.
//!
//! The second test kills bob's daemon with SIGKILL at a random moment
//! (0–300 ms) after alice's `rm`, three times with different posts, and
//! proves the same of bob's folder once he is restarted, with his receipt.
//!
//! Before the deletion each test checks that what it later looks for was
//! really there, encrypted at rest: new keys in the friend's vault for the
//! post and its photo, and neither in any file in the clear.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Daemon, POLL, WAIT, free_port, json, ok};

/// A 32-byte key from a vault slot.
type Key = [u8; 32];

/// The vault's header is this long; its slots follow.
const VAULT_HEADER: usize = 64;
/// What the vault's header starts with.
const VAULT_MAGIC: &[u8] = b"kith-vault";

/// Checks `check` every [`POLL`] until it gives `Ok`, for at most [`WAIT`];
/// on time-out, the last reason it gave.
fn poll<T>(mut check: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let deadline = Instant::now() + WAIT;
    loop {
        match check() {
            Ok(v) => return Ok(v),
            Err(why) if Instant::now() >= deadline => {
                return Err(format!("after {WAIT:?}: {why}"));
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// [`poll`], panicking on time-out.
fn eventually<T>(what: &str, check: impl FnMut() -> Result<T, String>) -> T {
    poll(check).unwrap_or_else(|why| panic!("timed out waiting until {what}: {why}"))
}

/// Every file under `dir`, recursively (entries that vanish while being
/// listed are skipped: the daemon keeps writing).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && d != dir => continue,
            Err(e) => panic!("cannot list {}: {e}", d.display()),
        };
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                todo.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// Byte strings looked for, all at once, in every file under a folder.
struct Needles {
    names: Vec<String>,
    bytes: Vec<Vec<u8>>,
    /// For each value of the first two bytes, the needles that start so.
    by_start: Vec<Vec<usize>>,
}

fn two_bytes(b: &[u8], i: usize) -> usize {
    (usize::from(b[i]) << 8) | usize::from(b[i + 1])
}

impl Needles {
    fn new(list: Vec<(String, Vec<u8>)>) -> Self {
        let mut by_start = vec![Vec::new(); 1 << 16];
        let (names, bytes): (Vec<String>, Vec<Vec<u8>>) = list.into_iter().unzip();
        for (i, b) in bytes.iter().enumerate() {
            assert!(b.len() >= 2, "needle {} is too short", names[i]);
            by_start[two_bytes(b, 0)].push(i);
        }
        Self {
            names,
            bytes,
            by_start,
        }
    }

    /// `"NEEDLE in FILE"` for every needle found in a file under `dir`.
    fn find_in(&self, dir: &Path) -> Vec<String> {
        let mut hits = Vec::new();
        for file in files_under(dir) {
            let hay = match std::fs::read(&file) {
                Ok(h) => h,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("cannot read {}: {e}", file.display()),
            };
            let mut found = vec![false; self.bytes.len()];
            for i in 0..hay.len().saturating_sub(1) {
                let candidates = &self.by_start[two_bytes(&hay, i)];
                if candidates.is_empty() {
                    continue;
                }
                for &n in candidates {
                    if !found[n] && hay[i..].starts_with(&self.bytes[n]) {
                        found[n] = true;
                    }
                }
            }
            for (n, _) in found.iter().enumerate().filter(|(_, f)| **f) {
                let shown = file.strip_prefix(dir).unwrap_or(&file);
                hits.push(format!("{} in {}", self.names[n], shown.display()));
            }
        }
        hits
    }
}

/// The keys held in `data`'s vault: its non-zero slots (none without a
/// vault file). A trailing partial slot (the file growing) is ignored.
fn vault_keys(data: &Path) -> HashSet<Key> {
    let path = data.join("store").join("vault");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return HashSet::new(),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    assert!(
        bytes.len() >= VAULT_HEADER && bytes.starts_with(VAULT_MAGIC),
        "{} is not a vault: {} bytes, starting {:?}",
        path.display(),
        bytes.len(),
        String::from_utf8_lossy(&bytes[..bytes.len().min(VAULT_MAGIC.len())])
    );
    bytes[VAULT_HEADER..]
        .chunks_exact(32)
        .filter(|slot| slot.iter().any(|b| *b != 0))
        .map(|slot| slot.try_into().unwrap())
        .collect()
}

/// The keys `data`'s vault holds now, after checking that the scan finds
/// every one of them in the vault file (so that a key it does not find
/// later is really gone, not overlooked).
fn vault_snapshot(data: &Path) -> HashSet<Key> {
    let keys = vault_keys(data);
    let needles = Needles::new(
        keys.iter()
            .enumerate()
            .map(|(i, k)| (format!("key #{i}"), k.to_vec()))
            .collect(),
    );
    let vault = Path::new("store").join("vault");
    let in_vault = needles
        .find_in(data)
        .into_iter()
        .filter(|hit| hit.ends_with(vault.to_str().unwrap()))
        .count();
    assert_eq!(
        in_vault,
        keys.len(),
        "the scan does not find every key of {}'s vault in it",
        data.display()
    );
    keys
}

/// A post by alice with a photo, as its test looks for it.
struct Post {
    /// Its path in alice's namespace.
    path: String,
    /// Its photo's path in alice's namespace.
    photo_path: String,
    /// The unique text in the post.
    marker: String,
    /// The photo's bytes.
    photo: Vec<u8>,
    /// The file they were posted from (outside every data folder).
    file: PathBuf,
}

impl Post {
    /// The 64 bytes from the middle of the photo.
    fn window(&self) -> &[u8] {
        let mid = self.photo.len() / 2;
        &self.photo[mid - 32..mid + 32]
    }

    /// The post's plaintext: its marker and its photo's window.
    fn plaintext(&self) -> Vec<(String, Vec<u8>)> {
        vec![
            (
                format!("the marker text {:?}", self.marker),
                self.marker.as_bytes().to_vec(),
            ),
            (
                "a 64-byte window of the photo".to_string(),
                self.window().to_vec(),
            ),
        ]
    }
}

/// Alice posts a unique marker text with a photo of ~100 KiB of random
/// bytes (written to a file in `scratch`, outside every data folder).
fn post_with_photo(alice: &Path, scratch: &Path, tag: &str) -> Post {
    let marker = format!("erasure-marker-{:032x}", rand::random::<u128>());
    let mut photo = vec![0u8; 100 * 1024 + usize::from(rand::random::<u8>())];
    rand::fill(&mut photo[..]);
    let file = scratch.join(format!("photo-{tag}.png"));
    std::fs::write(&file, &photo).unwrap();
    let text = format!("{marker} (with a photo)");
    let p = json(
        alice,
        &["feed", "post", &text, "--attach", file.to_str().unwrap()],
    );
    let path = p["path"].as_str().unwrap().to_string();
    assert!(path.starts_with("/feed/friends/"), "{p}");
    let attachments = p["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1, "{p}");
    assert_eq!(attachments[0]["size"], photo.len(), "{p}");
    let name = attachments[0]["name"].as_str().unwrap();
    let photo_path = format!("{path}/{name}");
    Post {
        path,
        photo_path,
        marker,
        photo,
        file,
    }
}

/// `friend` syncs alice until its timeline shows the post, then reads the
/// photo (fetching it if it is not there yet) until it has all its bytes.
fn hold(friend: &Path, scratch: &Path, post: &Post) {
    eventually("the post reaches a friend", || {
        ok(friend, &["sync", "alice"]);
        let t = json(friend, &["feed", "timeline"]);
        let shown = t["posts"].as_array().unwrap().iter().any(|p| {
            p["path"] == post.path.as_str()
                && p["text"].as_str().unwrap_or("").contains(&post.marker)
        });
        if shown {
            Ok(())
        } else {
            Err(format!("the timeline has no post with the marker: {t}"))
        }
    });
    let copy = scratch.join(format!(
        "copy-{}.png",
        friend.file_name().unwrap().to_str().unwrap()
    ));
    eventually("a friend reads the photo", || {
        let out = common::kith(
            friend,
            &[
                "get",
                "alice",
                &post.photo_path,
                "--out",
                copy.to_str().unwrap(),
            ],
        );
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let got = std::fs::read(&copy).unwrap_or_default();
        if got == post.photo {
            Ok(())
        } else {
            Err(format!("read {} bytes, not the photo's", got.len()))
        }
    });
    std::fs::remove_file(&copy).unwrap();
}

/// That the post and the photo `friend` read are stored in its data
/// folder, encrypted at rest: keys were added to its vault since
/// `vault_before` (taken before the post arrived: one for the post, one for
/// the photo), and neither the marker nor the photo's bytes are in any file
/// in the clear. Without this, the checks after the deletion could pass for
/// having looked at nothing.
fn assert_stored(friend: &Path, post: &Post, vault_before: &HashSet<Key>) {
    let window = Needles::new(vec![("the photo".into(), post.window().to_vec())]);
    let scratch = post.file.parent().unwrap();
    assert!(
        window
            .find_in(scratch)
            .iter()
            .any(|hit| hit.ends_with(post.file.file_name().unwrap().to_str().unwrap())),
        "the scan does not find the photo's window in the photo's own file"
    );
    let plain = Needles::new(post.plaintext()).find_in(friend);
    assert!(
        plain.is_empty(),
        "{} holds the post in the clear: {plain:?}",
        friend.display()
    );
    let added = vault_keys(friend).difference(vault_before).count();
    assert!(
        added >= 2,
        "{} read the post and its photo but its vault gained {added} keys",
        friend.display()
    );
}

/// What still shows `post` in the files under `data` (empty: nothing).
/// With `vault_before` (the vault's keys just before the deletion), also
/// that some of them are gone and that none of those is in any file.
fn leftovers(data: &Path, post: &Post, vault_before: Option<&HashSet<Key>>) -> Vec<String> {
    let mut needles = post.plaintext();
    let mut problems = Vec::new();
    if let Some(before) = vault_before {
        let now = vault_keys(data);
        let gone: Vec<&Key> = before.difference(&now).collect();
        if gone.is_empty() {
            problems.push(format!(
                "no key left the vault ({} keys before the deletion, {} now)",
                before.len(),
                now.len()
            ));
        }
        for (i, key) in gone.into_iter().enumerate() {
            needles.push((format!("erased vault key #{i}"), key.to_vec()));
        }
    }
    problems.extend(Needles::new(needles).find_in(data));
    problems
}

/// `Ok` once nothing of `post` is left in any of `folders` (each with its
/// vault's keys before the deletion, if its vault is checked).
fn erased(folders: &[(&Path, Option<&HashSet<Key>>)], post: &Post) -> Result<(), String> {
    let mut report = Vec::new();
    for (data, before) in folders {
        let left = leftovers(data, post, *before);
        if !left.is_empty() {
            let name = data.file_name().unwrap().to_string_lossy();
            report.push(format!("{name}: {}", left.join("; ")));
        }
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(report.join(" | "))
    }
}

/// `Ok` once alice's receipts for `path` show deletion `id` confirmed by
/// every one of `names` (and, if given, by `total` of `total` devices).
fn confirmed(
    alice: &Path,
    path: &str,
    id: &str,
    names: &[&str],
    total: Option<u64>,
) -> Result<(), String> {
    let all = json(alice, &["receipts", path]);
    let d = all
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .ok_or_else(|| format!("no deletion {id} in {all}"))?;
    if let Some(n) = total
        && (d["confirmed"] != n || d["total"] != n)
    {
        return Err(format!("not confirmed by {n}/{n}: {d}"));
    }
    for name in names {
        let devices = d["devices"].as_array().unwrap();
        let confirmed = devices
            .iter()
            .any(|dev| dev["name"] == *name && !dev["confirmed_at"].is_null());
        if !confirmed {
            return Err(format!("{name} has not confirmed: {d}"));
        }
    }
    Ok(())
}

/// Three people, alice befriended with bob and with carol (so both read
/// her posts to "friends").
fn three_people(root: &Path) -> [PathBuf; 3] {
    let people = ["alice", "bob", "carol"].map(|n| root.join(n));
    for (data, name) in people.iter().zip(["alice", "bob", "carol"]) {
        ok(data, &["init", "--name", name]);
    }
    people
}

fn befriend(alice: &Path, friends: &[(&Path, &str)]) {
    let ticket = |d: &Path| ok(d, &["ticket"]).trim().to_string();
    let ta = ticket(alice);
    for (friend, name) in friends {
        ok(alice, &["friend", "add", &ticket(friend), "--name", name]);
        ok(friend, &["friend", "add", &ta, "--name", "alice"]);
    }
}

/// The deletion id `kith rm PATH` printed.
fn rm(alice: &Path, path: &str) -> String {
    let r = json(alice, &["rm", path]);
    r["deletion"].as_str().unwrap().to_string()
}

#[test]
fn a_deleted_post_and_photo_leave_no_readable_bytes_and_then_receipts_arrive() {
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let scratch = root.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let [alice, bob, carol] = three_people(root.path());
    let _daemons: Vec<Daemon> = [&alice, &bob, &carol]
        .iter()
        .map(|d| Daemon::start(d, 3600, true))
        .collect();
    befriend(&alice, &[(&bob, "bob"), (&carol, "carol")]);

    // 1. The post and its photo are stored on bob's and carol's side.
    let vault_before_post = [vault_keys(&bob), vault_keys(&carol)];
    let post = post_with_photo(&alice, &scratch, "1");
    for (friend, before) in [&bob, &carol].into_iter().zip(&vault_before_post) {
        hold(friend, &scratch, &post);
        assert_stored(friend, &post, before);
    }

    // 2. The keys the friends' vaults hold before the deletion.
    let (bob_keys, carol_keys) = (vault_snapshot(&bob), vault_snapshot(&carol));

    // 3. Alice deletes the post (with its photo) everywhere.
    let rm_at = Instant::now();
    let deletion = rm(&alice, &post.path);

    // 4. Nothing of it is left in any file of the three folders.
    let folders = [
        (alice.as_path(), None),
        (bob.as_path(), Some(&bob_keys)),
        (carol.as_path(), Some(&carol_keys)),
    ];
    let erasure = poll(|| erased(&folders, &post)).map(|()| rm_at.elapsed());
    match &erasure {
        Ok(took) => eprintln!("erasure on alice, bob and carol took {took:?} after rm"),
        Err(why) => eprintln!("erasure did not happen: {why}"),
    }

    // 5. Then alice holds both receipts (checked even when step 4 failed,
    // so that a receipt signed without erasure is reported as such).
    let receipts = poll(|| confirmed(&alice, &post.path, &deletion, &["bob", "carol"], Some(2)))
        .map(|()| rm_at.elapsed());
    eprintln!("receipts of bob and carol: {receipts:?} after rm");
    eprintln!("test took {:?}", started.elapsed());
    if let Err(why) = erasure {
        panic!(
            "the deleted post left readable bytes ({}): {why}",
            match receipts {
                Ok(_) => "yet both friends confirmed the deletion",
                Err(_) => "and the receipts did not arrive either",
            }
        );
    }
    if let Err(why) = receipts {
        panic!("erased, but the receipts did not arrive: {why}");
    }
}

/// Bob's daemon, listening on `port` so that alice finds it again after a
/// restart; hourly re-syncs, so only pushes and the start-up catch-up
/// deliver the deletion in time.
fn serve_bob(bob: &Path, port: u16) -> Daemon {
    Daemon::start_on(bob, &format!("127.0.0.1:{port}"), 3600, true)
}

#[test]
fn erasure_survives_kill_9_at_random_points() {
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let scratch = root.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let [alice, bob, carol] = three_people(root.path());
    let bob_port = free_port();
    let _a = Daemon::start(&alice, 3600, true);
    let mut b = serve_bob(&bob, bob_port);
    let _c = Daemon::start(&carol, 3600, true);
    befriend(&alice, &[(&bob, "bob"), (&carol, "carol")]);

    for round in 1..=3 {
        let vault_before_post = vault_keys(&bob);
        let post = post_with_photo(&alice, &scratch, &round.to_string());
        hold(&bob, &scratch, &post);
        assert_stored(&bob, &post, &vault_before_post);
        let bob_keys = vault_snapshot(&bob);

        // Alice deletes; bob's daemon is killed with SIGKILL (the helper's
        // drop) at a random point of its handling of the deletion.
        let delay = Duration::from_millis(rand::random_range(0..=300));
        let deletion = rm(&alice, &post.path);
        let rm_at = Instant::now();
        std::thread::sleep(delay);
        drop(b);
        let killed_after = rm_at.elapsed();
        b = serve_bob(&bob, bob_port);

        let erasure =
            poll(|| erased(&[(bob.as_path(), Some(&bob_keys))], &post)).map(|()| rm_at.elapsed());
        let receipt = poll(|| confirmed(&alice, &post.path, &deletion, &["bob"], None))
            .map(|()| rm_at.elapsed());
        eprintln!(
            "round {round}: bob killed {killed_after:?} after rm (aimed at {delay:?}); erased: {erasure:?}; receipt: {receipt:?}"
        );
        if let Err(why) = erasure {
            panic!(
                "round {round} (kill after {killed_after:?}): bob's folder still shows the deleted post ({}): {why}",
                match receipt {
                    Ok(_) => "yet his receipt arrived",
                    Err(_) => "and no receipt arrived either",
                }
            );
        }
        if let Err(why) = receipt {
            panic!(
                "round {round} (kill after {killed_after:?}): erased, but no receipt from bob: {why}"
            );
        }
    }
    drop(b);
    eprintln!("test took {:?}", started.elapsed());
}
