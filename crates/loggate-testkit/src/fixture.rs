//! Record fixtures: the one way tests and the load lab make a valid record.

use loggate::proto::v1 as pb;

/// A valid record for `service` carrying `message`; every other field is
/// left for the gateway to fill or default.
pub fn record(service: &str, message: &str) -> pb::LogRecord {
    pb::LogRecord {
        service: service.into(),
        message: message.into(),
        ..Default::default()
    }
}
