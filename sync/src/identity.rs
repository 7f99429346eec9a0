//! This device's keys and certificate, kept in the data folder.
//!
//! `identity/namespace.key` holds the person's namespace key (only on the
//! device that created the namespace), `identity/device.key` this device's
//! iroh key, `identity/device.cert` its certificate. Secret files are created
//! with mode 0600. Losing `namespace.key` loses the namespace: back it up.

use std::fs;
use std::io::Write;
use std::path::{Path as FsPath, PathBuf};

use kith_caps::{DeviceCert, DeviceKey, NamespaceKey, Rights};
use kith_types::{DeviceId, NamespaceId, Timestamp};

use crate::error::{Error, Result};

/// The keys and certificate of this device.
#[derive(Debug)]
pub(crate) struct Identity {
    /// The namespace key, on the device that holds it.
    pub(crate) namespace_key: Option<NamespaceKey>,
    pub(crate) namespace: NamespaceId,
    pub(crate) device_key: DeviceKey,
    pub(crate) cert: DeviceCert,
}

fn dir(data: &FsPath) -> PathBuf {
    data.join("identity")
}

/// Writes a secret file readable by its owner only.
fn write_secret(path: &FsPath, contents: &[u8]) -> Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(contents)?;
    f.sync_all()?;
    Ok(())
}

fn read_device_key(path: &FsPath) -> Result<DeviceKey> {
    let bad =
        |e: &dyn std::fmt::Display| Error::Identity(format!("{} is damaged: {e}", path.display()));
    let hex = fs::read_to_string(path)?;
    let bytes = data_encoding::HEXLOWER
        .decode(hex.trim().as_bytes())
        .map_err(|e| bad(&e))?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad(&"not 32 bytes"))?;
    Ok(DeviceKey::from_bytes(bytes))
}

impl Identity {
    pub(crate) fn device(&self) -> DeviceId {
        self.device_key.id()
    }

    /// Creates this device's key in a fresh data folder (or reads it if it
    /// is there), without any namespace: the first step of joining an
    /// existing namespace as a further device.
    pub(crate) fn prepare(data: &FsPath) -> Result<DeviceKey> {
        let d = dir(data);
        if d.join("device.cert").exists() {
            return Err(Error::Identity(format!(
                "{} already belongs to a namespace",
                data.display()
            )));
        }
        let key_path = d.join("device.key");
        if key_path.exists() {
            return read_device_key(&key_path);
        }
        fs::create_dir_all(&d)?;
        let device_key = DeviceKey::generate(&mut rand::rng());
        write_secret(
            &key_path,
            data_encoding::HEXLOWER
                .encode(&device_key.to_bytes())
                .as_bytes(),
        )?;
        Ok(device_key)
    }

    /// Joins a namespace with the certificate another device of it issued
    /// for this device (see [`Identity::prepare`]).
    pub(crate) fn join(data: &FsPath, cert: &DeviceCert) -> Result<Self> {
        let d = dir(data);
        if d.join("device.cert").exists() {
            let existing = Self::load(data)?;
            if existing.cert.namespace() != cert.namespace() {
                return Err(Error::Identity(
                    "this data folder belongs to another namespace".into(),
                ));
            }
            return Ok(existing);
        }
        let device_key = Self::prepare(data)?;
        if device_key.id() != cert.device() {
            return Err(Error::Identity(
                "the invite was issued for another device; prepare this device and ask for an invite for its id".into(),
            ));
        }
        cert.verify()?;
        fs::write(d.join("device.cert"), cert.encode())?;
        Ok(Self {
            namespace: cert.namespace(),
            namespace_key: None,
            device_key,
            cert: cert.clone(),
        })
    }

    /// Loads the identity in `data`, creating a new namespace and device on
    /// first start.
    pub(crate) fn load_or_create(data: &FsPath) -> Result<Self> {
        let d = dir(data);
        if d.join("device.cert").exists() {
            return Self::load(data);
        }
        if d.join("device.key").exists() {
            return Err(Error::Identity(format!(
                "{} holds a device prepared to join a namespace; start it with its invite",
                data.display()
            )));
        }
        fs::create_dir_all(&d)?;
        let mut rng = rand::rng();
        let namespace_key = NamespaceKey::generate(&mut rng);
        let device_key = DeviceKey::generate(&mut rng);
        let cert = DeviceCert::issue(
            &namespace_key,
            device_key.id(),
            Rights::ALL,
            Timestamp::wall_clock(),
            None,
        )?;
        write_secret(
            &d.join("namespace.key"),
            namespace_key.export_text().as_bytes(),
        )?;
        write_secret(
            &d.join("device.key"),
            data_encoding::HEXLOWER
                .encode(&device_key.to_bytes())
                .as_bytes(),
        )?;
        fs::write(d.join("device.cert"), cert.encode())?;
        tracing::info!(namespace = %namespace_key.id(), "created a new namespace");
        Ok(Self {
            namespace: namespace_key.id(),
            namespace_key: Some(namespace_key),
            device_key,
            cert,
        })
    }

    fn load(data: &FsPath) -> Result<Self> {
        let d = dir(data);
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            Error::Identity(format!("{what} in {} is damaged: {e}", d.display()))
        };
        let cert_bytes = fs::read(d.join("device.cert"))?;
        let cert = DeviceCert::decode(&cert_bytes).map_err(|e| bad("device.cert", &e))?;
        cert.verify().map_err(|e| bad("device.cert", &e))?;
        let device_key = read_device_key(&d.join("device.key"))?;
        if device_key.id() != cert.device() {
            return Err(bad("device.cert", &"it certifies another device"));
        }
        let key_path = d.join("namespace.key");
        let namespace_key = if key_path.exists() {
            let text = fs::read_to_string(&key_path)?;
            let key =
                NamespaceKey::import_text(text.trim()).map_err(|e| bad("namespace.key", &e))?;
            if key.id() != cert.namespace() {
                return Err(bad(
                    "namespace.key",
                    &"it is not the key of this device's namespace",
                ));
            }
            Some(key)
        } else {
            None
        };
        Ok(Self {
            namespace: cert.namespace(),
            namespace_key,
            device_key,
            cert,
        })
    }
}
