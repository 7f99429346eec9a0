//! The web origins a person let use the HTTP API, and the pairing that lets
//! them in.
//!
//! A page served from another origin than the node (the files of `kith web
//! export` on any web server) reaches the API only once the person approved
//! that origin here. Each approved origin has a token of its own, kept in
//! `<data>/web-origins.json` (0600) and accepted only on requests that come
//! from that origin; revoking the origin forgets the token at once.
//!
//! Pairing: the page asks (`POST /api/pair`, open to every origin, which
//! only records the request: at most [`MAX_PENDING`] at a time, each for
//! [`PAIRING_TTL`]) and shows the short code it got back; the person checks
//! that code and approves it on the node (`kith web allow ORIGIN --code
//! CODE`); the page, polling `POST /api/pair/claim` with the request's
//! secret id, then receives the origin's token. Approving needs the code, so
//! a request someone else made for the same origin is never approved by
//! mistake.
//!
//! This module does no HTTP: [`crate::http`] calls it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::{Error, Result};

/// The file, in the data folder, of the approved origins and their tokens.
pub const ORIGINS_FILE: &str = "web-origins.json";
/// Longest origin accepted, in bytes (a host name is at most 253).
pub const MAX_ORIGIN_LEN: usize = 300;
/// Most origins that may be approved at once.
pub const MAX_ORIGINS: usize = 64;
/// Most pairing requests waiting at once; the oldest makes room for a new one.
pub const MAX_PENDING: usize = 32;
/// Most pairing requests waiting from one origin.
const MAX_PENDING_PER_ORIGIN: usize = 4;
/// How long a pairing request waits for approval.
pub const PAIRING_TTL: Duration = Duration::from_secs(10 * 60);
/// The code's alphabet: no 0/O, 1/I/L to mistake for one another.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
/// Characters in a code (shown as two groups of four).
const CODE_LEN: usize = 8;

/// A web origin, `scheme://host[:port]`, validated and normalised as
/// browsers send it in the `Origin` header: scheme `http` or `https`, host
/// lowercase, the scheme's default port left out, no path, query or user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin(String);

impl Origin {
    /// Parses `text` as an origin.
    ///
    /// # Errors
    /// [`Error::BadInput`] saying what is wrong: not `http(s)://`, a path,
    /// a bad host or port, too long.
    pub fn parse(text: &str) -> Result<Origin> {
        let bad = |why: &str| {
            let shown: String = text.chars().take(80).collect();
            Error::BadInput(format!(
                "{shown:?} is not a web origin ({why}); write scheme://host[:port], e.g. https://app.example.org or http://localhost:8080"
            ))
        };
        if text.len() > MAX_ORIGIN_LEN {
            return Err(bad(&format!("longer than {MAX_ORIGIN_LEN} bytes")));
        }
        let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(bad("the scheme must be http or https")),
        };
        if rest.is_empty() {
            return Err(bad("no host"));
        }
        if let Some(at) = rest.find(['/', '?', '#']) {
            let what = if rest[at..] == *"/" {
                "a trailing / : leave it out"
            } else {
                "a path, query or fragment"
            };
            return Err(bad(what));
        }
        if rest.contains('@') {
            return Err(bad("a user name"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').ok_or_else(|| bad("an unclosed ["))?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("a bad IPv6 address"));
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
            };
            (format!("[{}]", addr.to_ascii_lowercase()), port)
        } else {
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            };
            let host = host.to_ascii_lowercase();
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            };
            if host.len() > 253 || !host.split('.').all(label_ok) {
                return Err(bad("a bad host name"));
            }
            (host, port)
        };
        let port = match port {
            None => None,
            Some(p) => {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 5 {
                    return Err(bad("a bad port"));
                }
                match p.parse::<u16>() {
                    Ok(0) | Err(_) => return Err(bad("a port outside 1–65535")),
                    Ok(n) if n == default_port => None,
                    Ok(n) => Some(n),
                }
            }
        };
        Ok(Origin(match port {
            Some(p) => format!("{scheme}://{host}:{p}"),
            None => format!("{scheme}://{host}"),
        }))
    }

    /// The origin as text (`https://app.example.org`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Compares two secrets in time that depends only on their lengths.
