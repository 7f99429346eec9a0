//! The feed: a small private social network kept in namespaces.
//!
//! Everything is an ordinary document or blob at a path, so the engine's
//! grants decide who sees what:
//!
//! - `/profile`: a document `{ name, bio }`, and the picture friends see
//!   beside the name as the blob `/profile/avatar` (an image);
//! - posts: documents `{ text, time, attachments: [name…] }` under the
//!   prefix of their audience: `/feed/friends/<id>` (every friend),
//!   `/feed/close/<id>` (close friends) or `/private/<id>` (only me); their
//!   attachments are blobs beside them, at `<post path>/<name>`, so deleting
//!   a post's path deletes its attachments too;
//! - comments: documents `{ post_author, post_id, text, time }` at
//!   `/feed/comments/<id>` in the commenter's own namespace. A comment shows
//!   under its post for everyone who can read both.
//!
//! Audiences map to grants: every friend gets [`FRIEND_PREFIXES`]
//! (`/profile`, `/feed/friends`, `/feed/comments`), close friends also
//! `/feed/close`; nobody gets `/private`.
//!
//! Post ids are this device's clock time in microseconds as 16 hex digits:
//! unique within a namespace and ordered by time.
//!
//! The functions here block on the store (call them from blocking code or
//! `spawn_blocking`). A sketch of a feed built on a node:
//!
//! ```no_run
//! # async fn run() -> kith_app::Result<()> {
//! use kith_app::feed::{self, Audience};
//! use kith_app::names::Names;
//!
//! let node = kith::Node::builder("alice-data").spawn().await?;
//! let (store, me) = (node.store().clone(), node.namespace());
//! let friends = node.friends();
//! tokio::task::spawn_blocking(move || -> kith_app::Result<()> {
//!     feed::set_profile(&store, &me, Some("alice"), None)?;
//!     let names = Names::load(&store, me, &friends)?;
//!     feed::create_post(&store, &me, "hello", Audience::Friends, Vec::new(), &names)?;
//!     for post in feed::timeline(&store, &me, &friends, &names)? {
//!         println!("{}: {}", post.author_name, post.text);
//!     }
//!     Ok(())
//! })
//! .await??;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use kith::store::{Entry, EntryKind, Store};
use kith::{NamespaceId, Path};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::docjson::{self, MAX_TEXT_LEN, const_path, read_json, text_field, time_field};
use crate::error::{Error, Result};
use crate::names::Names;
use crate::profile::PROFILE_PATH;
pub use crate::profile::{
    AVATAR_PATH, Avatar, MAX_AVATAR_SIZE, Profile, profile, set_avatar, set_profile,
};
pub use crate::urls::{entry_url, percent_encode};

/// Where comments live in the commenter's namespace.
pub const COMMENTS_PREFIX: &str = "/feed/comments";
/// What every friend may read (granted when a friend is added).
pub const FRIEND_PREFIXES: [&str; 3] = [PROFILE_PATH, "/feed/friends", COMMENTS_PREFIX];
/// Who may see a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    /// Every friend (`/feed/friends`).
    Friends,
    /// Close friends (`/feed/close`).
    Close,
    /// Only me (`/private`).
    Me,
}

impl Audience {
    /// Every audience.
    pub const ALL: [Audience; 3] = [Audience::Friends, Audience::Close, Audience::Me];

    /// The path prefix the audience's posts live under.
    pub fn prefix_text(self) -> &'static str {
        match self {
            Audience::Friends => "/feed/friends",
            Audience::Close => "/feed/close",
            Audience::Me => "/private",
        }
    }

    /// The prefix as a path.
    pub fn prefix(self) -> Path {
        const_path(self.prefix_text())
    }

    /// `"friends"`, `"close"` or `"me"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Friends => "friends",
            Audience::Close => "close",
            Audience::Me => "me",
        }
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Audience {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "friends" => Ok(Audience::Friends),
            "close" => Ok(Audience::Close),
            "me" | "private" => Ok(Audience::Me),
            other => Err(Error::BadInput(format!(
                "unknown audience {other:?}; use friends, close or me"
            ))),
        }
    }
}

