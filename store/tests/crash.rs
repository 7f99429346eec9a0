//! A write that returned `Ok` survives `kill -9`: a child process writes
//! continuously and reports each acknowledged write; the parent kills it
//! with SIGKILL at random moments, reopens the store and checks that every
//! acknowledged write is there and readable, in both durability modes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};
use common::{device, ns, p};
use kith_store::{Durability, Options, Store};

const CHILD_DIR: &str = "KITH_CRASH_CHILD_DIR";
const CHILD_RUN: &str = "KITH_CRASH_CHILD_RUN";
const RUNS: u64 = 24;

fn options(run: u64) -> Options {
    let durability = if run % 4 == 3 {
        Durability::Sync
    } else {
        Durability::Buffered
    };
    Options::new(device(1)).durability(durability)
}

fn blob_content(run: u64, i: u64) -> Vec<u8> {
    format!("blob {run} {i} ")
        .repeat(1 + (i as usize % 300))
        .into_bytes()
}

/// The writer. Does nothing unless started by the parent test.
#[test]
fn crash_child() {
    let (Ok(dir), Ok(run)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_RUN)) else {
        return;
    };
    let run: u64 = run.parse().unwrap();
    let store = Store::open(&dir, options(run)).unwrap();
    let me = ns(1);
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        match i % 3 {
            0 => {
                let path = p(&format!("/docs/{run}/{i}"));
                store
                    .edit_document(&me, &path, |d| d.put(ROOT, "v", i as i64))
                    .unwrap()
                    .0
                    .unwrap();
                writeln!(out, "ACK doc {run} {i}").unwrap();
            }
            1 => {
                let path = p(&format!("/blobs/{run}/{i}"));
                store
                    .put_blob(&me, &path, &blob_content(run, i)[..], "text/plain")
                    .unwrap();
                writeln!(out, "ACK blob {run} {i}").unwrap();
            }
            _ => {
                let path = p(&format!("/counter/{run}"));
                store
                    .edit_document(&me, &path, |d| d.put(ROOT, "n", i as i64))
                    .unwrap()
                    .0
                    .unwrap();
                writeln!(out, "ACK edit {run} {i}").unwrap();
            }
        }
        out.flush().unwrap();
    }
}

/// A small deterministic generator for the kill moments.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = XorShift(0x5eed_1234_abcd_0001);
    let mut docs: Vec<(u64, u64)> = Vec::new();
    let mut blobs: Vec<(u64, u64)> = Vec::new();
    let mut edits: BTreeMap<u64, u64> = BTreeMap::new();
    let mut total = 0;
    for run in 0..RUNS {
        let kill_after = rng.below(120);
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_RUN, run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acks = Vec::new();
        let mut killed = false;
        while let Some(Ok(line)) = lines.next() {
            if line.starts_with("ACK ") {
                acks.push(line);
            }
            if acks.len() as u64 >= kill_after && !killed {
                // SIGKILL while the child keeps writing.
                child.kill().unwrap();
                killed = true;
            }
        }
        let status = child.wait().unwrap();
        if !killed {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("child {run} exited by itself ({status}) before {kill_after} writes:\n{err}");
        }
        // Lines read after the kill were acknowledged before it, too.
        for ack in &acks {
            let parts: Vec<&str> = ack.split(' ').collect();
            let (kind, r, i): (&str, u64, u64) = (
                parts[1],
                parts[2].parse().unwrap(),
                parts[3].parse().unwrap(),
            );
            match kind {
                "doc" => docs.push((r, i)),
                "blob" => blobs.push((r, i)),
                _ => {
                    edits.insert(r, i);
                }
            }
        }
        total += acks.len();
        // The store opens cleanly and holds every acknowledged write.
        let store = Store::open(dir.path(), options(run)).unwrap();
        let me = ns(1);
        for (r, i) in &docs {
            let doc = store
                .document(&me, &p(&format!("/docs/{r}/{i}")))
                .unwrap()
                .unwrap_or_else(|| {
                    panic!("acknowledged document /docs/{r}/{i} lost after run {run}")
                });
            assert_eq!(
                doc.get(ROOT, "v").unwrap().unwrap().0.as_i64(),
                Some(*i as i64)
            );
        }
        for (r, i) in &blobs {
            let entry = store
                .get(&me, &p(&format!("/blobs/{r}/{i}")))
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged blob /blobs/{r}/{i} lost after run {run}"));
            let mut content = Vec::new();
            store
                .read_blob(&entry.blob_hash().unwrap(), ..)
                .unwrap()
                .read_to_end(&mut content)
                .unwrap();
            assert_eq!(content, blob_content(*r, *i));
        }
        for (r, i) in &edits {
            let doc = store
                .document(&me, &p(&format!("/counter/{r}")))
                .unwrap()
                .unwrap();
            let n = doc.get(ROOT, "n").unwrap().unwrap().0.as_i64().unwrap();
            assert!(n >= *i as i64, "edit {i} of run {r} lost: counter is {n}");
        }
    }
    eprintln!("{RUNS} kills, {total} acknowledged writes, all present");
    assert!(total > 100, "too few writes to mean anything: {total}");
}
