//! TLS for pushing to an `https://` Pyroscope: rustls (with ring),
//! trusting the system's certificate authorities (rustls-native-certs:
//! the distribution's bundle, or the files `SSL_CERT_FILE` / `SSL_CERT_DIR`
//! name) plus the PEM certificates of `--pyroscope-ca FILE` (a private CA,
//! a self-signed server).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// A client configuration trusting the system's roots and `extra_ca`.
pub(crate) fn client_config(extra_ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are not fatal: --pyroscope-ca may be
    // all that is needed.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_ca {
        let shown = path.display();
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read the CA certificates in {shown}: {e}"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{shown} is not a PEM certificate file: {e}"))?;
        if certs.is_empty() {
            return Err(format!(
                "{shown} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)"
            ));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("{shown}: unusable certificate: {e}"))?;
        }
    }
    if roots.is_empty() {
        return Err(
            "no trusted certificate authorities: install the system's CA bundle \
             (ca-certificates), set SSL_CERT_FILE, or pass --pyroscope-ca FILE"
                .into(),
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A TLS stream over `tcp` to `host`, its handshake done (so that a
/// certificate problem is reported as such, not as a failed write).
pub(crate) fn connect(
    config: &Arc<rustls::ClientConfig>,
    host: &str,
    mut tcp: TcpStream,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
        .map_err(|e| format!("{host} is not a name TLS can check: {e}"))?
        .to_owned();
    let mut conn = rustls::ClientConnection::new(config.clone(), name)
        .map_err(|e| format!("TLS setup: {e}"))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| {
            format!(
                "TLS handshake with {host} failed: {e} (a server with a private or \
                 self-signed certificate: trust it with --pyroscope-ca FILE)"
            )
        })?;
    }
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// A connection, plain or TLS.
pub(crate) trait Io: Read + Write {}
impl<T: Read + Write> Io for T {}
