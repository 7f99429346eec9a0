//! `kith feed timeline` in pages: the newest page, the command that shows
//! the next one, `--before`, `--all`, `--json`, bad cursors and limits, and
//! `kith feed comment ID` finding the post without reading the timeline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{json, kith, ok};

/// The post texts of a human-readable timeline, in order.
fn texts(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix("    "))
        .map(str::to_string)
        .collect()
}

/// The `--before` cursor of the hint that ends a page, if any.
fn next_cursor(out: &str) -> Option<String> {
    let hint = out.lines().find(|l| l.starts_with("older posts: "))?;
    assert!(
        hint.starts_with("older posts: kith feed timeline --limit 2 --before "),
        "{hint}"
    );
    Some(hint.rsplit(' ').next().unwrap().to_string())
}

#[test]
fn the_timeline_is_shown_a_page_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("alice");
    ok(&data, &["init", "--name", "alice"]);
    for i in 0..5 {
        ok(
            &data,
            &["feed", "post", &format!("post {i}"), "--audience", "me"],
        );
    }
    // Page by page, with the hint's command.
    let mut seen = Vec::new();
    let first = ok(&data, &["feed", "timeline", "--limit", "2"]);
    seen.extend(texts(&first));
    let mut cursor = next_cursor(&first);
    while let Some(c) = cursor {
        let page = ok(&data, &["feed", "timeline", "--limit", "2", "--before", &c]);
        seen.extend(texts(&page));
        cursor = next_cursor(&page);
    }
    assert_eq!(seen, ["post 4", "post 3", "post 2", "post 1", "post 0"]);
    // --all reads every page; without --limit a page is 50.
    let all = ok(&data, &["feed", "timeline", "--all", "--limit", "2"]);
    assert_eq!(texts(&all), seen);
    assert!(!all.contains("older posts"), "{all}");
    assert_eq!(texts(&ok(&data, &["feed", "timeline"])), seen);
    // --json: the page with its cursor.
    let page = json(&data, &["feed", "timeline", "--limit", "2"]);
    assert_eq!(page["posts"].as_array().unwrap().len(), 2);
    assert!(page["next"].is_string());
    // Bad input is refused with the reason.
    for args in [
        &["feed", "timeline", "--before", "nonsense"][..],
        &["feed", "timeline", "--limit", "0"],
        &["feed", "timeline", "--limit", "501"],
    ] {
        let out = kith(&data, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            err.contains("cursor") || err.contains("limit"),
            "{args:?}: {err}"
        );
    }
    // A comment on a post by its id alone.
    let id = page["posts"][1]["id"].as_str().unwrap().to_string();
    ok(&data, &["feed", "comment", &id, "nice one"]);
    let page = json(&data, &["feed", "timeline", "--limit", "2"]);
    assert_eq!(page["posts"][1]["comments"][0]["text"], "nice one");
    let out = kith(&data, &["feed", "comment", "ffffffffffffffff", "?"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no post"));
}

#[test]
fn the_cache_of_friends_data_is_shown_set_and_purged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("alice");
    ok(&data, &["init", "--name", "alice"]);
    ok(&data, &["feed", "post", "mine", "--audience", "me"]);
    let shown = ok(&data, &["cache"]);
    assert!(
        shown.contains("friends' data kept here: 0 documents") && shown.contains("4.3 GB budget"),
        "{shown}"
    );
    let set = json(&data, &["cache", "budget", "500MB"]);
    assert_eq!(set["budget"], 500_000_000);
    let set = json(&data, &["cache", "age", "30d"]);
    assert_eq!(
        (set["budget"].as_u64(), set["max_age"].as_u64()),
        (Some(500_000_000), Some(2_592_000))
    );
    // Kept: the next command (a new process) shows them.
    let shown = ok(&data, &["cache", "show"]);
    assert!(
        shown.contains("of a 500.0 MB budget; purged after 30 d"),
        "{shown}"
    );
    let off = json(&data, &["cache", "age", "off"]);
    assert_eq!(off["max_age"], serde_json::Value::Null);
    let purged = ok(&data, &["cache", "purge"]);
    assert!(
        purged.starts_with("purged: 0 documents and 0 blobs of friends purged"),
        "{purged}"
    );
    // Own posts are never purged.
    assert_eq!(common::timeline_texts(&data), ["mine"]);
    // Bad sizes and ages say what is expected, and change nothing.
    for args in [&["cache", "budget", "lots"][..], &["cache", "age", "soon"]] {
        let out = kith(&data, args);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("is not a size like 500MB") || err.contains("is not a duration like 30d"),
            "{err}"
        );
    }
    assert_eq!(json(&data, &["cache"])["budget"], 500_000_000);
}
