//! Tickets: what a friend adds out of band to reach this node.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use kith_caps::DeviceCert;
use kith_types::NamespaceId;

use crate::error::{Error, Result};

const PREFIX: &str = "kith1";
/// A ticket without relays (the first layout).
const VERSION: u8 = 1;
/// A ticket that also names relays the device is reachable through.
const VERSION_RELAYS: u8 = 2;
/// Most relays a ticket carries.
const MAX_RELAYS: usize = 4;
/// Longest relay URL a ticket carries.
const MAX_RELAY_URL: usize = 255;
/// Most addresses a ticket carries.
const MAX_ADDRS: usize = 16;
/// Longest ticket text accepted.
const MAX_TICKET_LEN: usize = 4096;

/// A copy-pasteable invitation: the namespace, the certificate of the device
/// that made it, and that device's current direct addresses and relays.
///
/// Text form: `kith1` followed by lowercase base32.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The namespace.
    pub namespace: NamespaceId,
    /// The certificate of a device serving it.
    pub cert: DeviceCert,
    /// Where that device listens.
    pub addrs: Vec<SocketAddr>,
    /// Relays it is reachable through (`https://…` URLs).
    pub relays: Vec<String>,
}

impl Ticket {
    fn encode(&self) -> Vec<u8> {
        let cert = self.cert.encode();
        let relays: Vec<&String> = self
            .relays
            .iter()
            .filter(|r| r.len() <= MAX_RELAY_URL)
            .take(MAX_RELAYS)
            .collect();
        let mut out = vec![if relays.is_empty() {
            VERSION
        } else {
            VERSION_RELAYS
        }];
        out.extend_from_slice(self.namespace.as_bytes());
        out.extend_from_slice(&(cert.len() as u16).to_be_bytes());
        out.extend_from_slice(&cert);
        let addrs = &self.addrs[..self.addrs.len().min(MAX_ADDRS)];
        out.push(addrs.len() as u8);
        for a in addrs {
            match a.ip() {
                IpAddr::V4(ip) => {
                    out.push(4);
                    out.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    out.push(6);
                    out.extend_from_slice(&ip.octets());
                }
            }
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        if !relays.is_empty() {
            out.push(relays.len() as u8);
            for r in relays {
                out.push(r.len() as u8);
                out.extend_from_slice(r.as_bytes());
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = |why: &str| Error::InvalidTicket(why.to_string());
        let mut r = bytes;
        let mut take = |n: usize| -> Result<&[u8]> {
            if r.len() < n {
                return Err(bad("truncated"));
            }
            let (head, tail) = r.split_at(n);
            r = tail;
            Ok(head)
        };
        let version = take(1)?[0];
        if version != VERSION && version != VERSION_RELAYS {
            return Err(bad("unknown version; is it from a newer kith?"));
        }
        let namespace = NamespaceId::try_from_slice(take(32)?).map_err(|_| bad("namespace"))?;
        let len = u16::from_be_bytes([take(1)?[0], take(1)?[0]]) as usize;
        let cert = DeviceCert::decode(take(len)?)
            .map_err(|e| Error::InvalidTicket(format!("device certificate: {e}")))?;
        cert.verify()
            .map_err(|e| Error::InvalidTicket(format!("device certificate: {e}")))?;
        if cert.namespace() != namespace {
            return Err(bad("the certificate is for another namespace"));
        }
        let n = take(1)?[0] as usize;
        if n > MAX_ADDRS {
            return Err(bad("too many addresses"));
        }
        let mut addrs = Vec::with_capacity(n);
        for _ in 0..n {
            let ip = match take(1)?[0] {
                4 => IpAddr::from(<[u8; 4]>::try_from(take(4)?).map_err(|_| bad("address"))?),
                6 => IpAddr::from(<[u8; 16]>::try_from(take(16)?).map_err(|_| bad("address"))?),
                _ => return Err(bad("unknown address kind")),
            };
            let port = u16::from_be_bytes([take(1)?[0], take(1)?[0]]);
            addrs.push(SocketAddr::new(ip, port));
        }
        let mut relays = Vec::new();
        if version == VERSION_RELAYS {
            let n = take(1)?[0] as usize;
            if n == 0 || n > MAX_RELAYS {
                return Err(bad("relay count"));
            }
            for _ in 0..n {
                let len = take(1)?[0] as usize;
                let url = std::str::from_utf8(take(len)?).map_err(|_| bad("relay url"))?;
                crate::proto::addr::Addr::relay(url).map_err(|e| bad(e.0))?;
                relays.push(url.to_string());
            }
        }
        if !r.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(Self {
            namespace,
            cert,
            addrs,
            relays,
        })
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = data_encoding::BASE32_NOPAD
            .encode(&self.encode())
            .to_ascii_lowercase();
        write!(f, "{PREFIX}{body}")
    }
}

impl FromStr for Ticket {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.len() > MAX_TICKET_LEN {
            return Err(Error::InvalidTicket("too long".into()));
        }
        let body = s
            .strip_prefix(PREFIX)
            .ok_or_else(|| Error::InvalidTicket(format!("a ticket starts with {PREFIX:?}")))?;
        let bytes = data_encoding::BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|_| Error::InvalidTicket("not base32; was it copied whole?".into()))?;
        Self::decode(&bytes)
    }
}

const INVITE_PREFIX: &str = "kithdev1";

/// An invitation for a further device of the same person: the certificate
/// the namespace key issued for that device, and a ticket of the device that
/// issued it (where the new device replicates from).
///
/// Text form: `kithdev1` followed by lowercase base32. Whoever holds it can
/// only act as the device it names, whose secret key never left that device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInvite {
    /// The new device's certificate.
    pub cert: DeviceCert,
    /// The issuing device's ticket.
    pub from: Ticket,
}

