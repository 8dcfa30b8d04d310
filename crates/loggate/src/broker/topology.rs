//! What loggate declares on the broker: the topic exchange and the history
//! stream bound to it with `#`.

use lapin::{
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
    Channel, ExchangeKind,
};

use super::Error;

/// Names and retention of what the gateway declares.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The topic exchange every record is published to.
    pub exchange: String,
    /// The stream queue bound with `#`: every record's durable home, read by Tail.
    pub history_queue: String,
    pub retention: Retention,
    /// Nodes that hold a replica of the history stream (x-initial-cluster-size).
    /// RabbitMQ caps it at the cluster's size, and reads it only when it
    /// creates the stream.
    pub replicas: u16,
}

/// How long and how much the history stream keeps.
#[derive(Debug, Clone)]
pub struct Retention {
    /// RabbitMQ's `x-max-age` syntax: a number and one of Y, M, D, h, m, s.
    pub max_age: String,
    /// `x-max-length-bytes`.
    pub max_bytes: u64,
    /// `x-stream-max-segment-size-bytes`; `None` keeps RabbitMQ's default.
    pub segment_bytes: Option<u64>,
}

impl Topology {
    /// Declares the exchange and the stream and binds them; idempotent, so it
    /// runs again on every reconnect. A queue that already exists with other
    /// arguments is an error that names it.
    pub async fn declare(&self, channel: &Channel) -> Result<(), Error> {
        channel
            .exchange_declare(
                ShortString::from(self.exchange.as_str()),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|source| Error::Topology {
                what: format!("exchange {:?}", self.exchange),
                source,
            })?;

        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from("stream")),
        );
        arguments.insert(
            "x-max-age".into(),
            AMQPValue::LongString(LongString::from(self.retention.max_age.as_str())),
        );
        arguments.insert(
            "x-max-length-bytes".into(),
            AMQPValue::LongLongInt(i64::try_from(self.retention.max_bytes).unwrap_or(i64::MAX)),
        );
        arguments.insert(
            "x-initial-cluster-size".into(),
            AMQPValue::LongInt(i32::from(self.replicas)),
        );
        if let Some(segment) = self.retention.segment_bytes {
            arguments.insert(
                "x-stream-max-segment-size-bytes".into(),
                AMQPValue::LongLongInt(i64::try_from(segment).unwrap_or(i64::MAX)),
            );
        }
        channel
            .queue_declare(
                ShortString::from(self.history_queue.as_str()),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                arguments,
            )
            .await
            .map_err(|source| Error::Topology {
                what: format!("history stream {:?}", self.history_queue),
                source,
            })?;
        channel
            .queue_bind(
                ShortString::from(self.history_queue.as_str()),
                ShortString::from(self.exchange.as_str()),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|source| Error::Topology {
                what: format!("binding of {:?} to {:?}", self.history_queue, self.exchange),
                source,
            })?;
        Ok(())
    }
}
