//! Deletion requests ([`Tombstone`]) and the friends' confirmations
//! ([`Receipt`]).

use std::fmt;

use kith_types::{DeviceId, NamespaceId, Path, Timestamp};

use crate::cert::{DeviceCert, DeviceRevocation, Rights, check_window};
use crate::encoding::{MAX_PATH_FIELD_LEN, Reader, SIGNATURE_LEN, Writer};
use crate::error::{DecodeError, Error, Result};
use crate::keys::{self, DeviceKey, NamespaceKey};
use crate::random_id::random_id;

/// How far in the future (by the checker's clock) a tombstone's time may
/// lie before it is refused as [`Error::NotYetValid`]: 5 minutes, in
/// microseconds.
///
/// A tombstone deletes what was written *up to* its time, so one dated far
/// ahead would also swallow writes that have not happened yet. Small clock
/// differences between devices are normal and tolerated; a refused tombstone
/// is retried by its sender and accepted once the time has come.
pub const MAX_CLOCK_SKEW_MICROS: u64 = 5 * 60 * 1_000_000;

random_id!(
    /// The unique id of a [`Tombstone`]: 16 random bytes chosen by the issuer,
    /// named by the [`Receipt`]s that confirm it.
    TombstoneId
);

/// Who signed a tombstone.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum TombstoneSigner {
    /// The namespace key itself. Encoded as tag `0`.
    Namespace,
    /// A device of the namespace, which carries its cert (it must have the
    /// write right). Encoded as tag `1`, then the cert's encoding with a
    /// `u16` length.
    Device(DeviceCert),
}

/// A deletion request: "everything under `prefix` in `namespace` written
/// at or before `up_to` is deleted".
///
/// Signed by the namespace key or by a device with the write right (which
/// then carries its [`DeviceCert`]). A node that accepts it deletes the
/// documents under the prefix created at or before `up_to`, with their
/// history, keeps the tombstone, refuses that data if it comes again, and
/// returns a [`Receipt`].
///
/// Before applying one from a peer: [`decode`](Self::decode), then
/// [`verify`](Self::verify) (signatures and who signed), then
/// [`check_authority`](Self::check_authority) (time and device
/// revocations); or [`tombstone_validity`](crate::tombstone_validity) for
/// both.
///
/// Signed with domain tag `kith/v1/tombstone`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Tombstone {
    id: TombstoneId,
    namespace: NamespaceId,
    prefix: Path,
    up_to: Timestamp,
    signer: TombstoneSigner,
    signature: [u8; SIGNATURE_LEN],
}

impl Tombstone {
    /// Domain tag of the signature.
    pub const DOMAIN: &'static str = "kith/v1/tombstone";
    /// Length of the encoding, at most.
    pub const MAX_ENCODED_LEN: usize =
        1 + 16 + 32 + MAX_PATH_FIELD_LEN + 8 + 1 + 2 + DeviceCert::MAX_ENCODED_LEN + SIGNATURE_LEN;
    const WHAT: &'static str = "tombstone";

    /// A tombstone signed by the namespace key.
    pub fn issue(key: &NamespaceKey, id: TombstoneId, prefix: Path, up_to: Timestamp) -> Self {
        let mut t = Self {
            id,
            namespace: key.id(),
            prefix,
            up_to,
            signer: TombstoneSigner::Namespace,
            signature: [0; SIGNATURE_LEN],
        };
        t.signature = key.sign(Self::DOMAIN, t.body().as_slice());
        t
    }

    /// A tombstone signed by a device of `cert`'s namespace.
    ///
    /// # Errors
    /// [`Error::Unauthorized`] if `cert` is not `key`'s cert or lacks the
    /// write right.
    pub fn issue_by_device(
        key: &DeviceKey,
        cert: DeviceCert,
        id: TombstoneId,
        prefix: Path,
        up_to: Timestamp,
    ) -> Result<Self> {
        if cert.device() != key.id() {
            return Err(Error::Unauthorized {
                reason: "the cert is for another device",
            });
        }
        if !cert.rights().contains(Rights::WRITE) {
            return Err(Error::Unauthorized {
                reason: "the device cert lacks the write right",
            });
        }
        let mut t = Self {
            id,
            namespace: cert.namespace(),
            prefix,
            up_to,
            signer: TombstoneSigner::Device(cert),
            signature: [0; SIGNATURE_LEN],
        };
        t.signature = key.sign(Self::DOMAIN, t.body().as_slice());
        Ok(t)
    }

    fn body(&self) -> Writer {
        let mut w = Writer::with_version(256 + self.prefix.encoded().len());
        w.raw(self.id.as_bytes())
            .namespace(&self.namespace)
            .path(&self.prefix)
            .timestamp(self.up_to);
        match &self.signer {
            TombstoneSigner::Namespace => {
                w.u8(0);
            }
            TombstoneSigner::Device(cert) => {
                w.u8(1).bytes16(&cert.encode());
            }
        }
        w
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = self.body();
        w.raw(&self.signature);
        w.finish()
    }

