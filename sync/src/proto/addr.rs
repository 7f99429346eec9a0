//! Where a device can be reached: the addresses a node learns (from the
//! connections it authenticates, from tickets, from a catch-up) and hands
//! over (to friends in a catch-up, so they reach any of the owner's
//! serving devices).
//!
//! Addresses are hints, never credentials: whoever answers at one must
//! still prove the device's key in iroh's handshake.

use core::net::{IpAddr, SocketAddr};
use std::fmt;

use super::codec::{Dec, Enc, WireError};

/// Most addresses kept or sent for one device.
pub const MAX_DEVICE_ADDRS: usize = 8;
/// Longest relay URL accepted.
pub const MAX_RELAY_URL_LEN: usize = 256;

/// One way to reach a device.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Addr {
    /// A direct UDP address (after NAT: the address its packets came from).
    Ip(SocketAddr),
    /// An iroh relay the device is connected to (`https://…` or `http://…`).
    Relay(String),
}

impl Addr {
    /// A relay address, if `url` looks like one: `http://` or `https://`,
    /// printable ASCII without spaces, at most [`MAX_RELAY_URL_LEN`] bytes.
    ///
    /// # Errors
    /// [`WireError`] naming what is wrong.
    pub fn relay(url: &str) -> Result<Self, WireError> {
        if url.len() > MAX_RELAY_URL_LEN {
            return Err(WireError("relay url too long"));
        }
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(WireError("relay url is not http(s)"));
        }
        if !url.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(WireError("relay url has spaces or control characters"));
        }
        Ok(Self::Relay(url.to_string()))
    }

    /// The direct address, if this is one.
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            Self::Ip(a) => Some(*a),
            Self::Relay(_) => None,
        }
    }

    pub(crate) fn encode(&self, w: &mut Enc) {
        match self {
            Self::Ip(a) => {
                match a.ip() {
                    IpAddr::V4(ip) => {
                        w.u8(4);
                        w.raw(&ip.octets());
                    }
                    IpAddr::V6(ip) => {
                        w.u8(6);
                        w.raw(&ip.octets());
                    }
                }
                w.u16(a.port());
            }
            Self::Relay(url) => {
                w.u8(b'r');
                w.str(url);
            }
        }
    }

    pub(crate) fn decode(r: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(match r.u8()? {
            4 => {
                let ip = IpAddr::from(r.array::<4>()?);
                Self::Ip(SocketAddr::new(ip, r.u16()?))
            }
            6 => {
                let ip = IpAddr::from(r.array::<16>()?);
                Self::Ip(SocketAddr::new(ip, r.u16()?))
            }
            b'r' => Self::relay(&r.str(MAX_RELAY_URL_LEN)?)?,
            _ => return Err(WireError("unknown address kind")),
        })
    }

    /// A device's address list (at most [`MAX_DEVICE_ADDRS`]).
    pub(crate) fn encode_list(addrs: &[Addr], w: &mut Enc) {
        w.list(&addrs[..addrs.len().min(MAX_DEVICE_ADDRS)], |w, a| {
            a.encode(w);
        });
    }

    /// A device's address list.
    pub(crate) fn decode_list(r: &mut Dec<'_>) -> Result<Vec<Addr>, WireError> {
        r.list(MAX_DEVICE_ADDRS, Addr::decode)
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(a) => write!(f, "{a}"),
            Self::Relay(url) => write!(f, "relay {url}"),
        }
    }
}

/// `fresh` first, then what `known` held that is not in `fresh`, at most
/// [`MAX_DEVICE_ADDRS`] in all: the most recently seen addresses win.
pub fn merge(fresh: &[Addr], known: &[Addr]) -> Vec<Addr> {
    let mut out: Vec<Addr> = Vec::with_capacity(MAX_DEVICE_ADDRS);
    for a in fresh.iter().chain(known) {
        if out.len() == MAX_DEVICE_ADDRS {
            break;
        }
        if !out.contains(a) {
            out.push(a.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn addr() -> impl Strategy<Value = Addr> {
        prop_oneof![
            // Flow labels and scope ids are not kept: addresses are dialed.
            any::<SocketAddr>().prop_map(|a| Addr::Ip(SocketAddr::new(a.ip(), a.port()))),
            "[a-z0-9.]{1,40}".prop_map(|h| Addr::Relay(format!("https://{h}/"))),
        ]
    }

    proptest! {
        #[test]
        fn lists_round_trip_and_every_cut_is_refused(addrs in proptest::collection::vec(addr(), 0..MAX_DEVICE_ADDRS)) {
            let mut w = Enc::default();
            Addr::encode_list(&addrs, &mut w);
            let bytes = w.finish();
            let mut r = Dec(&bytes);
            prop_assert_eq!(Addr::decode_list(&mut r).unwrap(), addrs);
            prop_assert!(r.is_empty());
            for cut in 0..bytes.len() {
                prop_assert!(Addr::decode_list(&mut Dec(&bytes[..cut])).is_err());
            }
        }

        #[test]
        fn merge_keeps_the_fresh_first_without_duplicates(
            fresh in proptest::collection::vec(addr(), 0..12),
            known in proptest::collection::vec(addr(), 0..12),
        ) {
            let merged = merge(&fresh, &known);
            prop_assert!(merged.len() <= MAX_DEVICE_ADDRS);
            let mut seen = std::collections::HashSet::new();
            prop_assert!(merged.iter().all(|a| seen.insert(a.clone())));
            let mut dedup_fresh: Vec<&Addr> = Vec::new();
            for a in &fresh {
                if !dedup_fresh.contains(&a) {
                    dedup_fresh.push(a);
                }
            }
            for (m, f) in merged.iter().zip(dedup_fresh) {
                prop_assert_eq!(m, f);
            }
        }
    }

    #[test]
    fn relay_urls_are_checked() {
        assert!(Addr::relay("https://relay.example/").is_ok());
        assert!(Addr::relay("ftp://relay.example/").is_err());
        assert!(Addr::relay("https://a b/").is_err());
        assert!(Addr::relay(&format!("https://{}", "a".repeat(300))).is_err());
        let mut w = Enc::default();
        w.u8(b'r');
        w.str("javascript:alert(1)");
        assert!(Addr::decode(&mut Dec(&w.finish())).is_err());
    }

    #[test]
    fn too_many_addresses_are_refused() {
        let mut w = Enc::default();
        w.list(&[0u8; MAX_DEVICE_ADDRS + 1], |w, _| {
            Addr::Ip(SocketAddr::from(([127, 0, 0, 1], 1))).encode(w);
        });
        assert!(Addr::decode_list(&mut Dec(&w.finish())).is_err());
    }
}
