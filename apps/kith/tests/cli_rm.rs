//! `kith rm` never deletes the whole namespace by a typo: `/` in any
//! spelling is refused with a hint, and `kith rm / --all` deletes it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{kith, ok};

#[test]
fn rm_of_the_root_needs_all() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("alice");
    ok(&data, &["init", "--name", "alice"]);
    ok(&data, &["put", "/notes/a", "keep me"]);
    for spelling in ["/", "//", "///", ""] {
        let out = kith(&data, &["rm", spelling]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "kith rm {spelling:?} succeeded");
        assert!(
            err.contains("whole namespace") && err.contains("kith rm / --all"),
            "kith rm {spelling:?}: {err}"
        );
    }
    let out = kith(&data, &["rm", "/notes", "--all"]);
    assert!(!out.status.success(), "--all with another path succeeded");
    assert!(ok(&data, &["ls", "/"]).contains("/notes/a"));

    ok(&data, &["rm", "/", "--all"]);
    assert!(!ok(&data, &["ls", "/"]).contains("/notes/a"));
}