    /// Decodes a tombstone (form only; call [`verify`](Self::verify)).
    ///
    /// # Errors
    /// [`Error::Decode`] for anything but exactly one canonical encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(Self::WHAT, bytes, Self::MAX_ENCODED_LEN)?;
        let id = TombstoneId(r.array("id")?);
        let namespace = r.namespace("namespace")?;
        let prefix = r.path("prefix")?;
        let up_to = r.timestamp("up_to")?;
        let signer = match r.u8("signer")? {
            0 => TombstoneSigner::Namespace,
            1 => {
                let cert = r.bytes16("signer cert", DeviceCert::MAX_ENCODED_LEN)?;
                TombstoneSigner::Device(DeviceCert::decode_form(cert)?)
            }
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: Self::WHAT,
                    field: "signer",
                    tag,
                }
                .into());
            }
        };
        let signature = r.array("signature")?;
        r.finish()?;
        Ok(Self {
            id,
            namespace,
            prefix,
            up_to,
            signer,
            signature,
        })
    }

    /// Checks the signatures and who made them: the namespace key, or a
    /// device whose embedded cert is signed by the namespace key, is for
    /// this namespace, and has the write right.
    ///
    /// # Errors
    /// [`Error::BadSignature`], [`Error::InvalidKey`] or
    /// [`Error::Unauthorized`].
    pub fn verify(&self) -> Result<()> {
        let body = self.body();
        match &self.signer {
            TombstoneSigner::Namespace => keys::verify(
                self.namespace.as_bytes(),
                "namespace id",
                Self::DOMAIN,
                body.as_slice(),
                &self.signature,
                Self::WHAT,
            ),
            TombstoneSigner::Device(cert) => {
                if cert.namespace() != self.namespace {
                    return Err(Error::Unauthorized {
                        reason: "the signing device's cert is for another namespace",
                    });
                }
                if !cert.rights().contains(Rights::WRITE) {
                    return Err(Error::Unauthorized {
                        reason: "the signing device's cert lacks the write right",
                    });
                }
                cert.verify()?;
                keys::verify(
                    cert.device().as_bytes(),
                    "device id",
                    Self::DOMAIN,
                    body.as_slice(),
                    &self.signature,
                    Self::WHAT,
                )
            }
        }
    }

    /// Checks what depends on time and on revocations, for a tombstone that
    /// passed [`verify`](Self::verify):
    ///
    /// - its time is at most [`MAX_CLOCK_SKEW_MICROS`] after `now`;
    /// - if a device signed it, the device's cert was valid at the
    ///   tombstone's time (`up_to`) and is not revoked by any of
    ///   `device_revocations`. A revoked cert invalidates every tombstone
    ///   it signed that is not applied yet, whatever its date, because whoever
    ///   stole a device key can back-date. The owner re-issues such a
    ///   deletion with the namespace key if it is still wanted.
    ///
    /// # Errors
    /// [`Error::NotYetValid`], [`Error::Expired`] or [`Error::Revoked`].
    pub fn check_authority(
        &self,
        device_revocations: &[DeviceRevocation],
        now: Timestamp,
    ) -> Result<()> {
        if self.up_to.as_micros() > now.as_micros().saturating_add(MAX_CLOCK_SKEW_MICROS) {
            return Err(Error::NotYetValid {
                what: Self::WHAT,
                valid_from: Timestamp::from_micros(
                    self.up_to.as_micros().saturating_sub(MAX_CLOCK_SKEW_MICROS),
                ),
            });
        }
        if let TombstoneSigner::Device(cert) = &self.signer {
            cert.check_authority(Rights::WRITE, device_revocations, self.up_to)?;
        }
        Ok(())
    }

    /// Whether this tombstone deletes the document at `path` in `namespace`
    /// created at `created_at`: same namespace, `prefix` covers `path`
    /// component-wise (`/photos` covers `/photos/a`, not `/photosecret`),
    /// and `created_at <= up_to`. The same rule as the store's.
    pub fn covers(&self, namespace: &NamespaceId, path: &Path, created_at: Timestamp) -> bool {
        self.namespace == *namespace && self.prefix.is_prefix_of(path) && created_at <= self.up_to
    }

    /// Whether this tombstone's prefix covers `path` (at any time).
    pub fn covers_path(&self, path: &Path) -> bool {
        self.prefix.is_prefix_of(path)
    }

    /// The tombstone's id.
    pub fn id(&self) -> TombstoneId {
        self.id
    }

    /// The namespace whose data is deleted.
    pub fn namespace(&self) -> NamespaceId {
        self.namespace
    }

    /// The prefix under which data is deleted.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// Data written at or before this time is deleted.
    pub fn up_to(&self) -> Timestamp {
        self.up_to
    }

    /// Who signed it.
    pub fn signer(&self) -> &TombstoneSigner {
        &self.signer
    }

    /// The signature bytes.
    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.signature
    }
}

