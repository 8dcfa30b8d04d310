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
//!
//! All three ingest RPCs take this one path: [`Ingest::hand_over`] (in the
//! caller's order) then [`Pending::settle`]; `Log` and `LogBatch` do both at
//! once through [`Ingest::deliver`]. The API layer never sees the publisher
//! or the spool.

use std::sync::Arc;

use tokio::{sync::watch, time::Instant};
use tracing::warn;

use crate::broker::{self, Confirms, PinnedChannel, Publisher};
use crate::record::Record;
use crate::spool::{self, Appended, Spool};

pub use crate::broker::Reservation;

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

/// Why records were not taken. Mapped to gRPC status in `api::status`.
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

/// The hand-off order of one caller (a LogStream): the batches it hands
/// over reach RabbitMQ, or the spool, in the order handed over.
#[derive(Debug, Clone, Copy)]
pub struct Sequence {
    channel: PinnedChannel,
}

/// A batch handed over, its outcome still to come: await [`Pending::settle`].
#[must_use = "records are only confirmed or spooled once settled"]
pub struct Pending {
    awaiting: Awaiting,
    /// Where the records go if the publish fails for a reason that may pass.
    spool: Option<Arc<Spool>>,
}

/// What a handed-over batch waits for.
enum Awaiting {
    /// The broker's confirms (or the error that kept the records from it).
    Confirms(Result<Confirms, broker::Error>),
    /// The spool's fsync (or the error that kept the records from it).
    Fsync(Result<Appended, spool::Error>),
}

impl Ingest {
    pub fn new(publisher: Arc<Publisher>, spool: Option<Arc<Spool>>) -> Ingest {
        Ingest {
            ready: publisher.connected(),
            publisher,
            spool,
        }
    }

    /// `Log` and `LogBatch`: hands `records` over and settles them. Waiting
    /// for room under `--max-inflight` counts against `--publish-timeout`
    /// (past it: `Busy`, which a spool then takes).
    pub async fn deliver(&self, records: &[Record]) -> Result<Delivered, Error> {
        let pending = match self.spool_first() {
            Some(spool) => self.to_spool(spool, records).await,
            None => {
                let timeout = self.publisher.timeout();
                let deadline = Instant::now() + timeout;
                match tokio::time::timeout_at(deadline, self.reserve(records.len())).await {
                    Ok(reservation) => {
                        let channel = self.publisher.pin_channel();
                        self.to_broker(channel, records, reservation, deadline)
                            .await
                    }
                    Err(_) => self.pending(Awaiting::Confirms(Err(broker::Error::Busy(timeout)))),
                }
            }
        };
        pending.settle(records).await
    }

    /// A new hand-off order, for a caller whose batches must stay in order.
    pub fn sequence(&self) -> Sequence {
        Sequence {
            channel: self.publisher.pin_channel(),
        }
    }

    /// Waits until `records` more fit under `--max-inflight` (unbounded: the
    /// caller bounds the wait). A call larger than the whole bound takes all of it.
    pub async fn reserve(&self, records: usize) -> Reservation {
        self.publisher.reserve(records).await
    }

    /// Hands `records` over in `sequence`'s order, to the broker or the
    /// spool, and returns without waiting for either: once this returns, a
    /// later batch of the same sequence lands behind this one. The confirms
    /// are awaited within `--publish-timeout` from now.
    pub async fn hand_over(
        &self,
        sequence: Sequence,
        records: &[Record],
        reservation: Reservation,
    ) -> Pending {
        match self.spool_first() {
            Some(spool) => self.to_spool(spool, records).await,
            None => {
                let deadline = Instant::now() + self.publisher.timeout();
                self.to_broker(sequence.channel, records, reservation, deadline)
                    .await
            }
        }
    }

    /// The spool, when records should go to it without trying the broker.
    fn spool_first(&self) -> Option<&Spool> {
        let spool = self.spool.as_deref()?;
        (spool.has_pending() || !*self.ready.borrow()).then_some(spool)
    }

    async fn to_spool(&self, spool: &Spool, records: &[Record]) -> Pending {
        self.pending(Awaiting::Fsync(spool.append(records).await))
    }

    async fn to_broker(
        &self,
        channel: PinnedChannel,
        records: &[Record],
        reservation: Reservation,
        deadline: Instant,
    ) -> Pending {
        let sent = self
            .publisher
            .send(channel, records, reservation, deadline)
            .await;
        self.pending(Awaiting::Confirms(sent))
    }

    fn pending(&self, awaiting: Awaiting) -> Pending {
        Pending {
            awaiting,
            spool: self.spool.clone(),
        }
    }
}

impl Pending {
    /// Waits for the outcome of the batch of `records` (the ones handed
    /// over): confirmed, or fsynced, or spooled after a publish failure that
    /// may pass, or the failure.
    pub async fn settle(self, records: &[Record]) -> Result<Delivered, Error> {
        let confirmed = match self.awaiting {
            Awaiting::Fsync(appended) => {
                appended?.durable().await?;
                return Ok(Delivered::Spooled);
            }
            Awaiting::Confirms(Ok(confirms)) => confirms.wait().await,
            Awaiting::Confirms(Err(error)) => Err(error),
        };
        let error = match confirmed {
            Ok(()) => return Ok(Delivered::Confirmed),
            Err(error) => error,
        };
        match self.spool.as_deref() {
            Some(spool) if may_pass(&error) => {
                warn!(%error, records = records.len(), "publishing failed; spooling the records");
                spool.append(records).await?.durable().await?;
                Ok(Delivered::Spooled)
            }
            _ => Err(error.into()),
        }
    }
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
