//! Hierarchical paths with a component-wise prefix relation and an
//! order-preserving byte encoding.

use std::fmt;
use std::str::FromStr;

use crate::ParseError;

/// Maximum length of one path component in bytes.
pub const MAX_COMPONENT_LEN: usize = 255;
/// Maximum number of components in a path.
pub const MAX_COMPONENTS: usize = 64;
/// Maximum length of a path's byte encoding (every component plus its
/// terminator): 16,384 bytes, far below fjall's 65,535-byte key limit even
/// with a namespace id and a suffix in front of or behind it.
pub const MAX_ENCODED_PATH_LEN: usize = MAX_COMPONENTS * (MAX_COMPONENT_LEN + 1);

// A namespace id, a blob hash and a suffix beside the longest path still
// fit in one fjall key (at most 65,535 bytes), checked at compile time.
const _: () = assert!(MAX_ENCODED_PATH_LEN + 32 + 32 + 16 < 65_535);

/// Terminates every component in the byte encoding. Components never contain
/// NUL, so the encoding is unambiguous.
const TERMINATOR: u8 = 0;

/// A path inside a namespace, such as `/posts/friends/01JD`.
///
/// A path is a sequence of components: non-empty UTF-8 without `/` or NUL,
/// each at most [`MAX_COMPONENT_LEN`] bytes, at most [`MAX_COMPONENTS`] of
/// them. The root path `/` has no components.
///
/// **Prefixes are component-wise:** `/photos` is a prefix of `/photos` and
/// `/photos/x`, never of `/photosecret`.
///
/// **Encoding:** each component followed by a NUL byte. Byte order of the
/// encoding equals component-wise order (a path sorts before its children,
/// `/a/z` before `/ab`), and the encoding of a prefix is a byte prefix of
/// exactly the encodings of the paths it covers, so a store's prefix scan
/// returns exactly the subtree, in path order. `Ord` on `Path` is this order.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Path {
    encoded: Vec<u8>,
}

impl Path {
    /// The root path `/`, a prefix of every path.
    pub const fn root() -> Self {
        Self {
            encoded: Vec::new(),
        }
    }

