//! Between kith's addresses and iroh's: what to dial for a device, and
//! where an authenticated connection's paths lead.

use iroh::endpoint::Connection;
use iroh::{EndpointAddr, RelayUrl, TransportAddr};
use kith_types::DeviceId;

use crate::error::{Error, Result};
use crate::proto::addr::Addr;

/// What to dial to reach `device` at `addrs` (relay URLs iroh cannot
/// parse are left out, with a log line).
pub(crate) fn endpoint_addr(device: &DeviceId, addrs: &[Addr]) -> Result<EndpointAddr> {
    let id = iroh::PublicKey::from_bytes(device.as_bytes()).map_err(Error::network)?;
    Ok(EndpointAddr::from_parts(
        id,
        addrs.iter().filter_map(transport_addr),
    ))
}

/// One address as iroh's.
pub(crate) fn transport_addr(addr: &Addr) -> Option<TransportAddr> {
    match addr {
        Addr::Ip(a) => Some(TransportAddr::Ip(*a)),
        Addr::Relay(url) => match url.parse::<RelayUrl>() {
            Ok(u) => Some(TransportAddr::Relay(u)),
            Err(e) => {
                tracing::debug!(url, %e, "skipping a relay url iroh cannot use");
                None
            }
        },
    }
}

/// iroh's address as kith's (`None` for kinds kith does not keep).
pub(crate) fn from_transport(addr: &TransportAddr) -> Option<Addr> {
    match addr {
        TransportAddr::Ip(a) => Some(Addr::Ip(*a)),
        TransportAddr::Relay(url) => Addr::relay(url.as_str()).ok(),
        _ => None,
    }
}

/// Where `conn`'s open paths lead, the selected one first.
pub(crate) fn paths_of(conn: &Connection) -> Vec<Addr> {
    let paths = conn.paths();
    let mut out: Vec<(bool, Addr)> = paths
        .iter()
        .filter_map(|p| from_transport(p.remote_addr()).map(|a| (p.is_selected(), a)))
        .collect();
    out.sort_by_key(|(selected, _)| !selected);
    out.into_iter().map(|(_, a)| a).collect()
}
