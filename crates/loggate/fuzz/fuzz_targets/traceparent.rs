//! The `traceparent` header of any call: any text. Parsing must never panic,
//! and what it accepts must be ids `Acceptance::accept` takes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loggate::proto::v1 as pb;
use loggate::record::{Acceptance, Limits, TraceParent};

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let Some(parent) = TraceParent::parse(header) else {
        return;
    };
    assert_eq!(parent.trace_id.len(), 32);
    assert_eq!(parent.span_id.len(), 16);
    assert!(header.contains(&parent.trace_id) && header.contains(&parent.span_id));
    let acceptance = Acceptance {
        received_time: time::OffsetDateTime::UNIX_EPOCH,
        gateway: "gw",
        principal: "",
        traceparent: Some(&parent),
        limits: Limits::default(),
    };
    let record = acceptance
        .accept(pb::LogRecord {
            service: "svc".into(),
            ..Default::default()
        })
        .expect("a parsed traceparent's ids are valid record ids");
    assert_eq!(record.trace_id, parent.trace_id);
    assert_eq!(record.span_id, parent.span_id);
});
