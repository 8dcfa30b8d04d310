//! Validation at the edge: a wire `LogRecord` becomes a [`Record`], or an
//! [`Invalid`] naming the field and what is wrong with it.
//!
//! Longer than most modules only because half of it is its unit tests: one
//! per rule, kept beside the rules they specify.

use std::fmt;

use time::OffsetDateTime;

use super::id::new_id;
use super::traceparent::{is_span_id, is_trace_id};
use super::{Level, Record, TraceParent};
use crate::proto::v1 as pb;

/// Most attributes on one record.
pub const MAX_ATTRIBUTES: usize = 64;
/// Longest attribute key, in characters.
pub const MAX_ATTRIBUTE_KEY_CHARS: usize = 128;
/// Largest attribute value, in bytes.
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 8 * 1024;
/// Longest service name; it is a routing-key word.
pub const MAX_SERVICE_CHARS: usize = 64;
/// Longest node name, in characters.
pub const MAX_NODE_CHARS: usize = 128;
/// Longest client-chosen id; it becomes the AMQP message_id (a short string).
pub const MAX_ID_CHARS: usize = 64;

/// Limits that an operator may configure.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message, in bytes of UTF-8.
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 64 * 1024,
        }
    }
}

/// What the gateway stamps on every record it accepts in one call.
#[derive(Debug, Clone)]
pub struct Acceptance<'a> {
    /// The gateway's receive time; also the event time when the client sent none.
    pub received_time: OffsetDateTime,
    /// The accepting gateway's instance name.
    pub gateway: &'a str,
    /// The authenticated caller's name; empty when auth is off.
    pub principal: &'a str,
    /// The call's W3C `traceparent`, if it carried a valid one.
    pub traceparent: Option<&'a TraceParent>,
    pub limits: Limits,
}

/// A refused record: which field, and why. Displayed as `field: reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    /// The field's path, e.g. `record.service` or `records[3].attributes["k"]`.
    pub field: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, reason: impl fmt::Display) -> Invalid {
        Invalid {
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    /// Prefixes the field path with where the record sits in the request.
    pub fn within(mut self, prefix: &str) -> Invalid {
        self.field = format!("{prefix}.{}", self.field);
        self
    }
}

impl Acceptance<'_> {
    /// Validates `input` and turns it into a stamped [`Record`]. Output-only
    /// fields (`received_time`, `gateway`, `principal`) on the input are
    /// ignored: a client cannot claim to be someone else.
    pub fn accept(&self, input: pb::LogRecord) -> Result<Record, Invalid> {
        let pb::LogRecord {
            time,
            service,
            node,
            level,
            message,
            attributes,
            mut trace_id,
            mut span_id,
            id,
            received_time: _,
            gateway: _,
            principal: _,
        } = input;

        check_service(&service)?;
        check_node(&node)?;
        let level = check_level(level)?;
        if message.len() > self.limits.max_message_bytes {
            return Err(Invalid::new(
                "message",
                format_args!(
                    "{} bytes, more than the limit of {}",
                    message.len(),
                    self.limits.max_message_bytes
                ),
            ));
        }
        check_attributes(&attributes)?;

        if trace_id.is_empty() {
            if let Some(tp) = self.traceparent {
                trace_id.clone_from(&tp.trace_id);
                if span_id.is_empty() {
                    span_id.clone_from(&tp.span_id);
                }
            }
        }
        if !trace_id.is_empty() && !is_trace_id(&trace_id) {
            return Err(Invalid::new(
                "trace_id",
                "must be 32 lowercase hex digits, not all zeros",
            ));
        }
        if !span_id.is_empty() {
            if !is_span_id(&span_id) {
                return Err(Invalid::new(
                    "span_id",
                    "must be 16 lowercase hex digits, not all zeros",
                ));
            }
            if trace_id.is_empty() {
                return Err(Invalid::new("span_id", "is only allowed with a trace_id"));
            }
        }

        let id = if id.is_empty() {
            new_id(self.received_time)
        } else {
            check_id(&id)?;
            id
        };
        let time = match time {
            None => self.received_time,
            Some(ts) => check_time(ts)?,
        };

        Ok(Record {
            id,
            time,
            received_time: self.received_time,
            service,
            node,
            level,
            message,
            attributes,
            trace_id,
            span_id,
            gateway: self.gateway.to_owned(),
            principal: self.principal.to_owned(),
        })
    }
}

