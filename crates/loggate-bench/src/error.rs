//! The one error type of the bench and chaos runs.

/// Why a bench or chaos run could not finish (a lost record is not an
/// error: it is the run's finding, reported with exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gateway under test: missing, not starting, not answering.
    #[error("{0}")]
    Gateway(String),
    /// Our own AMQP connection (the direct ceiling, the read-back).
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    /// A fault could not be injected or undone.
    #[error(transparent)]
    Rabbitmqctl(#[from] loggate_testkit::RabbitmqctlError),
}
