//! Device certificates: "this device acts for this namespace", and their
//! revocation.

use std::fmt;
use std::ops::BitOr;

use kith_types::{DeviceId, NamespaceId, Timestamp};

use crate::encoding::{OPT_TIMESTAMP_LEN, Reader, SIGNATURE_LEN, Writer};
use crate::error::{DecodeError, Error, Result};
use crate::keys::{self, NamespaceKey};

/// What a device may do for its namespace: a set of bit flags.
///
/// Encoded as one byte; bits this version does not define are refused when
/// decoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rights(u8);

impl Rights {
    /// No rights: the device only identifies the person (it may still sign
    /// receipts).
    pub const NONE: Rights = Rights(0);
    /// May write into the namespace and sign tombstones for it.
    pub const WRITE: Rights = Rights(0b01);
    /// May serve the namespace to friends (answer catch-up, send blobs).
    pub const SERVE: Rights = Rights(0b10);
    /// Every right defined by this version.
    pub const ALL: Rights = Rights(0b11);

    /// The rights with these bits.
    ///
    /// # Errors
    /// [`DecodeError::UnknownBits`] if bits outside [`Rights::ALL`] are set.
    pub fn from_bits(bits: u8) -> Result<Self, DecodeError> {
        let unknown = bits & !Self::ALL.0;
        if unknown != 0 {
            return Err(DecodeError::UnknownBits {
                what: "rights",
                field: "rights",
                bits: unknown,
            });
        }
        Ok(Self(bits))
    }

    /// The bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every right in `other` is in `self`.
    pub const fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Rights {
    type Output = Rights;

    fn bitor(self, rhs: Rights) -> Rights {
        Rights(self.0 | rhs.0)
    }
}

impl fmt::Debug for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = Vec::new();
        if self.contains(Self::WRITE) {
            names.push("write");
        }
        if self.contains(Self::SERVE) {
            names.push("serve");
        }
        write!(f, "Rights({})", names.join("|"))
    }
}

/// Checks `issued_at <= at < expires_at`.
pub(crate) fn check_window(
    what: &'static str,
    issued_at: Timestamp,
    expires_at: Option<Timestamp>,
    at: Timestamp,
) -> Result<()> {
    if at < issued_at {
        return Err(Error::NotYetValid {
            what,
            valid_from: issued_at,
        });
    }
    match expires_at {
        Some(expired_at) if at >= expired_at => Err(Error::Expired { what, expired_at }),
        _ => Ok(()),
    }
}

/// Refuses an expiry that is not after the issue time.
pub(crate) fn check_expiry_arg(issued_at: Timestamp, expires_at: Option<Timestamp>) -> Result<()> {
    match expires_at {
        Some(e) if e <= issued_at => Err(Error::InvalidArgument {
            reason: "expiry must be after the issue time",
        }),
        _ => Ok(()),
    }
}

/// The same rule for decoders.
pub(crate) fn check_expiry_decoded(
    what: &'static str,
    issued_at: Timestamp,
    expires_at: Option<Timestamp>,
) -> Result<(), DecodeError> {
    match expires_at {
        Some(e) if e <= issued_at => Err(DecodeError::NotCanonical {
            what,
            reason: "expiry is not after the issue time",
        }),
        _ => Ok(()),
    }
}

/// A namespace key's statement that a device (an iroh endpoint) acts for the
/// namespace with some [`Rights`], from `issued_at` until `expires_at`
/// (exclusive; `None`: until revoked).
///
/// Friends check a device's writes, answers and receipts against its cert.
/// A cert is made only by [`issue`](Self::issue) or
/// [`decode`](Self::decode); a decoded cert must pass
/// [`verify`](Self::verify) before it is trusted.
///
/// Signed with domain tag `kith/v1/device-cert`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DeviceCert {
    namespace: NamespaceId,
    device: DeviceId,
    rights: Rights,
    issued_at: Timestamp,
    expires_at: Option<Timestamp>,
    signature: [u8; SIGNATURE_LEN],
}

impl DeviceCert {
    /// Domain tag of the signature.
    pub const DOMAIN: &'static str = "kith/v1/device-cert";
    /// Length of the encoding, at most.
    pub const MAX_ENCODED_LEN: usize = 1 + 32 + 32 + 1 + 8 + OPT_TIMESTAMP_LEN + SIGNATURE_LEN;
    const WHAT: &'static str = "device cert";

    /// Certifies `device` to act for `key`'s namespace.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `expires_at` is not after `issued_at`.
    pub fn issue(
        key: &NamespaceKey,
        device: DeviceId,
        rights: Rights,
        issued_at: Timestamp,
        expires_at: Option<Timestamp>,
    ) -> Result<Self> {
        check_expiry_arg(issued_at, expires_at)?;
        let mut cert = Self {
            namespace: key.id(),
            device,
            rights,
            issued_at,
            expires_at,
            signature: [0; SIGNATURE_LEN],
        };
        cert.signature = key.sign(Self::DOMAIN, cert.body().as_slice());
        Ok(cert)
    }

    fn body(&self) -> Writer {
        let mut w = Writer::with_version(Self::MAX_ENCODED_LEN);
        w.namespace(&self.namespace)
            .device(&self.device)
            .u8(self.rights.bits())
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

    /// Decodes a cert. This checks the form only: call
    /// [`verify`](Self::verify) before trusting it.
    ///
    /// # Errors
    /// [`Error::Decode`] for anything but exactly one canonical encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        Ok(Self::decode_form(bytes)?)
    }

