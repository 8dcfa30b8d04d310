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
    #[error("cannot reach loggate at {server}: {source}")]
    Unreachable {
        server: String,
        #[source]
        source: tonic::transport::Error,
    },
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
        .map_err(|source| Error::Unreachable {
            server: server.to_owned(),
            source,
        })?;
    Ok(LogGatewayClient::new(channel))
}
