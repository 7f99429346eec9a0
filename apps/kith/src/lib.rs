//! The `kith` app: command line, local HTTP API, web page and the feed.
//!
//! `kith serve` runs a [`kith::Node`] with the HTTP API ([`http`],
//! documented in `API.md`) and the feed page on 127.0.0.1 ([`daemon`]).
//! The CLI ([`cli`]) reaches a data folder through that API: the running
//! daemon's ([`client`]), or the same API in its own process when no daemon
//! runs and the command needs no network. The feed ([`feed`]: profile,
//! posts by audience, comments in the commenter's namespace) is ordinary
//! documents and blobs, so the engine's grants decide who sees what;
//! [`profile`] is a person's name, bio and picture, and [`names`] keeps
//! what this person calls their friends.
//!
//! ```no_run
//! # async fn run() -> kith_app::Result<()> {
//! use kith_app::daemon::{Daemon, ServeOptions};
//!
//! let mut options = ServeOptions::new("alice-data");
//! options.local_only = true;
//! let daemon = Daemon::start(options).await?;
//! println!("open {}", daemon.page_url());
//! daemon.shutdown().await?;
//! # Ok(()) }
//! ```

/// Prints a line to standard output, ignoring a closed pipe (`kith … | head`).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

pub mod cli;
pub mod client;
pub mod daemon;
pub mod demo;
pub mod docjson;
mod error;
pub mod feed;
mod files;
pub mod http;
pub mod names;
pub mod origins;
pub mod output;
pub mod profile;
pub mod receipts;
pub mod relay;
pub mod timeline;
mod urls;
pub mod web;

pub use error::{Error, Result};