impl fmt::Debug for Tombstone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tombstone")
            .field("id", &self.id)
            .field("namespace", &self.namespace)
            .field("prefix", &self.prefix)
            .field("up_to", &self.up_to)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

/// A friend's device confirms that it applied a tombstone and erased what
/// it deleted: "tombstone `X` applied and erased at time `T`", in the
/// friend's namespace, by this device.
///
/// What it asserts: by `applied_at` the device held nothing under the
/// tombstone's prefix written at or before `up_to`, and the keys that
/// encrypted the deleted documents and blobs at rest were destroyed on its
/// disk, so no file in its data folder opens them. kith's node signs it
/// only after that erasure is durable. It cannot assert anything about
/// copies the friend made elsewhere (backups, screenshots, another
/// program).
///
/// Signed by the device's key; checked with the device's [`DeviceCert`]
/// ([`verify`](Self::verify)).
///
/// Signed with domain tag `kith/v1/receipt`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Receipt {
    tombstone_id: TombstoneId,
    namespace: NamespaceId,
    device: DeviceId,
    applied_at: Timestamp,
    signature: [u8; SIGNATURE_LEN],
}

impl Receipt {
    /// Domain tag of the signature.
    pub const DOMAIN: &'static str = "kith/v1/receipt";
    /// Length of the encoding.
    pub const MAX_ENCODED_LEN: usize = 1 + 16 + 32 + 32 + 8 + SIGNATURE_LEN;
    const WHAT: &'static str = "receipt";

    /// `key`'s device, acting for `namespace`, confirms it applied
    /// `tombstone_id` at `applied_at`.
    pub fn issue(
        key: &DeviceKey,
        namespace: NamespaceId,
        tombstone_id: TombstoneId,
        applied_at: Timestamp,
    ) -> Self {
        let mut receipt = Self {
            tombstone_id,
            namespace,
            device: key.id(),
            applied_at,
            signature: [0; SIGNATURE_LEN],
        };
        receipt.signature = key.sign(Self::DOMAIN, receipt.body().as_slice());
        receipt
    }

    fn body(&self) -> Writer {
        let mut w = Writer::with_version(Self::MAX_ENCODED_LEN);
        w.raw(self.tombstone_id.as_bytes())
            .namespace(&self.namespace)
            .device(&self.device)
            .timestamp(self.applied_at);
        w
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = self.body();
        w.raw(&self.signature);
        w.finish()
    }

    /// Decodes a receipt (form only; call [`verify`](Self::verify)).
    ///
    /// # Errors
    /// [`Error::Decode`] for anything but exactly one canonical encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(Self::WHAT, bytes, Self::MAX_ENCODED_LEN)?;
        let receipt = Self {
            tombstone_id: TombstoneId(r.array("tombstone_id")?),
            namespace: r.namespace("namespace")?,
            device: r.device("device")?,
            applied_at: r.timestamp("applied_at")?,
            signature: r.array("signature")?,
        };
        r.finish()?;
        Ok(receipt)
    }

    /// Checks the receipt against the signing device's cert: the cert is
    /// signed by the friend's namespace key and names this receipt's
    /// namespace and device, was valid at `applied_at`, and the receipt's
    /// signature is the device's. Whether that device has since been revoked
    /// is checked with [`DeviceCert::check_authority`] by a caller that
    /// holds the friend's device revocations.
    ///
    /// # Errors
    /// [`Error::Unauthorized`] (cert of another namespace or device),
    /// [`Error::BadSignature`], [`Error::InvalidKey`],
    /// [`Error::NotYetValid`] or [`Error::Expired`].
    pub fn verify(&self, cert: &DeviceCert) -> Result<()> {
        if cert.namespace() != self.namespace || cert.device() != self.device {
            return Err(Error::Unauthorized {
                reason: "the cert is not the receipt signer's",
            });
        }
        cert.verify()?;
        check_window(
            "device cert",
            cert.issued_at(),
            cert.expires_at(),
            self.applied_at,
        )?;
        keys::verify(
            self.device.as_bytes(),
            "device id",
            Self::DOMAIN,
            self.body().as_slice(),
            &self.signature,
            Self::WHAT,
        )
    }

    /// The tombstone applied.
    pub fn tombstone_id(&self) -> TombstoneId {
        self.tombstone_id
    }

    /// The friend's namespace.
    pub fn namespace(&self) -> NamespaceId {
        self.namespace
    }

    /// The friend's device that applied it (the signer).
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// When it was applied.
    pub fn applied_at(&self) -> Timestamp {
        self.applied_at
    }

    /// The signature bytes.
    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.signature
    }
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receipt")
            .field("tombstone_id", &self.tombstone_id)
            .field("namespace", &self.namespace)
            .field("device", &self.device)
            .field("applied_at", &self.applied_at)
            .finish_non_exhaustive()
    }
}
