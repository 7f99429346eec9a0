//! Where the HTTP API serves an entry.

use kith::{NamespaceId, Path};

/// The URL of an entry in the HTTP API.
pub fn entry_url(ns: &NamespaceId, path: &Path) -> String {
    let mut url = format!("/api/entry/{ns}");
    for c in path.components() {
        url.push('/');
        url.push_str(&percent_encode(c));
    }
    url
}

/// Percent-encodes everything but unreserved URL characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
