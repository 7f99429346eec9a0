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
];

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
