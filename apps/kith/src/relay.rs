//! `kith relay`: iroh's own relay server (iroh-relay), with QUIC address
//! discovery, run with one command, so that a person or a community can
//! run their own relay and nobody depends on one operator.
//!
//! The relay forwards encrypted QUIC packets between devices that cannot
//! reach each other directly, and tells devices which address their
//! packets come from (QUIC address discovery). It cannot read what it
//! forwards: device-to-device traffic is end-to-end encrypted by iroh, and
//! the relay only learns which device keys talk to which, and when.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use iroh_relay::server::{
    AcmeConfig, CertConfig, QuicConfig, RelayConfig, Server, ServerConfig, TlsConfig,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde_json::json;

use crate::error::{Error, Result};

/// `kith relay`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("certificate").required(true).args(["cert", "self_signed", "acme"])))]
pub struct RelayArgs {
    /// Where plain HTTP listens (captive-portal checks; `--acme` is answered
    /// on the HTTPS port instead).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:80")]
    pub http: SocketAddr,
    /// Where the relay itself listens, over HTTPS.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:443")]
    pub https: SocketAddr,
    /// Where QUIC address discovery listens (UDP; nodes expect port 7842).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:7842")]
    pub quic: SocketAddr,
    /// The certificate chain (PEM) for the relay's name, for example from
    /// Let's Encrypt (`certbot certonly --standalone -d NAME`).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of `--cert`.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Make a self-signed certificate for these names or IP addresses
    /// (comma-separated) instead, and write it to `--write-cert`: nodes
    /// then trust it with `kith serve --relay-ca FILE`. For a relay among
    /// people who can pass that file around, and for tests.
    #[arg(
        long,
        value_name = "NAMES",
        value_delimiter = ',',
        requires = "write_cert"
    )]
    pub self_signed: Vec<String>,
    /// Where to write the self-signed certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub write_cert: Option<PathBuf>,
    /// Get the certificate for these names (comma-separated) from an ACME
    /// certificate authority instead, Let's Encrypt unless
    /// `--acme-directory`, and renew it while running. The relay answers
    /// the TLS-ALPN-01 challenge itself on its HTTPS port, so each name
    /// must point at this server and port 443 must reach `--https` from
    /// the internet.
    #[arg(
        long,
        value_name = "NAMES",
        value_delimiter = ',',
        requires = "acme_cache"
    )]
    pub acme: Vec<String>,
    /// Where the ACME account and certificates are kept across restarts
    /// (needed: Let's Encrypt limits how often one name gets a new
    /// certificate).
    #[arg(long, value_name = "DIR", requires = "acme")]
    pub acme_cache: Option<PathBuf>,
    /// An email address the certificate authority may write to about the
    /// certificates (expiry, revocation).
    #[arg(long, value_name = "EMAIL", requires = "acme")]
    pub acme_contact: Option<String>,
    /// Use Let's Encrypt's staging service (certificates nobody trusts,
    /// generous limits), to try the set-up first.
    #[arg(long, requires = "acme", conflicts_with = "acme_directory")]
    pub acme_staging: bool,
    /// The directory URL of another ACME certificate authority.
    #[arg(long, value_name = "URL", requires = "acme")]
    pub acme_directory: Option<String>,
    /// The root certificate (PEM) of that authority's own HTTPS, when it is
    /// not a public one (a certificate authority of your own).
    #[arg(long, value_name = "FILE", requires = "acme_directory")]
    pub acme_ca: Option<PathBuf>,
    /// The relay's URL as nodes should use it (default: https:// and the
    /// first name of the certificate, with the HTTPS port).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Also run a discovery server (iroh-dns-server's pkarr relay and DNS):
    /// nodes started with `kith serve --discovery http://HOST:PORT/pkarr`
    /// publish their addresses there and look friends' devices up by key.
    /// Its pkarr HTTP endpoint listens here.
    #[arg(long, value_name = "ADDR", requires = "discovery_data")]
    pub discovery_http: Option<SocketAddr>,
    /// Where the discovery server answers DNS (`_iroh.<key>.<origin>` TXT
    /// records).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:53")]
    pub discovery_dns: SocketAddr,
    /// Where the discovery server keeps what devices published.
    #[arg(long, value_name = "DIR")]
    pub discovery_data: Option<PathBuf>,
    /// Print what it listens on as JSON (one line when piped).
    #[arg(long)]
    pub json: bool,
}

