//! The one error type of the bench and chaos runs.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Gateway(String),
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    #[error(transparent)]
    Broker(#[from] loggate::broker::Error),
}
