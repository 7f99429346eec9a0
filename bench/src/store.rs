//! Scenario `store`: local write and read throughput of `kith-store`, each
//! beside the ceiling for the same work in the same run.
//!
//! - `doc_writes`: 1 KiB text documents (an Automerge Text object) created
//!   through `Store::edit_document`, against the ceiling of Automerge
//!   creating and saving the same document plus a raw fjall insert of the
//!   saved bytes with the same durability (journal flushed to the OS).
//! - `blob_write` / `blob_read`: a 256 MiB blob streamed in and out, against
//!   writing and reading the same bytes as a plain file; under this
//!   machine's cipher at rest, and again under XChaCha20 where that is
//!   another one.
//! - `list`: every entry of a 100,000-entry namespace in pages of 1,000,
//!   against a raw fjall prefix scan of as many keys and values.
//!
//! Rounds of kith and ceiling alternate, and each figure is the median of
//! its rounds, so both sides see the same machine state.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT};
use fjall::{Database, KeyspaceCreateOptions, PersistMode};
use kith_store::{BlobCipher, BlobHash, Options as StoreOptions, RemoteWrite, Store};
use kith_types::{DeviceId, NamespaceId, Path, Timestamp};

use crate::Options;
use crate::report::Figure;

const SCENARIO: &str = "store";
const ROUNDS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// The same 1 KiB of text for every document.
fn text_1k() -> String {
    let words = "kith keeps friends' posts private and in sync ";
    words.repeat(1024 / words.len() + 1)[..1024].to_string()
}

fn fill(doc: &mut AutoCommit, text: &str) -> Result<()> {
    let obj = doc.put_object(ROOT, "text", ObjType::Text)?;
    doc.splice_text(&obj, 0, 0, text)?;
    Ok(())
}

/// Runs the scenario.
pub(crate) fn run(opts: &Options) -> Result<Vec<Figure>> {
    let mut figures = doc_writes(opts)?;
    figures.extend(blobs(opts)?);
    figures.push(list(opts)?);
    Ok(figures)
}

fn doc_writes(opts: &Options) -> Result<Vec<Figure>> {
    let per_round = opts.scaled(2_000);
    let text = text_1k();
    let dir = tempfile::tempdir()?;
    let store = Store::open(
        dir.path().join("kith"),
        StoreOptions::new(DeviceId::from_bytes([1; 32])),
    )?;
    let raw = Database::builder(dir.path().join("raw")).open()?;
    let raw_docs = raw.keyspace("docs", KeyspaceCreateOptions::default)?;
    let ns = NamespaceId::from_bytes([2; 32]);
    let (mut kith, mut ceiling) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let start = Instant::now();
        for i in 0..per_round {
            let path = Path::from_components(["posts", &format!("{round}-{i:06}")])?;
            let (r, _) = store.edit_document(&ns, &path, |d| fill(d, &text))?;
            r?;
        }
        kith.push(rate(per_round, start.elapsed()));

        let start = Instant::now();
        for i in 0..per_round {
            let mut doc = AutoCommit::new();
            fill(&mut doc, &text)?;
            let bytes = doc.save();
            let mut key = ns.as_bytes().to_vec();
            key.extend_from_slice(format!("posts\0{round}-{i:06}\0").as_bytes());
            let mut batch = raw.batch().durability(Some(PersistMode::Buffer));
            batch.insert(&raw_docs, key, bytes);
            batch.commit()?;
        }
        ceiling.push(rate(per_round, start.elapsed()));
    }
    let (mut reads, mut read_ceiling) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for i in 0..per_round {
            let path = Path::from_components(["posts", &format!("0-{i:06}")])?;
            store.document(&ns, &path)?.context("document missing")?;
        }
        reads.push(rate(per_round, start.elapsed()));

        let start = Instant::now();
        for i in 0..per_round {
            let mut key = ns.as_bytes().to_vec();
            key.extend_from_slice(format!("posts\0{}-{i:06}\0", 0).as_bytes());
            let bytes = raw_docs.get(key)?.context("raw document missing")?;
            AutoCommit::load(&bytes)?;
        }
        read_ceiling.push(rate(per_round, start.elapsed()));
    }
    Ok(vec![
        Figure::new(SCENARIO, "doc_writes (1 KiB text)", median(kith), "docs/s")
            .with_peer("automerge save + raw fjall insert", median(ceiling)),
        Figure::new(SCENARIO, "doc_reads (1 KiB text)", median(reads), "docs/s")
            .with_peer("raw fjall get + automerge load", median(read_ceiling)),
    ])
}