/// An attachment to add to a new post.
#[derive(Debug, Clone)]
pub struct NewAttachment {
    /// File name (one path component).
    pub name: String,
    /// Media type, such as `image/jpeg`.
    pub media_type: String,
    /// The bytes.
    pub data: Vec<u8>,
}

/// A post as shown in a timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Post {
    /// The post's id (unique in its author's namespace).
    pub id: String,
    /// The author's namespace id.
    pub author: String,
    /// What this node calls the author.
    pub author_name: String,
    /// The author's profile picture URL, if any.
    pub author_avatar: Option<String>,
    /// `friends`, `close` or `me`.
    pub audience: String,
    /// The post's path in the author's namespace.
    pub path: String,
    /// The text.
    pub text: String,
    /// When it was posted (µs since the Unix epoch).
    pub time: u64,
    /// Whether this node's person wrote it.
    pub mine: bool,
    /// Its attachments.
    pub attachments: Vec<Attachment>,
    /// Comments visible here, oldest first.
    pub comments: Vec<Comment>,
    /// A pending deletion of the post, if any (always `null` today: a
    /// deleted post leaves the timeline at once).
    pub deletion: Option<String>,
    /// Whether its text is not here: a friend's post purged from the cache
    /// of friends' data, being fetched again from its author (`text` is
    /// empty and `time` is that of its latest write until it arrives).
    #[serde(default)]
    pub loading: bool,
}

/// A post's attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// File name.
    pub name: String,
    /// Media type.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Where the HTTP API serves it (`/api/entry/NS/PATH`).
    pub url: String,
}

/// A comment on a post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    /// The comment's id in the commenter's namespace.
    pub id: String,
    /// The commenter's namespace id.
    pub author: String,
    /// What this node calls the commenter.
    pub author_name: String,
    /// The commenter's profile picture URL, if any.
    pub author_avatar: Option<String>,
    /// The commented post's author.
    pub post_author: String,
    /// The commented post's id.
    pub post_id: String,
    /// The comment's path in the commenter's namespace.
    pub path: String,
    /// The text.
    pub text: String,
    /// When it was written (µs since the Unix epoch).
    pub time: u64,
    /// Whether its text is not here (purged from the cache, being fetched
    /// again from the commenter), as for a post.
    #[serde(default)]
    pub loading: bool,
}

/// Whether `e` says a document's content is not here (a friend's,
/// purged from the cache of friends' data).
pub(crate) fn is_not_here(e: &Error) -> bool {
    matches!(e, Error::Node(kith::Error::Store(e)) if matches!(**e, kith::store::Error::NotHere { .. }))
}

/// Every entry under `prefix` of `ns`. Blocks.
///
/// # Errors
/// Store errors.
pub fn list_all(store: &Store, ns: &NamespaceId, prefix: &Path) -> Result<Vec<(Path, Entry)>> {
    let mut out = Vec::new();
    let mut after: Option<Path> = None;
    loop {
        let page = store.list(ns, prefix, after.as_ref(), 1000)?;
        out.extend(page.entries);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(out),
        }
    }
}

fn check_text(text: &str) -> Result<()> {
    if text.len() > MAX_TEXT_LEN {
        return Err(Error::BadInput(format!(
            "the text is {} bytes; at most {MAX_TEXT_LEN}",
            text.len()
        )));
    }
    Ok(())
}

fn new_id(store: &Store) -> String {
    format!("{:016x}", store.clock().now().as_micros())
}

/// Writes a post with its attachments. Blocks.
///
/// # Errors
/// [`Error::BadInput`] for an overlong text or an attachment name that is
/// not one path component, store errors (too large …).
pub fn create_post(
    store: &Store,
    me: &NamespaceId,
    text: &str,
    audience: Audience,
    attachments: Vec<NewAttachment>,
    names: &Names,
) -> Result<Post> {
    check_text(text)?;
    let id = new_id(store);
    let path = audience.prefix().join(&id)?;
    let mut stored_names: Vec<String> = Vec::new();
    for a in &attachments {
        let mut name = a.name.clone();
        let mut n = 2;
        while stored_names.contains(&name) {
            name = format!("{n}-{}", a.name);
            n += 1;
        }
        let at = path.join(&name).map_err(|e| {
            Error::BadInput(format!("attachment name {:?} is not usable: {e}", a.name))
        })?;
        let media_type = if a.media_type.is_empty() {
            "application/octet-stream"
        } else {
            &a.media_type
        };
        store.put_blob(me, &at, a.data.as_slice(), media_type)?;
        stored_names.push(name);
    }
    let time = store.clock().now().as_micros();
    let body = json!({ "text": text, "time": time, "attachments": stored_names });
    let doc = docjson::new_doc(body.as_object().unwrap_or(&serde_json::Map::new()))?;
    store.create_document(me, &path, doc)?;
    read_post(store, me, &path, audience, names)?
        .ok_or_else(|| Error::NotFound(format!("post {path} vanished while being written")))
}

