//! The one mapping from our errors to gRPC status codes.
//!
//! Unknown credentials → UNAUTHENTICATED; a service outside the caller's
//! scope → PERMISSION_DENIED naming it; validation → INVALID_ARGUMENT naming the field; unroutable → FAILED_PRECONDITION;
//! nack, confirm timeout, lost connection, shutting down → UNAVAILABLE;
//! spool full → RESOURCE_EXHAUSTED; a disk error while spooling → UNAVAILABLE.
//! Messages never carry the AMQP URL (broker errors name only host:port).

use tonic::Status;
use tracing::warn;

use crate::auth;
use crate::broker;
use crate::ingest;
use crate::record::Invalid;
use crate::spool;

impl From<auth::Unauthenticated> for Status {
    fn from(refusal: auth::Unauthenticated) -> Status {
        Status::unauthenticated(refusal.to_string())
    }
}

impl From<auth::Denied> for Status {
    fn from(denied: auth::Denied) -> Status {
        Status::permission_denied(denied.to_string())
    }
}

impl From<Invalid> for Status {
    fn from(invalid: Invalid) -> Status {
        Status::invalid_argument(invalid.to_string())
    }
}

impl From<broker::Error> for Status {
    fn from(error: broker::Error) -> Status {
        use broker::Error as E;
        match &error {
            E::Unroutable { .. } => Status::failed_precondition(error.to_string()),
            E::ShuttingDown => Status::unavailable(error.to_string()),
            E::NotConnected(_) | E::Nacked | E::ConfirmTimeout(_) | E::Busy(_) => {
                warn!(%error, "publish failed");
                Status::unavailable(error.to_string())
            }
            E::Unreachable { .. } | E::Topology { .. } | E::Amqp(_) | E::Consumer(_) => {
                warn!(%error, "broker error");
                Status::unavailable(format!("RabbitMQ: {error}"))
            }
        }
    }
}

impl From<spool::Error> for Status {
    fn from(error: spool::Error) -> Status {
        match &error {
            spool::Error::Full { .. } => Status::resource_exhausted(error.to_string()),
            spool::Error::Io(_) => {
                warn!(%error, "spooling failed");
                Status::unavailable(error.to_string())
            }
            spool::Error::Closed => Status::unavailable(error.to_string()),
        }
    }
}

impl From<ingest::Error> for Status {
    fn from(error: ingest::Error) -> Status {
        match error {
            ingest::Error::Broker(error) => error.into(),
            ingest::Error::Spool(error) => error.into(),
        }
    }
}
