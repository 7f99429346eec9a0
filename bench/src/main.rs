//! kith's benchmarks: `kith-bench SCENARIO|all [--json]`.
//!
//! Each scenario measures kith and, in the same run, the closest peer or
//! ceiling on the same work, and prints the ratio (above 1: kith did
//! better). Run in release mode: `cargo run --release -p kith-bench -- all`.

mod caps;
mod catchup;
mod delete;
mod erasure;
mod fanout;
mod life;
mod netns;
mod peers;
mod rawgossip;
mod report;
mod revoke;
mod site;
mod startup;
mod store;
mod swarm;
mod wan;

use anyhow::{Result, bail};
use clap::Parser;

use report::Figure;

/// A scenario: its name and the function that runs it.
type Scenario = (&'static str, fn(&Options) -> Result<Vec<Figure>>);

const SCENARIOS: &[Scenario] = &[
    ("store", store::run),
    ("caps", caps::run),
    ("catchup", catchup::run_catchup),
    ("blobs", catchup::run_blobs),
    ("peers", peers::run),
    ("fanout", fanout::run),
    ("revoke", revoke::run),
    ("delete", delete::run),
    ("wan", wan::run),
    ("startup", startup::run),
    ("life", life::run),
];

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Run kith's benchmark scenarios")]
pub(crate) struct Options {
    /// Scenario to run (`store`, `caps`, `catchup`, `blobs`, `peers`, `fanout`,
    /// `revoke`, `delete`, `wan`, `startup`, `life`) or `all`.
    scenario: String,
    /// Print one JSON object per line per figure instead of a table.
    #[arg(long)]
    json: bool,
    /// Scale the amount of work (1.0 = the documented scenario; smaller for a quick look).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Friend counts for `fanout`, `revoke` and `delete` (comma-separated;
    /// default: each scenario's documented set).
    #[arg(long, value_delimiter = ',')]
    friends: Vec<usize>,
    /// Run kith alone, without its peers (`catchup`), so that a profile
    /// holds kith's work only.
    #[arg(long)]
    no_peers: bool,
}

impl Options {
    /// `n` scaled by `--scale`, at least 1.
    pub(crate) fn scaled(&self, n: usize) -> usize {
        ((n as f64 * self.scale) as usize).max(1)
    }
}

/// mimalloc: see the workspace's `Cargo.toml`.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let opts = Options::parse();
    // Log lines only when asked for (`RUST_LOG=kith=info`), on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: kith-bench was built without optimisations; run it with `cargo run --release -p kith-bench`"
        );
    }
    let selected: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|(name, _)| opts.scenario == "all" || *name == opts.scenario)
        .collect();
    if selected.is_empty() {
        let names: Vec<&str> = SCENARIOS.iter().map(|(n, _)| *n).collect();
        bail!(
            "unknown scenario {:?}; choose one of {} or all",
            opts.scenario,
            names.join(", ")
        );
    }
    let mut all = Vec::new();
    for (name, run) in selected {
        eprintln!("running scenario {name} …");
        let figures = run(&opts)?;
        if opts.json {
            for f in &figures {
                println!("{}", f.to_json());
            }
        }
        all.extend(figures);
    }
    if !opts.json {
        print!("{}", report::table(&all));
    }
    Ok(())
}

/// Tells a `perf record --control fifo:FIFO -D -1` started with
/// `KITH_PERF_CTL=FIFO` to start (`enable`) or stop (`disable`) sampling,
/// so that a profile holds the measured work alone (a catch-up, the time
/// after a revoke), not the set-up before it. These are kith's windows; a
/// scenario's other windows are [`profile_window`]s.
pub(crate) fn profile(command: &str) {
    profile_window("kith", command);
}

/// [`profile`] for the window named `window`, sampled when
/// `KITH_PERF_WINDOW` names it (`kith` when unset): in `fanout`, `raw` is
/// raw gossip's deliveries and `idle` the owner's window at rest after
/// kith's.
pub(crate) fn profile_window(window: &str, command: &str) {
    use std::io::Write;
    let Some(fifo) = std::env::var_os("KITH_PERF_CTL") else {
        return;
    };
    let wanted = std::env::var("KITH_PERF_WINDOW").unwrap_or_else(|_| "kith".into());
    if wanted != window {
        return;
    }
    let sent = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .and_then(|mut f| writeln!(f, "{command}"));
    if let Err(e) = sent {
        eprintln!("could not tell perf to {command} through {fifo:?}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every scenario runs to completion at a tiny scale, so the bench
    /// cannot rot between release runs.
    #[test]
    fn every_scenario_runs_at_small_scale() {
        let opts = Options {
            scenario: "all".into(),
            json: true,
            scale: 0.001,
            friends: Vec::new(),
            no_peers: false,
        };
        for (name, run) in SCENARIOS {
            let figures = run(&opts).unwrap_or_else(|e| panic!("scenario {name} failed: {e:#}"));
            // `wan` measures nothing where it cannot build its network
            // (without root), and says why; under CI=true it fails instead.
            let skipped = *name == "wan" && netns::unavailable().is_some();
            assert!(
                skipped || !figures.is_empty(),
                "scenario {name} measured nothing"
            );
            for f in &figures {
                // A count of dials may be none: a swarm that moves over
                // the links it has dials nothing. The memory of one friend
                // (the growth of the process's resident memory while the
                // friends form) may be none at this scale: one node fits in
                // memory the allocator kept from the scenarios before it.
                let may_be_zero = f.unit == "dials" || f.name.ends_with("_memory_per_friend");
                assert!(
                    f.value.is_finite() && (f.value > 0.0 || may_be_zero && f.value == 0.0),
                    "{name}/{}: {}",
                    f.name,
                    f.value
                );
            }
        }
    }
}
