//! Records → AMQP messages: the documented properties, and one shared body
//! buffer per call (lapin copies the bytes into frames, so one allocation
//! serves every message of the call).

use std::{collections::HashMap, ops::Range};

use lapin::{
    types::{AMQPValue, FieldTable, LongString, ShortString},
    BasicProperties,
};

use crate::record::{BodyTimes, Level, Record, NDJSON};

/// `content_type` of a message holding one record.
pub const JSON: &str = "application/json";

/// The messages of one call, ready to publish in order.
pub(crate) struct Outgoing {
    /// Every message body, back to back.
    pub body: Vec<u8>,
    pub messages: Vec<Message>,
}

pub(crate) struct Message {
    pub routing_key: String,
    /// This message's bytes in `Outgoing::body`.
    pub body: Range<usize>,
    pub properties: BasicProperties,
}

impl Outgoing {
    /// One message per record when `batch_records` is 1. Otherwise records that
    /// share a routing key are packed, up to `batch_records` per message, in
    /// their given order; groups go out in the order their key first appears.
    pub fn pack(records: &[Record], batch_records: usize) -> Outgoing {
        let mut body = Vec::with_capacity(records.iter().map(estimated_size).sum());
        let mut times = BodyTimes::default();
        if batch_records <= 1 {
            let messages = records
                .iter()
                .map(|record| {
                    let start = body.len();
                    record.encode_with(&mut body, &mut times);
                    Message {
                        routing_key: record.routing_key(),
                        body: start..body.len(),
                        properties: single_properties(record),
                    }
                })
                .collect();
            return Outgoing { body, messages };
        }

        // Grouped by what the routing key is made of, borrowed: no key is
        // written per record, only one per group.
        let mut groups: Vec<Vec<&Record>> = Vec::new();
        let mut index: HashMap<(&str, Level), usize> = HashMap::new();
        let mut last: Option<((&str, Level), usize)> = None;
        for record in records {
            let key = (record.service.as_str(), record.level);
            // A call's records mostly share one key: no hashing for a run.
            let slot = match last {
                Some((previous, slot)) if previous == key => slot,
                _ => *index.entry(key).or_insert_with(|| {
                    groups.push(Vec::new());
                    groups.len() - 1
                }),
            };
            last = Some((key, slot));
            groups[slot].push(record);
        }
        let mut messages = Vec::new();
        for members in groups {
            let routing_key = members[0].routing_key();
            for chunk in members.chunks(batch_records) {
                let start = body.len();
                for record in chunk {
                    record.encode_with(&mut body, &mut times);
                    body.push(b'\n');
                }
                messages.push(Message {
                    routing_key: routing_key.clone(),
                    body: start..body.len(),
                    properties: packed_properties(chunk),
                });
            }
        }
        Outgoing { body, messages }
    }
}

/// Room for one record's body (and its line break) unless it has characters
/// to escape: the buffer is sized once per call, not grown (a grown buffer
/// of a 1,000-record call is copied whole each time).
fn estimated_size(record: &Record) -> usize {
    // Keys, punctuation and the two times take under 200 bytes.
    200 + [
        &record.id,
        &record.service,
        &record.node,
        &record.message,
        &record.trace_id,
        &record.span_id,
        &record.gateway,
        &record.principal,
    ]
    .iter()
    .map(|s| s.len())
    .sum::<usize>()
        + record
            .attributes
            .iter()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum::<usize>()
}

/// A one-record message: the properties the README documents.
fn single_properties(record: &Record) -> BasicProperties {
    let mut headers = common_headers(record);
    if !record.node.is_empty() {
        headers.insert("node".into(), long_string(&record.node));
    }
    if !record.trace_id.is_empty() {
        headers.insert("trace_id".into(), long_string(&record.trace_id));
    }
    base_properties(record, JSON)
        .with_message_id(ShortString::from(record.id.as_str()))
        .with_headers(headers)
}

/// A packed message: `records` = how many lines; `message_id` and
/// `timestamp` are the first record's.
fn packed_properties(records: &[&Record]) -> BasicProperties {
    let first = records[0];
    let mut headers = common_headers(first);
    headers.insert(
        "records".into(),
        AMQPValue::LongLongInt(i64::try_from(records.len()).unwrap_or(i64::MAX)),
    );
    base_properties(first, NDJSON)
        .with_message_id(ShortString::from(first.id.as_str()))
        .with_headers(headers)
}

fn base_properties(record: &Record, content_type: &str) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(content_type.into())
        .with_timestamp(u64::try_from(record.time.unix_timestamp()).unwrap_or(0))
        .with_app_id("loggate".into())
        .with_type("loggate.v1.LogRecord".into())
}

