//! Where a bench node or endpoint runs: on loopback in this process (every
//! scenario but `wan`), or on a host of the namespace network
//! ([`crate::netns`]), optionally with a relay.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use iroh::address_lookup::memory::MemoryLookup;
use iroh::endpoint::{PortmapperConfig, presets};
use iroh::{Endpoint, EndpointAddr, RelayMode, RelayUrl, TransportAddr};
use kith::{NetworkMode, Node};

/// Longest wait for a setup step (binding, spawning, one write).
pub(crate) const SETUP: Duration = Duration::from_secs(30);

/// Awaits `fut` for at most `limit`; running out of time is reported as a
/// stall of `what`.
pub(crate) async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = T>,
) -> Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| anyhow!("peer stalled: {what} did not finish within {limit:?}"))
}

/// A relay the hosts use: its URL and the certificate (DER) to trust for it.
#[derive(Debug)]
pub(crate) struct RelayAt {
    /// The relay's URL.
    pub(crate) url: RelayUrl,
    /// Its self-signed certificate.
    pub(crate) ca: Vec<u8>,
}

/// Where something runs.
#[derive(Clone)]
pub(crate) enum Site {
    /// On 127.0.0.1 in this process.
    Loopback,
    /// On a namespace host.
    Host {
        /// The runtime inside the host's namespace.
        handle: tokio::runtime::Handle,
        /// The host's address.
        ip: Ipv4Addr,
        /// The relay its endpoints use, if any.
        relay: Option<Arc<RelayAt>>,
    },
}

impl Site {
    /// A site on `host`, using `relay` if given.
    pub(crate) fn on(host: &crate::netns::Host, relay: Option<Arc<RelayAt>>) -> Self {
        Self::Host {
            handle: host.handle(),
            ip: host.ip,
            relay,
        }
    }

    /// Runs `fut` there: on a namespace host, on its runtime, so that the
    /// sockets it opens are the host's.
    pub(crate) async fn run<F>(&self, fut: F) -> Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self {
            Self::Loopback => Ok(fut.await),
            Self::Host { handle, .. } => handle
                .spawn(fut)
                .await
                .map_err(|e| anyhow!("a task on a namespace host failed: {e}")),
        }
    }

    /// An iroh endpoint there: no port mapping, addresses looked up in
    /// `lookup` only (its own is added), relays only as the site says. On
    /// loopback it binds 127.0.0.1 only.
    pub(crate) async fn endpoint(
        &self,
        lookup: &MemoryLookup,
        alpns: Vec<Vec<u8>>,
    ) -> Result<Endpoint> {
        let (bind, relay) = match self {
            Self::Loopback => ("127.0.0.1:0", None),
            Self::Host { relay, .. } => ("0.0.0.0:0", relay.clone()),
        };
        let mut builder = Endpoint::builder(presets::Minimal)
            .relay_mode(match &relay {
                Some(r) => RelayMode::Custom([r.url.clone()].into_iter().collect()),
                None => RelayMode::Disabled,
            })
            .clear_ip_transports()
            .bind_addr(bind)?
            .portmapper_config(PortmapperConfig::Disabled)
            .address_lookup(lookup.clone())
            .alpns(alpns);
        if let Some(r) = &relay {
            builder = builder.ca_tls_config(
                iroh::tls::CaTlsConfig::embedded()
                    .with_extra_roots([rustls_pki_types::CertificateDer::from(r.ca.clone())]),
            );
        }
        let endpoint = within(
            SETUP,
            "binding an endpoint",
            self.run(async move { builder.bind().await }),
        )
        .await??
        .context("binding an endpoint")?;
        if relay.is_some() {
            // Dialing through the relay needs the home relay connection.
            within(SETUP, "reaching the relay", endpoint.online()).await?;
        }
        lookup.add_endpoint_info(self.addr(&endpoint)?);
        Ok(endpoint)
    }

    /// The endpoint's id with the site's address(es) and relay.
    pub(crate) fn addr(&self, endpoint: &Endpoint) -> Result<EndpointAddr> {
        let ports: Vec<SocketAddr> = endpoint
            .bound_sockets()
            .into_iter()
            .filter(SocketAddr::is_ipv4)
            .collect();
        let mut addrs: Vec<TransportAddr> = match self {
            Self::Loopback => ports
                .into_iter()
                .filter(|a| a.ip().is_loopback())
                .map(TransportAddr::Ip)
                .collect(),
            Self::Host { ip, .. } => ports
                .into_iter()
                .map(|a| TransportAddr::Ip(SocketAddr::from((*ip, a.port()))))
                .collect(),
        };
        if addrs.is_empty() {
            bail!("endpoint has no IPv4 socket");
        }
        if let Self::Host { relay: Some(r), .. } = self {
            addrs.push(TransportAddr::Relay(r.url.clone()));
        }
        Ok(EndpointAddr::from_parts(endpoint.id(), addrs))
    }

    /// A kith node there, configured by `configure`, started on the site.
    pub(crate) async fn kith(
        &self,
        dir: &std::path::Path,
        configure: impl FnOnce(kith::Builder) -> kith::Builder,
    ) -> Result<Node> {
        let builder = match self {
            Self::Loopback => Node::builder(dir).network(NetworkMode::LocalOnly),
            Self::Host { relay, .. } => {
                let mut b = Node::builder(dir).network(NetworkMode::Custom {
                    relays: relay.iter().map(|r| r.url.clone()).collect(),
                    pkarr: None,
                });
                if let Some(r) = relay {
                    b = b.relay_ca(vec![r.ca.clone()]);
                }
                b
            }
        };
        let builder = configure(builder);
        Ok(self.run(async move { builder.spawn().await }).await??)
    }
}
