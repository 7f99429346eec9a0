#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The CLI journey: the real `kith` binary, as separate processes. Three
//! people each run `kith serve --local-only`; tickets are exchanged and
//! grants given with the CLI; posts, a revocation and a remote deletion
//! travel between the three daemons.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{Daemon, POLL, WAIT, free_port, json, kith, ok, timeline_texts};
use serde_json::Value;

/// Checks `f` every [`POLL`] until it holds, for at most [`WAIT`].
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(POLL);
    }
}

/// `kith sync FRIEND`, then whether the timeline holds `text`.
fn sees_after_sync(data: &Path, friend: &str, text: &str) -> bool {
    ok(data, &["sync", friend]);
    timeline_texts(data).iter().any(|t| t == text)
}

#[test]
fn friends_share_posts_revoke_close_friends_and_confirm_a_remote_deletion() {
    let root = tempfile::tempdir().unwrap();
    let [alice, bob, carol]: [PathBuf; 3] = ["alice", "bob", "carol"].map(|n| root.path().join(n));
    for (data, name) in [(&alice, "alice"), (&bob, "bob"), (&carol, "carol")] {
        let init = kith(data, &["init", "--name", name]);
        assert!(init.status.success());
        let ns = String::from_utf8(init.stdout).unwrap();
        assert_eq!(ns.trim().len(), 52, "init prints the namespace id: {ns}");
        // And says what it is and what to do next.
        let said = String::from_utf8_lossy(&init.stderr);
        assert!(said.contains("namespace id"), "{said}");
        assert!(
            said.contains("kith serve") && said.contains("kith ticket"),
            "{said}"
        );
    }
    let daemons: Vec<Daemon> = [&alice, &bob, &carol]
        .iter()
        .map(|d| Daemon::start(d, 3600, true))
        .collect();

    // Tickets exchanged: everyone befriends everyone.
    let ticket = |d: &Path| ok(d, &["ticket"]).trim().to_string();
    let (ta, tb, tc) = (ticket(&alice), ticket(&bob), ticket(&carol));
    ok(&alice, &["friend", "add", &tb, "--name", "bob"]);
    ok(&alice, &["friend", "add", &tc, "--name", "carol"]);
    ok(&bob, &["friend", "add", &ta, "--name", "alice"]);
    ok(&bob, &["friend", "add", &tc, "--name", "carol"]);
    ok(&carol, &["friend", "add", &ta, "--name", "alice"]);
    ok(&carol, &["friend", "add", &tb, "--name", "bob"]);
    let friends = json(&alice, &["friend", "ls"]);
    let names: Vec<&str> = friends
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"bob") && names.contains(&"carol"));

    // A close post before anyone is a close friend reaches no one: the CLI
    // says so; a post to the friends audience (granted) gets no warning.
    let lonely = kith(
        &alice,
        &["feed", "post", "nobody hears this", "--audience", "close"],
    );
    assert!(lonely.status.success());
    let said = String::from_utf8_lossy(&lonely.stderr);
    assert!(
        said.contains("reaches no one") && said.contains("kith grant FRIEND /feed/close"),
        "{said}"
    );
    let heard = kith(&alice, &["feed", "post", "friends hear this"]);
    assert!(!String::from_utf8_lossy(&heard.stderr).contains("reaches no one"));

    // Both are alice's close friends.
    ok(&alice, &["grant", "bob", "/feed/close"]);
    ok(
        &alice,
        &["grant", "carol", "/feed/close", "--expires", "30d"],
    );
    let grants = json(&alice, &["grants"]);
    let close: Vec<&Value> = grants
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["prefix"] == "/feed/close")
        .collect();
    assert_eq!(close.len(), 2, "{grants}");

    // A post by alice reaches bob and carol.
    let post = json(&alice, &["feed", "post", "hello from alice"]);
    let path = post["path"].as_str().unwrap().to_string();
    assert!(path.starts_with("/feed/friends/"), "{post}");
    for friend in [&bob, &carol] {
        eventually("the post reaches a friend", || {
            sees_after_sync(friend, "alice", "hello from alice")
        });
    }
    let shown = ok(&bob, &["get", "alice", &path]);
    assert!(shown.contains("hello from alice"), "{shown}");

    // Bob comments (in his own namespace); alice sees it under her post.
    let id = post["id"].as_str().unwrap();
    ok(&bob, &["feed", "comment", id, "welcome!"]);
    eventually("bob's comment shows under alice's post", || {
        ok(&alice, &["sync", "bob"]);
        json(&alice, &["feed", "timeline"])["posts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == id && p["comments"][0]["text"] == "welcome!")
    });

    // Carol is no longer a close friend: the next close post reaches bob only.
    let revoked = json(&alice, &["revoke", "carol", "/feed/close"]);
    assert_eq!(revoked["revoked"].as_array().unwrap().len(), 1);
    let close_post = json(
        &alice,
        &["feed", "post", "close friends only", "--audience", "close"],
    );
    eventually("the close post reaches bob", || {
        sees_after_sync(&bob, "alice", "close friends only")
    });
    // Carol's sync completes and still does not bring it.
    ok(&carol, &["sync", "alice"]);
    assert!(
        !timeline_texts(&carol).contains(&"close friends only".to_string()),
        "a revoked friend received a later post"
    );
    let refused = kith(
        &carol,
        &["get", "alice", close_post["path"].as_str().unwrap()],
    );
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("hint:"), "{stderr}");

    // Alice deletes her first post from her friends' nodes too.
    let rm = json(&alice, &["rm", &path, "--remote"]);
    let deletion = rm["deletion"].as_str().unwrap().to_string();
    for friend in [&bob, &carol] {
        eventually("the post is gone from a friend's node", || {
            ok(friend, &["sync", "alice"]);
            kith(friend, &["get", "alice", &path]).status.code() == Some(1)
        });
        assert!(!timeline_texts(friend).contains(&"hello from alice".to_string()));
    }
    eventually("both friends confirmed the deletion", || {
        let r = json(&alice, &["receipts", &path]);
        r.as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == deletion.as_str() && d["confirmed"] == 2 && d["total"] == 2)
    });
    let receipts = ok(&alice, &["receipts", &path]);
    assert!(receipts.contains("confirmed by 2/2"), "{receipts}");
    assert!(
        receipts.contains("bob") && receipts.contains("carol"),
        "{receipts}"
    );

    // Common failures: exit code 1, one line and a hint; usage errors 2.
    let unknown = kith(&alice, &["grant", "dave", "/feed/close"]);
    assert_eq!(unknown.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.starts_with("kith: ") && stderr.contains("hint:"),
        "{stderr}"
    );
    assert_eq!(kith(&alice, &["frobnicate"]).status.code(), Some(2));

    // Without the daemon: local commands open the store, network ones say
    // the daemon must run; a killed daemon's stale announcement is ignored.
    let mut daemons = daemons.into_iter();
    daemons.next().unwrap().stop();
    assert!(!alice.join("daemon.json").exists());
    let texts = timeline_texts(&alice);
    assert!(
        texts.contains(&"close friends only".to_string()),
        "{texts:?}"
    );
    let offline = kith(&alice, &["sync", "bob"]);
    assert_eq!(offline.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&offline.stderr);
    assert!(
        stderr.contains("needs the daemon") && stderr.contains("kith serve"),
        "{stderr}"
    );
    drop(daemons.next()); // bob: killed, leaving daemon.json behind
    assert!(bob.join("daemon.json").exists());
    let id = json(&bob, &["id"]);
    assert_eq!(id["name"], "bob");
    assert!(!bob.join("daemon.json").exists());
}

