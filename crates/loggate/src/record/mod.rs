//! The domain: a validated log record, its level, its routing key, its JSON body
//! (the AMQP wire form), tail filters, service scopes and W3C trace context. Pure functions only:
//! nothing here touches the network.

mod body;
mod filter;
#[cfg(test)]
pub(crate) mod fixture;
mod id;
mod json;
mod level;
pub mod otlp;
mod rfc3339;
mod scope;
mod token;
mod traceparent;
mod validate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub(crate) use body::BodyTimes;
pub use body::{BodyError, NDJSON};
pub use filter::Filter;
pub use level::Level;
pub use scope::{Glob, Scope};
pub(crate) use token::hex;
pub use token::ResumeToken;
pub use traceparent::TraceParent;
pub use validate::{Acceptance, Invalid, Limits};

/// A record that passed validation, stamped by the gateway.
///
/// Its serde form *is* the AMQP message body documented in README.md
/// ("The AMQP contract"): snake_case keys, RFC 3339 UTC times with nanoseconds,
/// the level as a lower-case word, empty optional fields left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The client's idempotency key, or a UUIDv7 assigned by the gateway.
    pub id: String,
    /// When the event happened (the gateway's receive time if the client sent none).
    #[serde(
        serialize_with = "rfc3339::serialize",
        deserialize_with = "time::serde::rfc3339::deserialize"
    )]
    pub time: OffsetDateTime,
    /// When the gateway accepted the record.
    #[serde(
        serialize_with = "rfc3339::serialize",
        deserialize_with = "time::serde::rfc3339::deserialize"
    )]
    pub received_time: OffsetDateTime,
    /// The emitting service: a routing-key word.
    pub service: String,
    /// Host, pod or instance.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    pub level: Level,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trace_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub span_id: String,
    /// The instance name of the gateway that accepted the record.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    /// The authenticated principal that wrote it; empty when auth is off.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub principal: String,
}

impl Record {
    /// The topic-exchange routing key: `<service>.<level>`, e.g. `billing.error`.
    pub fn routing_key(&self) -> String {
        let level = self.level.as_str();
        let mut key = String::with_capacity(self.service.len() + 1 + level.len());
        key.push_str(&self.service);
        key.push('.');
        key.push_str(level);
        key
    }
}

impl From<Record> for crate::proto::v1::LogRecord {
    fn from(record: Record) -> Self {
        crate::proto::v1::LogRecord {
            time: Some(timestamp(record.time)),
            service: record.service,
            node: record.node,
            level: record.level.to_wire() as i32,
            message: record.message,
            attributes: record.attributes,
            trace_id: record.trace_id,
            span_id: record.span_id,
            id: record.id,
            received_time: Some(timestamp(record.received_time)),
            gateway: record.gateway,
            principal: record.principal,
        }
    }
}

/// A protobuf Timestamp for `t`.
pub fn timestamp(t: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        nanos: i32::try_from(t.nanosecond()).expect("nanoseconds are below 1e9"),
    }
}

impl TryFrom<crate::proto::v1::LogRecord> for Record {
    type Error = Invalid;

    /// Reads a record as the gateway sends it back (e.g. in a Tail), without
    /// stamping anything: for clients that print or re-encode it.
    fn try_from(wire: crate::proto::v1::LogRecord) -> Result<Record, Invalid> {
        let time = |field: &str, ts: Option<prost_types::Timestamp>| {
            let ts = ts.ok_or_else(|| Invalid::new(field, "is missing"))?;
            let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
            OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|e| Invalid::new(field, e))
        };
        Ok(Record {
            time: time("time", wire.time)?,
            received_time: time("received_time", wire.received_time)?,
            level: validate::check_level(wire.level)?,
            id: wire.id,
            service: wire.service,
            node: wire.node,
            message: wire.message,
            attributes: wire.attributes,
            trace_id: wire.trace_id,
            span_id: wire.span_id,
            gateway: wire.gateway,
            principal: wire.principal,
        })
    }
}
