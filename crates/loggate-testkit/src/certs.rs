//! Real X.509 certificates for TLS tests: a CA of the test's own, and
//! server and client certificates it signs, written as PEM files to a
//! directory that is removed when the [`TestPki`] drops.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

impl CertFiles {
    /// The certificate's PEM text.
    pub fn cert_pem(&self) -> Vec<u8> {
        std::fs::read(&self.cert).expect("certificate readable")
    }

    /// The key's PEM text.
    pub fn key_pem(&self) -> Vec<u8> {
        std::fs::read(&self.key).expect("key readable")
    }
}

/// A throwaway certificate authority.
pub struct TestPki {
    dir: PathBuf,
    /// The CA certificate (PEM): what a peer trusts.
    pub ca: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl TestPki {
    /// A new CA named `name`, in a fresh directory.
    pub fn new(name: &str) -> TestPki {
        let dir = std::env::temp_dir().join(crate::unique("pki"));
        std::fs::create_dir_all(&dir).expect("create the PKI directory");
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let certificate = params.self_signed(&key).expect("self-signed CA");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, certificate.pem()).expect("write the CA");
        TestPki {
            dir,
            ca,
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate as PEM.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(&self.ca).expect("CA readable")
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self, file_stem: &str) -> CertFiles {
        self.issue(
            file_stem,
            "localhost",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate whose subject CN is `common_name`.
    pub fn client(&self, file_stem: &str, common_name: &str) -> CertFiles {
        self.issue(
            file_stem,
            common_name,
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    fn issue(
        &self,
        file_stem: &str,
        common_name: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> CertFiles {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let certificate = params.signed_by(&key, &self.issuer).expect("signed leaf");
        let files = CertFiles {
            cert: self.dir.join(format!("{file_stem}.pem")),
            key: self.dir.join(format!("{file_stem}.key")),
        };
        std::fs::write(&files.cert, certificate.pem()).expect("write the certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write the key");
        files
    }

    /// Where the files are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