/// Runs the relay until Ctrl-C or SIGTERM.
///
/// # Errors
/// [`Error::BadInput`] for unreadable certificates or keys,
/// [`Error::Unavailable`] if an address cannot be bound.
pub async fn run(args: RelayArgs) -> Result<()> {
    let (cert, name) = certificate(&args)?;
    // QUIC address discovery uses the same certificate: the same
    // configuration, or (with ACME) the relay's, which resolves the
    // certificate obtained.
    let mut quic = QuicConfig::new(args.quic);
    if let CertConfig::Manual { server_config } = &cert {
        quic.server_config = Some(server_config.clone());
    }
    let mut relay = RelayConfig::new(args.http);
    relay.tls = Some(TlsConfig::new(args.https, cert));
    let mut config = ServerConfig::default();
    config.relay = Some(relay);
    config.quic = Some(quic);
    let server = Server::spawn(config)
        .await
        .map_err(|e| Error::Unavailable(format!("cannot start the relay: {e}")))?;
    let discovery = match (&args.discovery_http, &args.discovery_data) {
        (Some(http), Some(data)) => Some(discovery(*http, args.discovery_dns, data).await?),
        _ => None,
    };
    let https = server.https_addr();
    let url = args.url.clone().unwrap_or_else(|| {
        let port = https.map(|a| a.port()).unwrap_or(443);
        if port == 443 {
            format!("https://{name}/")
        } else {
            format!("https://{name}:{port}/")
        }
    });
    // Nodes reach the discovery server by the relay's name when it listens
    // on every interface.
    let pkarr = discovery
        .as_ref()
        .and_then(iroh_dns_server::Server::http_addr)
        .map(|a| {
            let host = if a.ip().is_unspecified() {
                url.parse::<kith::RelayUrl>()
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string))
                    .unwrap_or_else(|| a.ip().to_string())
            } else {
                a.ip().to_string()
            };
            format!("http://{host}:{}/pkarr", a.port())
        });
    // Caught before saying it runs: a stop right after is a clean one.
    let stop = crate::daemon::StopSignals::listen();
    if args.json {
        crate::output::print_json(&json!({
            "url": url,
            "http": server.http_addr().map(|a| a.to_string()),
            "https": https.map(|a| a.to_string()),
            "quic": server.quic_addr().map(|a| a.to_string()),
            "discovery": pkarr,
        }));
    } else {
        println!("relay running at {url}");
        if let Some(q) = server.quic_addr() {
            println!("  QUIC address discovery on {q} (UDP)");
        }
        println!("  nodes use it with: kith serve --relay {url}");
        if let Some(pkarr) = &pkarr {
            println!("  discovery by key at {pkarr}: kith serve --discovery {pkarr}");
        }
        println!("  stop it with Ctrl-C");
    }
    stop.wait().await;
    if let Some(d) = discovery {
        d.shutdown().await.map_err(|e| {
            Error::Unavailable(format!("the discovery server did not stop cleanly: {e}"))
        })?;
    }
    server
        .shutdown()
        .await
        .map_err(|e| Error::Unavailable(format!("the relay did not stop cleanly: {e}")))?;
    Ok(())
}

/// Starts iroh-dns-server: its pkarr relay over plain HTTP on `http` (what
/// nodes publish to and look up from), DNS on `dns`, its store in `data`;
/// no metrics listener, no mainline DHT (it asks nobody else).
async fn discovery(
    http: SocketAddr,
    dns: SocketAddr,
    data: &std::path::Path,
) -> Result<iroh_dns_server::Server> {
    std::fs::create_dir_all(data)
        .map_err(|e| Error::Unavailable(format!("cannot create {}: {e}", data.display())))?;
    let text = format!(
        r#"data_dir = {data:?}

[http]
port = {http_port}
bind_addr = "{http_ip}"

[dns]
port = {dns_port}
bind_addr = "{dns_ip}"
default_soa = "kith.local hostmaster.kith.local 0 10800 3600 604800 3600"
default_ttl = 30
origins = ["kith.local.", "."]

[metrics]
disabled = true
"#,
        data = data.display().to_string(),
        http_port = http.port(),
        http_ip = http.ip(),
        dns_port = dns.port(),
        dns_ip = dns.ip(),
    );
    let config: iroh_dns_server::config::Config = toml::from_str(&text)
        .map_err(|e| Error::BadInput(format!("discovery server settings: {e}")))?;
    iroh_dns_server::Server::bind(config)
        .await
        .map_err(|e| Error::Unavailable(format!("cannot start the discovery server: {e}")))
}

