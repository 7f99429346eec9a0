//! Read capabilities ("this friend may read this prefix") and their
//! revocation.

use std::fmt;

use kith_types::{NamespaceId, Path, Timestamp};

use crate::cert::{check_expiry_arg, check_expiry_decoded, check_window};
use crate::encoding::{MAX_PATH_FIELD_LEN, OPT_TIMESTAMP_LEN, Reader, SIGNATURE_LEN, Writer};
use crate::error::Result;
use crate::keys::{self, NamespaceKey};
use crate::random_id::random_id;

random_id!(
    /// The unique id of a [`ReadCap`]: 16 random bytes chosen by the issuer.
    ///
    /// Random rather than derived from the cap's content, so that granting the
    /// same prefix to the same friend again (after a revocation) makes a new cap
    /// that the old revocation does not name. 128 random bits make a collision
    /// between two caps of one namespace practically impossible.
    CapId
);

/// A namespace key's grant: the `grantee` namespace may read every path
/// under `prefix` (component-wise) from `issued_at` until `expires_at`
/// (exclusive; `None`: until revoked).
///
/// Made only by [`issue`](Self::issue) or [`decode`](Self::decode); a
/// decoded cap must pass [`verify`](Self::verify) before it is trusted.
/// Decisions over many caps are made by [`Grants`](crate::Grants).
///
/// Signed with domain tag `kith/v1/readcap`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ReadCap {
    id: CapId,
    namespace: NamespaceId,
    grantee: NamespaceId,
    prefix: Path,
    issued_at: Timestamp,
    expires_at: Option<Timestamp>,
    signature: [u8; SIGNATURE_LEN],
}

impl ReadCap {
    /// Domain tag of the signature.
    pub const DOMAIN: &'static str = "kith/v1/readcap";
    /// Length of the encoding, at most.
    pub const MAX_ENCODED_LEN: usize =
        1 + 16 + 32 + 32 + MAX_PATH_FIELD_LEN + 8 + OPT_TIMESTAMP_LEN + SIGNATURE_LEN;
    const WHAT: &'static str = "read cap";

    /// Grants `grantee` read access to `prefix` in `key`'s namespace.
    /// Make `id` with [`CapId::random`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) if
    /// `expires_at` is not after `issued_at`.
    pub fn issue(
        key: &NamespaceKey,
        id: CapId,
        grantee: NamespaceId,
        prefix: Path,
        issued_at: Timestamp,
        expires_at: Option<Timestamp>,
    ) -> Result<Self> {
        check_expiry_arg(issued_at, expires_at)?;
        let mut cap = Self {
            id,
            namespace: key.id(),
            grantee,
            prefix,
            issued_at,
            expires_at,
            signature: [0; SIGNATURE_LEN],
        };
        cap.signature = key.sign(Self::DOMAIN, cap.body().as_slice());
        Ok(cap)
    }

    fn body(&self) -> Writer {
        let mut w = Writer::with_version(128 + self.prefix.encoded().len());
        w.raw(self.id.as_bytes())
            .namespace(&self.namespace)
            .namespace(&self.grantee)
            .path(&self.prefix)
            .timestamp(self.issued_at)
            .opt_timestamp(self.expires_at);
        w
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = self.body();
        w.raw(&self.signature);
        w.finish()
    }

    /// Decodes a cap (form only; call [`verify`](Self::verify)).
    ///
    /// # Errors
    /// [`Error::Decode`](crate::Error::Decode) for anything but exactly one
    /// canonical encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(Self::WHAT, bytes, Self::MAX_ENCODED_LEN)?;
        let id = CapId(r.array("id")?);
        let namespace = r.namespace("namespace")?;
        let grantee = r.namespace("grantee")?;
        let prefix = r.path("prefix")?;
        let issued_at = r.timestamp("issued_at")?;
        let expires_at = r.opt_timestamp("expires_at")?;
        check_expiry_decoded(Self::WHAT, issued_at, expires_at)?;
        let signature = r.array("signature")?;
        r.finish()?;
        Ok(Self {
            id,
            namespace,
            grantee,
            prefix,
            issued_at,
            expires_at,
            signature,
        })
    }

    /// Checks the signature: made by the namespace key, for this type.
    ///
    /// # Errors
    /// [`Error::BadSignature`](crate::Error::BadSignature) or
    /// [`Error::InvalidKey`](crate::Error::InvalidKey).
    pub fn verify(&self) -> Result<()> {
        keys::verify(
            self.namespace.as_bytes(),
            "namespace id",
            Self::DOMAIN,
            self.body().as_slice(),
            &self.signature,
            Self::WHAT,
        )
    }

    /// Checks the validity window at `at` (`issued_at <= at < expires_at`).
    ///
    /// # Errors
    /// [`Error::NotYetValid`](crate::Error::NotYetValid) or
    /// [`Error::Expired`](crate::Error::Expired).
    pub fn check_time(&self, at: Timestamp) -> Result<()> {
        check_window(Self::WHAT, self.issued_at, self.expires_at, at)
    }

    /// Whether this cap's prefix covers `path` (component-wise).
    pub fn covers(&self, path: &Path) -> bool {
        self.prefix.is_prefix_of(path)
    }

    /// The cap's id.
    pub fn id(&self) -> CapId {
        self.id
    }

    /// The namespace that grants (the signer).
    pub fn namespace(&self) -> NamespaceId {
        self.namespace
    }

    /// The friend's namespace that may read.
    pub fn grantee(&self) -> NamespaceId {
        self.grantee
    }

    /// The prefix it covers.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// When it starts to be valid.
    pub fn issued_at(&self) -> Timestamp {
        self.issued_at
    }

    /// When it stops being valid (exclusive), if ever.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.expires_at
    }

    /// The signature bytes.
    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.signature
    }
}

