//! The client subcommands (`log`, `tail`): what a person at a terminal uses.
//! Their errors are sentences, never panics or backtraces.

pub mod log;
pub mod tail;

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

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
    #[error("{what}: {} ({:?})", .status.message(), .status.code())]
    Refused {
        what: &'static str,
        status: tonic::Status,
    },
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

/// Connects to the gateway at `server`.
pub async fn connect(server: &str) -> Result<LogGatewayClient<Channel>, Error> {
    let endpoint = Endpoint::from_shared(server.to_owned()).map_err(|source| Error::BadServer {
        server: server.to_owned(),
        source,
    })?;
    let channel = endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .map_err(|error| Error::Unreachable {
            server: server.to_owned(),
            cause: innermost(&error),
        })?;
    Ok(LogGatewayClient::new(channel))
}

/// The deepest error in a chain: the one that says what actually happened.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}
