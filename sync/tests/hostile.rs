//! Hostile peers: a raw client speaking the wire protocol directly asks the
//! owner for what it may not read, presents bad certificates, sends garbage
//! and oversize frames; a tampered blob is refused by the friend. Each gets a
//! refusal or an error, the owner keeps serving the honest friend, and
//! nothing is written into the owner's namespace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{befriend, list, p, spawn, write_docs};
use iroh::endpoint::{Connection, PortmapperConfig, presets};
use iroh::{Endpoint, EndpointAddr, RelayMode, SecretKey, TransportAddr};
use kith::caps::{DeviceCert, NamespaceKey, Rights};
use kith::proto::wire::{ALPN, Message, RefusalCode};
use kith::store::BlobHash;
use kith::{Node, Timestamp};

/// The device key and certificate a node keeps in its data folder.
fn keys_of(dir: &std::path::Path) -> ([u8; 32], DeviceCert) {
    let hex = std::fs::read_to_string(dir.join("identity/device.key")).unwrap();
    let bytes = data_encoding::HEXLOWER
        .decode(hex.trim().as_bytes())
        .unwrap();
    let cert =
        DeviceCert::decode(&std::fs::read(dir.join("identity/device.cert")).unwrap()).unwrap();
    (bytes.try_into().unwrap(), cert)
}

async fn raw_connect(secret: [u8; 32], target: &Node) -> Result<(Endpoint, Connection), String> {
    let ep = Endpoint::builder(presets::Minimal)
        .relay_mode(RelayMode::Disabled)
        .clear_ip_transports()
        .bind_addr("127.0.0.1:0")
        .unwrap()
        .portmapper_config(PortmapperConfig::Disabled)
        .secret_key(SecretKey::from_bytes(&secret))
        .bind()
        .await
        .unwrap();
    let id = iroh::PublicKey::from_bytes(target.device().as_bytes()).unwrap();
    let addr = EndpointAddr::from_parts(id, target.addrs().into_iter().map(TransportAddr::Ip));
    let conn = tokio::time::timeout(common::WAIT, ep.connect(addr, ALPN))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    Ok((ep, conn))
}