/// `service`, `level`, and `principal` when auth is on (the records packed
/// into one message come from one call, so they share its principal).
fn common_headers(record: &Record) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert("service".into(), long_string(&record.service));
    headers.insert("level".into(), long_string(record.level.as_str()));
    if !record.principal.is_empty() {
        headers.insert("principal".into(), long_string(&record.principal));
    }
    headers
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::fixture;

    fn record(service: &str, level: Level, message: &str) -> Record {
        Record {
            id: format!("id-{message}"),
            service: service.into(),
            level,
            message: message.into(),
            ..fixture::record()
        }
    }

    #[test]
    fn one_message_per_record_by_default() {
        let records = [record("a", Level::Info, "1"), record("b", Level::Warn, "2")];
        let out = Outgoing::pack(&records, 1);
        assert_eq!(out.messages.len(), 2);
        for (message, record) in out.messages.iter().zip(&records) {
            assert_eq!(message.routing_key, record.routing_key());
            let decoded = Record::from_json(&out.body[message.body.clone()]).expect("json");
            assert_eq!(&decoded, record);
            assert_eq!(
                message
                    .properties
                    .content_type()
                    .as_ref()
                    .map(|s| s.as_str()),
                Some(JSON)
            );
        }
    }

    #[test]
    fn packing_groups_by_routing_key_and_keeps_order_within_a_key() {
        let records: Vec<Record> = (0..7)
            .map(|i| {
                let service = if i % 2 == 0 { "even" } else { "odd" };
                record(service, Level::Info, &i.to_string())
            })
            .collect();
        let out = Outgoing::pack(&records, 3);
        let summary: Vec<(String, Vec<String>)> = out
            .messages
            .iter()
            .map(|m| {
                let lines = out.body[m.body.clone()]
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| Record::from_json(l).expect("line").message)
                    .collect();
                (m.routing_key.clone(), lines)
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "even.info".to_owned(),
                    vec!["0".to_owned(), "2".into(), "4".into()]
                ),
                ("even.info".to_owned(), vec!["6".to_owned()]),
                (
                    "odd.info".to_owned(),
                    vec!["1".to_owned(), "3".into(), "5".into()]
                ),
            ]
        );
        let first = &out.messages[0].properties;
        assert_eq!(
            first.content_type().as_ref().map(|s| s.as_str()),
            Some(NDJSON)
        );
        let count = first
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("records").cloned());
        assert_eq!(count, Some(AMQPValue::LongLongInt(3)));
    }

    /// The AMQP contract, byte for byte: a fixed record's body and
    /// properties, alone and packed. Any change to the encoder must keep these.
    #[test]
    fn golden_message_bytes_and_properties() {
        let one = fixture::record();
        let odd = Record {
            id: "id-2".into(),
            message: "tab\there, quote \" backslash \\ bell \u{7} del \u{7f} é ✓ \u{1F600}\n"
                .into(),
            attributes: [
                ("b".to_owned(), "2".to_owned()),
                ("a\"k".to_owned(), "\u{0}".to_owned()),
            ]
            .into(),
            trace_id: String::new(),
            span_id: String::new(),
            node: String::new(),
            principal: "alice".into(),
            time: time::OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid"),
            ..fixture::record()
        };
        const ONE: &str = r#"{"id":"0190b7c2-0000-7000-8000-000000000001","time":"2023-11-14T22:13:20.123456789Z","received_time":"2023-11-14T22:13:21Z","service":"billing","node":"pod-7","level":"warn","message":"card declined \"twice\"","attributes":{"order":"42"},"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","gateway":"gw-1"}"#;
        const ODD: &str = concat!(
            r#"{"id":"id-2","time":"2023-11-14T22:13:20Z","received_time":"2023-11-14T22:13:21Z","service":"billing","level":"warn","#,
            r#""message":"tab\there, quote \" backslash \\ bell \u0007 del "#,
            "\u{7f}",
            r#" é ✓ 😀\n","attributes":{"a\"k":"\u0000","b":"2"},"gateway":"gw-1","principal":"alice"}"#
        );

        let single = Outgoing::pack(&[one.clone(), odd.clone()], 1);
        let bodies: Vec<&[u8]> = single
            .messages
            .iter()
            .map(|m| &single.body[m.body.clone()])
            .collect();
        assert_eq!(bodies, [ONE.as_bytes(), ODD.as_bytes()]);
        let headers = |pairs: &[(&str, AMQPValue)]| {
            let mut table = FieldTable::default();
            for (k, v) in pairs {
                table.insert((*k).into(), v.clone());
            }
            table
        };
        let text = |s: &str| AMQPValue::LongString(s.into());
        let base = |content_type: &str, id: &str, timestamp: u64| {
            BasicProperties::default()
                .with_content_type(content_type.into())
                .with_delivery_mode(2)
                .with_message_id(id.into())
                .with_timestamp(timestamp)
                .with_type("loggate.v1.LogRecord".into())
                .with_app_id("loggate".into())
        };
        assert_eq!(
            single.messages[0].properties,
            base(JSON, "0190b7c2-0000-7000-8000-000000000001", 1_700_000_000).with_headers(
                headers(&[
                    ("service", text("billing")),
                    ("level", text("warn")),
                    ("node", text("pod-7")),
                    ("trace_id", text("4bf92f3577b34da6a3ce929d0e0e4736")),
                ])
            )
        );
        assert_eq!(
            single.messages[1].properties,
            base(JSON, "id-2", 1_700_000_000).with_headers(headers(&[
                ("service", text("billing")),
                ("level", text("warn")),
                ("principal", text("alice")),
            ]))
        );
        assert_eq!(single.messages[0].routing_key, "billing.warn");

        let packed = Outgoing::pack(&[one, odd], 100);
        assert_eq!(packed.messages.len(), 1);
        let message = &packed.messages[0];
        assert_eq!(
            &packed.body[message.body.clone()],
            format!("{ONE}\n{ODD}\n").as_bytes()
        );
        assert_eq!(message.routing_key, "billing.warn");
        assert_eq!(
            message.properties,
            base(
                NDJSON,
                "0190b7c2-0000-7000-8000-000000000001",
                1_700_000_000
            )
            .with_headers(headers(&[
                ("service", text("billing")),
                ("level", text("warn")),
                ("records", AMQPValue::LongLongInt(2)),
            ]))
        );
    }
}
