//! The basic types that kith's store and capabilities crates share.
//!
//! kith names every person's namespace by an ed25519 public key
//! ([`NamespaceId`]) and every device by its iroh endpoint key ([`DeviceId`]).
//! Inside a namespace, data sits at a [`Path`]: a sequence of validated
//! components with a component-wise prefix relation and an order-preserving
//! byte encoding. Every write carries a [`Timestamp`] from a
//! [`HybridClock`].
//!
//! This crate does no IO and has no knowledge of storage, signatures or the
//! network; it exists so that `kith-store` and `kith-caps` can agree on these
//! types without depending on each other.
//!
//! ```
//! use kith_types::{NamespaceId, Path};
//!
//! let photos = Path::parse("/photos")?;
//! let holiday = Path::parse("/photos/2026/holiday.jpg")?;
//! assert!(photos.is_prefix_of(&holiday));
//! assert!(!photos.is_prefix_of(&Path::parse("/photosecret")?));
//!
//! let id = NamespaceId::from_bytes([7; 32]);
//! assert_eq!(id.to_string().parse::<NamespaceId>()?, id);
//! # Ok::<(), kith_types::ParseError>(())
//! ```

mod clock;
mod id;
mod path;

pub use clock::{HybridClock, Timestamp};
pub use id::{DeviceId, NamespaceId};
pub use path::{MAX_COMPONENT_LEN, MAX_COMPONENTS, MAX_ENCODED_PATH_LEN, Path};

/// Why a piece of text or bytes is not a valid id or path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// An id's text is not 52 characters of lowercase base32.
    #[error("invalid {what}: expected 52 characters of base32 (a-z, 2-7), got {got:?}")]
    InvalidId {
        /// What was being parsed ("namespace id", "device id").
        what: &'static str,
        /// The text that was given, cut to a reasonable length.
        got: String,
    },
    /// A path's text does not start with `/`.
    #[error("a path must start with '/', got {0:?}")]
    NotAbsolute(String),
    /// A path component is empty (`//` or a trailing `/`).
    #[error("empty path component at position {0} (no '//' and no trailing '/')")]
    EmptyComponent(usize),
    /// A path component contains a NUL byte.
    #[error("path component at position {0} contains a NUL byte")]
    NulInComponent(usize),
    /// A path component contains `/`.
    #[error("path component at position {0} contains '/'")]
    SlashInComponent(usize),
    /// A path component is longer than [`MAX_COMPONENT_LEN`] bytes.
    #[error(
        "path component at position {index} is {len} bytes; the maximum is {MAX_COMPONENT_LEN}"
    )]
    ComponentTooLong {
        /// Position of the component.
        index: usize,
        /// Its length in bytes.
        len: usize,
    },
    /// A path has more than [`MAX_COMPONENTS`] components.
    #[error("path has more than {MAX_COMPONENTS} components")]
    TooManyComponents,
    /// Encoded path bytes are malformed (not UTF-8, or not terminated).
    #[error("malformed encoded path: {0}")]
    MalformedEncoding(&'static str),
}
