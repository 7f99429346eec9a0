//! `kith relay` with its certificate from an ACME certificate authority.
//!
//! No test here reaches a real authority (tests talk to 127.0.0.1 only):
//! they check that the ACME settings are validated, that the relay starts
//! with them, listening where it was asked to, under the name it will be
//! certified for, and stops cleanly; and that until a certificate was
//! obtained, a TLS client is refused rather than given some other
//! certificate. Obtaining one is iroh-relay's ACME client's work.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{KITH, WAIT, first_line};
use serde_json::Value;

/// `kith relay ARGS…`, expected to fail; its standard error.
fn refused(args: &[&str]) -> String {
    let out = Command::new(KITH).arg("relay").args(args).output().unwrap();
    assert!(!out.status.success(), "kith relay {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn acme_settings_are_checked_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("acme");
    let cache = cache.to_str().unwrap();
    let err = refused(&["--acme", "relay.example.org"]);
    assert!(err.contains("--acme-cache"), "{err}");
    let err = refused(&["--acme", "127.0.0.1", "--acme-cache", cache]);
    assert!(err.contains("DNS names"), "{err}");
    let err = refused(&[
        "--acme",
        "relay.example.org",
        "--acme-cache",
        cache,
        "--acme-contact",
        "nobody",
    ]);
    assert!(err.contains("email address"), "{err}");
    // One source of the certificate only.
    let err = refused(&[
        "--acme",
        "relay.example.org",
        "--acme-cache",
        cache,
        "--self-signed",
        "relay.example.org",
        "--write-cert",
        "x.pem",
    ]);
    assert!(err.contains("cannot be used with"), "{err}");
    let err = refused(&[
        "--acme",
        "relay.example.org",
        "--acme-cache",
        cache,
        "--acme-staging",
        "--acme-directory",
        "https://127.0.0.1:1/directory",
    ]);
    assert!(err.contains("cannot be used with"), "{err}");
    assert!(
        !dir.path().join("acme").exists(),
        "a refused start made the cache folder"
    );
}

#[test]
fn a_relay_with_an_acme_certificate_starts_under_its_name_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("acme");
    // An authority that cannot be reached: the relay must still start (it
    // keeps trying), and must not hand out any other certificate meanwhile.
    let mut child = Command::new(KITH)
        .args([
            "relay",
            "--http",
            "127.0.0.1:0",
            "--https",
            "127.0.0.1:0",
            "--quic",
            "127.0.0.1:0",
            "--acme",
            "relay.example.org",
            "--acme-cache",
            cache.to_str().unwrap(),
            "--acme-contact",
            "admin@example.org",
            "--acme-directory",
            "https://127.0.0.1:1/directory",
            "--json",
        ])
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let line = first_line(child.stdout.take().unwrap(), "relay", WAIT);
    let started: Value = serde_json::from_str(&line).unwrap();
    let https = started["https"].as_str().unwrap().to_string();
    let port = https.rsplit(':').next().unwrap();
    assert_eq!(
        started["url"].as_str().unwrap(),
        format!("https://relay.example.org:{port}/")
    );
    assert!(started["quic"].as_str().is_some(), "{started}");
    assert!(cache.is_dir(), "the ACME cache folder was not made");

    // A TLS ClientHello for the relay's name gets no certificate yet: the
    // handshake ends with an alert or a closed connection, never a
    // ServerHello.
    let mut tcp = TcpStream::connect(&https).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(&client_hello("relay.example.org")).unwrap();
    let mut answer = [0u8; 5];
    match tcp.read(&mut answer) {
        Ok(0) | Err(_) => {}
        Ok(_) => assert_eq!(answer[0], 21, "expected a TLS alert, got {answer:?}"),
    }

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = rx
        .recv_timeout(WAIT)
        .expect("the relay did not stop within the wait")
        .unwrap();
    assert!(status.success(), "the relay stopped with {status}");
}

/// A minimal TLS 1.3 ClientHello for `name` (X25519 key share, one cipher
/// suite), enough for a server to pick a certificate by SNI.
fn client_hello(name: &str) -> Vec<u8> {
    fn ext(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut e = kind.to_be_bytes().to_vec();
        e.extend((body.len() as u16).to_be_bytes());
        e.extend(body);
        e
    }
    let host = name.as_bytes();
    let mut sni = ((host.len() + 3) as u16).to_be_bytes().to_vec();
    sni.push(0);
    sni.extend((host.len() as u16).to_be_bytes());
    sni.extend(host);
    let mut extensions = ext(0, &sni);
    extensions.extend(ext(10, &[0, 2, 0, 0x1d])); // groups: x25519
    extensions.extend(ext(13, &[0, 2, 0x08, 0x07])); // signatures: ed25519
    extensions.extend(ext(43, &[2, 0x03, 0x04])); // versions: TLS 1.3
    let mut share = vec![0, 0x24, 0, 0x1d, 0, 0x20];
    share.extend([7u8; 32]);
    extensions.extend(ext(51, &share)); // key share
    extensions.extend(ext(16, &[0, 3, 2, b'h', b'2'])); // ALPN
    let mut hello = vec![0x03, 0x03];
    hello.extend([1u8; 32]); // random
    hello.push(0); // session id
    hello.extend([0, 2, 0x13, 0x01]); // TLS_AES_128_GCM_SHA256
    hello.extend([1, 0]); // compression: none
    hello.extend((extensions.len() as u16).to_be_bytes());
    hello.extend(extensions);
    let mut handshake = vec![1];
    handshake.extend(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend(hello);
    let mut record = vec![22, 0x03, 0x01];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}