impl fmt::Debug for ReadCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadCap")
            .field("id", &self.id)
            .field("namespace", &self.namespace)
            .field("grantee", &self.grantee)
            .field("prefix", &self.prefix)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A namespace key's revocation of one [`ReadCap`], named by its id.
///
/// It takes effect as soon as it is known, whatever its time: `revoked_at`
/// records when the owner decided, for display and ordering. To grant the
/// same prefix again, the owner issues a new cap (with a new id).
///
/// Signed with domain tag `kith/v1/revocation`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Revocation {
    namespace: NamespaceId,
    cap_id: CapId,
    revoked_at: Timestamp,
    signature: [u8; SIGNATURE_LEN],
}

impl Revocation {
    /// Domain tag of the signature.
    pub const DOMAIN: &'static str = "kith/v1/revocation";
    /// Length of the encoding.
    pub const MAX_ENCODED_LEN: usize = 1 + 32 + 16 + 8 + SIGNATURE_LEN;
    const WHAT: &'static str = "revocation";

    /// Revokes the cap `cap_id` of `key`'s namespace.
    pub fn issue(key: &NamespaceKey, cap_id: CapId, revoked_at: Timestamp) -> Self {
        let mut rev = Self {
            namespace: key.id(),
            cap_id,
            revoked_at,
            signature: [0; SIGNATURE_LEN],
        };
        rev.signature = key.sign(Self::DOMAIN, rev.body().as_slice());
        rev
    }

    fn body(&self) -> Writer {
        let mut w = Writer::with_version(Self::MAX_ENCODED_LEN);
        w.namespace(&self.namespace)
            .raw(self.cap_id.as_bytes())
            .timestamp(self.revoked_at);
        w
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = self.body();
        w.raw(&self.signature);
        w.finish()
    }

    /// Decodes a revocation (form only; call [`verify`](Self::verify)).
    ///
    /// # Errors
    /// [`Error::Decode`](crate::Error::Decode) for anything but exactly one
    /// canonical encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(Self::WHAT, bytes, Self::MAX_ENCODED_LEN)?;
        let rev = Self {
            namespace: r.namespace("namespace")?,
            cap_id: CapId(r.array("cap_id")?),
            revoked_at: r.timestamp("revoked_at")?,
            signature: r.array("signature")?,
        };
        r.finish()?;
        Ok(rev)
    }

    /// Checks the signature: made by the namespace key, for this type.
    ///
    /// # Errors
    /// [`Error::BadSignature`](crate::Error::BadSignature) or
    /// [`Error::InvalidKey`](crate::Error::InvalidKey).
    pub fn verify(&self) -> Result<()> {
        keys::verify(
            self.namespace.as_bytes(),
            "namespace id",
            Self::DOMAIN,
            self.body().as_slice(),
            &self.signature,
            Self::WHAT,
        )
    }

    /// Whether this revocation revokes `cap` (same namespace, same id).
    pub fn revokes(&self, cap: &ReadCap) -> bool {
        self.namespace == cap.namespace && self.cap_id == cap.id
    }

    /// The namespace (the signer).
    pub fn namespace(&self) -> NamespaceId {
        self.namespace
    }

    /// The revoked cap's id.
    pub fn cap_id(&self) -> CapId {
        self.cap_id
    }

    /// When the owner revoked it.
    pub fn revoked_at(&self) -> Timestamp {
        self.revoked_at
    }

    /// The signature bytes.
    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.signature
    }
}

impl fmt::Debug for Revocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Revocation")
            .field("namespace", &self.namespace)
            .field("cap_id", &self.cap_id)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}