    /// [`decode`](Self::decode) with the decoder's own error type, for
    /// types that embed a cert.
    pub(crate) fn decode_form(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(Self::WHAT, bytes, Self::MAX_ENCODED_LEN)?;
        let namespace = r.namespace("namespace")?;
        let device = r.device("device")?;
        let rights = Rights::from_bits(r.u8("rights")?).map_err(|e| match e {
            DecodeError::UnknownBits { bits, .. } => DecodeError::UnknownBits {
                what: r.what(),
                field: "rights",
                bits,
            },
            other => other,
        })?;
        let issued_at = r.timestamp("issued_at")?;
        let expires_at = r.opt_timestamp("expires_at")?;
        check_expiry_decoded(r.what(), issued_at, expires_at)?;
        let signature = r.array("signature")?;
        r.finish()?;
        Ok(Self {
            namespace,
            device,
            rights,
            issued_at,
            expires_at,
            signature,
        })
    }

    /// Checks the signature: made by the namespace key, for this type.
    ///
    /// # Errors
    /// [`Error::BadSignature`] or [`Error::InvalidKey`].
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

    /// Checks that this cert lets its device use `rights` at time `at`:
    /// inside its validity window, holding the rights, and not revoked by any
    /// of `revocations` (see [`DeviceRevocation`]). The signature is not
    /// checked here: call [`verify`](Self::verify) when the cert arrives.
    ///
    /// # Errors
    /// [`Error::NotYetValid`], [`Error::Expired`], [`Error::Revoked`] or
    /// [`Error::Unauthorized`] (missing right).
    pub fn check_authority(
        &self,
        rights: Rights,
        revocations: &[DeviceRevocation],
        at: Timestamp,
    ) -> Result<()> {
        if revocations.iter().any(|r| r.revokes(self)) {
            return Err(Error::Revoked { what: Self::WHAT });
        }
        check_window(Self::WHAT, self.issued_at, self.expires_at, at)?;
        if !self.rights.contains(rights) {
            return Err(Error::Unauthorized {
                reason: "the device cert lacks the right",
            });
        }
        Ok(())
    }

    /// The namespace the device acts for (the signer).
    pub fn namespace(&self) -> NamespaceId {
        self.namespace
    }

    /// The certified device.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// Its rights.
    pub fn rights(&self) -> Rights {
        self.rights
    }

    /// When the cert starts to be valid.
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

impl fmt::Debug for DeviceCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCert")
            .field("namespace", &self.namespace)
            .field("device", &self.device)
            .field("rights", &self.rights)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A namespace key's statement that a device no longer acts for the
/// namespace.
///
/// It revokes every cert of that device in that namespace **issued at or
/// before `revoked_at`**, and takes effect as soon as it is known, whatever
/// the current time: a revocation is never postponed. A cert issued after
/// `revoked_at` (the person re-certifying the device) is not affected.
///
/// Signed with domain tag `kith/v1/device-revocation`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DeviceRevocation {
    namespace: NamespaceId,
    device: DeviceId,
    revoked_at: Timestamp,
    signature: [u8; SIGNATURE_LEN],
}

impl DeviceRevocation {
    /// Domain tag of the signature.
    pub const DOMAIN: &'static str = "kith/v1/device-revocation";
    /// Length of the encoding.
    pub const MAX_ENCODED_LEN: usize = 1 + 32 + 32 + 8 + SIGNATURE_LEN;
    const WHAT: &'static str = "device revocation";

    /// Revokes `device`'s certs in `key`'s namespace issued at or before
    /// `revoked_at`.
    pub fn issue(key: &NamespaceKey, device: DeviceId, revoked_at: Timestamp) -> Self {
        let mut rev = Self {
            namespace: key.id(),
            device,
            revoked_at,
            signature: [0; SIGNATURE_LEN],
        };
        rev.signature = key.sign(Self::DOMAIN, rev.body().as_slice());
        rev
    }

    fn body(&self) -> Writer {
        let mut w = Writer::with_version(Self::MAX_ENCODED_LEN);
        w.namespace(&self.namespace)
            .device(&self.device)
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
    /// [`Error::Decode`] for anything but exactly one canonical encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(Self::WHAT, bytes, Self::MAX_ENCODED_LEN)?;
        let rev = Self {
            namespace: r.namespace("namespace")?,
            device: r.device("device")?,
            revoked_at: r.timestamp("revoked_at")?,
            signature: r.array("signature")?,
        };
        r.finish()?;
        Ok(rev)
    }

    /// Checks the signature: made by the namespace key, for this type.
    ///
    /// # Errors
    /// [`Error::BadSignature`] or [`Error::InvalidKey`].
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

    /// Whether this revocation revokes `cert`: same namespace and device, and
    /// the cert was issued at or before the revocation.
    pub fn revokes(&self, cert: &DeviceCert) -> bool {
        self.namespace == cert.namespace
            && self.device == cert.device
            && cert.issued_at <= self.revoked_at
    }

    /// The namespace (the signer).
    pub fn namespace(&self) -> NamespaceId {
        self.namespace
    }

    /// The revoked device.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// Certs issued at or before this time are revoked.
    pub fn revoked_at(&self) -> Timestamp {
        self.revoked_at
    }

    /// The signature bytes.
    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.signature
    }
}

impl fmt::Debug for DeviceRevocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceRevocation")
            .field("namespace", &self.namespace)
            .field("device", &self.device)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}