#[test]
fn documents_and_blobs_round_trip_through_put_get_and_ls() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("me");
    let fresh = kith(&data, &["id"]);
    assert_eq!(fresh.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&fresh.stderr).contains("kith init"));
    ok(&data, &["init"]);
    ok(&data, &["put", "/notes/a", "some text"]);
    ok(&data, &["put", "/notes/b", "--json", r#"{"n": 1}"#]);
    let file = root.path().join("photo.png");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    std::fs::write(&file, &bytes).unwrap();
    ok(
        &data,
        &["put", "/photos/p.png", "--file", file.to_str().unwrap()],
    );
    assert_eq!(json(&data, &["get", "/notes/a"])["text"], "some text");
    assert_eq!(json(&data, &["get", "me", "/notes/b"])["n"], 1);
    let out = root.path().join("copy.png");
    ok(
        &data,
        &["get", "/photos/p.png", "--out", out.to_str().unwrap()],
    );
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    let listed = json(&data, &["ls", "/notes"]);
    let paths: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/notes/a", "/notes/b"]);
    let photo = &json(&data, &["ls", "me", "/photos"])[0];
    assert_eq!(photo["media_type"], "image/png");
    assert_eq!(photo["size"], 300_000);
    ok(&data, &["rm", "/notes"]);
    assert_eq!(kith(&data, &["get", "/notes/a"]).status.code(), Some(1));
    assert_eq!(kith(&data, &["put", "/x"]).status.code(), Some(2));
}

#[test]
fn the_profile_is_shown_and_changed_with_a_picture() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("me");
    ok(&data, &["init", "--name", "dana"]);
    let shown = ok(&data, &["profile"]);
    assert!(
        shown.contains("dana") && shown.contains("picture none"),
        "{shown}"
    );
    let picture = root.path().join("me.svg");
    std::fs::write(
        &picture,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>"#,
    )
    .unwrap();
    let p = json(
        &data,
        &[
            "profile",
            "--bio",
            "Climbs things",
            "--avatar",
            picture.to_str().unwrap(),
        ],
    );
    assert_eq!(p["name"], "dana");
    assert_eq!(p["bio"], "Climbs things");
    assert_eq!(p["avatar"]["media_type"], "image/svg+xml");
    let url = p["avatar"]["url"].as_str().unwrap();
    assert!(url.contains("/profile/avatar?v="), "{url}");
    let stored = root.path().join("copy.svg");
    ok(
        &data,
        &["get", "/profile/avatar", "--out", stored.to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        std::fs::read(&picture).unwrap()
    );

    // Not an image, or no such file: exit 1 with the reason; nothing changes.
    let text = root.path().join("notes.txt");
    std::fs::write(&text, "hello").unwrap();
    let refused = kith(&data, &["profile", "--avatar", text.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("image"));
    let missing = kith(&data, &["profile", "--name", "x", "--avatar", "nope.png"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
    assert_eq!(json(&data, &["profile"])["name"], "dana");
    assert_eq!(json(&data, &["profile"])["avatar"], p["avatar"]);
}

#[test]
fn a_second_device_joins_with_an_invite() {
    let root = tempfile::tempdir().unwrap();
    let (phone, laptop) = (root.path().join("phone"), root.path().join("laptop"));
    ok(&phone, &["init", "--name", "dana"]);
    ok(&phone, &["put", "/notes/n", "written on the phone"]);
    let daemon = Daemon::start(&phone, 3600, true);
    let device = json(&laptop, &["device", "join"])["device"]
        .as_str()
        .unwrap()
        .to_string();
    let invite = ok(&phone, &["device", "invite", &device])
        .trim()
        .to_string();
    assert!(invite.starts_with("kithdev1"), "{invite}");
    ok(&laptop, &["device", "join", &invite, "--local-only"]);
    let id = json(&laptop, &["id"]);
    assert_eq!(id["namespace"], json(&phone, &["id"])["namespace"]);
    assert_eq!(id["device"], device.as_str());
    assert_eq!(
        json(&laptop, &["get", "/notes/n"])["text"],
        "written on the phone"
    );
    daemon.stop();
}

/// A daemon whose node listens on `port`, so that after a restart it is
/// where its friend's ticket says; hourly re-syncs, so only the outbox and
/// pokes can deliver in time.
fn serve_on(data: &Path, port: u16) -> Daemon {
    Daemon::start_on(data, &format!("127.0.0.1:{port}"), 3600, true)
}

/// A deletion owed to an offline friend is kept in the store: the owner's
/// daemon is killed with SIGKILL right after `rm --remote`, restarted, and
/// still delivers it when the friend comes back, who deletes and confirms.
#[test]
fn a_deletion_owed_to_an_offline_friend_survives_kill_9() {
    let root = tempfile::tempdir().unwrap();
    let [alice, bob]: [PathBuf; 2] = ["alice", "bob"].map(|n| root.path().join(n));
    for (data, name) in [(&alice, "alice"), (&bob, "bob")] {
        ok(data, &["init", "--name", name]);
    }
    let (pa, pb) = (free_port(), free_port());
    let a = serve_on(&alice, pa);
    let b = serve_on(&bob, pb);
    let ticket = |d: &Path| ok(d, &["ticket"]).trim().to_string();
    let (ta, tb) = (ticket(&alice), ticket(&bob));
    ok(&alice, &["friend", "add", &tb, "--name", "bob"]);
    ok(&bob, &["friend", "add", &ta, "--name", "alice"]);
    let post = json(&alice, &["feed", "post", "delete me later"]);
    let path = post["path"].as_str().unwrap().to_string();
    eventually("the post reaches bob", || {
        sees_after_sync(&bob, "alice", "delete me later")
    });

    // Bob goes offline; alice deletes remotely and is killed at once.
    drop(b);
    let rm = json(&alice, &["rm", &path, "--remote"]);
    let deletion = rm["deletion"].as_str().unwrap().to_string();
    drop(a);
    let _a = serve_on(&alice, pa);
    let _b = serve_on(&bob, pb);
    eventually("bob deleted the post and alice holds his receipt", || {
        json(&alice, &["receipts", &path])
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == deletion.as_str() && d["confirmed"] == 1 && d["total"] == 1)
    });
    assert_eq!(kith(&bob, &["get", "alice", &path]).status.code(), Some(1));
    assert!(!timeline_texts(&bob).contains(&"delete me later".to_string()));
}

/// SIGTERM (Ctrl-C, a service manager's stop) stops `kith serve` cleanly:
/// exit code 0 (checked by `Daemon::stop`), its announcement removed, and
/// a post made just before is there after a restart.
#[test]
fn sigterm_stops_the_daemon_cleanly_and_keeps_a_post_made_just_before() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("dana");
    ok(&data, &["init", "--name", "dana"]);
    let daemon = Daemon::start(&data, 3600, true);
    json(&data, &["feed", "post", "written just before the stop"]);
    daemon.stop();
    assert!(!data.join("daemon.json").exists());
    let _again = Daemon::start(&data, 3600, true);
    assert!(
        timeline_texts(&data).contains(&"written just before the stop".to_string()),
        "{:?}",
        timeline_texts(&data)
    );
}
