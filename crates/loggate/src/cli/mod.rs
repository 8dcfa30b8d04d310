//! The client subcommands (`log`, `tail`, `token`): what a person at a
//! terminal uses. Their errors are sentences, never panics or backtraces.

pub mod log;
pub mod tail;
pub mod token;

use std::time::Duration;

use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{interceptor::InterceptedService, Interceptor},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use crate::config::ServerArg;
use crate::proto::v1::log_gateway_client::LogGatewayClient;

/// How long the CLI waits to reach the gateway.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--server {server:?} is not a valid address: {source}")]
    BadServer {
        server: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// Only the innermost cause is shown: tonic's chain repeats itself.
    #[error("cannot reach loggate at {server}: {cause}")]
    Unreachable { server: String, cause: String },
    /// The TLS files were read but cannot be used (not PEM, no certificate).
    #[error("cannot use the TLS settings for {server}: {cause}")]
    Tls { server: String, cause: String },
    #[error("{what}: {} ({:?})", .status.message(), .status.code())]
    Refused {
        what: &'static str,
        status: tonic::Status,
    },
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    /// A file a flag names could not be read: the command line was fine.
    #[error("{flag} {}: {source}", path.display())]
    File {
        flag: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The system could not supply something the command needs (randomness).
    #[error("{0}")]
    System(String),
    /// A command line that cannot work as written, found after clap parsed it.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Every gateway tried was unreachable: each one's cause, in order.
    fn unreachable(mut causes: Vec<(String, String)>) -> Error {
        if causes.len() == 1 {
            let (server, cause) = causes.remove(0);
            return Error::Unreachable { server, cause };
        }
        Error::Unreachable {
            server: format!("any of the {} gateways", causes.len()),
            cause: causes
                .into_iter()
                .map(|(server, cause)| format!("{server}: {cause}"))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }

    /// Whether the command line is at fault (exit status 2, like clap's own
    /// usage errors) rather than something that happened while running (1).
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::Usage(_) | Error::BadServer { .. })
    }
}

/// A LogGateway client that sends the `--token` with every call.
pub type Client = LogGatewayClient<InterceptedService<Channel, BearerToken>>;

/// Adds `authorization: Bearer <token>` to every call, when there is a token.
/// The bench uses it too, with and without a token, so both sides of its
/// auth comparison run the same client code.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl BearerToken {
    /// The header for `token`, which must be visible ASCII (checked here, not
    /// left to the header parser, which would also take bytes above ASCII).
    pub fn new(token: Option<&str>) -> Result<BearerToken, Error> {
        let Some(token) = token else {
            return Ok(BearerToken(None));
        };
        token
            .bytes()
            .all(|b| b.is_ascii_graphic())
            .then(|| {
                format!("Bearer {token}")
                    .parse::<MetadataValue<Ascii>>()
                    .ok()
            })
            .flatten()
            .map(|value| BearerToken(Some(value)))
            .ok_or_else(|| Error::Usage("--token may only hold visible ASCII characters".into()))
    }
}

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The `--server` gateways, checked and ready to connect to, in the order
/// given.
pub struct Gateways {
    /// Each address as given (for messages) and its endpoint.
    endpoints: Vec<(String, Endpoint)>,
    token: BearerToken,
}

impl Gateways {
    /// Checks every `--server` address (and the TLS files) before any is
    /// tried, so a typo in the second one is not found only when the first
    /// goes away.
    pub fn new(server: &ServerArg) -> Result<Gateways, Error> {
        let token = BearerToken::new(server.token.as_deref())?;
        if server.servers.is_empty() {
            return Err(Error::Usage("--server names no gateway".into()));
        }
        let any_tls = server.servers.iter().any(|s| s.starts_with("https://"));
        if !any_tls && (server.tls_ca.is_some() || server.tls_cert.is_some()) {
            return Err(Error::Usage(format!(
                "--tls-ca and --tls-cert need an https:// --server, not {:?}",
                server.servers.join(",")
            )));
        }
        let tls = if any_tls {
            Some(client_tls(server)?)
        } else {
            None
        };
        let endpoints = server
            .servers
            .iter()
            .map(|address| Ok((address.clone(), endpoint(address, tls.as_ref())?)))
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Gateways { endpoints, token })
    }

    /// How many gateways there are to try (never zero).
    pub fn count(&self) -> usize {
        self.endpoints.len()
    }

    /// The `index`-th address, as given.
    pub fn address(&self, index: usize) -> &str {
        &self.endpoints[index % self.count()].0
    }

    /// Connects to the first gateway that answers, trying them in turn from
    /// the `first`-th (wrapping round), and says which one it reached. A
    /// gateway that is down costs one connect timeout, not the command.
    pub async fn connect(&self, first: usize) -> Result<(Client, usize), Error> {
        let order = (0..self.count()).map(|step| (first + step) % self.count());
        self.connect_in(order).await
    }

    /// Like `connect`, but tries only the `first`-th gateway and those after
    /// it, never wrapping round: for a call that must reach each at most once.
    pub async fn connect_from(&self, first: usize) -> Result<(Client, usize), Error> {
        self.connect_in(first..self.count()).await
    }

    async fn connect_in(
        &self,
        order: impl Iterator<Item = usize>,
    ) -> Result<(Client, usize), Error> {
        let mut unreachable = Vec::new();
        for index in order {
            let (address, endpoint) = &self.endpoints[index];
            match endpoint.connect().await {
                Ok(channel) => {
                    let client = LogGatewayClient::with_interceptor(channel, self.token.clone());
                    return Ok((client, index));
                }
                Err(error) => unreachable.push((address.clone(), innermost(&error))),
            }
        }
        Err(Error::unreachable(unreachable))
    }
}

/// The endpoint for one `--server` address.
fn endpoint(address: &str, tls: Option<&ClientTlsConfig>) -> Result<Endpoint, Error> {
    let bad_server = |source| Error::BadServer {
        server: address.to_owned(),
        source,
    };
    let mut endpoint = Endpoint::from_shared(address.to_owned()).map_err(bad_server)?;
    if address.starts_with("https://") {
        let tls = tls.cloned().unwrap_or_default();
        // The files were read fine; what fails here is their content.
        endpoint = endpoint.tls_config(tls).map_err(|error| Error::Tls {
            server: address.to_owned(),
            cause: innermost(&error),
        })?;
    }
    Ok(endpoint.connect_timeout(CONNECT_TIMEOUT))
}

/// The client's TLS: the given CA or the system's roots, and its identity.
fn client_tls(server: &ServerArg) -> Result<ClientTlsConfig, Error> {
    let read = |flag: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|source| Error::File {
            flag,
            path: path.to_owned(),
            source,
        })
    };
    let mut tls = ClientTlsConfig::new();
    tls = match &server.tls_ca {
        Some(ca) => tls.ca_certificate(Certificate::from_pem(read("--tls-ca", ca)?)),
        None => tls.with_native_roots(),
    };
    if let (Some(cert), Some(key)) = (&server.tls_cert, &server.tls_key) {
        tls = tls.identity(Identity::from_pem(
            read("--tls-cert", cert)?,
            read("--tls-key", key)?,
        ));
    }
    Ok(tls)
}

/// The deepest error in a chain: the one that says what actually happened.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}