pub(crate) fn read_post(
    store: &Store,
    author: &NamespaceId,
    path: &Path,
    audience: Audience,
    names: &Names,
) -> Result<Option<Post>> {
    let children = list_all(store, author, path)?;
    build_post(store, author, path, audience, &children, names)
}

fn build_post(
    store: &Store,
    author: &NamespaceId,
    path: &Path,
    audience: Audience,
    children: &[(Path, Entry)],
    names: &Names,
) -> Result<Option<Post>> {
    let (v, loading) = match read_json(store, author, path) {
        Ok(Some(v)) => (v, false),
        Ok(None) => return Ok(None),
        Err(e) if is_not_here(&e) => {
            // Purged from the cache: shown as loading, as of its entry.
            let time = store
                .get(author, path)?
                .map_or(0, |e| e.timestamp.as_micros());
            (serde_json::json!({ "time": time }), true)
        }
        Err(e) => return Err(e),
    };
    let Some(id) = path.last() else {
        return Ok(None);
    };
    let order: Vec<String> = v
        .get("attachments")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut attachments: Vec<Attachment> = children
        .iter()
        .filter(|(p, _)| p.len() == path.len() + 1)
        .filter_map(|(p, e)| match &e.kind {
            EntryKind::Blob {
                size, media_type, ..
            } => Some(Attachment {
                name: p.last().unwrap_or_default().to_string(),
                media_type: media_type.clone(),
                size: *size,
                url: entry_url(author, p),
            }),
            EntryKind::Document { .. } => None,
        })
        .collect();
    attachments.sort_by_key(|a| {
        order
            .iter()
            .position(|n| *n == a.name)
            .unwrap_or(usize::MAX)
    });
    Ok(Some(Post {
        id: id.to_string(),
        author: author.to_string(),
        author_name: names.name_of(author),
        author_avatar: names.avatar_of(author),
        audience: audience.as_str().to_string(),
        path: path.to_string(),
        text: text_field(&v, "text"),
        time: time_field(&v),
        mine: false,
        attachments,
        comments: Vec::new(),
        deletion: None,
        loading,
    }))
}

/// The posts of `author` this node holds, newest first, without comments.
/// Blocks.
///
/// # Errors
/// Store errors.
pub fn posts_of(store: &Store, author: &NamespaceId, names: &Names) -> Result<Vec<Post>> {
    let mut out = Vec::new();
    for audience in Audience::ALL {
        let prefix = audience.prefix();
        let entries = list_all(store, author, &prefix)?;
        let mut children: HashMap<Path, Vec<(Path, Entry)>> = HashMap::new();
        let mut posts = Vec::new();
        for (p, e) in entries {
            if p.len() == prefix.len() + 1 {
                if matches!(e.kind, EntryKind::Document { .. }) {
                    posts.push(p);
                }
            } else if let Some(parent) = p.parent() {
                children.entry(parent).or_default().push((p, e));
            }
        }
        for p in posts {
            let kids = children.remove(&p).unwrap_or_default();
            if let Some(post) = build_post(store, author, &p, audience, &kids, names)? {
                out.push(post);
            }
        }
    }
    out.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));
    Ok(out)
}