pub(crate) fn same_secret(given: &str, secret: &str) -> bool {
    given.len() == secret.len()
        && given
            .bytes()
            .zip(secret.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// An approved origin as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Allowed {
    origin: String,
    token: String,
    /// When it was approved, ms since the Unix epoch.
    added_ms: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OriginsFile {
    origins: Vec<Allowed>,
}

/// A pairing request waiting for the person.
#[derive(Debug)]
struct Pending {
    origin: Origin,
    code: String,
    /// The secret id only the page that asked knows.
    request: String,
    asked: Instant,
    approved: bool,
}

#[derive(Debug, Default)]
struct State {
    allowed: Vec<(Origin, Allowed)>,
    pending: Vec<Pending>,
}

/// An approved origin as shown (never its token).
#[derive(Debug, Clone, Serialize)]
pub struct OriginView {
    /// The origin.
    pub origin: String,
    /// When it was approved, ms since the Unix epoch.
    pub added_ms: u64,
}

/// A pairing request as shown to the person.
#[derive(Debug, Clone, Serialize)]
pub struct PendingView {
    /// The origin that asks.
    pub origin: String,
    /// The code its page shows.
    pub code: String,
    /// Seconds until it lapses.
    pub expires_in_s: u64,
}

/// What a new pairing request got.
#[derive(Debug, Clone)]
pub(crate) struct Asked {
    pub(crate) request: String,
    pub(crate) code: String,
    pub(crate) expires_ms: u64,
}

/// What claiming a pairing request found.
#[derive(Debug)]
pub(crate) enum Claim {
    /// Not approved yet.
    Waiting,
    /// Approved: the origin's token.
    Token(String),
    /// No such request from this origin (never made, lapsed or replaced).
    Unknown,
}

/// What approving an origin did.
#[derive(Debug)]
pub(crate) enum Allowance {
    /// The pairing request with the code was approved; its page gets the token.
    Paired,
    /// Approved without a pairing request: the token, for a program given it by hand.
    Token(String),
}

/// The approved origins and the pairing requests: a cheap handle.
#[derive(Clone, Debug)]
pub(crate) struct Origins {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `None`: kept in memory only (tests).
    file: Option<PathBuf>,
    state: Mutex<State>,
    /// Bumped on every change (a request, an approval, a revocation): the
    /// owner's page shows them, and a revoked origin's event streams end.
    changed: watch::Sender<u64>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn random_text(len: usize, alphabet: &[u8]) -> String {
    let mut bytes = vec![0u8; len];
    rand::fill(&mut bytes[..]);
    // The alphabet has 31 letters: 256 % 31 = 8, a bias too small to matter
    // for a code that is checked by eye and lives for minutes.
    bytes
        .iter()
        .map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()]))
        .collect()
}

