//! Publishing with confirms over a small pool of confirm-mode channels.
//!
//! A call's records go out on one channel, pipelined (all published, then all
//! confirms awaited), so they reach every queue in the order given. Concurrent
//! calls spread over the pool, so a slow confirm never blocks an unrelated call.
//! A call returns Ok only when every record was acked and none was returned.

use std::{
    num::NonZeroUsize,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use std::{future::Future, pin::Pin, task::Poll};

use futures::stream::{FuturesUnordered, StreamExt};
use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::ShortString,
    Channel, Confirmation, Connection, PublisherConfirm,
};
use tokio::{
    sync::{watch, OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

use super::{
    link::{FirstConnect, Link, Prepare, Session},
    outgoing::Outgoing,
    Brokers, Error, Topology,
};
use crate::metrics;
use crate::record::Record;
// Only a clone or a swap happens under a channel slot's lock.
use crate::sync::lock;

/// The confirm-mode channels of one connection.
struct PublishSession {
    connection: Connection,
    /// A channel is replaced when the broker closed it (the connection lives on).
    channels: Vec<std::sync::Mutex<Channel>>,
    /// Serialises replacing a closed channel, so two calls do not both open one.
    repair: tokio::sync::Mutex<()>,
}

impl Session for PublishSession {
    fn connection(&self) -> &Connection {
        &self.connection
    }
}

impl PublishSession {
    async fn open(
        connection: Connection,
        topology: &Topology,
        channels: usize,
    ) -> Result<PublishSession, Error> {
        let declaring = connection.create_channel().await?;
        topology.declare(&declaring).await?;
        let _ = declaring.close(200, "topology declared".into()).await;

        let mut pool = Vec::with_capacity(channels);
        for _ in 0..channels {
            pool.push(std::sync::Mutex::new(confirm_channel(&connection).await?));
        }
        Ok(PublishSession {
            connection,
            channels: pool,
            repair: tokio::sync::Mutex::new(()),
        })
    }

    /// The channel in `slot`, reopened first if the broker closed it.
    async fn channel(&self, slot: usize) -> Result<Channel, Error> {
        let slot = &self.channels[slot % self.channels.len()];
        let channel = lock(slot).clone();
        if channel.status().connected() {
            return Ok(channel);
        }
        let _repairing = self.repair.lock().await;
        let channel = lock(slot).clone();
        if channel.status().connected() {
            return Ok(channel);
        }
        let fresh = confirm_channel(&self.connection).await?;
        *lock(slot) = fresh.clone();
        Ok(fresh)
    }
}

/// A new channel in publisher-confirm mode.
async fn confirm_channel(connection: &Connection) -> Result<Channel, Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// How a [`Publisher`] publishes.
#[derive(Debug, Clone)]
pub struct PublisherSettings {
    /// Confirm-mode channels that concurrent calls share.
    pub channels: NonZeroUsize,
    /// How long a call waits for its confirms (`--publish-timeout`).
    pub timeout: Duration,
    /// Records packed per AMQP message (`--amqp-batch-records`); 1 = one each.
    pub batch_records: NonZeroUsize,
    /// Records published but not yet confirmed, across all calls (`--max-inflight`).
    pub max_inflight: NonZeroUsize,
}

/// Publishes records to the exchange with publisher confirms.
pub struct Publisher {
    link: Link<PublishSession>,
    exchange: ShortString,
    timeout: Duration,
    /// Round-robin cursor over the channel pool.
    next: AtomicUsize,
    batch_records: usize,
    /// One permit per record awaiting its confirm: the gateway-wide bound on
    /// what the broker has not yet taken responsibility for.
    inflight: Arc<Semaphore>,
    max_inflight: u32,
}

impl Publisher {
    /// Connects (see [`FirstConnect`]), declares the topology and opens the
    /// confirm-mode channels; does both again on every reconnect.
    pub async fn connect(
        endpoint: Brokers,
        connection_name: String,
        first: FirstConnect,
        topology: Topology,
        settings: PublisherSettings,
    ) -> Result<Publisher, Error> {
        let exchange = ShortString::from(topology.exchange.as_str());
        let topology = Arc::new(topology);
        let channels = settings.channels.get();
        let max_inflight = u32::try_from(settings.max_inflight.get())
            .unwrap_or(u32::MAX)
            .min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        let prepare: Prepare<PublishSession> = Arc::new(move |connection| {
            let topology = Arc::clone(&topology);
            Box::pin(async move { PublishSession::open(connection, &topology, channels).await })
        });
        let link = Link::establish(
            endpoint,
            connection_name,
            metrics::Connection::Publish,
            first,
            prepare,
        )
        .await?;
        Ok(Publisher {
            link,
            exchange,
            timeout: settings.timeout,
            next: AtomicUsize::new(0),
            batch_records: settings.batch_records.get(),
            inflight: Arc::new(Semaphore::new(max_inflight as usize)),
            max_inflight,
        })
    }

    /// Publishes `records` in order on one channel and waits until the broker
    /// has confirmed every one, or until `--publish-timeout`.
    pub async fn publish(&self, records: &[Record]) -> Result<(), Error> {
        let deadline = Instant::now() + self.timeout;
        let reservation = tokio::time::timeout_at(deadline, self.reserve(records.len()))
            .await
            .map_err(|_| Error::Busy(self.timeout))?;
        let confirms = self
            .send(self.pin_channel(), records, reservation, deadline)
            .await?;
        confirms.wait().await
    }

    /// Waits until `records` more fit under `--max-inflight`. The reservation
    /// travels with the records until their confirms are in, so it bounds
    /// everything the gateway holds for the broker, queued or published.
    pub async fn reserve(&self, records: usize) -> Reservation {
        // A call larger than the whole bound takes all of it, rather than wait forever.
        let wanted = u32::try_from(records)
            .unwrap_or(u32::MAX)
            .min(self.max_inflight);
        let permit = Arc::clone(&self.inflight)
            .acquire_many_owned(wanted)
            .await
            .expect("the in-flight semaphore is never closed");
        Reservation(permit)
    }

    /// How long a call waits for its confirms (`--publish-timeout`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Records reserved under `--max-inflight` now: published (or about to
    /// be) and not yet confirmed.
    pub fn inflight(&self) -> usize {
        (self.max_inflight as usize).saturating_sub(self.inflight.available_permits())
    }

    /// The next of the pool's channels, round-robin, for a caller to keep:
    /// everything sent on one [`PinnedChannel`] reaches the broker in the
    /// order sent (a LogStream keeps one for its life).
    pub fn pin_channel(&self) -> PinnedChannel {
        PinnedChannel(self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Hands every record's message to `channel`, in order, and returns
    /// without waiting for the broker: await [`Confirms::wait`] for that.
    /// Once this returns, a later `send` on the same channel is published after.
    pub async fn send(
        &self,
        channel: PinnedChannel,
        records: &[Record],
        reservation: Reservation,
        deadline: Instant,
    ) -> Result<Confirms, Error> {
        let sent = std::time::Instant::now();
        let session = self.link.session()?;
        let Outgoing { body, messages } = Outgoing::pack(records, self.batch_records);
        let sending = async {
            let channel = session.channel(channel.0).await?;
            let publishes = messages.into_iter().map(|message| {
                channel.basic_publish(
                    self.exchange.clone(),
                    ShortString::from(message.routing_key),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &body[message.body],
                    message.properties,
                )
            });
            in_order(publishes)
                .await
                .into_iter()
                .map(|confirm| confirm.map_err(Error::from))
                .collect::<Result<Vec<_>, Error>>()
        };
        let confirms = match tokio::time::timeout_at(deadline, sending).await {
            Ok(confirms) => confirms?,
            Err(_) => return Err(Error::ConfirmTimeout(self.timeout)),
        };
        Ok(Confirms {
            confirms,
            exchange: self.exchange.clone(),
            sent,
            deadline,
            timeout: self.timeout,
            _reservation: reservation,
        })
    }

    /// `true` while connected; changes when the connection drops or recovers.
    pub fn connected(&self) -> watch::Receiver<bool> {
        self.link.connected()
    }

    /// Closes the connection. Calls made afterwards get `ShuttingDown`.
    pub async fn close(&self) {
        self.link.close().await;
    }
}

/// One channel of the publisher's pool, by position (see [`Publisher::pin_channel`]).
#[derive(Debug, Clone, Copy)]
pub struct PinnedChannel(usize);

/// Room for some records under `--max-inflight`; released when dropped.
pub struct Reservation(#[allow(dead_code)] OwnedSemaphorePermit);

/// The broker's answers for one `send`, still to come.
pub struct Confirms {
    confirms: Vec<PublisherConfirm>,
    exchange: ShortString,
    /// When `send` began: the confirm latency is measured from here.
    sent: std::time::Instant,
    deadline: Instant,
    timeout: Duration,
    /// Returned to the in-flight bound when the confirms are in (or given up on).
    _reservation: Reservation,
}

impl Confirms {
    /// Waits until every message is confirmed: Ok only if all were acked and
    /// none was returned unroutable.
    pub async fn wait(self) -> Result<(), Error> {
        let Confirms {
            confirms,
            exchange,
            sent,
            deadline,
            timeout,
            _reservation,
        } = self;
        let waiting = async {
            // Confirms arrive independently; awaiting them one after another
            // costs only the slowest.
            for confirm in confirms {
                match confirm.await? {
                    Confirmation::Ack(None) => {}
                    Confirmation::Ack(Some(returned)) => {
                        return Err(Error::Unroutable {
                            exchange: exchange.to_string(),
                            routing_key: returned.delivery.routing_key.to_string(),
                        })
                    }
                    Confirmation::Nack(_) => return Err(Error::Nacked),
                    // Every pool channel is in confirm mode: reaching this is a
                    // bug, and "no confirm" must never count as accepted.
                    Confirmation::NotRequested => return Err(Error::Nacked),
                }
            }
            Ok(())
        };
        match tokio::time::timeout_at(deadline, waiting).await {
            Ok(Ok(())) => {
                metrics::confirmed(sent.elapsed());
                Ok(())
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Err(Error::ConfirmTimeout(timeout)),
        }
    }
}

/// Drives `futures` to completion, giving each its first poll in order.
///
/// lapin assigns a publish its delivery tag and queues its frames during the
/// first poll of `basic_publish`, so this issues a whole batch back to back
/// (no round trip to the I/O loop per record) and still in the given order.
/// What is still pending after that pass is driven by a `FuturesUnordered`,
/// which polls a future only when it was woken (a plain join would poll all
/// of them on every wake: quadratic in the batch size).
async fn in_order<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<Option<Pin<Box<F>>>> = futures.map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                if let Poll::Ready(done) = future.as_mut().poll(cx) {
                    *output = Some(done);
                    *slot = None;
                }
            }
        }
        Poll::Ready(())
    })
    .await;
    let mut rest: FuturesUnordered<_> = pending
        .into_iter()
        .enumerate()
        .filter_map(|(i, slot)| slot.map(|future| async move { (i, future.await) }))
        .collect();
    while let Some((i, done)) = rest.next().await {
        outputs[i] = Some(done);
    }
    outputs
        .into_iter()
        .map(|output| output.expect("every future completed above"))
        .collect()
}
