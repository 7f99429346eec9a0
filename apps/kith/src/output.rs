//! What the CLI prints and how: JSON for `--json`, times, short ids, and a
//! command's failure with its hint. Shared by every command's module.

use std::io::IsTerminal as _;

use serde_json::Value;

use crate::error::Error;

/// A command's failure: a one-line reason and, for common cases, a hint.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        let hint = match &e {
            Error::UnknownFriend(_) => Some("`kith friend ls` lists your friends and their names"),
            Error::Remote { code, message, .. } => match code.as_str() {
                "unknown_friend" => Some("`kith friend ls` lists your friends and their names"),
                "not_found" if message.contains("not granted") => Some(
                    "ask them to `kith grant` you the path, then catch up with `kith sync FRIEND`",
                ),
                "refused" => Some("the friend has not granted you this path"),
                "unreachable" => Some(
                    "is the friend's node running? If their address changed, add a fresh ticket",
                ),
                "not_allowed" => Some("only the device holding the namespace key can do this"),
                "whole_namespace" => {
                    Some("`kith rm / --all` deletes everything, here and on friends' devices")
                }
                _ => None,
            },
            Error::Node(kith::Error::NotFriend(_)) => {
                Some("`kith friend ls` lists your friends and their names")
            }
            _ => None,
        };
        Self {
            message,
            hint: hint.map(str::to_string),
        }
    }
}

impl Failure {
    /// A failure with its message and an optional hint.
    pub(crate) fn new(message: impl Into<String>, hint: Option<&str>) -> Self {
        Self {
            message: message.into(),
            hint: hint.map(str::to_string),
        }
    }
}

/// Prints `v` as the output of `--json`: indented for a person when
/// standard output is a terminal, else on one line (what scripts, `jq` and
/// the tests read: one line per object).
pub(crate) fn print_json(v: &Value) {
    out!("{}", json_text(v, std::io::stdout().is_terminal()));
}

/// `v` as JSON text: indented if `pretty`, else on one line.
pub(crate) fn json_text(v: &Value, pretty: bool) -> String {
    if pretty {
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    } else {
        v.to_string()
    }
}

/// The first 10 characters of an id, as the CLI shows it.
pub(crate) fn short(id: &str) -> &str {
    id.get(..10).unwrap_or(id)
}

/// `micros` since the epoch as a UTC date and time.
pub(crate) fn time_text(micros: u64) -> String {
    // Seconds since the epoch as UTC date and time, without a date crate.
    let secs = micros / 1_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `bytes` as a short human size (powers of 1000, as disks are sold).
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `ms` as a short human duration.
pub(crate) fn human_duration(ms: u64) -> String {
    match ms / 1000 {
        0 => format!("{ms} ms"),
        s @ 1..=119 => format!("{s} s"),
        s @ 120..=7199 => format!("{} min", s / 60),
        s @ 7200..=172_799 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(time_text(0), "1970-01-01 00:00:00");
        assert_eq!(time_text(1_700_000_000_000_000), "2023-11-14 22:13:20");
    }

    #[test]
    fn json_is_indented_on_a_terminal_and_one_line_when_piped() {
        let v = json!({ "path": "/feed/friends/1", "kind": "doc", "tags": ["a", "b"] });
        let piped = json_text(&v, false);
        assert!(!piped.contains('\n'), "{piped}");
        assert!(
            piped.starts_with('{') && piped.contains(r#""tags":["a","b"]"#),
            "{piped}"
        );
        assert_eq!(serde_json::from_str::<Value>(&piped).unwrap(), v);
        let terminal = json_text(&v, true);
        assert!(terminal.lines().count() > 1, "{terminal}");
        assert!(
            terminal.contains("\n  \"path\": \"/feed/friends/1\""),
            "{terminal}"
        );
        let back: Value = serde_json::from_str(&terminal).unwrap();
        assert_eq!(back, v);
    }
}