impl fmt::Display for DeviceInvite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cert = self.cert.encode();
        let mut bytes = (cert.len() as u16).to_be_bytes().to_vec();
        bytes.extend_from_slice(&cert);
        bytes.extend_from_slice(&self.from.encode());
        let body = data_encoding::BASE32_NOPAD
            .encode(&bytes)
            .to_ascii_lowercase();
        write!(f, "{INVITE_PREFIX}{body}")
    }
}

impl FromStr for DeviceInvite {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.len() > 2 * MAX_TICKET_LEN {
            return Err(Error::InvalidTicket("invite too long".into()));
        }
        let body = s.strip_prefix(INVITE_PREFIX).ok_or_else(|| {
            Error::InvalidTicket(format!("a device invite starts with {INVITE_PREFIX:?}"))
        })?;
        let bytes = data_encoding::BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|_| Error::InvalidTicket("not base32; was it copied whole?".into()))?;
        let len = bytes
            .get(..2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
            .ok_or_else(|| Error::InvalidTicket("truncated".into()))?;
        let cert_bytes = bytes
            .get(2..2 + len)
            .ok_or_else(|| Error::InvalidTicket("truncated".into()))?;
        let cert = DeviceCert::decode(cert_bytes)
            .map_err(|e| Error::InvalidTicket(format!("device certificate: {e}")))?;
        cert.verify()
            .map_err(|e| Error::InvalidTicket(format!("device certificate: {e}")))?;
        let from = Ticket::decode(&bytes[2 + len..])?;
        if from.namespace != cert.namespace() {
            return Err(Error::InvalidTicket(
                "the invite mixes two namespaces".into(),
            ));
        }
        Ok(Self { cert, from })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ticket(relays: Vec<String>) -> Ticket {
        let dir = tempfile::tempdir().unwrap();
        let identity = crate::identity::Identity::load_or_create(dir.path()).unwrap();
        Ticket {
            namespace: identity.namespace,
            cert: identity.cert.clone(),
            addrs: vec!["192.0.2.1:4433".parse().unwrap()],
            relays,
        }
    }

    #[test]
    fn tickets_round_trip_with_and_without_relays() {
        let plain = ticket(Vec::new());
        let text = plain.to_string();
        assert_eq!(text.parse::<Ticket>().unwrap(), plain);
        // Without relays the first layout is kept: older kiths read it.
        assert_eq!(plain.encode()[0], VERSION);
        let relayed = ticket(vec!["https://relay.example:8443/".into()]);
        assert_eq!(relayed.encode()[0], VERSION_RELAYS);
        assert_eq!(relayed.to_string().parse::<Ticket>().unwrap(), relayed);
    }

    #[test]
    fn a_ticket_with_a_bad_relay_or_trailing_bytes_is_refused() {
        let t = ticket(vec!["https://relay.example/".into()]);
        let mut bytes = t.encode();
        // Make the relay URL's scheme something else.
        let at = bytes.windows(5).position(|w| w == b"https").unwrap();
        bytes[at..at + 5].copy_from_slice(b"ftp:/");
        assert!(Ticket::decode(&bytes).is_err());
        let mut long = t.encode();
        long.push(0);
        assert!(Ticket::decode(&long).is_err());
        for cut in 0..t.encode().len() {
            assert!(Ticket::decode(&t.encode()[..cut]).is_err());
        }
    }
}
