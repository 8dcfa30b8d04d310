//! The loss check: read the history stream and count every acked id in it.

use std::{collections::HashMap, time::Duration};

use futures::StreamExt;
use lapin::{
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions},
    types::{AMQPValue, FieldTable, LongString},
    Connection, ConnectionProperties,
};

use loggate::record::Record;

use crate::error::Error;

/// How each acked id fared in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    pub acked: u64,
    /// Acked ids present at least once.
    pub found: u64,
    pub missing: u64,
    /// Acked ids present more than once (each extra copy counts).
    pub duplicated: u64,
}

impl Tally {
    pub fn of(acked: &[String], seen: &HashMap<String, u32>) -> Tally {
        let mut tally = Tally {
            acked: acked.len() as u64,
            ..Tally::default()
        };
        for id in acked {
            match seen.get(id) {
                None | Some(0) => tally.missing += 1,
                Some(&copies) => {
                    tally.found += 1;
                    tally.duplicated += u64::from(copies - 1);
                }
            }
        }
        tally
    }

    pub fn lossless(&self) -> bool {
        self.missing == 0 && self.duplicated == 0
    }
}

/// Reads `queue` from `start` (an `x-stream-offset` value) until every id in
/// `acked` was seen and the stream has been quiet for a moment, or until it
/// stays quiet for `idle`. Returns how often each record id was seen.
pub async fn read_stream(
    amqp_url: &str,
    queue: &str,
    start: AMQPValue,
    acked: &[String],
    idle: Duration,
) -> Result<HashMap<String, u32>, Error> {
    let (connection, channel, mut consumer) = open_consumer(amqp_url, queue, start).await?;

    let wanted: std::collections::HashSet<&str> = acked.iter().map(String::as_str).collect();
    let mut seen: HashMap<String, u32> = HashMap::with_capacity(acked.len());
    let mut found = 0usize;
    loop {
        // Once everything was found, a short quiet period catches late duplicates.
        let wait = if found >= wanted.len() {
            Duration::from_millis(500)
        } else {
            idle
        };
        let delivery = match tokio::time::timeout(wait, consumer.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(delivery)) => delivery?,
        };
        let content_type = delivery
            .properties
            .content_type()
            .as_ref()
            .map(|s| s.as_str().to_owned());
        for record in Record::from_message(content_type.as_deref(), &delivery.data)
            .into_iter()
            .flatten()
        {
            let wanted_id = wanted.contains(record.id.as_str());
            let count = seen.entry(record.id).or_default();
            *count += 1;
            // Records that were never acked (a call that failed after its
            // records reached RabbitMQ) do not count towards "all found".
            if *count == 1 && wanted_id {
                found += 1;
            }
        }
        // Acks are stream credit; batch them.
        if delivery.delivery_tag % 500 == 0 {
            channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true })
                .await?;
        }
    }
    let _ = channel
        .basic_cancel(
            consumer.tag(),
            lapin::options::BasicCancelOptions::default(),
        )
        .await;
    let _ = channel.close(200, "verified".into()).await;
    let _ = connection.close(200, "verified".into()).await;
    Ok(seen)
}

/// A consumer of its own on `queue` from `start`, for reading a stream back.
pub async fn open_consumer(
    amqp_url: &str,
    queue: &str,
    start: AMQPValue,
) -> Result<(Connection, lapin::Channel, lapin::Consumer), Error> {
    let connection = Connection::connect(
        amqp_url,
        ConnectionProperties::default().with_connection_name("loggate bench reader".into()),
    )
    .await?;
    let channel = connection.create_channel().await?;
    channel.basic_qos(2_000, BasicQosOptions::default()).await?;
    let mut arguments = FieldTable::default();
    arguments.insert("x-stream-offset".into(), start);
    let consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            arguments,
        )
        .await?;
    Ok((connection, channel, consumer))
}

/// `x-stream-offset` for the start of a stream.
pub fn from_first() -> AMQPValue {
    AMQPValue::LongString(LongString::from("first"))
}

/// `x-stream-offset` for records from `seconds` since the epoch onwards.
pub fn from_time(seconds: u64) -> AMQPValue {
    AMQPValue::Timestamp(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_missing_and_duplicated_ids() {
        let acked: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let seen: HashMap<String, u32> = [("a", 1), ("b", 3), ("x", 1), ("d", 1)]
            .map(|(k, v)| (k.to_owned(), v))
            .into();
        let tally = Tally::of(&acked, &seen);
        assert_eq!(
            tally,
            Tally {
                acked: 4,
                found: 3,
                missing: 1,
                duplicated: 2
            }
        );
        assert!(!tally.lossless());
        let clean = Tally::of(&acked[..1], &seen);
        assert!(clean.lossless());
    }
}
