//! The feed web page, built into the binary.
//!
//! The page is plain HTML, CSS and JavaScript modules from `apps/kith/web/`,
//! embedded at compile time so `kith serve` needs no files beside it and the
//! page works offline (no fonts or scripts from elsewhere). It talks to the
//! daemon only through the HTTP API described in `API.md`.
//!
//! These files are public: they carry no data and no token, so the router
//! serves them without the access token. Everything the page shows comes
//! from `/api/…` routes, which do need it.
//!
//! The page is installable (`manifest.webmanifest`, icons drawn by
//! `web/icons/make-icons.mjs`) and its service worker (`sw.js`) keeps the
//! page's files, never API answers. [`export`] writes the same files into a
//! folder for any web server, marked to pair with a node
//! ([`crate::origins`]) instead of calling its own origin.

use crate::error::{Error, Result};

/// One embedded file: the URL path it answers, its content type, its bytes.
struct StaticFile {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// Every file of the page. `/` is the page itself. No name starts with
/// `/api`: the router keeps that prefix for the API.
const FILES: &[StaticFile] = &[
    StaticFile {
        path: "/",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../web/index.html"),
    },
    StaticFile {
        path: "/index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../web/index.html"),
    },
    StaticFile {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../web/app.js"),
    },
    StaticFile {
        path: "/client.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../web/client.js"),
    },
    StaticFile {
        path: "/dom.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../web/dom.js"),
    },
    StaticFile {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../web/style.css"),
    },
    StaticFile {
        path: "/favicon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../web/favicon.svg"),
    },
    StaticFile {
        path: "/manifest.webmanifest",
        content_type: "application/manifest+json",
        bytes: include_bytes!("../web/manifest.webmanifest"),
    },
    StaticFile {
        path: "/sw.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../web/sw.js"),
    },
    StaticFile {
        path: "/icons/icon-192.png",
        content_type: "image/png",
        bytes: include_bytes!("../web/icons/icon-192.png"),
    },
    StaticFile {
        path: "/icons/icon-512.png",
        content_type: "image/png",
        bytes: include_bytes!("../web/icons/icon-512.png"),
    },
    StaticFile {
        path: "/icons/maskable-512.png",
        content_type: "image/png",
        bytes: include_bytes!("../web/icons/maskable-512.png"),
    },
];

/// The marker in `index.html` of the page the node serves itself.
const SAME_ORIGIN_MARKER: &str = r#"<meta name="kith-api" content="same-origin">"#;
/// The same marker in exported files: the page pairs with a node.
const PAIRED_MARKER: &str = r#"<meta name="kith-api" content="paired">"#;

/// The files of the page to host on another origin: relative path and bytes
/// (`index.html` marked to pair with a node).
pub fn exported_files() -> Vec<(&'static str, Vec<u8>)> {
    FILES
        .iter()
        .filter(|f| f.path != "/")
        .map(|f| {
            let name = f.path.trim_start_matches('/');
            let bytes = if name == "index.html" {
                String::from_utf8_lossy(f.bytes)
                    .replace(SAME_ORIGIN_MARKER, PAIRED_MARKER)
                    .into_bytes()
            } else {
                f.bytes.to_vec()
            };
            (name, bytes)
        })
        .collect()
}

/// The file an export leaves in its folder, so that exporting again knows
/// the files there are its own.
const EXPORT_MARK: &str = ".kith-export";

/// Writes the page's files into `dir` for any static web server
/// (`kith web export DIR`), and returns their relative paths.
///
/// `dir` is created if missing; an existing one must be empty or hold an
/// earlier export (its mark and the page's files, which are replaced), so
/// nothing else is ever overwritten.
///
/// # Errors
/// [`Error::Conflict`] when `dir` holds anything else, [`Error::Io`] when a
/// file cannot be written.
pub fn export(dir: &std::path::Path) -> Result<Vec<String>> {
    let files = exported_files();
    let ours =
        |rel: &str| files.iter().any(|(n, _)| *n == rel) || rel == "icons" || rel == EXPORT_MARK;
    let exported_before = dir.join(EXPORT_MARK).is_file();
    if dir.exists() {
        let mut strangers = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name == "icons" {
                for icon in std::fs::read_dir(entry.path())? {
                    let icon = format!("icons/{}", icon?.file_name().to_string_lossy());
                    if !ours(&icon) {
                        strangers.push(icon);
                    }
                }
            } else if !ours(&name) || !exported_before {
                strangers.push(name);
            }
        }
        if !strangers.is_empty() {
            strangers.sort();
            return Err(Error::Conflict(format!(
                "{} holds files that are not the page's ({}): export into an empty or new folder",
                dir.display(),
                strangers.join(", ")
            )));
        }
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join(EXPORT_MARK),
        "The feed page's files, written by `kith web export`: exporting again replaces them.\n",
    )?;
    let mut written = Vec::new();
    for (name, bytes) in &files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes)?;
        written.push((*name).to_string());
    }
    Ok(written)
}

/// The page's file at URL `path` (without query string), as its content type
/// and bytes, or `None` when the page has no such file.
///
/// `path` is matched exactly, so nothing outside the embedded set can be
/// reached (there is no file system behind it).
pub(crate) fn static_file(path: &str) -> Option<(&'static str, &'static [u8])> {
    FILES
        .iter()
        .find(|file| file.path == path)
        .map(|file| (file.content_type, file.bytes))
}