/// 1..64 characters of `[A-Za-z0-9_-]`: safe as a routing-key word.
pub fn check_service(service: &str) -> Result<(), Invalid> {
    if service.is_empty() {
        return Err(Invalid::new("service", "is required"));
    }
    if service.len() > MAX_SERVICE_CHARS {
        return Err(Invalid::new(
            "service",
            format_args!("longer than {MAX_SERVICE_CHARS} characters"),
        ));
    }
    if !service
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(Invalid::new(
            "service",
            "may only contain letters, digits, '_' and '-'",
        ));
    }
    Ok(())
}

fn check_node(node: &str) -> Result<(), Invalid> {
    // Nodes are nearly always ASCII: then a byte is a character, and the
    // checks need no UTF-8 decoding.
    let (chars, control) = if node.is_ascii() {
        let control = node.bytes().any(|b| b.is_ascii_control());
        (node.len(), control)
    } else {
        (node.chars().count(), node.chars().any(char::is_control))
    };
    if chars > MAX_NODE_CHARS {
        return Err(Invalid::new(
            "node",
            format_args!("longer than {MAX_NODE_CHARS} characters"),
        ));
    }
    if control {
        return Err(Invalid::new("node", "contains a control character"));
    }
    Ok(())
}

/// UNSPECIFIED means INFO; a number outside the enum is refused.
pub fn check_level(level: i32) -> Result<Level, Invalid> {
    match pb::Level::try_from(level) {
        Ok(pb::Level::Unspecified) => Ok(Level::Info),
        Ok(wire) => Ok(Level::from_wire(wire).expect("every specified wire level maps")),
        Err(_) => Err(Invalid::new(
            "level",
            format_args!("{level} is not a Level (0..=6)"),
        )),
    }
}

fn check_attributes(
    attributes: &std::collections::BTreeMap<String, String>,
) -> Result<(), Invalid> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(Invalid::new(
            "attributes",
            format_args!(
                "{} entries, more than the limit of {MAX_ATTRIBUTES}",
                attributes.len()
            ),
        ));
    }
    for (key, value) in attributes {
        let chars = key.chars().count();
        if chars == 0 || chars > MAX_ATTRIBUTE_KEY_CHARS {
            return Err(Invalid::new(
                format!("attributes[{key:?}]"),
                format_args!("keys must be 1..{MAX_ATTRIBUTE_KEY_CHARS} characters"),
            ));
        }
        if value.len() > MAX_ATTRIBUTE_VALUE_BYTES {
            return Err(Invalid::new(
                format!("attributes[{key:?}]"),
                format_args!(
                    "value is {} bytes, more than the limit of {MAX_ATTRIBUTE_VALUE_BYTES}",
                    value.len()
                ),
            ));
        }
    }
    Ok(())
}

/// Printable ASCII only: the id becomes the AMQP message_id, a short string.
fn check_id(id: &str) -> Result<(), Invalid> {
    if id.len() > MAX_ID_CHARS {
        return Err(Invalid::new(
            "id",
            format_args!("longer than {MAX_ID_CHARS} characters"),
        ));
    }
    if !id.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(Invalid::new(
            "id",
            "may only contain printable ASCII characters",
        ));
    }
    Ok(())
}

/// A valid protobuf Timestamp no earlier than the Unix epoch (the AMQP
/// `timestamp` property is unsigned seconds) and no later than year 9999 (RFC 3339).
fn check_time(ts: prost_types::Timestamp) -> Result<OffsetDateTime, Invalid> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(Invalid::new("time", "nanos must be in 0..1e9"));
    }
    if ts.seconds < 0 {
        return Err(Invalid::new("time", "is before 1970-01-01T00:00:00Z"));
    }
    let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .filter(|t| t.year() <= 9999)
        .ok_or_else(|| Invalid::new("time", "is after year 9999"))
}

