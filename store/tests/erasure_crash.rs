//! Erasure survives `kill -9` at any moment: a child process creates a
//! document and a blob, learns their keys from the vault file, deletes them
//! and reports each step; the parent kills it at random moments, reopens
//! the store and checks that every deletion that happened (acknowledged or
//! not) left no key of what it deleted in any file of the data folder, and
//! that what was not deleted is still readable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use automerge::ROOT;
use automerge::transaction::Transactable;
use common::{files, ns, open, p};

const CHILD_DIR: &str = "KITH_ERASURE_CHILD_DIR";
const RUNS: u64 = 12;

fn vault_keys(dir: &std::path::Path) -> HashSet<[u8; 32]> {
    let bytes = std::fs::read(dir.join("vault")).unwrap_or_default();
    bytes
        .get(64..)
        .unwrap_or_default()
        .chunks_exact(32)
        .filter(|k| k.iter().any(|b| *b != 0))
        .map(|k| k.try_into().unwrap())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> [u8; 32] {
    let v: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

/// The child: creates and deletes pairs of a document and a blob forever.
#[test]
fn erasure_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let store = open(&dir, 1);
    let me = ns(1);
    let mut out = std::io::stdout().lock();
    let start: u64 = store.current_seq(&me).unwrap();
    for i in start.. {
        let before = vault_keys(&dir);
        store
            .edit_document(&me, &p(&format!("/e/{i}/doc")), |d| {
                d.put(ROOT, "text", format!("secret {i}"))
            })
            .unwrap()
            .0
            .unwrap();
        let blob = format!("photo {i} ").repeat(100 + i as usize % 500);
        store
            .put_blob(
                &me,
                &p(&format!("/e/{i}/photo")),
                blob.as_bytes(),
                "image/jpeg",
            )
            .unwrap();
        let new: Vec<String> = vault_keys(&dir)
            .difference(&before)
            .map(|k| hex(k))
            .collect();
        assert_eq!(new.len(), 2, "a key for the document and one for the blob");
        writeln!(out, "KEYS {i} {} {}", new[0], new[1]).unwrap();
        out.flush().unwrap();
        store
            .apply_tombstone(&me, &p(&format!("/e/{i}")), store.clock().now(), &[])
            .unwrap();
        writeln!(out, "DELETED {i}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn deletions_are_erased_whatever_moment_the_process_is_killed() {
    if std::env::var(CHILD_DIR).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let (mut checked, mut erased_unacked) = (0, 0);
    for run in 0..RUNS {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let kill_after = 1 + rng % 40;
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "erasure_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut keys: Vec<(u64, [u8; 32], [u8; 32])> = Vec::new();
        let mut deleted: HashSet<u64> = HashSet::new();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        while let Some(Ok(line)) = lines.next() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["KEYS", i, a, b] => keys.push((i.parse().unwrap(), unhex(a), unhex(b))),
                ["DELETED", i] => {
                    deleted.insert(i.parse().unwrap());
                }
                _ => continue,
            }
            seen += 1;
            if seen == kill_after {
                child.kill().unwrap();
            }
        }
        child.wait().unwrap();
        assert!(seen >= kill_after, "run {run}: the child stopped by itself");

        // Opening finishes any erasure the kill interrupted.
        let store = open(dir.path(), 1);
        let me = ns(1);
        let everything: Vec<Vec<u8>> = files(dir.path())
            .iter()
            .map(|f| std::fs::read(f).unwrap_or_default())
            .collect();
        let held = |key: &[u8; 32]| {
            everything
                .iter()
                .any(|bytes| bytes.windows(32).any(|w| w == key))
        };
        for (i, doc_key, blob_key) in &keys {
            let doc = p(&format!("/e/{i}/doc"));
            if store.get(&me, &doc).unwrap().is_none() {
                assert!(
                    !held(doc_key) && !held(blob_key),
                    "run {run}: post {i} is deleted but a key of it is still on disk"
                );
                checked += 1;
                if !deleted.contains(i) {
                    erased_unacked += 1;
                }
            } else {
                assert!(
                    !deleted.contains(i),
                    "run {run}: acknowledged deletion of {i} undone"
                );
                assert!(store.document(&me, &doc).unwrap().is_some());
            }
        }
        drop(store);
    }
    assert!(checked > 0, "no deletion happened in {RUNS} runs");
    eprintln!("{RUNS} kills: {checked} deletions erased ({erased_unacked} not yet acknowledged)");
}
