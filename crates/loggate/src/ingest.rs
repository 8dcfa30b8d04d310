//! Where an accepted record goes: straight to RabbitMQ with confirms, or,
//! with a spool, to the spool when RabbitMQ cannot take it right now.
//!
//! The rule: a call is answered OK only once the broker confirmed its records
//! or the spool fsynced them. With a spool, records go to it when the publish
//! connection is down or blocked, when a publish fails for a reason that may
//! pass (lost connection, nack, timeout), and while the spool still holds
//! records, so that they reach RabbitMQ behind the ones spooled before them.
//! (The records of a publish that fails midway are spooled when the failure
//! is known, so they can land behind records spooled in the meantime.)
//! A record refused for good (unroutable) is never spooled.

use std::sync::Arc;

use tokio::sync::watch;
use tracing::warn;

use crate::broker::{self, Publisher};
use crate::record::Record;
use crate::spool::{self, Spool};

/// How a call's records were taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// RabbitMQ confirmed every record.
    Confirmed,
    /// The spool fsynced every record; the drainer will publish them.
    Spooled,
}

impl Delivered {
    pub fn spooled(self) -> bool {
        self == Delivered::Spooled
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Broker(#[from] broker::Error),
    #[error(transparent)]
    Spool(#[from] spool::Error),
}

/// The publisher and, if configured, the spool behind it.
pub struct Ingest {
    publisher: Arc<Publisher>,
    spool: Option<Arc<Spool>>,
    /// The publish connection is up and not blocked.
    ready: watch::Receiver<bool>,
}

impl Ingest {
    pub fn new(publisher: Arc<Publisher>, spool: Option<Arc<Spool>>) -> Ingest {
        Ingest {
            ready: publisher.connected(),
            publisher,
            spool,
        }
    }

    pub fn publisher(&self) -> &Arc<Publisher> {
        &self.publisher
    }

    /// Publishes `records` in order and waits for the broker, or spools them.
    pub async fn deliver(&self, records: &[Record]) -> Result<Delivered, Error> {
        if let Some(spool) = self.spool_first() {
            return Ok(spool_now(spool, records).await?);
        }
        let published = self.publisher.publish(records).await;
        self.settle(records, published).await
    }

    /// The spool, when records should go to it without trying the broker.
    pub fn spool_first(&self) -> Option<&Spool> {
        let spool = self.spool.as_deref()?;
        (spool.has_pending() || !*self.ready.borrow()).then_some(spool)
    }

    /// Turns a publish's outcome into the call's: confirmed, or spooled
    /// after a failure that may pass, or the failure.
    pub async fn settle(
        &self,
        records: &[Record],
        published: Result<(), broker::Error>,
    ) -> Result<Delivered, Error> {
        let error = match published {
            Ok(()) => return Ok(Delivered::Confirmed),
            Err(error) => error,
        };
        match self.spool.as_deref() {
            Some(spool) if may_pass(&error) => {
                warn!(%error, records = records.len(), "publishing failed; spooling the records");
                Ok(spool_now(spool, records).await?)
            }
            _ => Err(error.into()),
        }
    }
}

async fn spool_now(spool: &Spool, records: &[Record]) -> Result<Delivered, spool::Error> {
    spool.append(records).await?.durable().await?;
    Ok(Delivered::Spooled)
}

/// Failures a later attempt may not meet: the spool takes those records.
fn may_pass(error: &broker::Error) -> bool {
    use broker::Error as E;
    match error {
        E::NotConnected(_)
        | E::Nacked
        | E::ConfirmTimeout(_)
        | E::Busy(_)
        | E::Amqp(_)
        | E::Unreachable { .. }
        | E::Consumer(_) => true,
        // Unroutable is the sender's problem, and a topology mismatch the
        // operator's: both need a person, not a retry.
        E::Unroutable { .. } | E::Topology { .. } | E::ShuttingDown => false,
    }
}