/// The certificate as the relay server takes it, and the name to put in
/// the URL.
fn certificate(args: &RelayArgs) -> Result<(CertConfig, String)> {
    if args.acme.is_empty() {
        let (server_config, name) = tls(args)?;
        return Ok((CertConfig::Manual { server_config }, name));
    }
    let Some(cache) = &args.acme_cache else {
        return Err(Error::BadInput(
            "with --acme, give --acme-cache DIR (where the account and certificates are kept)"
                .into(),
        ));
    };
    for name in &args.acme {
        if name.parse::<std::net::IpAddr>().is_ok() || !name.contains('.') {
            return Err(Error::BadInput(format!(
                "--acme {name:?}: give the relay's DNS names (a certificate authority \
                 certifies names, not addresses)"
            )));
        }
    }
    let mut acme = match &args.acme_directory {
        Some(url) => AcmeConfig::new(url.clone()),
        None => AcmeConfig::letsencrypt(!args.acme_staging),
    }
    .domains(args.acme.clone())
    .cache_path(cache.clone());
    if let Some(contact) = &args.acme_contact {
        let contact = contact.strip_prefix("mailto:").unwrap_or(contact);
        if !contact.contains('@') {
            return Err(Error::BadInput(format!(
                "--acme-contact {contact:?}: give an email address"
            )));
        }
        acme = acme.contact(vec![format!("mailto:{contact}")]);
    }
    if let Some(ca) = &args.acme_ca {
        acme = acme
            .tls_config(iroh_relay::tls::CaTlsConfig::embedded().with_extra_roots(read_certs(ca)?));
    }
    std::fs::create_dir_all(cache)
        .map_err(|e| Error::Unavailable(format!("cannot create {}: {e}", cache.display())))?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::BadInput(format!("TLS: {e}")))?
    .with_no_client_auth();
    Ok((
        CertConfig::LetsEncrypt {
            acme_config: acme,
            server_config_builder: builder,
        },
        args.acme[0].clone(),
    ))
}

/// The certificates of a PEM file (at least one).
fn read_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<std::result::Result<_, _>>())
        .map_err(|e| Error::BadInput(format!("cannot read {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::BadInput(format!(
            "{} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The TLS configuration, and the name to put in the URL.
fn tls(args: &RelayArgs) -> Result<(rustls::ServerConfig, String)> {
    let (certs, key, name) = if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        let certs = read_certs(cert)?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| Error::BadInput(format!("cannot read {}: {e}", key.display())))?;
        let Some(url) = args.url.clone() else {
            return Err(Error::BadInput(
                "with --cert, give --url https://NAME/ (the name the certificate is for)".into(),
            ));
        };
        (certs, key, url)
    } else {
        let names = args.self_signed.clone();
        let first = names
            .first()
            .cloned()
            .ok_or_else(|| Error::BadInput("--self-signed needs a name".into()))?;
        let made = rcgen::generate_simple_self_signed(names)
            .map_err(|e| Error::BadInput(format!("cannot make a certificate: {e}")))?;
        if let Some(path) = &args.write_cert {
            std::fs::write(path, made.cert.pem())
                .map_err(|e| Error::Unavailable(format!("cannot write {}: {e}", path.display())))?;
        }
        let key = PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
        (vec![made.cert.der().clone()], key, first)
    };
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::BadInput(format!("TLS: {e}")))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| Error::BadInput(format!("the certificate and key do not fit: {e}")))?;
    Ok((config, name))
}
