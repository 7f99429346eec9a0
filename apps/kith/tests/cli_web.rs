//! `kith web`: origins are validated strictly, a revoke is never one typo
//! away (an unknown origin is refused, naming the allowed ones), and `kith
//! web export` writes the page without overwriting anything else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{json, kith, ok};

fn fails(data: &std::path::Path, args: &[&str]) -> String {
    let out = kith(data, args);
    assert!(!out.status.success(), "kith {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn origins_are_allowed_listed_and_revoked_by_exact_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("alice");
    ok(&data, &["init", "--name", "alice"]);

    let err = fails(&data, &["web", "allow", "https://app.example.org/"]);
    assert!(err.contains("trailing /"), "{err}");
    let err = fails(&data, &["web", "allow", "app.example.org"]);
    assert!(err.contains("scheme://host[:port]"), "{err}");
    let err = fails(&data, &["web", "revoke", "https://app.example.org"]);
    assert!(err.contains("no origin is"), "{err}");

    // Another case and the default port are written as browsers send them.
    let token = ok(&data, &["web", "allow", "HTTPS://App.Example.org:443"]);
    assert_eq!(token.trim().len(), 43, "{token}");
    let listed = json(&data, &["web", "ls"]);
    assert_eq!(listed["origins"][0]["origin"], "https://app.example.org");
    assert!(
        !listed.to_string().contains(token.trim()),
        "ls shows the token"
    );

    // A typo revokes nothing and says what is allowed.
    let err = fails(&data, &["web", "revoke", "https://app.example.com"]);
    assert!(err.contains("allowed: https://app.example.org"), "{err}");
    assert_eq!(
        json(&data, &["web", "ls"])["origins"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let printed = ok(&data, &["web", "revoke", "https://app.example.org"]);
    assert!(
        printed.contains("revoked https://app.example.org"),
        "{printed}"
    );
    assert_eq!(
        json(&data, &["web", "ls"])["origins"],
        serde_json::json!([])
    );

    let help = ok(&data, &["--help"]);
    assert!(
        help.contains("web") && help.contains("other sites"),
        "{help}"
    );
}

#[test]
fn export_writes_the_page_into_a_new_folder_and_never_over_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("alice");
    let site = dir.path().join("site");
    let printed = ok(&data, &["web", "export", site.to_str().unwrap()]);
    assert!(printed.contains("files of the page"), "{printed}");
    let index = std::fs::read_to_string(site.join("index.html")).unwrap();
    assert!(index.contains(r#"<meta name="kith-api" content="paired">"#));
    for file in [
        "app.js",
        "client.js",
        "sw.js",
        "manifest.webmanifest",
        "icons/icon-512.png",
    ] {
        assert!(site.join(file).is_file(), "{file} was not written");
    }
    let own = dir.path().join("own");
    std::fs::create_dir_all(&own).unwrap();
    std::fs::write(own.join("index.html"), "my own site").unwrap();
    let err = fails(&data, &["web", "export", own.to_str().unwrap()]);
    assert!(err.contains("not the page's"), "{err}");
    assert_eq!(
        std::fs::read_to_string(own.join("index.html")).unwrap(),
        "my own site"
    );
}