    /// Parses `/a/b/c`. `/` alone is the root.
    ///
    /// # Errors
    /// A [`ParseError`] naming what is wrong: no leading `/`, an empty
    /// component (`//` or trailing `/`), NUL, too long, too many components.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(ParseError::NotAbsolute(text.chars().take(80).collect()));
        };
        if rest.is_empty() {
            return Ok(Self::root());
        }
        Self::from_components(rest.split('/'))
    }

    /// Builds a path from its components.
    ///
    /// # Errors
    /// A [`ParseError`] if a component is invalid or there are too many.
    pub fn from_components<I, S>(components: I) -> Result<Self, ParseError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut path = Self::root();
        for component in components {
            path.push(component.as_ref())?;
        }
        Ok(path)
    }

    /// Appends one component.
    ///
    /// # Errors
    /// A [`ParseError`] if the component is invalid or the path is full.
    pub fn push(&mut self, component: &str) -> Result<(), ParseError> {
        let index = self.len();
        validate_component(component, index)?;
        self.encoded.extend_from_slice(component.as_bytes());
        self.encoded.push(TERMINATOR);
        Ok(())
    }

    /// This path with one more component.
    ///
    /// # Errors
    /// As [`Path::push`].
    pub fn join(&self, component: &str) -> Result<Self, ParseError> {
        let mut path = self.clone();
        path.push(component)?;
        Ok(path)
    }

    /// Reads a path from its byte encoding, validating every rule in one
    /// pass.
    ///
    /// # Errors
    /// [`ParseError::MalformedEncoding`] or a component error.
    pub fn from_encoded(bytes: &[u8]) -> Result<Self, ParseError> {
        if bytes.len() > MAX_ENCODED_PATH_LEN {
            return Err(ParseError::TooManyComponents);
        }
        if bytes.last().is_some_and(|b| *b != TERMINATOR) {
            return Err(ParseError::MalformedEncoding("missing terminator"));
        }
        // NUL is ASCII, so no UTF-8 sequence spans a terminator: checking the
        // whole buffer checks every component.
        if std::str::from_utf8(bytes).is_err() {
            return Err(ParseError::MalformedEncoding("component is not UTF-8"));
        }
        let mut index = 0;
        let mut len = 0;
        for &b in bytes {
            match b {
                TERMINATOR => {
                    if len == 0 {
                        return Err(ParseError::EmptyComponent(index));
                    }
                    if index >= MAX_COMPONENTS {
                        return Err(ParseError::TooManyComponents);
                    }
                    index += 1;
                    len = 0;
                }
                b'/' => return Err(ParseError::SlashInComponent(index)),
                _ => {
                    len += 1;
                    if len > MAX_COMPONENT_LEN {
                        return Err(ParseError::ComponentTooLong { index, len });
                    }
                }
            }
        }
        Ok(Self {
            encoded: bytes.to_vec(),
        })
    }

    /// The byte encoding (see the type's docs).
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// The components, in order.
    pub fn components(&self) -> impl DoubleEndedIterator<Item = &str> + '_ {
        let mut parts = self.encoded.split(|b| *b == TERMINATOR);
        if !self.encoded.is_empty() {
            let _tail = parts.next_back();
        } else {
            let _only = parts.next();
        }
        // Every part was validated as UTF-8 when the path was built.
        parts.map(|p| std::str::from_utf8(p).unwrap_or_default())
    }

    /// Number of components (0 for the root).
    pub fn len(&self) -> usize {
        self.encoded.iter().filter(|b| **b == TERMINATOR).count()
    }

    /// Whether this is the root path `/`.
    pub fn is_root(&self) -> bool {
        self.encoded.is_empty()
    }

    /// Whether the path has no components, i.e. is the root (the same as
    /// [`Path::is_root`]; named for the `len`/`is_empty` convention).
    pub fn is_empty(&self) -> bool {
        self.is_root()
    }

    /// Whether this path is `other` or one of its ancestors, component-wise.
    pub fn is_prefix_of(&self, other: &Path) -> bool {
        other.encoded.starts_with(&self.encoded)
    }

    /// Whether the subtrees of the two paths share a path: one of them is a
    /// prefix of the other.
    pub fn overlaps(&self, other: &Path) -> bool {
        self.is_prefix_of(other) || other.is_prefix_of(self)
    }

    /// The parent path, or `None` for the root.
    pub fn parent(&self) -> Option<Path> {
        if self.is_root() {
            return None;
        }
        let without_last = &self.encoded[..self.encoded.len() - 1];
        let cut = without_last
            .iter()
            .rposition(|b| *b == TERMINATOR)
            .map_or(0, |i| i + 1);
        Some(Path {
            encoded: self.encoded[..cut].to_vec(),
        })
    }

    /// Every prefix of this path from the root to the path itself, as byte
    /// encodings (borrowed from this path).
    pub fn ancestors_encoded(&self) -> impl Iterator<Item = &[u8]> + '_ {
        std::iter::once(0)
            .chain(
                self.encoded
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b == TERMINATOR)
                    .map(|(i, _)| i + 1),
            )
            .map(|end| &self.encoded[..end])
    }

    /// The last component, or `None` for the root.
    pub fn last(&self) -> Option<&str> {
        self.components().next_back()
    }
}

fn validate_component(component: &str, index: usize) -> Result<(), ParseError> {
    if index >= MAX_COMPONENTS {
        return Err(ParseError::TooManyComponents);
    }
    if component.is_empty() {
        return Err(ParseError::EmptyComponent(index));
    }
    if component.len() > MAX_COMPONENT_LEN {
        return Err(ParseError::ComponentTooLong {
            index,
            len: component.len(),
        });
    }
    if component.contains('\0') {
        return Err(ParseError::NulInComponent(index));
    }
    if component.contains('/') {
        return Err(ParseError::SlashInComponent(index));
    }
    Ok(())
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            return f.write_str("/");
        }
        for c in self.components() {
            write!(f, "/{c}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Path({self})")
    }
}

impl FromStr for Path {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Path {
        Path::parse(s).unwrap()
    }