#[cfg(test)]
mod tests {
    use super::static_file;

    #[test]
    fn the_page_and_its_modules_are_served() {
        for path in [
            "/",
            "/app.js",
            "/client.js",
            "/dom.js",
            "/style.css",
            "/favicon.svg",
            "/manifest.webmanifest",
            "/sw.js",
            "/icons/icon-192.png",
            "/icons/icon-512.png",
            "/icons/maskable-512.png",
        ] {
            let found = static_file(path);
            assert!(found.is_some(), "{path} is missing");
            if let Some((content_type, bytes)) = found {
                assert!(!bytes.is_empty(), "{path} is empty");
                assert!(!content_type.is_empty());
            }
        }
        assert!(matches!(static_file("/"), Some((t, _)) if t.starts_with("text/html")));
        assert!(matches!(static_file("/app.js"), Some((t, _)) if t.starts_with("text/javascript")));
    }

    #[test]
    fn the_manifest_names_icons_that_are_served() {
        let Some((_, manifest)) = static_file("/manifest.webmanifest") else {
            panic!("no manifest");
        };
        let manifest: serde_json::Value = serde_json::from_slice(manifest).unwrap();
        assert_eq!(manifest["display"], "standalone");
        let icons = manifest["icons"].as_array().unwrap();
        for size in ["192x192", "512x512"] {
            assert!(
                icons
                    .iter()
                    .any(|i| i["sizes"] == size && i["type"] == "image/png")
            );
        }
        assert!(icons.iter().any(|i| i["purpose"] == "maskable"));
        for icon in icons {
            let src = format!("/{}", icon["src"].as_str().unwrap());
            assert!(static_file(&src).is_some(), "{src} is not served");
            if let Some(size) = icon["sizes"].as_str().and_then(|s| s.split_once('x')) {
                let (_, png) = static_file(&src).unwrap();
                // A PNG's width and height are the IHDR's first two words.
                let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
                assert_eq!(width.to_string(), size.0, "{src}");
            }
        }
    }

    #[test]
    fn the_service_worker_keeps_every_file_of_the_page_and_nothing_else() {
        let Some((_, sw)) = static_file("/sw.js") else {
            panic!("no sw.js");
        };
        let sw = String::from_utf8_lossy(sw);
        for file in super::FILES.iter().filter(|f| f.path != "/sw.js") {
            let entry = format!("'.{}'", if file.path == "/" { "/" } else { file.path });
            assert!(sw.contains(&entry), "sw.js does not keep {}", file.path);
        }
        assert!(!sw.contains("'./api"), "sw.js keeps an API route");
    }

    #[test]
    fn exported_pages_pair_and_the_served_one_does_not() {
        let Some((_, index)) = static_file("/index.html") else {
            panic!("no index.html");
        };
        assert!(String::from_utf8_lossy(index).contains(super::SAME_ORIGIN_MARKER));
        let files = super::exported_files();
        let (_, exported) = files.iter().find(|(n, _)| *n == "index.html").unwrap();
        let exported = String::from_utf8_lossy(exported);
        assert!(exported.contains(super::PAIRED_MARKER));
        assert!(!exported.contains(super::SAME_ORIGIN_MARKER));
    }

    #[test]
    fn export_writes_the_page_and_overwrites_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site");
        let written = super::export(&site).unwrap();
        assert!(written.contains(&"icons/icon-512.png".to_string()));
        assert!(site.join("index.html").is_file() && site.join("sw.js").is_file());
        // Again into the same folder: replaced.
        super::export(&site).unwrap();
        // A folder of someone else's files with the same names: untouched.
        let other = dir.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("index.html"), "mine").unwrap();
        assert!(super::export(&other).is_err());
        assert_eq!(
            std::fs::read_to_string(other.join("index.html")).unwrap(),
            "mine"
        );
        std::fs::write(site.join("notes.txt"), "mine").unwrap();
        let err = super::export(&site).unwrap_err();
        assert!(err.to_string().contains("notes.txt"), "{err}");
        assert_eq!(
            std::fs::read_to_string(site.join("notes.txt")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn no_file_is_shadowed_by_the_api_prefix() {
        // The router sends everything under `/api` to the API, so a page
        // file named `/api…` would answer 401 and break the page.
        for file in super::FILES {
            assert!(
                !file.path.starts_with("/api"),
                "{} is under /api",
                file.path
            );
        }
    }

    #[test]
    fn unknown_paths_and_traversal_find_nothing() {
        for path in ["/nope", "/../Cargo.toml", "/web/app.js", "app.js", ""] {
            assert!(static_file(path).is_none(), "{path} was served");
        }
    }

    #[test]
    fn every_module_the_page_imports_is_embedded() {
        // A module imported by the page but missing here would fail only in
        // the browser; catch it at `cargo test`.
        let Some((_, app)) = static_file("/app.js") else {
            panic!("no app.js");
        };
        let app = String::from_utf8_lossy(app);
        for line in app.lines().filter(|l| l.starts_with("import ")) {
            if let Some(start) = line.find("'./") {
                let rest = &line[start + 2..];
                if let Some(end) = rest.find('\'') {
                    let module = &rest[..end];
                    assert!(static_file(module).is_some(), "{module} is not embedded");
                }
            }
        }
    }
}
