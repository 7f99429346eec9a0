//! `kith receipts`: who confirmed each deletion this namespace requested,
//! who is still pending and since when, and (`--wait`) waiting until every
//! receipt is in.
//!
//! Waiting follows the daemon's event stream (`GET /api/events`, whose
//! `receipt` events say a friend's device confirmed) and reads the
//! deletions again after each receipt, so it reacts within milliseconds and
//! asks the API nothing while nothing happens. The stream is subscribed
//! before its answer's header is sent, so a receipt that arrives between
//! opening the stream and the first read of the list is in the list. A
//! slow re-read ([`RECHECK`]) covers events the stream dropped because the
//! reader fell behind. The wait ends at a deadline either way.

use std::collections::HashSet;
use std::time::Duration;

use axum::body::BodyDataStream;
use axum::http::Method;
use futures_util::StreamExt;
use kith::Timestamp;
use serde_json::Value;

use crate::client::Client;
use crate::output::{Failure, human_duration, print_json, short, time_text};

/// How long `kith receipts --wait` waits unless `--timeout` says otherwise,
/// in seconds.
pub const DEFAULT_WAIT_SECS: u64 = 60;
/// While waiting, the deletions are read again at least this often, even
/// without a receipt event.
pub const RECHECK: Duration = Duration::from_secs(5);

/// The deletions of `GET /api/deletions` that concern `path` (all without
/// one): those of the path, of a prefix above it, and of the whole
/// namespace.
///
/// # Errors
/// API errors.
pub async fn deletions_of(c: &Client, path: Option<&str>) -> Result<Vec<Value>, Failure> {
    let all: Value = c.call(Method::GET, "/api/deletions", None).await?;
    Ok(all
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| {
            path.is_none_or(|p| {
                let prefix = d["prefix"].as_str().unwrap_or("");
                let p = p.trim_end_matches('/');
                prefix == p || p.starts_with(&format!("{prefix}/")) || prefix == "/"
            })
        })
        .cloned()
        .collect())
}

/// The lines `kith receipts` prints for `list`, with ages as of `now`
/// (µs since the Unix epoch): per deletion its prefix, id, how many of its
/// friends' devices confirmed and when it was requested; per device who it
/// is and when it deleted, or since when it is pending.
pub fn text(list: &[Value], now: u64) -> Vec<String> {
    if list.is_empty() {
        return vec!["no deletions".to_string()];
    }
    let mut lines = Vec::new();
    for d in list {
        let requested = d["time"].as_u64().unwrap_or(0);
        lines.push(format!(
            "{} {}  confirmed by {}/{}, requested {} ({} ago)",
            d["prefix"].as_str().unwrap_or(""),
            d["id"].as_str().unwrap_or(""),
            d["confirmed"],
            d["total"],
            time_text(requested),
            age(now, requested)
        ));
        for dev in d["devices"].as_array().into_iter().flatten() {
            let when = match dev["confirmed_at"].as_u64() {
                Some(t) => format!("deleted at {}", time_text(t)),
                None => format!(
                    "pending since {} ({} ago)",
                    time_text(requested),
                    age(now, requested)
                ),
            };
            lines.push(device_line(dev, &when));
        }
    }
    lines
}

fn device_line(dev: &Value, what: &str) -> String {
    format!(
        "  {:<16} device {}  {what}",
        dev["name"].as_str().unwrap_or(""),
        short(dev["device"].as_str().unwrap_or(""))
    )
}

/// How long ago `then` was, as of `now` (both µs since the Unix epoch).
fn age(now: u64, then: u64) -> String {
    human_duration(now.saturating_sub(then) / 1000)
}

/// A device of a deletion, as `(deletion id, device id)`.
type DeviceKey = (String, String);

fn key(d: &Value, dev: &Value) -> DeviceKey {
    (
        d["id"].as_str().unwrap_or("").to_string(),
        dev["device"].as_str().unwrap_or("").to_string(),
    )
}

