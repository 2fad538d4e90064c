//! A throwaway certificate authority for tests of TLS (feature `test-support`):
//! a CA, leaves for `localhost`/127.0.0.1 with chosen serials, and installing a
//! pair the way a Secret update lands (new files renamed into place).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SerialNumber};

/// A test CA.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, PEM (what a client's `ca_file` holds).
    pub pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A leaf certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// Certificate PEM.
    pub cert: String,
    /// Private key PEM (PKCS#8).
    pub key: String,
}

impl TestCa {
    /// A new CA with a fresh key.
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kubernaut test CA");
        let key = KeyPair::generate().expect("key generation");
        let cert = params.self_signed(&key).expect("self-signed CA");
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `localhost` and 127.0.0.1 with `serial`.
    pub fn leaf(&self, serial: u64) -> Leaf {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let mut params = CertificateParams::new(names).expect("valid names");
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().expect("key generation");
        let cert = params.signed_by(&key, &self.issuer).expect("signing");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// Writes `ca.crt` into `dir` and returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.crt");
        std::fs::write(&path, &self.pem).expect("writing ca.crt");
        path
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl Leaf {
    /// Installs the pair as `dir/tls.crt` and `dir/tls.key` (each written
    /// aside, then renamed into place); returns (cert, key) paths.
    pub fn install(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
        for (path, text) in [(&c, &self.cert), (&k, &self.key)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).expect("writing a certificate file");
            std::fs::rename(&tmp, path).expect("renaming a certificate file");
        }
        (c, k)
    }

    /// The certificate's DER (what a client sees as the peer certificate).
    pub fn der(&self) -> Vec<u8> {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        tokio_rustls::rustls::pki_types::CertificateDer::from_pem_slice(self.cert.as_bytes())
            .expect("PEM certificate")
            .to_vec()
    }
}
