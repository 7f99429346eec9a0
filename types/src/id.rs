//! 32-byte public-key identifiers with a lowercase base32 text form.

use std::fmt;
use std::str::FromStr;

use crate::ParseError;

/// Length of the text form: 32 bytes in base32 without padding.
const TEXT_LEN: usize = 52;

fn encode(bytes: &[u8; 32]) -> String {
    data_encoding::BASE32_NOPAD
        .encode(bytes)
        .to_ascii_lowercase()
}

fn decode(text: &str, what: &'static str) -> Result<[u8; 32], ParseError> {
    let invalid = || ParseError::InvalidId {
        what,
        got: text.chars().take(80).collect(),
    };
    if text.len() != TEXT_LEN || !text.is_ascii() {
        return Err(invalid());
    }
    let upper = text.to_ascii_uppercase();
    let bytes = data_encoding::BASE32_NOPAD
        .decode(upper.as_bytes())
        .map_err(|_| invalid())?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| invalid())?;
    // Reject non-canonical text (trailing bits set): one id, one text form.
    if encode(&bytes) != text.to_ascii_lowercase() {
        return Err(invalid());
    }
    Ok(bytes)
}

macro_rules! key_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Length of the id in bytes.
            pub const LEN: usize = 32;

            /// Wraps 32 bytes. No check is made that they are a valid
            /// ed25519 point; signature verification does that.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The raw 32 bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Reads an id from exactly 32 bytes.
            ///
            /// # Errors
            /// [`ParseError::MalformedEncoding`] if `bytes` is not 32 bytes long.
            pub fn try_from_slice(bytes: &[u8]) -> Result<Self, ParseError> {
                let arr: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| ParseError::MalformedEncoding(concat!($what, " must be 32 bytes")))?;
                Ok(Self(arr))
            }

            /// The first five characters of the text form, for logs.
            pub fn fmt_short(&self) -> String {
                let mut s = encode(&self.0);
                s.truncate(5);
                s
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&encode(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.fmt_short())
            }
        }

        impl FromStr for $name {
            type Err = ParseError;

            /// Parses the 52-character base32 text form (either case).
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                decode(s.trim(), $what).map(Self)
            }
        }

        impl From<[u8; 32]> for $name {
            fn from(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }
    };
}

key_id!(
    /// A person's namespace: the ed25519 public key that owns it.
    ///
    /// Shown as 52 characters of lowercase base32.
    NamespaceId,
    "namespace id"
);

key_id!(
    /// A device: the ed25519 public key of its iroh endpoint (the EndpointId).
    ///
    /// Shown as 52 characters of lowercase base32.
    DeviceId,
    "device id"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bad_text_gets_a_clear_error() {
        let err = "not-an-id".parse::<NamespaceId>().unwrap_err();
        assert!(err.to_string().contains("namespace id"), "{err}");
        assert!(err.to_string().contains("base32"), "{err}");
        // Right length, wrong alphabet.
        let bad = "1".repeat(TEXT_LEN);
        assert!(bad.parse::<DeviceId>().is_err());
        // Non-canonical trailing bits are refused.
        let mut s = NamespaceId::from_bytes([0; 32]).to_string();
        s.pop();
        s.push('b');
        assert!(s.parse::<NamespaceId>().is_err());
        // Multi-byte characters never panic.
        let weird = "é".repeat(26);
        assert!(weird.parse::<NamespaceId>().is_err());
    }

    #[test]
    fn text_form_is_lowercase_52_chars() {
        let s = NamespaceId::from_bytes([0xab; 32]).to_string();
        assert_eq!(s.len(), TEXT_LEN);
        assert_eq!(s, s.to_ascii_lowercase());
        assert_eq!(
            s.to_ascii_uppercase()
                .parse::<NamespaceId>()
                .unwrap()
                .as_bytes(),
            &[0xab; 32]
        );
    }

    proptest! {
        #[test]
        fn text_round_trip(bytes in any::<[u8; 32]>()) {
            let id = NamespaceId::from_bytes(bytes);
            prop_assert_eq!(id.to_string().parse::<NamespaceId>().unwrap(), id);
        }

        #[test]
        fn parse_never_panics(s in ".{0,80}") {
            let _ = s.parse::<NamespaceId>();
        }
    }
}