    #[test]
    fn prefixes_are_component_wise() {
        assert!(p("/photos").is_prefix_of(&p("/photos")));
        assert!(p("/photos").is_prefix_of(&p("/photos/x")));
        assert!(!p("/photos").is_prefix_of(&p("/photosecret")));
        assert!(!p("/photos/x").is_prefix_of(&p("/photos")));
        assert!(Path::root().is_prefix_of(&p("/a/b")));
        assert!(Path::root().is_prefix_of(&Path::root()));
        assert!(p("/photos").overlaps(&p("/photos/x")));
        assert!(p("/photos/x").overlaps(&p("/photos")));
        assert!(!p("/photos").overlaps(&p("/photosecret")));
        assert!(!p("/a/x").overlaps(&p("/a/y")));
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(p("/").to_string(), "/");
        assert_eq!(p("/a/b c/ü").to_string(), "/a/b c/ü");
        assert_eq!(p("/a/b").len(), 2);
        assert_eq!(p("/a/b").components().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(Path::root().components().count(), 0);
        assert_eq!(p("/a/b").parent(), Some(p("/a")));
        assert_eq!(p("/a").parent(), Some(Path::root()));
        assert_eq!(Path::root().parent(), None);
        assert_eq!(p("/a/b").last(), Some("b"));
        assert!(Path::root().is_empty());
        assert!(!p("/a").is_empty());
        let anc: Vec<_> = p("/a/b").ancestors_encoded().map(<[u8]>::to_vec).collect();
        assert_eq!(anc, vec![b"".to_vec(), b"a\0".to_vec(), b"a\0b\0".to_vec()]);
    }

    #[test]
    fn bad_paths_are_refused_with_a_reason() {
        assert!(matches!(
            Path::parse("a/b"),
            Err(ParseError::NotAbsolute(_))
        ));
        assert!(matches!(
            Path::parse("//"),
            Err(ParseError::EmptyComponent(0))
        ));
        assert!(matches!(
            Path::parse("/a/"),
            Err(ParseError::EmptyComponent(1))
        ));
        assert!(matches!(
            Path::parse("/a\0b"),
            Err(ParseError::NulInComponent(0))
        ));
        let long = format!("/{}", "x".repeat(256));
        assert!(matches!(
            Path::parse(&long),
            Err(ParseError::ComponentTooLong { index: 0, len: 256 })
        ));
        let ok = format!("/{}", "x".repeat(255));
        assert!(Path::parse(&ok).is_ok());
        let deep = "/a".repeat(65);
        assert!(matches!(
            Path::parse(&deep),
            Err(ParseError::TooManyComponents)
        ));
        assert!(Path::parse(&"/a".repeat(64)).is_ok());
        assert!(Path::from_components(["a/b"]).is_err());
    }

    #[test]
    fn encoding_rejects_malformed_bytes() {
        assert!(Path::from_encoded(b"a").is_err());
        assert!(Path::from_encoded(b"\0").is_err());
        assert!(Path::from_encoded(b"a\0\0").is_err());
        assert!(Path::from_encoded(&[0xff, 0]).is_err());
        assert_eq!(Path::from_encoded(b"").unwrap(), Path::root());
        assert_eq!(Path::from_encoded(b"a\0b\0").unwrap(), p("/a/b"));
    }

    #[test]
    fn longest_path_fits_in_a_fjall_key() {
        let c = "x".repeat(MAX_COMPONENT_LEN);
        let path = Path::from_components(std::iter::repeat_n(c.as_str(), MAX_COMPONENTS)).unwrap();
        assert_eq!(path.encoded().len(), MAX_ENCODED_PATH_LEN);
    }

    fn component() -> impl Strategy<Value = String> {
        // Small alphabet so that shared prefixes and equal components are common.
        prop_oneof![
            "[ab]{1,3}",
            "[a-c\u{e9}\u{1F600}]{1,4}",
            Just("~".to_string()),
            Just("\u{7f}".to_string()),
        ]
    }

    fn path() -> impl Strategy<Value = Path> {
        prop::collection::vec(component(), 0..5).prop_map(|cs| Path::from_components(cs).unwrap())
    }

    proptest! {
        #[test]
        fn encoding_order_is_component_order(a in path(), b in path()) {
            let ca: Vec<&str> = a.components().collect();
            let cb: Vec<&str> = b.components().collect();
            let by_components = ca.iter().map(|c| c.as_bytes()).cmp(cb.iter().map(|c| c.as_bytes()));
            prop_assert_eq!(a.encoded().cmp(b.encoded()), by_components);
        }

        #[test]
        fn byte_prefix_is_component_prefix(a in path(), b in path()) {
            let ca: Vec<&str> = a.components().collect();
            let cb: Vec<&str> = b.components().collect();
            let component_prefix = cb.len() >= ca.len() && cb[..ca.len()] == ca[..];
            prop_assert_eq!(a.is_prefix_of(&b), component_prefix);
        }

        #[test]
        fn text_and_encoding_round_trip(a in path()) {
            prop_assert_eq!(Path::parse(&a.to_string()).unwrap(), a.clone());
            prop_assert_eq!(Path::from_encoded(a.encoded()).unwrap(), a);
        }

        #[test]
        fn from_encoded_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = Path::from_encoded(&bytes) {
                prop_assert_eq!(p.encoded(), &bytes[..]);
            }
        }
    }
}
