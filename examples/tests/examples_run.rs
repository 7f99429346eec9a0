//! Every example runs to its end and succeeds, as a separate process, so
//! that `cargo test --workspace` runs them all. An example exits non-zero
//! when an outcome of its journey is not what it should be.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long one example may run (they take a few seconds).
const LIMIT: Duration = Duration::from_secs(120);

/// Runs an example binary and checks that it succeeded and said so.
fn runs_to_ok(name: &str, exe: &str) {
    let child = Command::new(exe)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{name} did not start: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel::<std::io::Result<Output>>();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(LIMIT) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("{name} did not finish within {LIMIT:?}");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{name} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        last.starts_with("ok: "),
        "{name} ended with {last:?}:\n{stdout}"
    );
}

#[test]
fn feed_app() {
    runs_to_ok("feed_app", env!("CARGO_BIN_EXE_feed_app"));
}

#[test]
fn subscribe() {
    runs_to_ok("subscribe", env!("CARGO_BIN_EXE_subscribe"));
}

#[test]
fn revoke() {
    runs_to_ok("revoke", env!("CARGO_BIN_EXE_revoke"));
}

#[test]
fn remote_delete() {
    runs_to_ok("remote_delete", env!("CARGO_BIN_EXE_remote_delete"));
}
