//! Signed live-push messages ([`SignedPush`]).

use kith_types::{DeviceId, NamespaceId};

use crate::encoding::{Reader, SIGNATURE_LEN, Writer};
use crate::error::Result;
use crate::keys::{self, DeviceKey};

/// A message a device publishes into a live-push scope: an opaque `body`
/// (the sync layer's encoding of changes, blob announcements, tombstones or
/// heartbeats) about `namespace`, signed by the publishing `device`.
///
/// The signature proves which device wrote it, not that the device may: the
/// receiver checks the device's [`DeviceCert`](crate::DeviceCert) for the
/// namespace (and its rights) with [`may_act`](crate::may_act). The whole
/// encoding is then sealed with the scope's payload key
/// ([`Scope::seal`](crate::Scope::seal)), so outsiders cannot read it and
/// members cannot forge it.
///
/// Encoding: `01` ‖ namespace 32 ‖ device 32 ‖ body with a `u16` length ‖
/// signature 64. Signed with domain tag `kith/v1/push`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SignedPush {
    namespace: NamespaceId,
    device: DeviceId,
    body: Vec<u8>,
    signature: [u8; SIGNATURE_LEN],
}

impl SignedPush {
    /// Domain tag of the signature.
    pub const DOMAIN: &'static str = "kith/v1/push";
    /// Longest body.
    pub const MAX_BODY_LEN: usize = u16::MAX as usize;
    /// Bytes the encoding adds to the body.
    pub const OVERHEAD: usize = 1 + 32 + 32 + 2 + SIGNATURE_LEN;
    const WHAT: &'static str = "push message";

    /// Signs `body` about `namespace` with this device's key.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) if `body`
    /// is longer than [`MAX_BODY_LEN`](Self::MAX_BODY_LEN).
    pub fn sign(key: &DeviceKey, namespace: NamespaceId, body: Vec<u8>) -> Result<Self> {
        if body.len() > Self::MAX_BODY_LEN {
            return Err(crate::Error::InvalidArgument {
                reason: "a push message body is at most 65,535 bytes",
            });
        }
        let mut m = Self {
            namespace,
            device: key.id(),
            body,
            signature: [0; SIGNATURE_LEN],
        };
        m.signature = key.sign(Self::DOMAIN, m.signed_part().as_slice());
        Ok(m)
    }

    fn signed_part(&self) -> Writer {
        let mut w = Writer::with_version(Self::OVERHEAD + self.body.len());
        w.namespace(&self.namespace)
            .device(&self.device)
            .bytes16(&self.body);
        w
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = self.signed_part();
        w.raw(&self.signature);
        w.finish()
    }

    /// Decodes a push message (form only; call [`verify`](Self::verify)).
    ///
    /// # Errors
    /// [`Error::Decode`](crate::Error::Decode) for anything but exactly one
    /// canonical encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(Self::WHAT, bytes, Self::OVERHEAD + Self::MAX_BODY_LEN)?;
        let namespace = r.namespace("namespace")?;
        let device = r.device("device")?;
        let body = r.bytes16("body", Self::MAX_BODY_LEN)?.to_vec();
        let signature = r.array("signature")?;
        r.finish()?;
        Ok(Self {
            namespace,
            device,
            body,
            signature,
        })
    }

    /// Checks the signature under the device id.
    ///
    /// # Errors
    /// [`Error::BadSignature`](crate::Error::BadSignature) or
    /// [`Error::InvalidKey`](crate::Error::InvalidKey).
    pub fn verify(&self) -> Result<()> {
        keys::verify(
            self.device.as_bytes(),
            "device id",
            Self::DOMAIN,
            self.signed_part().as_slice(),
            &self.signature,
            Self::WHAT,
        )
    }

    /// The namespace the message is about.
    pub fn namespace(&self) -> NamespaceId {
        self.namespace
    }

    /// The device that signed it.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// The signed body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips_and_detects_tampering() {
        let key = DeviceKey::from_bytes([7; 32]);
        let ns = NamespaceId::from_bytes([9; 32]);
        let m = SignedPush::sign(&key, ns, b"hello".to_vec()).unwrap();
        let bytes = m.encode();
        assert_eq!(bytes.len(), SignedPush::OVERHEAD + 5);
        let back = SignedPush::decode(&bytes).unwrap();
        assert_eq!(back, m);
        back.verify().unwrap();
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 66] ^= 1; // a body byte
        assert!(SignedPush::decode(&bad).unwrap().verify().is_err());
        assert!(SignedPush::decode(&bytes[..n - 1]).is_err());
        let mut long = bytes;
        long.push(0);
        assert!(SignedPush::decode(&long).is_err());
    }
}