impl Record {
    /// Checks a record the gateway wrote down itself (the spool) before it is
    /// published: a damaged or crafted file must not make a publish panic
    /// (an id over the AMQP short-string limit, a time whose offset puts it
    /// past year 9999 in UTC) or put out what [`Acceptance::accept`] would
    /// have refused. The same rules, minus the message size: that limit is a
    /// setting, and the record was acknowledged under the one then in force.
    /// Times come back in UTC.
    pub(crate) fn check_stored(&mut self) -> Result<(), Invalid> {
        check_service(&self.service)?;
        check_node(&self.node)?;
        check_attributes(&self.attributes)?;
        if self.id.is_empty() {
            return Err(Invalid::new("id", "is required"));
        }
        check_id(&self.id)?;
        if !self.trace_id.is_empty() && !is_trace_id(&self.trace_id) {
            return Err(Invalid::new(
                "trace_id",
                "must be 32 lowercase hex digits, not all zeros",
            ));
        }
        if !self.span_id.is_empty() && (!is_span_id(&self.span_id) || self.trace_id.is_empty()) {
            return Err(Invalid::new(
                "span_id",
                "must be 16 lowercase hex digits, with a trace_id",
            ));
        }
        self.time = check_time(super::timestamp(self.time))?;
        self.received_time =
            check_time(super::timestamp(self.received_time)).map_err(|invalid| Invalid {
                field: "received_time".into(),
                ..invalid
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_780_000_000).expect("valid")
    }

    fn accept(input: pb::LogRecord) -> Result<Record, Invalid> {
        Acceptance {
            received_time: now(),
            gateway: "gw-1",
            principal: "",
            traceparent: None,
            limits: Limits::default(),
        }
        .accept(input)
    }

    fn valid() -> pb::LogRecord {
        pb::LogRecord {
            service: "billing".into(),
            message: "charged".into(),
            ..Default::default()
        }
    }

    fn refused_field(input: pb::LogRecord) -> String {
        accept(input).expect_err("should be refused").field
    }

    #[test]
    fn a_minimal_record_is_stamped_with_defaults() {
        let record = accept(valid()).expect("valid");
        assert_eq!(record.level, Level::Info);
        assert_eq!(record.time, now());
        assert_eq!(record.received_time, now());
        assert_eq!(record.gateway, "gw-1");
        let id = uuid::Uuid::parse_str(&record.id).expect("a uuid");
        assert_eq!(id.get_version_num(), 7);
    }

    #[test]
    fn output_only_fields_are_ignored() {
        let record = accept(pb::LogRecord {
            gateway: "forged".into(),
            received_time: Some(prost_types::Timestamp {
                seconds: 5,
                nanos: 0,
            }),
            ..valid()
        })
        .expect("valid");
        assert_eq!(record.gateway, "gw-1");
        assert_eq!(record.received_time, now());
    }

    #[test]
    fn service_must_be_a_routing_key_word() {
        for bad in ["", "bill.ing", "bill ing", "*", "#", &"a".repeat(65), "é"] {
            let input = pb::LogRecord {
                service: bad.into(),
                ..valid()
            };
            assert_eq!(refused_field(input), "service", "{bad:?}");
        }
        let input = pb::LogRecord {
            service: format!("A-z_0{}", "9".repeat(59)),
            ..valid()
        };
        assert!(accept(input).is_ok());
    }

    #[test]
    fn node_is_bounded_and_has_no_control_characters() {
        let long = pb::LogRecord {
            node: "n".repeat(129),
            ..valid()
        };
        assert_eq!(refused_field(long), "node");
        let control = pb::LogRecord {
            node: "pod\n1".into(),
            ..valid()
        };
        assert_eq!(refused_field(control), "node");
        let fine = pb::LogRecord {
            node: "ü".repeat(128),
            ..valid()
        };
        assert!(accept(fine).is_ok());
        // ASCII and not: characters are counted, DEL and C1 are control.
        for (node, ok) in [
            ("n".repeat(128), true),
            ("ü".repeat(129), false),
            ("pod\u{7f}".into(), false),
            ("pöd\u{85}".into(), false),
            ("pöd\t".into(), false),
        ] {
            let input = pb::LogRecord {
                node: node.clone(),
                ..valid()
            };
            assert_eq!(accept(input).is_ok(), ok, "{node:?}");
        }
    }

    #[test]
    fn level_outside_the_enum_is_refused() {
        let input = pb::LogRecord {
            level: 7,
            ..valid()
        };
        let err = accept(input).expect_err("refused");
        assert_eq!(err.to_string(), "level: 7 is not a Level (0..=6)");
        let input = pb::LogRecord {
            level: pb::Level::Fatal as i32,
            ..valid()
        };
        assert_eq!(accept(input).expect("valid").level, Level::Fatal);
    }

    #[test]
    fn message_is_bounded_in_bytes() {
        let at_limit = pb::LogRecord {
            message: "x".repeat(64 * 1024),
            ..valid()
        };
        assert!(accept(at_limit).is_ok());
        let over = pb::LogRecord {
            message: "x".repeat(64 * 1024 + 1),
            ..valid()
        };
        assert_eq!(refused_field(over), "message");
    }

    #[test]
    fn attributes_are_bounded() {
        let too_many = pb::LogRecord {
            attributes: (0..65).map(|i| (format!("k{i}"), "v".into())).collect(),
            ..valid()
        };
        assert_eq!(refused_field(too_many), "attributes");
        let empty_key = pb::LogRecord {
            attributes: [(String::new(), "v".into())].into(),
            ..valid()
        };
        assert_eq!(refused_field(empty_key), "attributes[\"\"]");
        let long_key = pb::LogRecord {
            attributes: [("k".repeat(129), "v".into())].into(),
            ..valid()
        };
        assert!(refused_field(long_key).starts_with("attributes["));
        let big_value = pb::LogRecord {
            attributes: [("k".into(), "v".repeat(8 * 1024 + 1))].into(),
            ..valid()
        };
        assert_eq!(refused_field(big_value), "attributes[\"k\"]");
    }

    #[test]
    fn trace_context_is_checked() {
        let upper = pb::LogRecord {
            trace_id: TRACE.to_uppercase(),
            ..valid()
        };
        assert_eq!(refused_field(upper), "trace_id");
        let zeros = pb::LogRecord {
            trace_id: "0".repeat(32),
            ..valid()
        };
        assert_eq!(refused_field(zeros), "trace_id");
        let lone_span = pb::LogRecord {
            span_id: SPAN.into(),
            ..valid()
        };
        assert_eq!(refused_field(lone_span), "span_id");
        let bad_span = pb::LogRecord {
            trace_id: TRACE.into(),
            span_id: "xyz".into(),
            ..valid()
        };
        assert_eq!(refused_field(bad_span), "span_id");
    }

    #[test]
    fn traceparent_fills_an_absent_trace_id_only() {
        let tp = TraceParent {
            trace_id: TRACE.into(),
            span_id: SPAN.into(),
        };
        let acceptance = Acceptance {
            received_time: now(),
            gateway: "gw",
            principal: "",
            traceparent: Some(&tp),
            limits: Limits::default(),
        };
        let filled = acceptance.accept(valid()).expect("valid");
        assert_eq!(
            (filled.trace_id.as_str(), filled.span_id.as_str()),
            (TRACE, SPAN)
        );

        let own_trace = "a".repeat(32);
        let kept = acceptance
            .accept(pb::LogRecord {
                trace_id: own_trace.clone(),
                ..valid()
            })
            .expect("valid");
        assert_eq!(kept.trace_id, own_trace);
        assert_eq!(kept.span_id, "");
    }

    #[test]
    fn client_id_is_kept_when_printable() {
        let input = pb::LogRecord {
            id: "order-42 retry#1".into(),
            ..valid()
        };
        assert_eq!(accept(input).expect("valid").id, "order-42 retry#1");
        for bad in ["a\u{7}b", "café", &"i".repeat(65)] {
            let input = pb::LogRecord {
                id: bad.into(),
                ..valid()
            };
            assert_eq!(refused_field(input), "id", "{bad:?}");
        }
    }

    #[test]
    fn time_must_be_a_valid_timestamp_after_the_epoch() {
        let given = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_456_789,
        };
        let record = accept(pb::LogRecord {
            time: Some(given),
            ..valid()
        })
        .expect("valid");
        assert_eq!(
            record.time.unix_timestamp_nanos(),
            1_700_000_000_123_456_789
        );

        for (seconds, nanos) in [(-1, 0), (0, -1), (0, 1_000_000_000), (i64::MAX, 0)] {
            let input = pb::LogRecord {
                time: Some(prost_types::Timestamp { seconds, nanos }),
                ..valid()
            };
            assert_eq!(refused_field(input), "time", "{seconds} {nanos}");
        }
    }

    #[test]
    fn invalid_names_its_place_in_the_request() {
        let err = Invalid::new("service", "is required").within("records[3]");
        assert_eq!(err.to_string(), "records[3].service: is required");
    }
}
