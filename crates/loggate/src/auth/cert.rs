//! The names an mTLS client certificate carries: its subject's common names
//! and its subject alternative names (DNS, e-mail, URI).

use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

/// The CNs and SANs of a DER certificate; none when it cannot be parsed
/// (rustls has already verified it against the client CA by then).
pub fn names_in_certificate(der: &[u8]) -> Vec<String> {
    let Ok((_, certificate)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = certificate
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = certificate.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) | GeneralName::RFC822Name(n) | GeneralName::URI(n) => {
                    names.push((*n).to_owned());
                }
                _ => {}
            }
        }
    }
    names
}
