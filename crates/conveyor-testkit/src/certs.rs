//! Throwaway certificates for TLS tests: a certificate authority and a
//! server certificate it signs, for `localhost` and `127.0.0.1`, written as
//! PEM files to a temporary directory (removed on drop). Made fresh by each
//! test with rcgen: no external tool, nothing that expires between runs.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA and a server certificate it signed, as files.
#[derive(Debug)]
pub struct TestCerts {
    dir: tempfile::TempDir,
}

impl TestCerts {
    /// A new CA named `name` and a server certificate for `localhost` and
    /// `127.0.0.1` signed by it.
    pub fn new(name: &str) -> TestCerts {
        let dir = tempfile::tempdir().expect("a temp dir for certificates");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("conveyor test CA {name}"));
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca, ca_key);
        let server_key = KeyPair::generate().expect("server key");
        let mut server =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("server params");
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_cert = server
            .signed_by(&server_key, &issuer)
            .expect("server certificate");
        let write = |file: &str, text: String| {
            std::fs::write(dir.path().join(file), text).expect("write a PEM file")
        };
        write("ca.pem", ca_cert.pem());
        write("server.pem", server_cert.pem());
        write("server.key", server_key.serialize_pem());
        TestCerts { dir }
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate (PEM).
    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server's private key (PEM).
    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}
