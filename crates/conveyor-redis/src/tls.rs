//! TLS for `rediss://` URLs, with rustls (the ring provider) and the Mozilla
//! root certificates, or a CA file of your own.
//!
//! | URL | what is verified |
//! |---|---|
//! | `rediss://HOST:PORT/DB` | the server's certificate chains to a public root and names HOST |
//! | `rediss://…?ca=/path/ca.pem` | it chains to a certificate in that PEM file instead, and names HOST |
//! | `rediss://…?cert=client.pem&key=client.key` | also presents a client certificate (mutual TLS) |
//! | `rediss://…/#insecure` | nothing: any certificate is accepted (the connection is encrypted, not authenticated; for tests only) |
//!
//! `ca`, `cert` and `key` are conveyor's parameters, taken out before the URL
//! reaches the driver; a file that cannot be read is a configuration error
//! naming it.

use std::path::{Path, PathBuf};

use conveyor_core::Error;
use redis::{ClientTlsConfig, TlsCertificates};

/// Files for a TLS connection beyond the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// PEM file of the certificate authorities to trust instead of the
    /// public roots.
    pub ca: Option<PathBuf>,
    /// PEM files of a client certificate and its private key (mutual TLS).
    pub client: Option<(PathBuf, PathBuf)>,
}

impl RedisTls {
    /// True when nothing beyond the defaults is asked for.
    pub fn is_default(&self) -> bool {
        self.ca.is_none() && self.client.is_none()
    }
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| {
        Error::InvalidConfig(format!(
            "cannot read the Redis TLS {what} {}: {e}",
            path.display()
        ))
    })
}

/// Installs the ring provider as the process's rustls default, once (a
/// provider some other part of the program installed first is kept).
pub(crate) fn provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The driver's client for `url`, with `tls`'s files where given.
pub(crate) fn client(url: &str, tls: &RedisTls) -> Result<redis::Client, Error> {
    provider();
    let bad = |e: redis::RedisError| Error::InvalidConfig(format!("bad Redis URL {url:?}: {e}"));
    match certificates(url, tls)? {
        None => redis::Client::open(url).map_err(bad),
        Some(certs) => redis::Client::build_with_tls(url, certs).map_err(bad),
    }
}

/// `tls`'s files read, for a connection to `url`; `None` when there are
/// none (the driver's defaults); an error for files given with a URL
/// that is not TLS.
pub(crate) fn certificates(url: &str, tls: &RedisTls) -> Result<Option<TlsCertificates>, Error> {
    if tls.is_default() {
        return Ok(None);
    }
    if !url.to_ascii_lowercase().starts_with("rediss") {
        return Err(Error::InvalidConfig(format!(
            "ca, cert and key are for TLS connections: use rediss:// instead of {url:?}"
        )));
    }
    let client_tls = match &tls.client {
        Some((cert, key)) => Some(ClientTlsConfig {
            client_cert: read("client certificate", cert)?,
            client_key: read("client key", key)?,
        }),
        None => None,
    };
    let root_cert = tls.ca.as_deref().map(|p| read("CA file", p)).transpose()?;
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}
