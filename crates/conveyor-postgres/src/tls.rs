//! TLS for PostgreSQL, with rustls (the ring provider): libpq's `sslmode`
//! values and certificate parameters, in the URL or key=value form.
//!
//! | `sslmode` | TLS | what is verified |
//! |---|---|---|
//! | (absent) | no | — (conveyor's default: plain TCP, as before TLS support) |
//! | `disable` | no | — |
//! | `prefer` | if the server offers it, else plain | nothing (encryption only, as libpq) |
//! | `require` | always | nothing (encryption only, as libpq without a root certificate) |
//! | `verify-ca` | always | the certificate chains to a trusted CA |
//! | `verify-full` | always | that, and it names the host connected to |
//!
//! Trusted CAs for the `verify-` modes: `sslrootcert=/path/ca.pem`, else the
//! Mozilla roots (public CAs, as managed services use). `sslcert` and
//! `sslkey` present a client certificate. These parameters are taken out of
//! the connection string before it reaches the driver, which knows only
//! `disable`, `prefer` and `require`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use conveyor_core::Error;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode as DriverMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// What `sslmode` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    /// No `sslmode` given: plain TCP.
    Unset,
    /// `disable`.
    Disable,
    /// `prefer`.
    Prefer,
    /// `require`.
    Require,
    /// `verify-ca`.
    VerifyCa,
    /// `verify-full`.
    VerifyFull,
}

/// The TLS settings of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub(crate) mode: SslMode,
    pub(crate) root_cert: Option<PathBuf>,
    pub(crate) client: Option<(PathBuf, PathBuf)>,
}

impl TlsSettings {
    /// The mode the driver is given.
    pub(crate) fn driver_mode(&self) -> DriverMode {
        match self.mode {
            SslMode::Unset | SslMode::Disable => DriverMode::Disable,
            SslMode::Prefer => DriverMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverMode::Require,
        }
    }
}

fn config_error(message: String) -> Error {
    Error::InvalidConfig(message)
}

/// Takes the TLS parameters out of a connection string (`postgres://…?k=v&…`
/// or `k=v k=v`); returns what is left for the driver and the settings.
pub(crate) fn split(conn: &str) -> Result<(String, TlsSettings), Error> {
    let url_form = conn.starts_with("postgres://") || conn.starts_with("postgresql://");
    let (head, params, sep): (&str, Vec<&str>, &str) = if url_form {
        match conn.split_once('?') {
            Some((head, query)) => (
                head,
                query.split('&').filter(|p| !p.is_empty()).collect(),
                "&",
            ),
            None => (conn, Vec::new(), "&"),
        }
    } else {
        ("", conn.split_whitespace().collect(), " ")
    };
    let mut settings = TlsSettings {
        mode: SslMode::Unset,
        root_cert: None,
        client: None,
    };
    let (mut cert, mut key) = (None, None);
    let mut kept = Vec::new();
    for p in params {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        match k {
            "sslmode" => {
                settings.mode = match v {
                    "disable" => SslMode::Disable,
                    "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    "allow" => SslMode::Prefer,
                    other => {
                        return Err(config_error(format!(
                        "sslmode={other}: use disable, prefer, require, verify-ca or verify-full"
                    )))
                    }
                }
            }
            "sslrootcert" => settings.root_cert = Some(PathBuf::from(v)),
            "sslcert" => cert = Some(PathBuf::from(v)),
            "sslkey" => key = Some(PathBuf::from(v)),
            _ => kept.push(p),
        }
    }
    settings.client = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(config_error(
                "a PostgreSQL client certificate needs both sslcert and sslkey".into(),
            ))
        }
    };
    let rest = if url_form {
        if kept.is_empty() {
            head.to_string()
        } else {
            format!("{head}?{}", kept.join(sep))
        }
    } else {
        kept.join(sep)
    };
    Ok((rest, settings))
}

/// Installs the ring provider as the process's rustls default, once.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| {
            config_error(format!(
                "cannot read sslrootcert/sslcert {}: {e}",
                path.display()
            ))
        })?
        .collect();
    let certs =
        certs.map_err(|e| config_error(format!("bad certificate in {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(config_error(format!(
            "no certificate in {}",
            path.display()
        )));
    }
    Ok(certs)
}

/// The connector for these settings (used only when the mode asks for TLS).
pub(crate) fn connector(settings: &TlsSettings) -> Result<MakeRustlsConnect, Error> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    match &settings.root_cert {
        Some(path) => {
            for cert in read_certs(path)? {
                roots.add(cert).map_err(|e| {
                    config_error(format!("bad CA certificate in {}: {e}", path.display()))
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let roots = Arc::new(roots);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(format!("TLS setup: {e}")))?;
    let builder = match settings.mode {
        SslMode::VerifyFull => builder.with_root_certificates(roots),
        SslMode::VerifyCa => {
            let inner = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| config_error(format!("TLS setup: {e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyName { inner }))
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified { provider })),
    };
    let config = match &settings.client {
        Some((cert, key)) => {
            let certs = read_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| config_error(format!("cannot read sslkey {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| config_error(format!("sslcert/sslkey: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// `verify-ca`: the chain must be trusted; the name is not checked.
#[derive(Debug)]
struct AnyName {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `prefer` and `require`: any certificate (the handshake's signatures are
/// still checked, so the key exchange is sound; the peer is not
/// authenticated).
#[derive(Debug)]
struct Unverified {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out() {
        let (rest, s) = split(
            "postgres://u@h:5/db?connect_timeout=2&sslmode=verify-full&sslrootcert=/ca.pem&schema=x",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u@h:5/db?connect_timeout=2&schema=x");
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(s.root_cert.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(s.driver_mode(), DriverMode::Require);
        let (rest, s) = split("host=h sslmode=require user=u").unwrap();
        assert_eq!((rest.as_str(), s.mode), ("host=h user=u", SslMode::Require));
        let (rest, s) = split("postgres://h/db").unwrap();
        assert_eq!(
            (rest.as_str(), s.mode, s.driver_mode()),
            ("postgres://h/db", SslMode::Unset, DriverMode::Disable)
        );
        assert!(split("postgres://h/db?sslmode=sometimes").is_err());
        assert!(split("postgres://h/db?sslcert=/c.pem").is_err());
    }
}
