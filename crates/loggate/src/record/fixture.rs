//! The record the crate's unit tests start from: every field set, so a test
//! overrides only what it is about (`Record { service: …, ..record() }`).

use time::OffsetDateTime;

use super::{Level, Record};

/// A fully populated record with fixed, valid values.
pub(crate) fn record() -> Record {
    Record {
        id: "0190b7c2-0000-7000-8000-000000000001".into(),
        time: OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).expect("valid"),
        received_time: OffsetDateTime::from_unix_timestamp_nanos(1_700_000_001_000_000_000)
            .expect("valid"),
        service: "billing".into(),
        node: "pod-7".into(),
        level: Level::Warn,
        message: "card declined \"twice\"".into(),
        attributes: [("order".into(), "42".into())].into(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        span_id: "00f067aa0ba902b7".into(),
        gateway: "gw-1".into(),
        principal: String::new(),
    }
}
