//! The AMQP message body: one JSON object per record (`application/json`), or
//! several, one per line (`application/x-ndjson`).

use super::{json, rfc3339::TimeText, Record};

/// `key` and `value` unless the value is empty (how the body leaves out an
/// optional field).
fn optional(buf: &mut Vec<u8>, key: &[u8], value: &str) {
    if !value.is_empty() {
        buf.extend_from_slice(key);
        json::string(buf, value);
    }
}

/// A message body that is not a loggate record.
#[derive(Debug, thiserror::Error)]
#[error("not a loggate JSON record: {0}")]
pub struct BodyError(#[from] serde_json::Error);

/// The text of both time fields of the last body written: see
/// [`Record::encode_with`].
#[derive(Debug, Default)]
pub(crate) struct BodyTimes {
    time: TimeText,
    received_time: TimeText,
}

impl Record {
    /// Appends the JSON body to `buf`, so callers can reuse one buffer.
    ///
    /// Written by hand, once per record on the hot path: the same bytes as
    /// the record's serde form through serde_json (keys in declaration
    /// order, empty optional fields left out; a test holds the two equal)
    /// for a third of the instructions.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        self.encode_with(buf, &mut BodyTimes::default());
    }

    /// [`Record::encode_into`] for the records of one call in turn: `times`
    /// keeps the last text of each time field, which the next record mostly
    /// shares (always the receive time; the event time unless the client set it).
    pub(crate) fn encode_with(&self, buf: &mut Vec<u8>, times: &mut BodyTimes) {
        buf.extend_from_slice(b"{\"id\":");
        json::string(buf, &self.id);
        buf.extend_from_slice(b",\"time\":\"");
        times.time.write(self.time, buf);
        buf.extend_from_slice(b"\",\"received_time\":\"");
        times.received_time.write(self.received_time, buf);
        buf.extend_from_slice(b"\",\"service\":");
        json::string(buf, &self.service);
        optional(buf, b",\"node\":", &self.node);
        buf.extend_from_slice(b",\"level\":\"");
        buf.extend_from_slice(self.level.as_str().as_bytes());
        buf.extend_from_slice(b"\",\"message\":");
        json::string(buf, &self.message);
        if !self.attributes.is_empty() {
            buf.extend_from_slice(b",\"attributes\":{");
            for (i, (key, value)) in self.attributes.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                json::string(buf, key);
                buf.push(b':');
                json::string(buf, value);
            }
            buf.push(b'}');
        }
        optional(buf, b",\"trace_id\":", &self.trace_id);
        optional(buf, b",\"span_id\":", &self.span_id);
        optional(buf, b",\"gateway\":", &self.gateway);
        optional(buf, b",\"principal\":", &self.principal);
        buf.push(b'}');
    }

    /// The JSON body as a new buffer.
    pub fn to_json(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(256 + self.message.len());
        self.encode_into(&mut buf);
        buf
    }

    /// Reads a JSON body. Unknown keys are ignored, so producers may add fields.
    pub fn from_json(body: &[u8]) -> Result<Record, BodyError> {
        Ok(serde_json::from_slice(body)?)
    }

    /// Reads an AMQP message body in either form: one JSON object
    /// (`application/json`, or no content type) or several, one per line
    /// (`application/x-ndjson`, `--amqp-batch-records`).
    pub fn from_message(content_type: Option<&str>, body: &[u8]) -> Vec<Result<Record, BodyError>> {
        Record::from_message_within(content_type, body, usize::MAX, usize::MAX)
            .expect("nothing is over an unlimited bound")
    }

    /// [`Record::from_message`] for bodies nobody vouches for (anyone with
    /// write access to the exchange can publish): a body over `max_bytes`, or
    /// holding more than `max_records` records, is refused whole before any
    /// of it is parsed, so its cost is a length check and a bounded scan.
    pub fn from_message_within(
        content_type: Option<&str>,
        body: &[u8],
        max_bytes: usize,
        max_records: usize,
    ) -> Result<Vec<Result<Record, BodyError>>, Oversized> {
        if body.len() > max_bytes {
            return Err(Oversized::Bytes {
                bytes: body.len(),
                limit: max_bytes,
            });
        }
        if content_type != Some(NDJSON) {
            return Ok(vec![Record::from_json(body)]);
        }
        let lines = || {
            body.split(|&b| b == b'\n')
                .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        };
        // Counted first, stopping just past the bound: two million junk lines
        // cost a scan of the first few, not two million parse errors.
        if lines().take(max_records.saturating_add(1)).count() > max_records {
            return Err(Oversized::Records { limit: max_records });
        }
        Ok(lines().map(Record::from_json).collect())
    }
}

/// Why a message body was refused without being parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Oversized {
    #[error("the body is {bytes} bytes, over the limit of {limit}")]
    Bytes { bytes: usize, limit: usize },
    #[error("the body packs more than {limit} records")]
    Records { limit: usize },
}

