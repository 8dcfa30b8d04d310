//! How the bench reaches a gateway: its URL, TLS when it is `https://`, and
//! the bearer token every call carries.

use tonic::{
    service::interceptor::InterceptedService,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use loggate::cli::BearerToken;
use loggate::proto::v1::log_gateway_client::LogGatewayClient;

use crate::error::Error;

/// A LogGateway client that sends the token (if any) with every call.
pub type Client = LogGatewayClient<InterceptedService<Channel, BearerToken>>;

/// One gateway as a client sees it.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    tls: Option<ClientTlsConfig>,
    bearer: BearerToken,
}

impl Target {
    /// `url` (TLS when it is `https://`, trusting `ca_pem` or else the
    /// system's roots), with `token` on every call.
    pub fn new(url: &str, ca_pem: Option<Vec<u8>>, token: Option<&str>) -> Result<Target, Error> {
        let tls = url.starts_with("https://");
        if !tls && ca_pem.is_some() {
            return Err(Error::Gateway(format!(
                "--tls-ca needs an https:// --server, not {url:?}"
            )));
        }
        let tls = tls.then(|| match ca_pem {
            Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
            None => ClientTlsConfig::new().with_native_roots(),
        });
        let bearer = BearerToken::new(token).map_err(|error| Error::Gateway(error.to_string()))?;
        Ok(Target {
            url: url.to_owned(),
            tls,
            bearer,
        })
    }

    /// A gateway this run started with a certificate for `localhost` from its
    /// own CA: the URL names 127.0.0.1 (so `localhost` resolving to ::1
    /// first cannot matter) and the certificate is checked for `localhost`.
    pub fn own_tls(url: &str, ca_pem: Vec<u8>, token: Option<&str>) -> Result<Target, Error> {
        let mut target = Target::new(url, Some(ca_pem), token)?;
        target.tls = target.tls.map(|tls| tls.domain_name("localhost"));
        Ok(target)
    }

    /// The `--tls-ca` file's PEM, for [`Target::new`].
    pub fn read_ca(path: &std::path::Path) -> Result<Vec<u8>, Error> {
        std::fs::read(path).map_err(|e| Error::Gateway(format!("--tls-ca {}: {e}", path.display())))
    }

    /// The same gateway, reached without a token: to check that a secured
    /// gateway really refuses such a call.
    pub fn without_token(&self) -> Target {
        Target {
            bearer: BearerToken::new(None).expect("no token is always valid"),
            ..self.clone()
        }
    }

    /// A client on a connection of its own.
    pub async fn connect(&self) -> Result<Client, Error> {
        let mut endpoint =
            Endpoint::from_shared(self.url.clone()).map_err(|e| Error::Gateway(e.to_string()))?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| Error::Gateway(format!("TLS for {}: {e}", self.url)))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Error::Gateway(format!("cannot reach {}: {}", self.url, innermost(&e))))?;
        Ok(
            LogGatewayClient::with_interceptor(channel, self.bearer.clone())
                .max_decoding_message_size(64 << 20),
        )
    }
}

/// The deepest error in a chain: tonic's outer ones only say "transport error".
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_needs_https_and_a_token_must_be_ascii() {
        assert!(Target::new("http://127.0.0.1:1", Some(b"pem".to_vec()), None).is_err());
        assert!(Target::new("http://127.0.0.1:1", None, Some("tøken")).is_err());
        assert!(Target::new("http://127.0.0.1:1", None, Some("tok en")).is_err());
        assert!(Target::new("https://127.0.0.1:1", None, Some("lgt_abc")).is_ok());
    }
}
