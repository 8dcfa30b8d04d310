//! Validation at the edge: a `LogRecord` decoded with prost from any bytes
//! (what a Log, LogBatch or LogStream call carries), accepted or refused.
//! Never a panic; and what is accepted must be publishable: its JSON body
//! encodes and decodes back to the same record, its routing key is
//! `<service>.<level>`, and the wire form a Tail sends reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loggate::proto::v1 as pb;
use loggate::record::{Acceptance, Limits, Record, TraceParent};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = pb::LogRecord::decode(data) else {
        return;
    };
    let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .expect("a valid header");
    let acceptance = Acceptance {
        received_time: time::macros::datetime!(2024-05-06 07:08:09.123456789 UTC),
        gateway: "gw-1",
        principal: "fuzz",
        // Half the inputs come with a call-level trace context.
        traceparent: (data.len() % 2 == 0).then_some(&parent),
        limits: Limits {
            max_message_bytes: 4096,
        },
    };
    let Ok(record) = acceptance.accept(input) else {
        return;
    };
    assert!(record.message.len() <= 4096);
    assert!(!record.id.is_empty() && record.id.len() <= 64);
    assert!((1970..=9999).contains(&record.time.year()));
    assert_eq!(
        record.routing_key(),
        format!("{}.{}", record.service, record.level)
    );

    let body = record.to_json();
    let decoded = Record::from_json(&body).expect("an accepted record's body decodes");
    assert_eq!(decoded, record, "the JSON body round-trips");
    let ndjson = [body.as_slice(), b"\n", body.as_slice()].concat();
    let both = Record::from_message(Some(loggate::record::NDJSON), &ndjson);
    assert_eq!(both.len(), 2);

    let wire = pb::LogRecord::from(record.clone());
    let back = Record::try_from(wire).expect("a Tail's wire record reads back");
    assert_eq!(back, record, "the wire form round-trips");
});
