//! A person's profile: the document at [`PROFILE_PATH`] (`{ name, bio }`)
//! and the picture friends see beside the name, the blob at
//! [`AVATAR_PATH`]. Both lie under the profile's grant, so every friend who
//! may read the profile receives them.

use kith::NamespaceId;
use kith::store::{Entry, EntryKind, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::docjson::{self, MAX_TEXT_LEN, const_path, read_json, text_field};
use crate::error::{Error, Result};
use crate::urls::entry_url;

/// The profile document.
pub const PROFILE_PATH: &str = "/profile";

/// Friends' data never purged from the cache: their profile and picture,
/// read on every page.
pub fn kept_prefixes() -> Vec<kith::Path> {
    vec![const_path(PROFILE_PATH)]
}
/// The profile picture (a blob beside the profile, under its grant).
pub const AVATAR_PATH: &str = "/profile/avatar";
/// Largest profile picture, in bytes.
pub const MAX_AVATAR_SIZE: usize = 2 << 20;

/// A person's profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The name they chose.
    #[serde(default)]
    pub name: String,
    /// A few words about them.
    #[serde(default)]
    pub bio: String,
    /// Their profile picture, if they set one (and it reached this node).
    #[serde(default)]
    pub avatar: Option<Avatar>,
}

/// A profile picture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Avatar {
    /// Where the HTTP API serves it: `/api/entry/NS/profile/avatar?v=…`,
    /// the query naming the picture's content, so that a new picture gets
    /// a new URL.
    pub url: String,
    /// Its media type (`image/…`).
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The profile of `ns` (empty if it has none or this node may not read it).
/// Blocks.
///
/// # Errors
/// Store errors.
pub fn profile(store: &Store, ns: &NamespaceId) -> Result<Profile> {
    let read = match read_json(store, ns, &const_path(PROFILE_PATH)) {
        // Purged from the cache (kept since, but not before): as if none.
        Err(e) if crate::feed::is_not_here(&e) => None,
        other => other?,
    };
    let mut profile = match read {
        Some(v) => Profile {
            name: text_field(&v, "name"),
            bio: text_field(&v, "bio"),
            avatar: None,
        },
        None => Profile::default(),
    };
    let at = const_path(AVATAR_PATH);
    if let Some(Entry {
        kind:
            EntryKind::Blob {
                hash,
                size,
                media_type,
            },
        ..
    }) = store.get(ns, &at)?
    {
        let version = hash.to_hex();
        profile.avatar = Some(Avatar {
            url: format!(
                "{}?v={}",
                entry_url(ns, &at),
                version.get(..16).unwrap_or(&version)
            ),
            media_type,
            size,
        });
    }
    Ok(profile)
}

/// Sets the own profile picture: an image of at most [`MAX_AVATAR_SIZE`]
/// bytes, stored at [`AVATAR_PATH`], so every friend who may read the
/// profile receives it. Blocks.
///
/// # Errors
/// [`Error::BadInput`] for a media type that is not `image/…`, an empty
/// picture or one over [`MAX_AVATAR_SIZE`]; store errors.
pub fn set_avatar(
    store: &Store,
    me: &NamespaceId,
    data: &[u8],
    media_type: &str,
) -> Result<Profile> {
    let essence = media_type.split(';').next().unwrap_or("").trim();
    if !essence.starts_with("image/") || essence.len() <= "image/".len() {
        return Err(Error::BadInput(format!(
            "a profile picture is an image (image/png, image/jpeg …), not {media_type:?}"
        )));
    }
    if data.is_empty() {
        return Err(Error::BadInput("the profile picture is empty".into()));
    }
    if data.len() > MAX_AVATAR_SIZE {
        return Err(Error::BadInput(format!(
            "the profile picture is {} bytes; at most {MAX_AVATAR_SIZE}",
            data.len()
        )));
    }
    store.put_blob(me, &const_path(AVATAR_PATH), data, media_type)?;
    profile(store, me)
}

/// Sets the own profile's name and/or bio. Blocks.
///
/// # Errors
/// [`Error::BadInput`] for an overlong field, store errors.
pub fn set_profile(
    store: &Store,
    me: &NamespaceId,
    name: Option<&str>,
    bio: Option<&str>,
) -> Result<Profile> {
    let mut fields = serde_json::Map::new();
    if let Some(name) = name {
        if name.len() > 64 {
            return Err(Error::BadInput("a name is at most 64 bytes".into()));
        }
        fields.insert("name".into(), json!(name));
    }
    if let Some(bio) = bio {
        if bio.len() > MAX_TEXT_LEN {
            return Err(Error::BadInput("the bio is too long".into()));
        }
        fields.insert("bio".into(), json!(bio));
    }
    if !fields.is_empty() {
        let (res, _) = store.edit_document(me, &const_path(PROFILE_PATH), |doc| {
            docjson::set_keys(doc, &fields)
        })?;
        res?;
    }
    profile(store, me)
}
