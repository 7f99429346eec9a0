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
use iroh_relay::server::{CertConfig, QuicConfig, RelayConfig, Server, ServerConfig, TlsConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde_json::json;

use crate::error::{Error, Result};

/// `kith relay`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("certificate").required(true).args(["cert", "self_signed"])))]
pub struct RelayArgs {
    /// Where plain HTTP listens (captive-portal checks; ACME needs port 80).
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
    /// The relay's URL as nodes should use it (default: https:// and the
    /// first name of the certificate, with the HTTPS port).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Print what it listens on as one JSON line.
    #[arg(long)]
    pub json: bool,
}

/// Runs the relay until Ctrl-C or SIGTERM.
///
/// # Errors
/// [`Error::BadInput`] for unreadable certificates or keys,
/// [`Error::Unavailable`] if an address cannot be bound.
pub async fn run(args: RelayArgs) -> Result<()> {
    let (server_config, name) = tls(&args)?;
    let mut relay = RelayConfig::new(args.http);
    relay.tls = Some(TlsConfig::new(
        args.https,
        CertConfig::Manual {
            server_config: server_config.clone(),
        },
    ));
    // QUIC address discovery uses the same certificate.
    let mut quic = QuicConfig::new(args.quic);
    quic.server_config = Some(server_config);
    let mut config = ServerConfig::default();
    config.relay = Some(relay);
    config.quic = Some(quic);
    let server = Server::spawn(config)
        .await
        .map_err(|e| Error::Unavailable(format!("cannot start the relay: {e}")))?;
    let https = server.https_addr();
    let url = args.url.clone().unwrap_or_else(|| {
        let port = https.map(|a| a.port()).unwrap_or(443);
        if port == 443 {
            format!("https://{name}/")
        } else {
            format!("https://{name}:{port}/")
        }
    });
    if args.json {
        println!(
            "{}",
            json!({
                "url": url,
                "http": server.http_addr().map(|a| a.to_string()),
                "https": https.map(|a| a.to_string()),
                "quic": server.quic_addr().map(|a| a.to_string()),
            })
        );
    } else {
        println!("relay running at {url}");
        if let Some(q) = server.quic_addr() {
            println!("  QUIC address discovery on {q} (UDP)");
        }
        println!("  nodes use it with: kith serve --relay {url}");
        println!("  stop it with Ctrl-C");
    }
    crate::daemon::until_stopped().await;
    server
        .shutdown()
        .await
        .map_err(|e| Error::Unavailable(format!("the relay did not stop cleanly: {e}")))?;
    Ok(())
}

/// The TLS configuration, and the name to put in the URL.
fn tls(args: &RelayArgs) -> Result<(rustls::ServerConfig, String)> {
    let (certs, key, name) = if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|i| i.collect::<std::result::Result<_, _>>())
            .map_err(|e| Error::BadInput(format!("cannot read {}: {e}", cert.display())))?;
        if certs.is_empty() {
            return Err(Error::BadInput(format!(
                "{} holds no certificate",
                cert.display()
            )));
        }
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
