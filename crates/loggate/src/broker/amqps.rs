//! What an `amqps://` connection trusts and presents: the CA (default: the
//! system's roots) and an optional client certificate, read once at start.

use std::{fmt, path::Path, sync::Arc};

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};

/// TLS settings for the `amqps://` brokers, as PEM read from files at start,
/// so a missing or unreadable file stops the gateway before it connects.
#[derive(Clone, Default)]
pub struct AmqpsSettings {
    /// Shared by every connection attempt, which needs its own copy for lapin.
    config: Arc<OwnedTLSConfig>,
    /// The flags that were given, to name them in errors (`--amqp-ca`, …).
    given: Vec<&'static str>,
}

/// Where the PEM files are; `None` for a flag not given.
#[derive(Debug, Clone, Copy, Default)]
pub struct AmqpsFiles<'a> {
    /// `--amqp-ca`: the CA that signed the broker's certificate.
    pub ca: Option<&'a Path>,
    /// `--amqp-client-cert`: the gateway's certificate chain.
    pub client_cert: Option<&'a Path>,
    /// `--amqp-client-key`: its private key.
    pub client_key: Option<&'a Path>,
}

impl AmqpsSettings {
    /// Reads the files. A certificate without its key (or the reverse), an
    /// unreadable file, or one with no PEM block of the expected kind is an
    /// error that names the flag.
    pub fn load(files: AmqpsFiles<'_>) -> Result<AmqpsSettings, String> {
        let mut given = Vec::new();
        let cert_chain = match files.ca {
            Some(path) => {
                given.push("--amqp-ca");
                Some(read_pem(
                    "--amqp-ca",
                    path,
                    &["CERTIFICATE"],
                    "a PEM certificate",
                )?)
            }
            None => None,
        };
        let identity = match (files.client_cert, files.client_key) {
            (Some(cert), Some(key)) => {
                given.push("--amqp-client-cert");
                given.push("--amqp-client-key");
                let pem = read_pem(
                    "--amqp-client-cert",
                    cert,
                    &["CERTIFICATE"],
                    "a PEM certificate",
                )?;
                // rustls takes PKCS#8, PKCS#1 (RSA) and SEC1 (EC) keys.
                let key = read_pem(
                    "--amqp-client-key",
                    key,
                    &["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"],
                    "an unencrypted PEM private key",
                )?;
                Some(OwnedIdentity::PKCS8 {
                    pem: pem.into_bytes(),
                    key: key.into_bytes(),
                })
            }
            (Some(_), None) => {
                return Err("--amqp-client-cert needs --amqp-client-key (its private key)".into())
            }
            (None, Some(_)) => {
                return Err("--amqp-client-key needs --amqp-client-cert (its certificate)".into())
            }
            (None, None) => None,
        };
        Ok(AmqpsSettings {
            config: Arc::new(OwnedTLSConfig {
                identity,
                cert_chain,
            }),
            given,
        })
    }

    /// The TLS flags that were given, if any: they only make sense with
    /// `amqps://` URLs.
    pub(crate) fn given(&self) -> &[&'static str] {
        &self.given
    }

    /// lapin's configuration, for one connection attempt.
    pub(crate) fn lapin_config(&self) -> OwnedTLSConfig {
        OwnedTLSConfig::clone(&self.config)
    }
}

impl fmt::Debug for AmqpsSettings {
    // The key is a secret: show which flags were given, not what they held.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpsSettings")
            .field("given", &self.given)
            .finish_non_exhaustive()
    }
}

/// Reads `path` as text and checks that it holds a PEM block labelled with one
/// of `labels` (`-----BEGIN <label>-----`). The contents never reach an error.
fn read_pem(flag: &str, path: &Path, labels: &[&str], what: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{flag} {}: cannot read it: {e}", path.display()))?;
    let found = labels
        .iter()
        .any(|label| text.contains(&format!("-----BEGIN {label}-----")));
    if !found {
        return Err(format!(
            "{flag} {}: expected {what} (-----BEGIN {}-----)",
            path.display(),
            labels[0]
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "loggate-amqps-{}-{}-{name}",
            std::process::id(),
            uuid::Uuid::now_v7()
        ));
        std::fs::write(&path, contents).expect("write a temp file");
        path
    }

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nS3CRETKEY\n-----END PRIVATE KEY-----\n";

    #[test]
    fn nothing_given_is_the_system_roots() {
        let settings = AmqpsSettings::load(AmqpsFiles::default()).expect("no files");
        assert!(settings.given().is_empty());
        assert_eq!(settings.lapin_config(), OwnedTLSConfig::default());
    }

    #[test]
    fn a_ca_and_a_client_identity_are_read() {
        let (ca, cert, key) = (
            temp_file("ca", CERT),
            temp_file("cert", CERT),
            temp_file("key", KEY),
        );
        let settings = AmqpsSettings::load(AmqpsFiles {
            ca: Some(&ca),
            client_cert: Some(&cert),
            client_key: Some(&key),
        })
        .expect("valid files");
        let config = settings.lapin_config();
        assert_eq!(config.cert_chain.as_deref(), Some(CERT));
        assert!(matches!(config.identity, Some(OwnedIdentity::PKCS8 { .. })));
        assert_eq!(
            settings.given(),
            ["--amqp-ca", "--amqp-client-cert", "--amqp-client-key"]
        );
        assert!(!format!("{settings:?}").contains("S3CRETKEY"));
        for path in [ca, cert, key] {
            let _ = std::fs::remove_file(path);
        }
    }

    #[test]
    fn half_an_identity_is_refused() {
        let cert = temp_file("half", CERT);
        let err = AmqpsSettings::load(AmqpsFiles {
            client_cert: Some(&cert),
            ..AmqpsFiles::default()
        })
        .expect_err("no key");
        assert!(err.contains("--amqp-client-key"), "{err}");
        let _ = std::fs::remove_file(cert);
    }

    #[test]
    fn a_file_of_the_wrong_kind_is_named_but_not_shown() {
        let key = temp_file("swapped", KEY);
        let err = AmqpsSettings::load(AmqpsFiles {
            ca: Some(&key),
            ..AmqpsFiles::default()
        })
        .expect_err("a key is not a CA");
        assert!(err.starts_with("--amqp-ca "), "{err}");
        assert!(!err.contains("S3CRETKEY"), "{err}");
        let missing = AmqpsSettings::load(AmqpsFiles {
            ca: Some(Path::new("/nonexistent/ca.pem")),
            ..AmqpsFiles::default()
        })
        .expect_err("missing");
        assert!(missing.contains("/nonexistent/ca.pem"), "{missing}");
        let _ = std::fs::remove_file(key);
    }
}
