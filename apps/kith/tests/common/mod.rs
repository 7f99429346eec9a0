//! Shared helpers for the tests that run the real `kith` binary.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const KITH: &str = env!("CARGO_BIN_EXE_kith");
/// How long any condition may take to come true.
pub const WAIT: Duration = Duration::from_secs(60);
/// How often a condition is checked again.
pub const POLL: Duration = Duration::from_millis(100);

/// How long one short command may run before the test calls it hung.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// The command `kith --data DATA ARGS…`, not started.
pub fn command(data: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(KITH);
    command
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("KITH_DATA");
    command
}

/// Runs `kith --data DATA ARGS…`, bounded by [`COMMAND_LIMIT`].
pub fn kith(data: &Path, args: &[&str]) -> Output {
    output_within(command(data, args), COMMAND_LIMIT)
}

/// Runs `command` to its end and returns what it printed, as
/// [`Command::output`] does; if it is still running after `limit`, the test
/// fails with what the process was doing (its threads' stacks, where `gdb`
/// is installed) instead of waiting for it forever.
pub fn output_within(mut command: Command, limit: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let stacks = stacks_of(pid);
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            let out = rx.recv_timeout(WAIT).ok().and_then(Result::ok);
            let stderr = out
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_default();
            panic!(
                "{command:?} was still running after {limit:?} (killed); its stderr:\n{stderr}\nits threads:\n{stacks}"
            );
        }
    }
}

/// The stacks of every thread of process `pid`, through `gdb` where it is
/// installed, else the kernel's wait channel of each thread.
fn stacks_of(pid: u32) -> String {
    let gdb = Command::new("gdb")
        .args(["-p", &pid.to_string(), "-batch", "-nx"])
        .args(["-ex", "thread apply all bt 40"])
        .stdin(Stdio::null())
        .output();
    if let Ok(out) = gdb
        && out.status.success()
    {
        return String::from_utf8_lossy(&out.stdout).into_owned();
    }
    let mut said = String::from("(no gdb) thread: wait channel\n");
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let read = |f: &str| std::fs::read_to_string(task.path().join(f)).unwrap_or_default();
            said += &format!(
                "{} {}: {}\n",
                read("comm").trim(),
                task.file_name().to_string_lossy(),
                read("wchan")
            );
        }
    }
    said
}

/// Runs a command that must succeed and returns its standard output.
pub fn ok(data: &Path, args: &[&str]) -> String {
    let out = kith(data, args);
    assert!(
        out.status.success(),
        "kith {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command with `--json` that must succeed and parses its output.
pub fn json(data: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&ok(data, &all)).unwrap()
}

/// The first line a process prints, within `wait`; later lines are passed
/// on to the test's output, so the process never writes into a closed pipe.
pub fn first_line(stdout: ChildStdout, what: &'static str, wait: Duration) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        for line in lines.map_while(Result::ok) {
            eprintln!("{what}: {line}");
        }
    });
    match rx.recv_timeout(wait) {
        Ok(line) => line,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what} printed nothing in {wait:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            panic!("{what} ended without printing a line (its stderr is above)")
        }
    }
}

/// The texts of the posts on `data`'s timeline, newest first.
pub fn timeline_texts(data: &Path) -> Vec<String> {
    json(data, &["feed", "timeline"])["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["text"].as_str().unwrap().to_string())
        .collect()
}

/// A port on 127.0.0.1 that is free for both TCP (HTTP) and UDP (the
/// node's QUIC endpoint) right now.
pub fn free_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A `kith serve` process, killed when dropped.
pub struct Daemon {
    child: Child,
    /// What it printed on start: with `--json`, `{ namespace, http, url }`;
    /// else its first line, as a JSON string.
    pub started: Value,
}

impl Daemon {
    /// Starts a daemon for `data` that re-syncs subscriptions every
    /// `resync_secs`, serving the page unless `headless`.
    pub fn start(data: &Path, resync_secs: u64, headless: bool) -> Self {
        Self::start_on(data, "127.0.0.1:0", resync_secs, headless)
    }

    /// [`Daemon::start`], with the node listening on `listen` (a restarted
    /// daemon given the same address is where its friends' tickets say).
    pub fn start_on(data: &Path, listen: &str, resync_secs: u64, headless: bool) -> Self {
        Self::start_with(data, Some(listen), resync_secs, headless)
    }

    /// [`Daemon::start`] as a user would run it: no `--listen`, so the node
    /// picks its port (the one it had before, where free).
    pub fn start_default(data: &Path, resync_secs: u64, headless: bool) -> Self {
        Self::start_with(data, None, resync_secs, headless)
    }

    fn start_with(data: &Path, listen: Option<&str>, resync_secs: u64, headless: bool) -> Self {
        let mut args = vec![
            "--data",
            data.to_str().unwrap(),
            "serve",
            "--local-only",
            "--http",
            "127.0.0.1:0",
            "--json",
        ];
        if let Some(listen) = listen {
            args.extend(["--listen", listen]);
        }
        if headless {
            args.push("--headless");
        }
        let daemon = Self::run(None, &args, Some(resync_secs));
        assert!(
            daemon.started["http"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.1:"),
            "{}",
            daemon.started
        );
        daemon
    }

    /// Runs `kith ARGS…` (a `serve` command line) in folder `dir` (default:
    /// the test's), re-syncing every `resync_secs` if given, and waits until
    /// it is ready: it prints its first line once it serves.
    pub fn run(dir: Option<&Path>, args: &[&str], resync_secs: Option<u64>) -> Self {
        let mut command = Command::new(KITH);
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        command
            .args(args)
            .env_remove("KITH_DATA")
            .env_remove("KITH_RESYNC_SECS")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(secs) = resync_secs {
            command.env("KITH_RESYNC_SECS", secs.to_string());
        }
        let mut child = command.spawn().unwrap();
        let line = first_line(child.stdout.take().unwrap(), "kith serve", WAIT);
        let started = serde_json::from_str(&line).unwrap_or(Value::String(line));
        Self { child, started }
    }

    /// The page URL, carrying the access token once.
    pub fn url(&self) -> String {
        let url = self.started["url"]
            .as_str()
            .expect("kith serve printed no page url")
            .to_string();
        assert!(
            url.starts_with("http://127.0.0.1:") && url.contains("token="),
            "{url}"
        );
        url
    }

    /// Stops the daemon as Ctrl-C or a service manager would (SIGTERM),
    /// and checks that it shut down cleanly: exit code 0.
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                assert_eq!(exit.code(), Some(0), "kith serve stopped with {exit}");
                return;
            }
            assert!(Instant::now() < deadline, "kith serve did not stop");
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
