//! `sync/src/proto` decides without IO and without node state: it names
//! only kith-types, kith-store, kith-caps, the standard library's pure
//! parts, `tracing`, `thiserror` and itself (its error type is its own). This test reads its
//! source and fails on any other path root, so a layer violation is caught
//! where it is written.

use std::path::Path;

/// Crates and modules `proto` may name at the start of a path.
const ALLOWED_ROOTS: &[&str] = &[
    "std",
    "core",
    "alloc",
    "kith_types",
    "kith_store",
    "kith_caps",
    "tracing",
    "thiserror",
    "proptest",
    "crate",
    "super",
    "self",
];

/// What `crate::` may be followed by.
const ALLOWED_IN_CRATE: &[&str] = &["proto"];

/// Parts of the standard library that do IO or wait.
const FORBIDDEN_STD: &[&str] = &["fs", "net", "io", "thread", "process", "time", "env"];

/// Names of the node's other modules and of the drivers' crates.
const FORBIDDEN_ANYWHERE: &[&str] = &[
    "state",
    "node",
    "live",
    "net",
    "scopes",
    "identity",
    "cache",
    "ticket",
    "iroh",
    "iroh_gossip",
    "tokio",
    "n0_future",
];

/// The paths (`a::b::…`) that start in `line`, as their segments.
fn paths(line: &str) -> Vec<Vec<String>> {
    let code = line.split("//").next().unwrap_or("");
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if ident(bytes[i]) && (i == 0 || !(ident(bytes[i - 1]) || bytes[i - 1] == b':')) {
            let mut segments = Vec::new();
            let mut j = i;
            loop {
                let start = j;
                while j < bytes.len() && ident(bytes[j]) {
                    j += 1;
                }
                segments.push(code[start..j].to_string());
                if code[j..].starts_with("::") && j + 2 < bytes.len() && ident(bytes[j + 2]) {
                    j += 2;
                } else {
                    if code[j..].starts_with("::{") || code[j..].starts_with("::*") {
                        // A group or glob import: its root is what counts.
                        segments.push(code[j + 2..j + 3].to_string());
                    }
                    break;
                }
            }
            if segments.len() > 1 {
                out.push(segments);
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// Every layer violation in the source `text` of `file`.
fn violations(file: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut in_string = false;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        // Lines inside a string literal spanning lines are not code.
        if line.matches('"').count() % 2 == 1 {
            in_string = !in_string;
            continue;
        }
        if in_string {
            continue;
        }
        // The crate a `use` line imports from is its first path's root.
        let imported = if trimmed.starts_with("use ") || trimmed.starts_with("pub use ") {
            paths(line).first().map(|p| p[0].clone())
        } else {
            None
        };
        if let Some(root) = imported.filter(|r| !ALLOWED_ROOTS.contains(&r.as_str())) {
            found.push(format!(
                "{file}:{}: imports from `{root}`: {}",
                n + 1,
                line.trim()
            ));
        }
        for segments in paths(line) {
            let root = segments[0].as_str();
            let bad = if FORBIDDEN_ANYWHERE.contains(&root) {
                Some(format!("names `{root}`"))
            } else if root == "crate" && !ALLOWED_IN_CRATE.contains(&segments[1].as_str()) {
                Some(format!("reaches into `crate::{}`", segments[1]))
            } else if root == "std" && FORBIDDEN_STD.contains(&segments[1].as_str()) {
                Some(format!("does IO or waits through `std::{}`", segments[1]))
            } else {
                None
            };
            if let Some(why) = bad {
                found.push(format!("{file}:{}: {why}: {}", n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn proto_names_nothing_outside_its_layer() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/proto");
    let mut files = 0;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("sync/src/proto") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("a source file");
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
            found.extend(violations(name, &text));
            files += 1;
        }
    }
    assert!(files >= 5, "found only {files} files in {}", dir.display());
    assert!(
        found.is_empty(),
        "proto leaves its layer:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_guard_catches_each_kind_of_violation() {
    for bad in [
        "use crate::state::Shared;",
        "    let v = crate::scopes::roster_version(s, r);",
        "use iroh::endpoint::Connection;",
        "    tokio::spawn(async {});",
        "use std::fs::File;",
        "    let t = std::time::Instant::now();",
        "use rand::Rng;",
        "use iroh::{Endpoint, endpoint::Connection};",
        "use crate::{Error, Result};",
        "use crate::error::{Error, Result};",
    ] {
        assert!(
            !violations("x.rs", bad).is_empty(),
            "the guard lets `{bad}` through"
        );
    }
    for good in [
        "use super::error::{Error, Result};",
        "use super::wire::Message;",
        "use kith_store::automerge::ChangeHash;",
        "    let m: std::collections::HashMap<u8, u8> = Default::default();",
        "    tracing::debug!(\"fine\");",
        "    // crate::state in a comment is fine",
    ] {
        assert!(
            violations("x.rs", good).is_empty(),
            "the guard refuses `{good}`: {:?}",
            violations("x.rs", good)
        );
    }
}
