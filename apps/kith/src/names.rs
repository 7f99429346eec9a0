//! Friend names: what this person calls their friends.
//!
//! A name given at `friend add` is kept in the document [`NAMES_PATH`] of
//! this person's own namespace (namespace id → name), so it survives
//! restarts and reaches their other devices with the rest of the
//! namespace. It is never granted to friends by the app. Without such a
//! name a friend is called by the name in their `/profile`, and failing
//! that by a short form of their id. Their profile pictures are loaded
//! with the profile names.

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use kith::store::Store;
use kith::{NamespaceId, Path};

use crate::error::{Error, Result};
use crate::profile;

/// Where the names live in the own namespace.
pub const NAMES_PATH: &str = "/app/friends";

/// The names known to this node: its own and its friends'.
#[derive(Debug, Clone)]
pub struct Names {
    me: NamespaceId,
    my_name: String,
    nicknames: BTreeMap<NamespaceId, String>,
    profiles: BTreeMap<NamespaceId, String>,
    /// Profile picture URLs, the own one included.
    avatars: BTreeMap<NamespaceId, String>,
    friends: Vec<NamespaceId>,
}

fn names_path() -> Path {
    // A constant that always parses.
    Path::parse(NAMES_PATH).unwrap_or_else(|_| Path::root())
}

/// The nicknames stored in the own namespace. Blocks.
///
/// # Errors
/// Store errors.
pub fn nicknames(store: &Store, me: &NamespaceId) -> Result<BTreeMap<NamespaceId, String>> {
    let mut out = BTreeMap::new();
    let Some(doc) = store.document(me, &names_path())? else {
        return Ok(out);
    };
    if let serde_json::Value::Object(map) = crate::docjson::to_json(&doc)? {
        for (id, name) in map {
            if let (Ok(ns), Some(name)) = (id.parse::<NamespaceId>(), name.as_str()) {
                out.insert(ns, name.to_string());
            }
        }
    }
    Ok(out)
}

/// Sets (or with `None` removes) the name of `friend`. Blocks.
///
/// # Errors
/// [`Error::Conflict`] if another friend already has that name, store
/// errors.
pub fn set_nickname(
    store: &Store,
    me: &NamespaceId,
    friend: &NamespaceId,
    name: Option<&str>,
) -> Result<()> {
    if let Some(name) = name {
        check_name(name)?;
        let taken = nicknames(store, me)?
            .into_iter()
            .any(|(ns, n)| ns != *friend && n == name);
        if taken {
            return Err(Error::Conflict(format!(
                "another friend is already called {name:?}"
            )));
        }
    }
    let key = friend.to_string();
    let (res, _) = store.edit_document(me, &names_path(), |doc| match name {
        Some(name) => doc.put(automerge::ROOT, key.as_str(), name),
        None => doc.delete(automerge::ROOT, key.as_str()),
    })?;
    res.map_err(|e| Error::BadInput(format!("automerge: {e}")))?;
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(Error::BadInput(
            "a name is 1 to 64 characters without control characters".into(),
        ));
    }
    if name.parse::<NamespaceId>().is_ok() || name == "me" {
        return Err(Error::BadInput(format!("{name:?} cannot be a name")));
    }
    Ok(())
}

impl Names {
    /// Loads the names of `me` and of `friends`. Blocks.
    ///
    /// # Errors
    /// Store errors.
    pub fn load(store: &Store, me: NamespaceId, friends: &[NamespaceId]) -> Result<Self> {
        let mut avatars = BTreeMap::new();
        let mine = profile::profile(store, &me)?;
        if let Some(a) = mine.avatar {
            avatars.insert(me, a.url);
        }
        let mut profiles = BTreeMap::new();
        for f in friends {
            let profile = profile::profile(store, f)?;
            if !profile.name.is_empty() {
                profiles.insert(*f, profile.name);
            }
            if let Some(a) = profile.avatar {
                avatars.insert(*f, a.url);
            }
        }
        Ok(Self {
            me,
            my_name: mine.name,
            nicknames: nicknames(store, &me)?,
            profiles,
            avatars,
            friends: friends.to_vec(),
        })
    }

    /// What to call `ns`: this person's own profile name, a friend's
    /// nickname or profile name, or a short form of the id.
    pub fn name_of(&self, ns: &NamespaceId) -> String {
        if *ns == self.me {
            return if self.my_name.is_empty() {
                "me".into()
            } else {
                self.my_name.clone()
            };
        }
        self.nicknames
            .get(ns)
            .or_else(|| self.profiles.get(ns))
            .cloned()
            .unwrap_or_else(|| ns.fmt_short())
    }

    /// The profile picture URL of `ns` (this person or a friend), if any.
    pub fn avatar_of(&self, ns: &NamespaceId) -> Option<String> {
        self.avatars.get(ns).cloned()
    }

    /// The nickname given to `ns`, if any.
    pub fn nickname(&self, ns: &NamespaceId) -> Option<&str> {
        self.nicknames.get(ns).map(String::as_str)
    }

    /// The friend called `text` (a nickname, a profile name, or a friend's
    /// namespace id).
    ///
    /// # Errors
    /// [`Error::UnknownFriend`].
    pub fn friend(&self, text: &str) -> Result<NamespaceId> {
        if let Ok(ns) = text.parse::<NamespaceId>() {
            if self.friends.contains(&ns) {
                return Ok(ns);
            }
            return Err(Error::UnknownFriend(text.to_string()));
        }
        if let Some((ns, _)) = self
            .nicknames
            .iter()
            .find(|(ns, n)| n.as_str() == text && self.friends.contains(ns))
        {
            return Ok(*ns);
        }
        let by_profile: Vec<_> = self
            .profiles
            .iter()
            .filter(|(_, n)| n.as_str() == text)
            .collect();
        match by_profile.as_slice() {
            [(ns, _)] => Ok(**ns),
            _ => Err(Error::UnknownFriend(text.to_string())),
        }
    }

    /// The namespace called `text`: `me` (or this person's own name), a
    /// friend, or any namespace id.
    ///
    /// # Errors
    /// [`Error::UnknownFriend`].
    pub fn namespace(&self, text: &str) -> Result<NamespaceId> {
        if text == "me" || (!self.my_name.is_empty() && text == self.my_name) {
            return Ok(self.me);
        }
        if let Ok(ns) = text.parse::<NamespaceId>() {
            return Ok(ns);
        }
        self.friend(text)
    }
}
