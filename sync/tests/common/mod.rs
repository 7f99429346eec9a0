//! Shared helpers for the node's integration tests: nodes on loopback.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kith::store::automerge::ROOT;
use kith::store::automerge::transaction::Transactable;
use kith::{NetworkMode, Node, Path};

/// How long any awaited condition may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn p(s: &str) -> Path {
    Path::parse(s).unwrap()
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A node on loopback that only catches up (no live push), for tests of
/// catch-up itself.
pub async fn spawn(dir: &std::path::Path) -> Node {
    init_tracing();
    Node::builder(dir)
        .network(NetworkMode::LocalOnly)
        .live_push(false)
        .spawn()
        .await
        .unwrap()
}

/// Makes `a` and `b` friends of each other.
pub async fn befriend(a: &Node, b: &Node) {
    a.add_friend(&b.ticket()).await.unwrap();
    b.add_friend(&a.ticket()).await.unwrap();
}

/// Writes `n` small documents under `prefix` of the node's own namespace.
pub async fn write_docs(node: &Node, prefix: &str, n: usize) {
    write_docs_version(node, prefix, n, 0).await;
}

/// Writes `n` small documents under `prefix`; a new `version` changes every
/// document's content.
pub async fn write_docs_version(node: &Node, prefix: &str, n: usize, version: u32) {
    let store = node.store().clone();
    let ns = node.namespace();
    let prefix = p(prefix);
    tokio::task::spawn_blocking(move || {
        for i in 0..n {
            let path = prefix.join(&format!("{i:05}")).unwrap();
            store
                .edit_document(&ns, &path, |d| {
                    d.put(ROOT, "text", format!("post {i} v{version}"))
                })
                .unwrap()
                .0
                .unwrap();
        }
    })
    .await
    .unwrap();
}

/// Paths and entries of `ns` under `prefix` in `node`'s store.
pub fn list(node: &Node, ns: &kith::NamespaceId, prefix: &str) -> Vec<(Path, kith::store::Entry)> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = node
            .store()
            .list(ns, &p(prefix), after.as_ref(), 1000)
            .unwrap();
        out.extend(page.entries);
        match page.next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}