fn frame(msg: &Message) -> Vec<u8> {
    let body = msg.encode();
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// Sends raw bytes on a new stream and reads every message until the server
/// finishes the stream (or the connection fails).
async fn exchange(conn: &Connection, raw: &[u8]) -> Vec<Message> {
    // A refused connection fails here: that is no answer at all.
    let Ok((mut send, mut recv)) = conn.open_bi().await else {
        return Vec::new();
    };
    // The server may answer and close before reading everything we send.
    let _ = send.write_all(raw).await;
    let _ = send.finish();
    let mut out = Vec::new();
    loop {
        let mut len = [0u8; 4];
        if recv.read_exact(&mut len).await.is_err() {
            return out;
        }
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        if recv.read_exact(&mut body).await.is_err() {
            return out;
        }
        out.push(Message::decode(&body).unwrap());
    }
}

async fn ask(conn: &Connection, cert: &DeviceCert, request: Message) -> Vec<Message> {
    let mut raw = frame(&Message::Hello {
        cert: cert.encode(),
        other_certs: Vec::new(),
    });
    raw.extend(frame(&request));
    exchange(conn, &raw).await
}

fn refusals(msgs: &[Message]) -> Vec<RefusalCode> {
    msgs.iter()
        .filter_map(|m| match m {
            Message::Refused { code, .. } => Some(*code),
            _ => None,
        })
        .collect()
}

fn carries_data(msgs: &[Message]) -> bool {
    msgs.iter().any(|m| {
        matches!(m, Message::Entries { items } if !items.is_empty())
            || matches!(
                m,
                Message::Doc { .. }
                    | Message::BlobChunk { .. }
                    | Message::BlobStart { .. }
                    | Message::BlobGroups { .. }
            )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_friend_cannot_read_what_it_was_not_granted() {
    let (da, db, dc) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let a = spawn(da.path()).await;
    let b = spawn(db.path()).await;
    let c = spawn(dc.path()).await;
    befriend(&a, &b).await;
    befriend(&a, &c).await;
    a.grant(&b.namespace(), &p("/feed"), None).await.unwrap();
    a.grant(&c.namespace(), &p("/feed"), None).await.unwrap();
    a.grant(&c.namespace(), &p("/photos"), None).await.unwrap();
    write_docs(&a, "/feed", 3).await;
    write_docs(&a, "/photos/albums", 3).await;
    let photo = a
        .store()
        .put_blob(
            &a.namespace(),
            &p("/photos/beach.jpg"),
            &b"beach pixels"[..],
            "image/jpeg",
        )
        .unwrap();
    let photo_hash = photo.blob_hash().unwrap();

    b.sync_now(&a.namespace()).await.unwrap();
    assert!(list(&b, &a.namespace(), "/photos").is_empty());
    assert_eq!(list(&b, &a.namespace(), "/feed").len(), 3);
    c.sync_now(&a.namespace()).await.unwrap();
    assert_eq!(list(&c, &a.namespace(), "/photos").len(), 4);

    // A hostile client with B's own keys asks A directly.
    let seq_before = a.store().current_seq(&a.namespace()).unwrap();
    let (secret, cert) = keys_of(db.path());
    let (_ep, conn) = raw_connect(secret, &a).await.unwrap();
    for request in [
        Message::Sync {
            cursors: vec![(p("/photos"), 0)],
        },
        Message::Sync {
            cursors: vec![(p("/"), 0)],
        },
        Message::Sync {
            cursors: vec![(p("/photos/albums"), 0)],
        },
        Message::WantDocs {
            items: vec![(p("/photos/albums/00000"), Vec::new())],
        },
        Message::WantBlob {
            path: p("/photos/beach.jpg"),
            hash: photo_hash,
            offset: 0,
            groups: true,
        },
        // A readable path does not unlock another path's blob by hash.
        Message::WantBlob {
            path: p("/feed/00000"),
            hash: photo_hash,
            offset: 0,
            groups: true,
        },
    ] {
        let name = request.name();
        let answer = ask(&conn, &cert, request).await;
        assert!(!carries_data(&answer), "{name} leaked data: {answer:?}");
        let codes = refusals(&answer);
        assert!(
            codes.contains(&RefusalCode::Unauthorized) || codes.contains(&RefusalCode::NotFound),
            "{name} was not refused: {answer:?}"
        );
    }
    // The same client asking for /feed is served: the refusals were about caps.
    let ok = ask(
        &conn,
        &cert,
        Message::Sync {
            cursors: vec![(p("/feed"), 0)],
        },
    )
    .await;
    assert!(carries_data(&ok));
    assert_eq!(
        a.store().current_seq(&a.namespace()).unwrap(),
        seq_before,
        "nothing written into A"
    );
    for n in [a, b, c] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_and_bad_certificates_are_refused_and_the_owner_keeps_serving() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = spawn(da.path()).await;
    let b = spawn(db.path()).await;
    befriend(&a, &b).await;
    a.grant(&b.namespace(), &p("/feed"), None).await.unwrap();
    write_docs(&a, "/feed", 3).await;
    let seq_before = a.store().current_seq(&a.namespace()).unwrap();

    // An unknown endpoint is refused at the handshake: no stream ever works.
    let stranger = [42u8; 32];
    if let Ok((_ep, conn)) = raw_connect(stranger, &a).await {
        let (_, cert) = keys_of(db.path());
        let answer = tokio::time::timeout(
            common::WAIT,
            ask(&conn, &cert, Message::Sync { cursors: vec![] }),
        )
        .await
        .unwrap_or_default();
        assert!(answer.is_empty(), "a stranger got an answer: {answer:?}");
    }

    let (secret, cert) = keys_of(db.path());
    let (_ep, conn) = raw_connect(secret, &a).await.unwrap();
    // A certificate for another device than the one connected.
    let (_, a_cert) = keys_of(da.path());
    let answer = ask(
        &conn,
        &a_cert,
        Message::Sync {
            cursors: vec![(p("/feed"), 0)],
        },
    )
    .await;
    assert_eq!(refusals(&answer), [RefusalCode::BadCertificate]);
    // A certificate for B's device signed by a namespace that is no friend.
    let mallory = NamespaceKey::generate(&mut rand::rng());
    let forged = DeviceCert::issue(
        &mallory,
        cert.device(),
        Rights::ALL,
        Timestamp::wall_clock(),
        None,
    )
    .unwrap();
    let answer = ask(
        &conn,
        &forged,
        Message::Sync {
            cursors: vec![(p("/feed"), 0)],
        },
    )
    .await;
    assert_eq!(refusals(&answer), [RefusalCode::Unauthorized]);
    // A certificate whose signature was tampered with.
    let mut bytes = cert.encode();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let mut raw = frame(&Message::Hello {
        cert: bytes,
        other_certs: vec![],
    });
    raw.extend(frame(&Message::Sync {
        cursors: vec![(p("/feed"), 0)],
    }));
    assert_eq!(
        refusals(&exchange(&conn, &raw).await),
        [RefusalCode::BadCertificate]
    );
    // Requests before Hello.
    let answer = exchange(
        &conn,
        &frame(&Message::Sync {
            cursors: vec![(p("/feed"), 0)],
        }),
    )
    .await;
    assert_eq!(refusals(&answer), [RefusalCode::Protocol]);
    // A garbage frame and an oversize frame.
    let mut garbage = 9u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(b"not a msg");
    assert_eq!(
        refusals(&exchange(&conn, &garbage).await),
        [RefusalCode::Malformed]
    );
    let huge = u32::MAX.to_be_bytes().to_vec();
    assert_eq!(
        refusals(&exchange(&conn, &huge).await),
        [RefusalCode::Malformed]
    );

    // The honest friend is still served, and nobody wrote into A.
    write_docs(&a, "/feed/more", 2).await;
    let report = b.sync_now(&a.namespace()).await.unwrap();
    assert_eq!(report.docs, 5);
    assert_eq!(
        a.store().current_seq(&a.namespace()).unwrap(),
        seq_before + 2
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_group_whose_bytes_do_not_match_is_refused_as_it_arrives() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = spawn(da.path()).await;
    let b = spawn(db.path()).await;
    befriend(&a, &b).await;
    a.grant(&b.namespace(), &p("/feed"), None).await.unwrap();
    let content: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let entry = a
        .store()
        .put_blob(&a.namespace(), &p("/feed/video"), &content[..], "video/mp4")
        .unwrap();
    let hash: BlobHash = entry.blob_hash().unwrap();
    b.sync_now(&a.namespace()).await.unwrap();
    // The owner's copy is damaged on disk: one byte flipped in the 51st
    // group of 64 KiB (the file is encrypted with a stream cipher, so the
    // content's byte flips too).
    let group = kith::store::groups::group_len(content.len() as u64);
    let at = 50 * group as usize + 12_345;
    let hex = hash.to_hex();
    let file = da
        .path()
        .join("store/blobs")
        .join(&hex[..2])
        .join(&hex[2..]);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[at] ^= 0xFF;
    std::fs::write(&file, &bytes).unwrap();

    let err = b
        .read_blob(&a.namespace(), &p("/feed/video"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.as_store(),
            Some(kith::store::Error::GroupMismatch { offset, .. }) if *offset == 50 * group
        ),
        "expected the 51st group refused, got {err}"
    );
    assert!(!b.store().has_blob(&hash), "nothing unverified was kept");
    // The fifty groups before it were verified and kept: a fetch resumes
    // there.
    let kept = b
        .store()
        .resume_import(hash, content.len() as u64)
        .unwrap()
        .offset();
    assert_eq!(kept, 50 * group);
    // Repaired, the owner serves the rest, and the blob is whole.
    bytes[at] ^= 0xFF;
    std::fs::write(&file, &bytes).unwrap();
    let mut reader = b
        .read_blob(&a.namespace(), &p("/feed/video"))
        .await
        .unwrap();
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut got).unwrap();
    assert!(got == content, "the blob arrived whole");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

async fn spawn_limited(dir: &std::path::Path, limits: kith::PeerLimits) -> Node {
    common::init_tracing();
    Node::builder(dir)
        .network(kith::NetworkMode::LocalOnly)
        .live_push(false)
        .peer_limits(limits)
        .spawn()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_over_its_limits_is_refused_then_disconnected_while_others_are_served() {
    let (da, db, dc) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let limits = kith::PeerLimits {
        requests_per_sec: 0.5,
        request_burst: 6.0,
        max_refusals: 3,
        ..kith::PeerLimits::default()
    };
    let a = spawn_limited(da.path(), limits).await;
    let b = spawn(db.path()).await;
    let c = spawn(dc.path()).await;
    befriend(&a, &b).await;
    befriend(&a, &c).await;
    a.grant(&b.namespace(), &p("/feed"), None).await.unwrap();
    a.grant(&c.namespace(), &p("/feed"), None).await.unwrap();
    write_docs(&a, "/feed", 2).await;

    // B's device floods A with requests on one stream.
    let (secret, cert) = keys_of(db.path());
    let (_ep, conn) = raw_connect(secret, &a).await.unwrap();
    let mut raw = frame(&Message::Hello {
        cert: cert.encode(),
        other_certs: vec![],
    });
    for _ in 0..30 {
        raw.extend(frame(&Message::Sync {
            cursors: vec![(p("/feed"), 0)],
        }));
    }
    let answer = exchange(&conn, &raw).await;
    let limited = refusals(&answer)
        .iter()
        .filter(|c| **c == RefusalCode::RateLimited)
        .count();
    assert!(
        limited >= 1,
        "no rate limit answer in {} messages",
        answer.len()
    );
    assert!(answer.len() < 31, "every request was answered");
    // Persistently over its limits: disconnected.
    let closed = tokio::time::timeout(common::WAIT, conn.closed()).await;
    assert!(closed.is_ok(), "the flooding peer is still connected");
    // The node keeps serving others.
    let report = c.sync_now(&a.namespace()).await.unwrap();
    assert_eq!(report.docs, 2);
    for n in [a, b, c] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_to_a_peer_are_paced_to_its_budget() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let limits = kith::PeerLimits {
        bytes_per_sec: Some(2.0 * 1024.0 * 1024.0),
        ..kith::PeerLimits::default()
    };
    let a = spawn_limited(da.path(), limits).await;
    let b = spawn(db.path()).await;
    befriend(&a, &b).await;
    a.grant(&b.namespace(), &p("/feed"), None).await.unwrap();
    let content = vec![5u8; 3 << 20];
    a.store()
        .put_blob(&a.namespace(), &p("/feed/big"), &content[..], "a/b")
        .unwrap();
    b.sync_now(&a.namespace()).await.unwrap();
    let started = std::time::Instant::now();
    b.fetch(&a.namespace(), &p("/feed/big")).await.unwrap();
    let elapsed = started.elapsed();
    // 3 MiB at 2 MiB/s with a 1 MiB burst cannot take less than a second.
    assert!(
        elapsed >= std::time::Duration::from_millis(950),
        "took only {elapsed:?}"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_cap_gives_nothing() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = spawn(da.path()).await;
    let b = spawn(db.path()).await;
    befriend(&a, &b).await;
    write_docs(&a, "/feed", 3).await;
    let expires = Timestamp::from_micros(a.store().clock().now().as_micros() + 2_000);
    a.grant(&b.namespace(), &p("/feed"), Some(expires))
        .await
        .unwrap();
    // Wait for the expiry to pass (awaiting the condition, not sleeping).
    while Timestamp::wall_clock() <= expires {
        tokio::task::yield_now().await;
    }
    let report = b.sync_now(&a.namespace()).await.unwrap();
    assert!(
        report.prefixes.is_empty(),
        "an expired cap still grants {:?}",
        report.prefixes
    );
    assert!(list(&b, &a.namespace(), "/").is_empty());
    // Asking directly with B's keys is refused too.
    let (secret, cert) = keys_of(db.path());
    let (_ep, conn) = raw_connect(secret, &a).await.unwrap();
    let answer = ask(
        &conn,
        &cert,
        Message::Sync {
            cursors: vec![(p("/feed"), 0)],
        },
    )
    .await;
    assert!(!carries_data(&answer));
    assert_eq!(refusals(&answer), [RefusalCode::Unauthorized]);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// The namespace key a node keeps in its data folder.
fn namespace_key_of(dir: &std::path::Path) -> NamespaceKey {
    let text = std::fs::read_to_string(dir.join("identity/namespace.key")).unwrap();
    NamespaceKey::import_text(text.trim()).unwrap()
}

/// Scopes pushed alone on a stream (`Rekey`) are taken only from a device
/// of the scope's own namespace, and only for what the receiver may read of
/// it: a friend cannot move a member onto a topic of another namespace, nor
/// onto one of its own outside what it granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_pushed_by_a_friend_for_another_namespace_or_without_a_grant_are_refused() {
    use kith::caps::{Roster, Scope, ScopeSecret};
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let live = |dir: std::path::PathBuf| async move {
        Node::builder(&dir)
            .network(kith::NetworkMode::LocalOnly)
            .spawn()
            .await
            .unwrap()
    };
    let a = live(dirs[0].path().to_path_buf()).await;
    let b = live(dirs[1].path().to_path_buf()).await;
    let c = spawn(dirs[2].path()).await;
    befriend(&a, &b).await;
    befriend(&b, &c).await;
    a.grant(&b.namespace(), &p("/feed"), None).await.unwrap();
    b.subscribe(&a.namespace()).await.unwrap();
    tokio::time::timeout(common::WAIT, async {
        while b.live_topics().len() != 1 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("b never joined a's scope");
    let topics = |n: &Node| -> Vec<(kith::NamespaceId, u64)> {
        n.live_topics()
            .iter()
            .map(|t| (t.namespace, t.epoch))
            .collect()
    };
    // C grants B its /feed, so that only the namespace rule refuses C's
    // push of A's /feed scope below.
    let c_ns = c.namespace();
    c.grant(&b.namespace(), &p("/feed"), None).await.unwrap();
    b.subscribe(&c_ns).await.unwrap();
    b.sync_now(&c_ns).await.unwrap();
    tokio::time::timeout(common::WAIT, async {
        while b.live_topics().len() != 2 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("b never joined c's scope");
    let held = topics(&b);
    let (c_secret, _) = keys_of(dirs[2].path());
    c.shutdown().await.unwrap();
    let (_ep, conn) = raw_connect(c_secret, &b).await.unwrap();
    let rng = &mut rand::rng();
    let member = [b.device()];

    // A scope of A's namespace, with a roster A really signed (as a friend
    // that was a member once would hold): C does not act for A.
    let a_key = namespace_key_of(dirs[0].path());
    let scope = Scope::new(a.namespace(), p("/feed"), 9, ScopeSecret::random(rng));
    let roster = Roster::issue(&a_key, p("/feed"), 9, member).unwrap();
    // A scope of C's own namespace, signed by C, outside what C granted B.
    let c_key = namespace_key_of(dirs[2].path());
    let own = Scope::new(c_ns, p("/secret"), 0, ScopeSecret::random(rng));
    let own_roster = Roster::issue(&c_key, p("/secret"), 0, member).unwrap();
    for (scope, roster) in [(scope, roster), (own, own_roster)] {
        let push = Message::Rekey {
            items: vec![(scope.encode(), roster.encode())],
            recent: Vec::new(),
        };
        let answer = exchange(&conn, &frame(&push)).await;
        assert_eq!(
            refusals(&answer),
            vec![RefusalCode::Unauthorized],
            "{answer:?}"
        );
        assert_eq!(topics(&b), held, "b moved onto a pushed topic");
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