/// The content type of a message that packs several records, one per line.
pub const NDJSON: &str = "application/x-ndjson";

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::record::fixture::record;

    #[test]
    fn body_has_the_documented_shape() {
        let body: serde_json::Value = serde_json::from_slice(&record().to_json()).expect("json");
        assert_eq!(
            body,
            json!({
                "id": "0190b7c2-0000-7000-8000-000000000001",
                "time": "2023-11-14T22:13:20.123456789Z",
                "received_time": "2023-11-14T22:13:21Z",
                "service": "billing",
                "node": "pod-7",
                "level": "warn",
                "message": "card declined \"twice\"",
                "attributes": {"order": "42"},
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                "span_id": "00f067aa0ba902b7",
                "gateway": "gw-1",
            })
        );
    }

    #[test]
    fn empty_optional_fields_are_left_out() {
        let bare = Record {
            node: String::new(),
            attributes: Default::default(),
            trace_id: String::new(),
            span_id: String::new(),
            ..record()
        };
        let body: serde_json::Value = serde_json::from_slice(&bare.to_json()).expect("json");
        let keys: Vec<&str> = body
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "gateway",
                "id",
                "level",
                "message",
                "received_time",
                "service",
                "time"
            ]
        );
    }

    #[test]
    fn body_round_trips_with_nanoseconds() {
        let original = record();
        assert_eq!(
            Record::from_json(&original.to_json()).expect("decodes"),
            original
        );
    }

    #[test]
    fn foreign_bodies_are_refused_not_panicked_on() {
        for bad in [
            &b""[..],
            b"null",
            b"{}",
            b"\xff\xfe",
            br#"{"id":"x","level":"loud"}"#,
        ] {
            assert!(Record::from_json(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_message_body_is_read_in_either_form() {
        let one = record();
        let mut packed = one.to_json();
        packed.push(b'\n');
        packed.extend_from_slice(&one.to_json());
        packed.extend_from_slice(b"\n\n");
        let records = Record::from_message(Some(NDJSON), &packed);
        assert_eq!(records.len(), 2);
        assert!(records.iter().all(|r| r.as_ref().ok() == Some(&one)));
        let single = Record::from_message(Some("application/json"), &one.to_json());
        assert_eq!(single.len(), 1);
        let bad = Record::from_message(Some(NDJSON), b"{}\nnot json\n");
        assert_eq!(bad.len(), 2);
        assert!(bad.iter().all(Result::is_err));
    }

    #[test]
    fn oversized_bodies_are_refused_before_parsing() {
        let junk = b"x\n".repeat(2_000_000);
        assert_eq!(
            Record::from_message_within(Some(NDJSON), &junk, usize::MAX, 10_000).err(),
            Some(Oversized::Records { limit: 10_000 })
        );
        assert_eq!(
            Record::from_message_within(Some("application/json"), &junk, 1_000, 10).err(),
            Some(Oversized::Bytes {
                bytes: 4_000_000,
                limit: 1_000
            })
        );
        // Blank lines are not records, and a body at the bounds is read.
        let mut two = record().to_json();
        two.extend_from_slice(b"\n\n  \n");
        two.extend_from_slice(&record().to_json());
        let read = Record::from_message_within(Some(NDJSON), &two, two.len(), 2).expect("within");
        assert_eq!(read.len(), 2);
        assert!(Record::from_message_within(Some(NDJSON), &two, two.len(), 1).is_err());
    }

    #[test]
    fn the_hand_written_body_is_serde_jsons() {
        let full = record();
        let bare = Record {
            node: String::new(),
            attributes: Default::default(),
            trace_id: String::new(),
            span_id: String::new(),
            gateway: String::new(),
            ..record()
        };
        let odd = Record {
            id: "\u{1}\"id\"".into(),
            service: "s\\".into(),
            node: "n\u{7f}é".into(),
            message: "line\nbreak\ttab\u{1f} 😀".into(),
            attributes: [
                ("z".to_owned(), String::new()),
                ("".to_owned(), "\"".to_owned()),
                ("k\n".to_owned(), "v".to_owned()),
            ]
            .into(),
            principal: "p\u{0}".into(),
            time: time::OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_100_000_000)
                .expect("valid"),
            ..record()
        };
        // No client time: the receive time twice.
        let untimed = Record {
            time: record().received_time,
            ..record()
        };
        let records = [full, bare, odd, untimed];
        for record in &records {
            assert_eq!(
                String::from_utf8(record.to_json()).expect("UTF-8"),
                serde_json::to_string(record).expect("serialises"),
            );
        }
        // One call's records in turn, sharing the times' texts (in both
        // orders, so every kept text meets a record that differs from it).
        for order in [[0, 1, 2, 3], [3, 2, 1, 0]] {
            let mut times = BodyTimes::default();
            for i in order {
                let mut buf = Vec::new();
                records[i].encode_with(&mut buf, &mut times);
                assert_eq!(buf, records[i].to_json(), "record {i}");
            }
        }
    }

    #[test]
    fn encoding_appends_to_a_reused_buffer() {
        let mut buf = b"prefix".to_vec();
        record().encode_into(&mut buf);
        assert!(buf.starts_with(b"prefix{"));
    }
}