/// The devices in `list` that have not confirmed, with their deletion.
fn pending(list: &[Value]) -> Vec<(&Value, &Value)> {
    list.iter()
        .flat_map(|d| {
            d["devices"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|dev| dev["confirmed_at"].is_null())
                .map(move |dev| (d, dev))
        })
        .collect()
}

/// The lines for receipts in `list` that are not in `seen` yet (which
/// takes them in): who deleted when, and how far their deletion is.
pub fn arrivals(list: &[Value], seen: &mut HashSet<DeviceKey>) -> Vec<String> {
    let mut lines = Vec::new();
    for d in list {
        for dev in d["devices"].as_array().into_iter().flatten() {
            let Some(t) = dev["confirmed_at"].as_u64() else {
                continue;
            };
            if seen.insert(key(d, dev)) {
                lines.push(device_line(
                    dev,
                    &format!(
                        "deleted at {} ({} {}/{})",
                        time_text(t),
                        d["prefix"].as_str().unwrap_or(""),
                        d["confirmed"],
                        d["total"]
                    ),
                ));
            }
        }
    }
    lines
}

/// The failure of a wait that ran out, naming every device still pending.
pub fn still_pending(list: &[Value], waited: Duration, now: u64) -> Failure {
    let who: Vec<String> = pending(list)
        .iter()
        .map(|(d, dev)| {
            let requested = d["time"].as_u64().unwrap_or(0);
            format!(
                "{} (device {}, {}, pending since {} ago)",
                dev["name"].as_str().unwrap_or("?"),
                short(dev["device"].as_str().unwrap_or("")),
                d["prefix"].as_str().unwrap_or(""),
                age(now, requested)
            )
        })
        .collect();
    Failure::new(
        format!(
            "after {} s, {} of the receipts are still pending: {}",
            waited.as_secs(),
            who.len(),
            who.join(", ")
        ),
        Some(
            "a friend's device deletes and confirms when it is online and reaches this one; the request stays owed to it (see `kith status`), and `kith receipts --wait` can wait again",
        ),
    )
}

/// `kith receipts [PATH] --wait`: prints the receipts as they are, then
/// each one as it arrives, until every device of every listed deletion
/// confirmed (success) or `timeout` passed (a failure naming who is
/// pending). With `json`, only the final list is printed, as JSON.
///
/// # Errors
/// A [`Failure`] on time-out, when the daemon stops meanwhile, or for API
/// errors.
pub async fn wait(
    c: &Client,
    path: Option<&str>,
    timeout: Duration,
    json: bool,
) -> Result<(), Failure> {
    let deadline = tokio::time::Instant::now() + timeout;
    // The stream first, then the list: no receipt falls between the two.
    let mut events = EventStream::open(c).await?;
    let mut list = deletions_of(c, path).await?;
    let mut seen = HashSet::new();
    arrivals(&list, &mut seen);
    if !json {
        for line in text(&list, now()) {
            out!("{line}");
        }
        let n = pending(&list).len();
        if n > 0 {
            eprintln!(
                "waiting up to {} s for {n} more receipt{}",
                timeout.as_secs(),
                if n == 1 { "" } else { "s" }
            );
        }
    }
    let mut timed_out = false;
    loop {
        if pending(&list).is_empty() {
            if json {
                print_json(&Value::Array(list));
            } else if !list.is_empty() {
                out!("all receipts are in");
            }
            return Ok(());
        }
        if timed_out {
            return Err(still_pending(&list, timeout, now()));
        }
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => timed_out = true,
            () = tokio::time::sleep(RECHECK) => {}
            receipt = events.next_receipt() => {
                if !receipt? {
                    return Err(Failure::new(
                        "the daemon stopped while waiting for receipts",
                        Some("start it again with `kith serve`; friends' receipts reach it then"),
                    ));
                }
            }
        }
        list = deletions_of(c, path).await?;
        let arrived = arrivals(&list, &mut seen);
        if !json {
            for line in arrived {
                out!("{line}");
            }
        }
    }
}

/// Microseconds since the Unix epoch, now.
fn now() -> u64 {
    Timestamp::wall_clock().as_micros()
}

