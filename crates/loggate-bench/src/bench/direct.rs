//! The ceiling: the same messages published straight to RabbitMQ with lapin,
//! with the same durability, confirms and size. A strong publisher, or the
//! ratio means nothing: publishes are issued concurrently (1,000 in flight
//! per channel), on 1 and on 4 channels, and the best counts.
//!
//! This file speaks lapin outside `broker/` on purpose: lapin itself is what
//! it measures.

use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use lapin::{
    options::{BasicPublishOptions, ExchangeDeleteOptions, QueueDeleteOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties,
};

use loggate::broker::{Retention, Topology};

use crate::error::Error;

/// A new channel in publisher-confirm mode.
async fn confirm_channel(connection: &Connection) -> Result<Channel, Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Publishes in flight per channel.
const WINDOW: usize = 1_000;

/// A throwaway exchange + stream, declared like the gateway's.
pub struct Target {
    connection: Connection,
    exchange: String,
    queue: String,
}

impl Target {
    pub async fn declare(amqp_url: &str, tag: &str) -> Result<Target, Error> {
        let connection = Connection::connect(
            amqp_url,
            ConnectionProperties::default()
                .with_connection_name(format!("loggate bench direct {tag}").into()),
        )
        .await?;
        let exchange = format!("loggate-bench.{tag}.direct");
        let queue = format!("loggate-bench.{tag}.direct.history");
        let topology = Topology {
            exchange: exchange.clone(),
            history_queue: queue.clone(),
            retention: Retention {
                max_age: "1h".into(),
                max_bytes: 2_000_000_000,
                segment_bytes: None,
            },
            replicas: 1,
        };
        let channel = connection.create_channel().await?;
        topology
            .declare(&channel)
            .await
            .map_err(|e| Error::Gateway(e.to_string()))?;
        Ok(Target {
            connection,
            exchange,
            queue,
        })
    }

    /// Publishes `records` copies of `body` over `channels` channels;
    /// returns records per second.
    pub async fn throughput(
        &self,
        body: &[u8],
        records: u64,
        channels: usize,
    ) -> Result<f64, Error> {
        let mut lanes = Vec::with_capacity(channels);
        for _ in 0..channels {
            lanes.push(confirm_channel(&self.connection).await?);
        }
        let share = records / channels as u64;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (i, channel) in lanes.into_iter().enumerate() {
            let count = if i == 0 {
                records - share * (channels as u64 - 1)
            } else {
                share
            };
            let exchange = self.exchange.clone();
            let body = body.to_vec();
            tasks.push(tokio::spawn(async move {
                flood(channel, exchange, body, count).await
            }));
        }
        for task in tasks {
            task.await.map_err(|e| Error::Gateway(e.to_string()))??;
        }
        Ok(records as f64 / started.elapsed().as_secs_f64())
    }

    /// One publish at a time, each waiting for its confirm: the broker's
    /// round trip, which a unary Log call cannot beat.
    pub async fn round_trips(&self, body: &[u8], samples: usize) -> Result<Vec<Duration>, Error> {
        let publisher = self.one_at_a_time().await?;
        let mut latencies = Vec::with_capacity(samples);
        for i in 0..samples {
            let started = Instant::now();
            publisher.publish(body, i as u64).await?;
            latencies.push(started.elapsed());
        }
        publisher.close().await;
        Ok(latencies)
    }

    /// A confirm-mode channel of its own, publishing one message at a time.
    pub async fn one_at_a_time(&self) -> Result<OneAtATime, Error> {
        Ok(OneAtATime {
            channel: confirm_channel(&self.connection).await?,
            exchange: self.exchange.clone(),
        })
    }

    pub async fn delete(self) {
        delete_names(&self.connection, &self.queue, &self.exchange).await;
    }
}

/// One confirm-mode channel of a [`Target`], each publish awaited to its
/// confirm: usable from any runtime (the latency probe runs on its own).
pub struct OneAtATime {
    channel: Channel,
    exchange: String,
}

impl OneAtATime {
    /// One persistent, mandatory message with the gateway's properties,
    /// returning once the broker confirmed it.
    pub async fn publish(&self, body: &[u8], n: u64) -> Result<(), Error> {
        publish(&self.channel, &self.exchange, body, n).await
    }

    pub async fn close(self) {
        let _ = self.channel.close(200, "one at a time: done".into()).await;
    }
}

/// Deletes a queue and an exchange, then closes the connection. The channel
/// outlives the close: a channel dropped first would still be closing when
/// the connection closes, which lapin reports as a connection error.
pub async fn delete_names(connection: &Connection, queue: &str, exchange: &str) {
    let channel = connection.create_channel().await.ok();
    if let Some(channel) = &channel {
        let _ = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
        let _ = channel
            .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = connection.close(200, "bench cleanup".into()).await;
    drop(channel);
}

/// Keeps `WINDOW` publishes in flight on one channel until `count` are confirmed.
async fn flood(channel: Channel, exchange: String, body: Vec<u8>, count: u64) -> Result<(), Error> {
    let mut in_flight = FuturesUnordered::new();
    let mut issued = 0u64;
    loop {
        while in_flight.len() < WINDOW && issued < count {
            in_flight.push(publish(&channel, &exchange, &body, issued));
            issued += 1;
        }
        match in_flight.next().await {
            Some(result) => result?,
            None => break,
        }
    }
    drop(in_flight);
    let _ = channel.close(200, "flood done".into()).await;
    Ok(())
}

/// One persistent, mandatory, confirmed publish with the gateway's properties.
async fn publish(channel: &Channel, exchange: &str, body: &[u8], n: u64) -> Result<(), Error> {
    let mut headers = FieldTable::default();
    headers.insert(
        "service".into(),
        AMQPValue::LongString(LongString::from("bench")),
    );
    headers.insert(
        "level".into(),
        AMQPValue::LongString(LongString::from("info")),
    );
    headers.insert(
        "node".into(),
        AMQPValue::LongString(LongString::from("bench-node")),
    );
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        // As long as the gateway's UUIDs, and a real time: the same bytes on the wire.
        .with_message_id(ShortString::from(format!("direct-{n:029}")))
        .with_timestamp(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |t| t.as_secs()),
        )
        .with_app_id("loggate".into())
        .with_type("loggate.v1.LogRecord".into())
        .with_headers(headers);
    let confirm = channel
        .basic_publish(
            exchange.into(),
            "bench.info".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            properties,
        )
        .await?
        .await?;
    match confirm {
        Confirmation::Ack(None) => Ok(()),
        other => Err(Error::Gateway(format!(
            "direct publish not accepted: {other:?}"
        ))),
    }
}
