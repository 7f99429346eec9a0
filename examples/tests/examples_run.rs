//! Every example runs to its end and succeeds, as a separate process, so
//! that `cargo test --workspace` runs them all. An example exits non-zero
//! when an outcome of its journey is not what it should be.
//!
//! Stress mode: `KITH_STRESS=50` runs each example 50 times instead of
//! once, and `KITH_STRESS_PARALLEL=4` runs four of those at a time (see
//! the README's testing section). Every failure or hang prints what the
//! example wrote, its log included, up to that moment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one run of an example may take (they take well under ten
/// seconds; every wait inside one is bounded by a shorter limit).
const LIMIT: Duration = Duration::from_secs(120);

/// What one run of an example printed and how it ended.
struct Run {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
    /// Where each thread stood when a hung run was killed (when gdb is
    /// installed).
    stacks: String,
    took: Duration,
}

impl Run {
    /// `None` if the run succeeded and said so, else why not, with
    /// everything it printed.
    fn failure(&self, name: &str) -> Option<String> {
        let why = match self.status {
            None => format!("did not finish within {LIMIT:?} and was killed"),
            Some(s) if !s.success() => format!("failed ({s})"),
            Some(_) => {
                let last = self.stdout.lines().last().unwrap_or("");
                if last.starts_with("ok: ") {
                    return None;
                }
                format!("ended with {last:?} instead of an `ok: ` line")
            }
        };
        Some(format!(
            "{name} {why} after {:?}\n--- its stdout ---\n{}\n--- its stderr ---\n{}{}",
            self.took, self.stdout, self.stderr, self.stacks
        ))
    }
}

/// Reads a child's pipe to its end into a shared buffer, so that what it
/// wrote can be shown even if it has to be killed.
fn collect(mut pipe: impl Read + Send + 'static) -> (Arc<Mutex<Vec<u8>>>, JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = buf.clone();
    let reader = std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    (buf, reader)
}

/// Runs an example binary once, killing it after [`LIMIT`].
fn run_once(exe: &str) -> Run {
    let started = Instant::now();
    let mut child: Child = Command::new(exe)
        .env("RUST_BACKTRACE", "1")
        // The node's log goes to stderr, shown only if the run fails.
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "kith=info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{exe} did not start: {e}"));
    let (stdout, out_reader) = collect(child.stdout.take().unwrap());
    let (stderr, err_reader) = collect(child.stderr.take().unwrap());
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let mut stacks = String::new();
    let status = match rx.recv_timeout(LIMIT) {
        Ok(status) => Some(status.unwrap()),
        Err(_) => {
            stacks = thread_stacks(pid);
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            None
        }
    };
    let _ = waiter.join();
    let _ = out_reader.join();
    let _ = err_reader.join();
    let text = |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().unwrap()).into_owned();
    Run {
        status,
        stdout: text(&stdout),
        stderr: text(&stderr),
        stacks,
        took: started.elapsed(),
    }
}

/// Every thread's stack of the process `pid`, if gdb is installed.
fn thread_stacks(pid: u32) -> String {
    let out = Command::new("timeout")
        .args(["60", "gdb", "-p", &pid.to_string(), "-batch", "-nx"])
        .args(["-ex", "thread apply all bt 40"])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => format!(
            "\n--- its threads when it was killed ---\n{}",
            String::from_utf8_lossy(&o.stdout)
        ),
        _ => String::new(),
    }
}

/// A positive number from the environment variable `name`, else 1.
fn env_count(name: &str) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or_else(|| panic!("{name}={v:?}: expected a positive number")),
        Err(_) => 1,
    }
}

/// Runs an example binary (`KITH_STRESS` times, `KITH_STRESS_PARALLEL` at
/// once) and checks that every run succeeded and said so.
fn runs_to_ok(name: &str, exe: &'static str) {
    let runs = env_count("KITH_STRESS");
    let parallel = env_count("KITH_STRESS_PARALLEL").min(runs);
    let next = Arc::new(Mutex::new(0usize));
    let results = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..parallel)
        .map(|_| {
            let (next, results) = (next.clone(), results.clone());
            std::thread::spawn(move || {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap();
                        if *n == runs {
                            return;
                        }
                        *n += 1;
                        *n
                    };
                    let run = run_once(exe);
                    results.lock().unwrap().push((i, run));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let results = std::mem::take(&mut *results.lock().unwrap());
    let hangs = results.iter().filter(|(_, r)| r.status.is_none()).count();
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(i, r)| r.failure(&format!("{name} (run {i} of {runs})")))
        .collect();
    if runs > 1 {
        let slowest = results
            .iter()
            .map(|(_, r)| r.took)
            .max()
            .unwrap_or_default();
        println!(
            "{name}: {runs} runs, {parallel} at a time: {} failed ({hangs} hung), slowest {slowest:.1?}",
            failures.len()
        );
    }
    if let Some(first) = failures.first() {
        panic!(
            "{} of {runs} runs of {name} failed ({hangs} hung); the first:\n{first}",
            failures.len()
        );
    }
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
