//! The broker layer's error. Mapped to gRPC status in `api::status`, and only there.

use std::time::Duration;

use super::Brokers;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The first connection at start-up never succeeded.
    // "could not connect", not "did not answer": a refused login or an
    // untrusted certificate is an answer, and `reason` says which it was.
    #[error("could not connect to RabbitMQ at {endpoint} within {}: {reason}", humantime::format_duration(*.waited))]
    Unreachable {
        endpoint: Brokers,
        waited: Duration,
        reason: String,
    },
    /// The connection is down right now; the link is reconnecting.
    #[error("not connected to RabbitMQ at {0}; reconnecting")]
    NotConnected(Brokers),
    /// The broker returned a mandatory publish: nothing is bound for its key.
    #[error("no queue is bound to exchange {exchange:?} for routing key {routing_key:?}; the record was returned unroutable")]
    Unroutable {
        exchange: String,
        routing_key: String,
    },
    /// The broker refused to take responsibility for a message.
    #[error("RabbitMQ refused the record (basic.nack)")]
    Nacked,
    /// No confirm arrived within `--publish-timeout`.
    #[error("RabbitMQ did not confirm within {} (--publish-timeout)", humantime::format_duration(*.0))]
    ConfirmTimeout(Duration),
    /// More than `--max-inflight` records awaited confirms for the whole
    /// `--publish-timeout`: the broker is not keeping up.
    #[error("the gateway has too many records awaiting RabbitMQ's confirms; no room under --max-inflight came free within {} (--publish-timeout)", humantime::format_duration(*.0))]
    Busy(Duration),
    /// The gateway is stopping and takes no new work.
    #[error("the gateway is shutting down")]
    ShuttingDown,
    /// The topology could not be declared as configured (e.g. a queue of that
    /// name exists with other arguments).
    #[error("declaring {what}: {source}")]
    Topology {
        what: String,
        #[source]
        source: lapin::Error,
    },
    /// A stream consumer shared by several readers stopped.
    #[error("reading the history stream failed: {0}")]
    Consumer(String),
    /// Any other AMQP failure: a closed channel, a lost connection.
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
}