/// `abcd-efgh`, `ABCDEFGH`, `abcd efgh` → `ABCDEFGH`.
fn normalise_code(code: &str) -> String {
    code.chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn shown_code(code: &str) -> String {
    let (a, b) = code.split_at(code.len() / 2);
    format!("{a}-{b}")
}

impl Origins {
    /// The origins approved in `file` (none if it does not exist).
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be read, [`Error::BadInput`] if it is not
    /// an origins file.
    pub(crate) fn load(file: Option<PathBuf>) -> Result<Self> {
        let mut allowed = Vec::new();
        if let Some(path) = &file {
            match std::fs::read(path) {
                Ok(bytes) => {
                    let parsed: OriginsFile = serde_json::from_slice(&bytes).map_err(|e| {
                        Error::BadInput(format!("{} is damaged: {e}", path.display()))
                    })?;
                    for a in parsed.origins {
                        let origin = Origin::parse(&a.origin)?;
                        allowed.push((origin, a));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                file,
                state: Mutex::new(State {
                    allowed,
                    pending: Vec::new(),
                }),
                changed: watch::channel(0).0,
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every
        // change is one push or remove), so a poisoned lock is taken over.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn save(&self, state: &State) -> Result<()> {
        let Some(path) = &self.inner.file else {
            return Ok(());
        };
        let file = OriginsFile {
            origins: state.allowed.iter().map(|(_, a)| a.clone()).collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| Error::BadInput(format!("cannot encode the origins: {e}")))?;
        crate::files::write_private(path, &bytes)
    }

    /// Whether `origin` is approved.
    pub(crate) fn is_allowed(&self, origin: &Origin) -> bool {
        self.state().allowed.iter().any(|(o, _)| o == origin)
    }

    /// Whether `token` is `origin`'s token (compared in constant time).
    pub(crate) fn check(&self, origin: &Origin, token: &str) -> bool {
        self.state()
            .allowed
            .iter()
            .any(|(o, a)| o == origin && same_secret(token, &a.token))
    }

    /// The approved origins, oldest first.
    pub(crate) fn list(&self) -> Vec<OriginView> {
        self.state()
            .allowed
            .iter()
            .map(|(o, a)| OriginView {
                origin: o.to_string(),
                added_ms: a.added_ms,
            })
            .collect()
    }

    fn expire(state: &mut State) {
        state.pending.retain(|p| p.asked.elapsed() < PAIRING_TTL);
    }

    /// The pairing requests waiting for approval.
    pub(crate) fn pending(&self) -> Vec<PendingView> {
        let mut state = self.state();
        Self::expire(&mut state);
        state
            .pending
            .iter()
            .filter(|p| !p.approved)
            .map(|p| PendingView {
                origin: p.origin.to_string(),
                code: shown_code(&p.code),
                expires_in_s: PAIRING_TTL.saturating_sub(p.asked.elapsed()).as_secs(),
            })
            .collect()
    }

    /// Records a pairing request from `origin`.
    pub(crate) fn ask(&self, origin: Origin) -> Asked {
        let mut state = self.state();
        Self::expire(&mut state);
        // The oldest requests make room: of this origin first, then of any.
        while state.pending.iter().filter(|p| p.origin == origin).count() >= MAX_PENDING_PER_ORIGIN
        {
            if let Some(i) = state.pending.iter().position(|p| p.origin == origin) {
                state.pending.remove(i);
            }
        }
        while state.pending.len() >= MAX_PENDING {
            state.pending.remove(0);
        }
        let code = random_text(CODE_LEN, CODE_ALPHABET);
        let request = random_text(43, b"abcdefghijklmnopqrstuvwxyz234567");
        state.pending.push(Pending {
            origin,
            code: code.clone(),
            request: request.clone(),
            asked: Instant::now(),
            approved: false,
        });
        drop(state);
        self.changed();
        let ttl = u64::try_from(PAIRING_TTL.as_millis()).unwrap_or(u64::MAX);
        Asked {
            request,
            code: shown_code(&code),
            expires_ms: now_ms().saturating_add(ttl),
        }
    }

    /// What became of the pairing request `request` of `origin`; an
    /// approved one answers the token once and is then forgotten.
    pub(crate) fn claim(&self, origin: &Origin, request: &str) -> Claim {
        let mut state = self.state();
        Self::expire(&mut state);
        let Some(i) = state
            .pending
            .iter()
            .position(|p| p.origin == *origin && same_secret(request, &p.request))
        else {
            return Claim::Unknown;
        };
        if !state.pending[i].approved {
            return Claim::Waiting;
        }
        state.pending.remove(i);
        match state.allowed.iter().find(|(o, _)| o == origin) {
            Some((_, a)) => Claim::Token(a.token.clone()),
            // Revoked between the approval and the claim.
            None => Claim::Unknown,
        }
    }

    /// Approves `origin`: the pairing request with `code`, or, without a
    /// code, the origin itself (its token is returned).
    ///
    /// # Errors
    /// [`Error::NotFound`] for a code no request of `origin` shows;
    /// [`Error::Conflict`] without a code while requests of `origin` wait
    /// (their codes must be checked); [`Error::BadInput`] past
    /// [`MAX_ORIGINS`]; [`Error::Io`] if the file cannot be written.
    pub(crate) fn allow(&self, origin: &Origin, code: Option<&str>) -> Result<Allowance> {
        let mut state = self.state();
        Self::expire(&mut state);
        let waiting: Vec<String> = state
            .pending
            .iter()
            .filter(|p| p.origin == *origin && !p.approved)
            .map(|p| shown_code(&p.code))
            .collect();
        let request = match code {
            Some(code) => {
                let code = normalise_code(code);
                let Some(i) = state
                    .pending
                    .iter()
                    .position(|p| p.origin == *origin && same_secret(&code, &p.code))
                else {
                    return Err(Error::NotFound(if waiting.is_empty() {
                        format!(
                            "no pairing request from {origin} is waiting: press Connect on the page at {origin}, then approve the code it shows"
                        )
                    } else {
                        format!(
                            "no pairing request from {origin} shows this code; waiting: {}",
                            waiting.join(", ")
                        )
                    }));
                };
                Some(i)
            }
            None if !waiting.is_empty() => {
                return Err(Error::Conflict(format!(
                    "{origin} asks to pair with the code {}: check that its page shows this code, then approve it with --code",
                    waiting.join(" or ")
                )));
            }
            None => None,
        };
        if !state.allowed.iter().any(|(o, _)| o == origin) {
            if state.allowed.len() >= MAX_ORIGINS {
                return Err(Error::BadInput(format!(
                    "{MAX_ORIGINS} origins are allowed already; revoke one first"
                )));
            }
            let token = random_text(43, b"abcdefghijklmnopqrstuvwxyz234567");
            let allowed = Allowed {
                origin: origin.to_string(),
                token,
                added_ms: now_ms(),
            };
            state.allowed.push((origin.clone(), allowed));
            if let Err(e) = self.save(&state) {
                state.allowed.pop();
                return Err(e);
            }
        }
        let allowance = match request {
            Some(i) => {
                state.pending[i].approved = true;
                Allowance::Paired
            }
            None => {
                let token = state
                    .allowed
                    .iter()
                    .find(|(o, _)| o == origin)
                    .map(|(_, a)| a.token.clone())
                    .unwrap_or_default();
                Allowance::Token(token)
            }
        };
        drop(state);
        self.changed();
        Ok(allowance)
    }

    /// Forgets `origin` and its token (and its pairing requests), at once.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an origin that is not approved, naming those
    /// that are; [`Error::Io`] if the file cannot be written.
    pub(crate) fn revoke(&self, origin: &Origin) -> Result<()> {
        let mut state = self.state();
        let Some(i) = state.allowed.iter().position(|(o, _)| o == origin) else {
            let known: Vec<String> = state.allowed.iter().map(|(o, _)| o.to_string()).collect();
            return Err(Error::NotFound(if known.is_empty() {
                format!("{origin} is not allowed: no origin is")
            } else {
                format!("{origin} is not allowed; allowed: {}", known.join(", "))
            }));
        };
        let removed = state.allowed.remove(i);
        if let Err(e) = self.save(&state) {
            state.allowed.insert(i, removed);
            return Err(e);
        }
        state.pending.retain(|p| p.origin != *origin);
        drop(state);
        self.changed();
        Ok(())
    }

    fn changed(&self) {
        self.inner.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes with every request, approval and revocation.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn origins_parse_strictly_and_normalise() {
        for (text, want) in [
            ("https://app.example.org", "https://app.example.org"),
            ("HTTP://LocalHost:8080", "http://localhost:8080"),
            ("http://127.0.0.1:80", "http://127.0.0.1"),
            ("https://x.org:443", "https://x.org"),
            ("http://[::1]:3000", "http://[::1]:3000"),
        ] {
            assert_eq!(Origin::parse(text).unwrap().as_str(), want, "{text}");
        }
        for text in [
            "",
            "app.example.org",
            "ftp://x.org",
            "https://",
            "https://x.org/",
            "https://x.org/app",
            "https://x.org?a",
            "https://user@x.org",
            "https://x.org:0",
            "https://x.org:65536",
            "https://x.org:",
            "https://x.org:8a",
            "https://-x.org",
            "https://x..org",
            "https://x_y.org",
            "http://[::1",
            "http://[zz]:80",
            "null",
            &format!("https://{}.org", "a".repeat(400)),
        ] {
            assert!(Origin::parse(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn any_text_parses_or_is_refused_without_panicking_and_origins_are_stable() {
        // A small deterministic generator (xorshift) over the characters
        // that matter to the parser, plus some of anything.
        let alphabet: Vec<char> = "htps:/[]@?#.-0123456789abcXYZ_é\0 ".chars().collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let len = usize::try_from(next() % 40).unwrap();
            let mut text: String = (0..len)
                .map(|_| alphabet[usize::try_from(next()).unwrap() % alphabet.len()])
                .collect();
            if next() % 2 == 0 {
                text.insert_str(
                    0,
                    if next() % 2 == 0 {
                        "http://"
                    } else {
                        "https://"
                    },
                );
            }
            if let Ok(origin) = Origin::parse(&text) {
                // What is accepted is in the form browsers send, and stays so.
                let again = Origin::parse(origin.as_str()).unwrap();
                assert_eq!(again, origin, "{text:?}");
                assert!(!origin.as_str()[8..].contains('/'), "{text:?}");
            }
        }
    }

    #[test]
    fn a_pairing_needs_the_code_and_hands_the_token_over_once() {
        let origins = Origins::load(None).unwrap();
        let site = Origin::parse("http://localhost:8080").unwrap();
        let other = Origin::parse("http://localhost:8081").unwrap();
        let asked = origins.ask(site.clone());
        assert!(matches!(
            origins.claim(&site, &asked.request),
            Claim::Waiting
        ));
        // Another origin cannot claim it, nor a wrong code approve it.
        assert!(matches!(
            origins.claim(&other, &asked.request),
            Claim::Unknown
        ));
        assert!(matches!(
            origins.allow(&site, Some("AAAA-AAAA")),
            Err(Error::NotFound(_))
        ));
        // Without the code, nothing is approved while a request waits.
        assert!(matches!(
            origins.allow(&site, None),
            Err(Error::Conflict(_))
        ));
        assert!(!origins.is_allowed(&site));
        let lower = asked.code.to_lowercase();
        assert!(matches!(
            origins.allow(&site, Some(&lower)),
            Ok(Allowance::Paired)
        ));
        let Claim::Token(token) = origins.claim(&site, &asked.request) else {
            panic!("no token after approval");
        };
        assert!(origins.check(&site, &token));
        assert!(!origins.check(&other, &token));
        assert!(matches!(
            origins.claim(&site, &asked.request),
            Claim::Unknown
        ));
        origins.revoke(&site).unwrap();
        assert!(!origins.check(&site, &token));
        assert!(matches!(origins.revoke(&site), Err(Error::NotFound(_))));
    }

    #[test]
    fn pending_requests_are_bounded() {
        let origins = Origins::load(None).unwrap();
        for i in 0..(MAX_PENDING * 2) {
            let site = Origin::parse(&format!("http://site{i}.example")).unwrap();
            for _ in 0..10 {
                origins.ask(site.clone());
            }
        }
        assert!(origins.pending().len() <= MAX_PENDING);
    }

    #[test]
    fn approved_origins_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(ORIGINS_FILE);
        let site = Origin::parse("https://app.example.org").unwrap();
        let origins = Origins::load(Some(file.clone())).unwrap();
        let Allowance::Token(token) = origins.allow(&site, None).unwrap() else {
            panic!("no token");
        };
        let again = Origins::load(Some(file)).unwrap();
        assert!(again.check(&site, &token));
        assert_eq!(again.list()[0].origin, "https://app.example.org");
    }
}