/// The comments written in `ns` that this node holds. Blocks.
///
/// # Errors
/// Store errors.
pub fn comments_of(store: &Store, ns: &NamespaceId, names: &Names) -> Result<Vec<Comment>> {
    let prefix = const_path(COMMENTS_PREFIX);
    let mut out = Vec::new();
    for (p, e) in list_all(store, ns, &prefix)? {
        if p.len() != prefix.len() + 1 || !matches!(e.kind, EntryKind::Document { .. }) {
            continue;
        }
        let v = match read_json(store, ns, &p) {
            Ok(Some(v)) => v,
            Ok(None) => continue,
            // Purged from the cache: the timeline shows it as loading.
            Err(e) if is_not_here(&e) => continue,
            Err(e) => return Err(e),
        };
        out.push(Comment {
            id: p.last().unwrap_or_default().to_string(),
            author: ns.to_string(),
            author_name: names.name_of(ns),
            author_avatar: names.avatar_of(ns),
            post_author: text_field(&v, "post_author"),
            post_id: text_field(&v, "post_id"),
            path: p.to_string(),
            text: text_field(&v, "text"),
            time: time_field(&v),
            loading: false,
        });
    }
    Ok(out)
}

/// The timeline: this person's posts and their friends' that this node
/// holds, newest first, each with the comments visible here. Blocks.
///
/// # Errors
/// Store errors.
pub fn timeline(
    store: &Store,
    me: &NamespaceId,
    friends: &[NamespaceId],
    names: &Names,
) -> Result<Vec<Post>> {
    let mut people = vec![*me];
    people.extend(friends.iter().filter(|f| *f != me));
    let mut posts = Vec::new();
    let mut comments: HashMap<(String, String), Vec<Comment>> = HashMap::new();
    for ns in &people {
        for mut post in posts_of(store, ns, names)? {
            post.mine = ns == me;
            posts.push(post);
        }
        for c in comments_of(store, ns, names)? {
            comments
                .entry((c.post_author.clone(), c.post_id.clone()))
                .or_default()
                .push(c);
        }
    }
    for post in &mut posts {
        if let Some(mut cs) = comments.remove(&(post.author.clone(), post.id.clone())) {
            cs.sort_by_key(|c| c.time);
            post.comments = cs;
        }
    }
    posts.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));
    Ok(posts)
}

/// The path of this person's post `id`, in whichever audience it is.
/// Blocks.
///
/// # Errors
/// [`Error::NotFound`] if there is no such post, store errors.
pub fn own_post_path(store: &Store, me: &NamespaceId, id: &str) -> Result<Path> {
    for audience in Audience::ALL {
        let Ok(path) = audience.prefix().join(id) else {
            break;
        };
        if let Some(Entry {
            kind: EntryKind::Document { .. },
            ..
        }) = store.get(me, &path)?
        {
            return Ok(path);
        }
    }
    Err(Error::NotFound(format!("no post of yours with id {id:?}")))
}

/// Writes a comment on `post_author`'s post `post_id` into this person's
/// namespace. Blocks.
///
/// # Errors
/// [`Error::BadInput`] for an overlong text or a malformed id,
/// [`Error::NotFound`] if this node does not hold that post, store errors.
pub fn comment(
    store: &Store,
    me: &NamespaceId,
    post_author: &NamespaceId,
    post_id: &str,
    text: &str,
    names: &Names,
) -> Result<Comment> {
    check_text(text)?;
    let found = Audience::ALL.iter().any(|a| {
        a.prefix().join(post_id).is_ok_and(|p| {
            matches!(
                store.get(post_author, &p),
                Ok(Some(Entry {
                    kind: EntryKind::Document { .. },
                    ..
                }))
            )
        })
    });
    if !found {
        return Err(Error::NotFound(format!(
            "no post {post_id:?} of {} here",
            names.name_of(post_author)
        )));
    }
    let id = new_id(store);
    let path = const_path(COMMENTS_PREFIX).join(&id)?;
    let time = store.clock().now().as_micros();
    let body = json!({
        "post_author": post_author.to_string(),
        "post_id": post_id,
        "text": text,
        "time": time,
    });
    let doc = docjson::new_doc(body.as_object().unwrap_or(&serde_json::Map::new()))?;
    store.create_document(me, &path, doc)?;
    Ok(Comment {
        id,
        author: me.to_string(),
        author_name: names.name_of(me),
        author_avatar: names.avatar_of(me),
        post_author: post_author.to_string(),
        post_id: post_id.to_string(),
        path: path.to_string(),
        text: text.to_string(),
        time,
        loading: false,
    })
}
