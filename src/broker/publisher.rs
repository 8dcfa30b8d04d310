//! Publishing with confirms over a small pool of confirm-mode channels.
//!
//! A call's records go out on one channel, pipelined (all published, then all
//! confirms awaited), so they reach every queue in the order given. Concurrent
//! calls spread over the pool, so a slow confirm never blocks an unrelated call.
//! A call returns Ok only when every record was acked and none was returned.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
    BasicProperties, Channel, Confirmation, Connection,
};
use tokio::sync::watch;

use super::{
    link::{Link, Prepare, Session},
    Endpoint, Error, Topology,
};
use crate::record::Record;

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

fn lock(slot: &std::sync::Mutex<Channel>) -> std::sync::MutexGuard<'_, Channel> {
    // Only a clone or a swap happens under this lock, so poisoning cannot
    // leave it half-written; carry on with the value.
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn confirm_channel(connection: &Connection) -> Result<Channel, Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Publishes records to the exchange with publisher confirms.
pub struct Publisher {
    link: Link<PublishSession>,
    exchange: ShortString,
    /// How long a call waits for its confirms (`--publish-timeout`).
    timeout: Duration,
    /// Round-robin cursor over the channel pool.
    next: AtomicUsize,
}

impl Publisher {
    /// Connects (waiting up to `wait` for the broker), declares the topology
    /// and opens `channels` confirm-mode channels.
    pub async fn connect(
        endpoint: Endpoint,
        connection_name: String,
        wait: Duration,
        topology: Topology,
        channels: usize,
        timeout: Duration,
    ) -> Result<Publisher, Error> {
        let exchange = ShortString::from(topology.exchange.as_str());
        let topology = Arc::new(topology);
        let channels = channels.max(1);
        let prepare: Prepare<PublishSession> = Arc::new(move |connection| {
            let topology = Arc::clone(&topology);
            Box::pin(async move { PublishSession::open(connection, &topology, channels).await })
        });
        let link = Link::establish(endpoint, connection_name, wait, prepare).await?;
        Ok(Publisher {
            link,
            exchange,
            timeout,
            next: AtomicUsize::new(0),
        })
    }

    /// Publishes `records` in order on one channel and waits until the broker
    /// has confirmed every one, or until `--publish-timeout`.
    pub async fn publish(&self, records: &[Record]) -> Result<(), Error> {
        let session = self.link.session()?;
        let slot = self.next.fetch_add(1, Ordering::Relaxed);
        let work = async {
            let channel = session.channel(slot).await?;
            let mut pending = Vec::with_capacity(records.len());
            let mut body = Vec::with_capacity(512);
            for record in records {
                body.clear();
                record.encode_into(&mut body);
                let routing_key = record.routing_key();
                let confirm = channel
                    .basic_publish(
                        self.exchange.clone(),
                        ShortString::from(routing_key),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        &body,
                        properties(record),
                    )
                    .await?;
                pending.push(confirm);
            }
            for (confirm, record) in pending.into_iter().zip(records) {
                self.check(confirm.await?, record)?;
            }
            Ok(())
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(Error::ConfirmTimeout(self.timeout)),
        }
    }

    fn check(&self, confirmation: Confirmation, record: &Record) -> Result<(), Error> {
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_returned)) => Err(Error::Unroutable {
                exchange: self.exchange.to_string(),
                routing_key: record.routing_key(),
            }),
            Confirmation::Nack(_) => Err(Error::Nacked),
            // Every pool channel is in confirm mode; reaching this is a bug,
            // and "no confirm" must never be reported as accepted.
            Confirmation::NotRequested => Err(Error::Nacked),
        }
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

/// The documented AMQP properties of a record's message.
fn properties(record: &Record) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert("service".into(), long_string(&record.service));
    headers.insert("level".into(), long_string(record.level.as_str()));
    if !record.node.is_empty() {
        headers.insert("node".into(), long_string(&record.node));
    }
    if !record.trace_id.is_empty() {
        headers.insert("trace_id".into(), long_string(&record.trace_id));
    }
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(ShortString::from(record.id.as_str()))
        .with_timestamp(u64::try_from(record.time.unix_timestamp()).unwrap_or(0))
        .with_app_id("loggate".into())
        .with_type("loggate.v1.LogRecord".into())
        .with_headers(headers)
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}
