//! Shared helpers for the store's integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use kith_store::{DeviceId, NamespaceId, Options, Path, Store};

pub fn device(n: u8) -> DeviceId {
    DeviceId::from_bytes([n; 32])
}

pub fn ns(n: u8) -> NamespaceId {
    NamespaceId::from_bytes([n; 32])
}

pub fn p(s: &str) -> Path {
    Path::parse(s).unwrap()
}

pub fn open(dir: &std::path::Path, dev: u8) -> Store {
    Store::open(dir, Options::new(device(dev))).unwrap()
}

/// Every file under `dir`, recursively.
pub fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}