fn blobs(opts: &Options) -> Result<Vec<Figure>> {
    let size = opts.scaled(256 << 20);
    let mut data = vec![0u8; size];
    let mut state = 0x1234_5678_9abc_def1u64;
    for chunk in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    let dir = tempfile::tempdir()?;
    let open = |name: &str, cipher: BlobCipher| {
        let options = StoreOptions::new(DeviceId::from_bytes([1; 32])).blob_cipher(cipher);
        Store::open(dir.path().join(name), options)
    };
    let store = open("kith", BlobCipher::for_this_machine())?;
    // The same work where blob files are XChaCha20 at rest, on a machine
    // whose own choice is another cipher.
    let chacha = (BlobCipher::for_this_machine() != BlobCipher::XChaCha20)
        .then(|| open("kith-xchacha20", BlobCipher::XChaCha20))
        .transpose()?;
    let ns = NamespaceId::from_bytes([2; 32]);
    let raw_path = dir.path().join("raw.bin");
    let (mut kw, mut kr, mut rw, mut rr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut cw, mut cr) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 256 * 1024];
    for round in 0..3 {
        // Each round writes different content so de-duplication never helps.
        data[0] = round as u8;
        let path = Path::from_components(["videos", &round.to_string()])?;
        // The two stores take turns going first: writes into new files
        // slow down as the page cache fills with dirty pages.
        let mut turns = vec![(&store, &mut kw, &mut kr)];
        if let Some(chacha) = &chacha {
            turns.push((chacha, &mut cw, &mut cr));
        }
        if round % 2 == 1 {
            turns.reverse();
        }
        for (store, w, r) in turns {
            let (write, read) = kith_blob_round(store, &ns, &path, &data, &mut buf)?;
            w.push(write);
            r.push(read);
        }

        let start = Instant::now();
        let mut f =
            std::io::BufWriter::with_capacity(256 * 1024, std::fs::File::create(&raw_path)?);
        f.write_all(&data)?;
        f.flush()?;
        drop(f);
        rw.push(mb_per_s(size as u64, start.elapsed()));

        let start = Instant::now();
        let mut f = std::fs::File::open(&raw_path)?;
        let mut total = 0;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n;
        }
        anyhow::ensure!(total == size, "short raw read");
        rr.push(mb_per_s(size as u64, start.elapsed()));
    }
    let mib = size >> 20;
    let (rw, rr) = (median(rw), median(rr));
    let mut figures = vec![
        Figure::new(
            SCENARIO,
            format!("blob_write ({mib} MiB, BLAKE3 while writing)"),
            median(kw),
            "MB/s",
        )
        .with_peer("raw file write", rw),
        Figure::new(
            SCENARIO,
            format!("blob_read ({mib} MiB)"),
            median(kr),
            "MB/s",
        )
        .with_peer("raw file read", rr),
    ];
    if chacha.is_some() {
        figures.push(
            Figure::new(
                SCENARIO,
                format!("blob_write ({mib} MiB), XChaCha20 at rest"),
                median(cw),
                "MB/s",
            )
            .with_peer("raw file write", rw),
        );
        figures.push(
            Figure::new(
                SCENARIO,
                format!("blob_read ({mib} MiB), XChaCha20 at rest"),
                median(cr),
                "MB/s",
            )
            .with_peer("raw file read", rr),
        );
    }
    Ok(figures)
}

/// Writes `data` as a blob at `path` and reads it back whole: MB/s of each.
fn kith_blob_round(
    store: &Store,
    ns: &NamespaceId,
    path: &Path,
    data: &[u8],
    buf: &mut [u8],
) -> Result<(f64, f64)> {
    let size = data.len();
    let start = Instant::now();
    let entry = store.put_blob(ns, path, data, "video/mp4")?;
    let write = mb_per_s(size as u64, start.elapsed());
    let hash = entry.blob_hash().context("not a blob")?;
    let start = Instant::now();
    let mut reader = store.read_blob(&hash, ..)?;
    let mut total = 0;
    loop {
        let n = reader.read(buf)?;
        if n == 0 {
            break;
        }
        total += n;
    }
    anyhow::ensure!(total == size, "short read");
    Ok((write, mb_per_s(size as u64, start.elapsed())))
}

fn list(opts: &Options) -> Result<Figure> {
    let n = opts.scaled(100_000);
    let dir = tempfile::tempdir()?;
    let store = Store::open(
        dir.path().join("kith"),
        StoreOptions::new(DeviceId::from_bytes([1; 32])),
    )?;
    let raw = Database::builder(dir.path().join("raw")).open()?;
    let raw_entries = raw.keyspace("entries", KeyspaceCreateOptions::default)?;
    let ns = NamespaceId::from_bytes([2; 32]);
    let write = RemoteWrite {
        device: DeviceId::from_bytes([3; 32]),
        timestamp: Timestamp::from_micros(1),
    };
    let prefix = Path::parse("/photos")?;
    let mut value_len = 0;
    for i in 0..n {
        let path = prefix.join(&format!("{i:08}.jpg"))?;
        let hash = BlobHash::of(&i.to_le_bytes());
        store.put_blob_entry(&ns, &path, write, hash, 1000, "image/jpeg")?;
        // The raw side stores as many keys of the same shape and similar values.
        let mut key = ns.as_bytes().to_vec();
        key.extend_from_slice(path.encoded());
        let value = vec![7u8; 100];
        value_len = value.len();
        raw_entries.insert(key, value)?;
    }
    let (mut kith, mut ceiling) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let mut after = None;
        let mut seen = 0;
        loop {
            let page = store.list(&ns, &prefix, after.as_ref(), 1_000)?;
            seen += page.entries.len();
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        anyhow::ensure!(seen == n, "listed {seen} of {n}");
        kith.push(rate(n, start.elapsed()));

        let start = Instant::now();
        let mut key_prefix = ns.as_bytes().to_vec();
        key_prefix.extend_from_slice(prefix.encoded());
        let mut seen = 0;
        let mut bytes = 0;
        for guard in raw_entries.prefix(&key_prefix) {
            let (k, v) = guard.into_inner()?;
            bytes += k.len() + v.len();
            seen += 1;
        }
        anyhow::ensure!(seen == n && bytes > value_len, "raw scan saw {seen}");
        ceiling.push(rate(n, start.elapsed()));
    }
    Ok(Figure::new(
        SCENARIO,
        format!("list ({n} entries, pages of 1,000)"),
        median(kith),
        "entries/s",
    )
    .with_peer("raw fjall prefix scan", median(ceiling)))
}