/// The server-sent events of `GET /api/events`, read as far as their names.
struct EventStream {
    body: BodyDataStream,
    /// Received bytes not yet parsed into whole events.
    buf: Vec<u8>,
}

impl EventStream {
    async fn open(c: &Client) -> Result<Self, Failure> {
        let res = c.get("/api/events").await?;
        Ok(Self {
            body: res.into_body().into_data_stream(),
            buf: Vec::new(),
        })
    }

    /// Waits for the next `receipt` event: `true` when one came, `false`
    /// when the stream ended. Cancel-safe: what was received is kept.
    async fn next_receipt(&mut self) -> Result<bool, Failure> {
        loop {
            while let Some(name) = take_event(&mut self.buf) {
                if name.as_deref() == Some("receipt") {
                    return Ok(true);
                }
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    return Err(Failure::new(
                        format!("the daemon's event stream broke off: {e}"),
                        None,
                    ));
                }
                None => return Ok(false),
            }
        }
    }
}

/// Takes the first whole event (up to a blank line) out of `buf`: `None`
/// if there is none yet, else `Some` of its `event:` name (`None` for a
/// comment or an event without a name).
fn take_event(buf: &mut Vec<u8>) -> Option<Option<String>> {
    let end = buf.windows(2).position(|w| w == b"\n\n")?;
    let block: Vec<u8> = buf.drain(..end + 2).collect();
    let text = String::from_utf8_lossy(&block);
    Some(
        text.lines()
            .find_map(|l| l.strip_prefix("event:"))
            .map(|n| n.trim().to_string()),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn deletion(bob_at: Option<u64>) -> Value {
        json!({
            "id": "DEL", "prefix": "/feed/friends/1", "time": 1_700_000_000_000_000u64,
            "confirmed": usize::from(bob_at.is_some()) + 1, "total": 2,
            "devices": [
                { "name": "carol", "device": "CAROLDEVICE1", "confirmed_at": 1_700_000_001_000_000u64 },
                { "name": "bob", "device": "BOBDEVICE123", "confirmed_at": bob_at },
            ],
        })
    }

    #[test]
    fn pending_devices_say_since_when() {
        let now = 1_700_000_012_000_000;
        let lines = text(&[deletion(None)], now);
        assert!(lines[0].contains("confirmed by 1/2") && lines[0].contains("12 s ago"));
        assert!(lines[1].contains("carol") && lines[1].contains("deleted at"));
        assert!(
            lines[2].contains("bob")
                && lines[2].contains("pending since 2023-11-14 22:13:20 (12 s ago)"),
            "{lines:?}"
        );
        let failure = still_pending(&[deletion(None)], Duration::from_secs(2), now);
        assert!(
            failure.message.contains("1 of the receipts")
                && failure.message.contains("bob (device BOBDEVICE1"),
            "{}",
            failure.message
        );
        assert!(!failure.message.contains("carol"));
    }

    #[test]
    fn each_receipt_arrives_once() {
        let mut seen = HashSet::new();
        assert_eq!(arrivals(&[deletion(None)], &mut seen).len(), 1);
        assert!(arrivals(&[deletion(None)], &mut seen).is_empty());
        let later = arrivals(&[deletion(Some(1_700_000_002_000_000))], &mut seen);
        assert!(later.len() == 1 && later[0].contains("bob") && later[0].contains("2/2"));
        assert!(pending(&[deletion(Some(1))]).is_empty());
    }

    #[test]
    fn events_are_split_at_blank_lines() {
        let mut buf = b":\n\nevent: entry\ndata: {}\n\nevent: receipt\ndata: {\"deletion\":\"x\"}\n\nevent: rec"
            .to_vec();
        assert_eq!(take_event(&mut buf), Some(None));
        assert_eq!(take_event(&mut buf), Some(Some("entry".into())));
        assert_eq!(take_event(&mut buf), Some(Some("receipt".into())));
        assert_eq!(take_event(&mut buf), None);
        assert_eq!(buf, b"event: rec");
    }
}
