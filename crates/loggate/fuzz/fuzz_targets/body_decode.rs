//! The AMQP message body as a Tail reads it from the history stream: anything
//! anyone published to the exchange, as JSON or NDJSON. Decoding must never
//! panic; a decoded record goes to the follower as a wire record, which the
//! `loggate tail` client reads back and prints (text or JSON), all without a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loggate::proto::v1 as pb;
use loggate::record::{Filter, Record, NDJSON};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = match selector % 3 {
        0 => None,
        1 => Some("application/json"),
        _ => Some(NDJSON),
    };
    let decoded = Record::from_message(content_type, body);
    if content_type != Some(NDJSON) {
        assert_eq!(decoded.len(), 1, "one body, one result");
    }
    let filter = Filter::from_request(&pb::TailRequest {
        min_level: 3,
        contains: "a".into(),
        ..Default::default()
    })
    .expect("a valid filter");
    for record in decoded.into_iter().flatten() {
        let _ = filter.matches(&record);
        let _ = record.routing_key();
        let wire = pb::LogRecord::from(record.clone());
        // What `loggate tail` does with each record the gateway sends.
        if let Ok(back) = Record::try_from(wire) {
            let mut line = Vec::new();
            back.encode_into(&mut line);
            Record::from_json(&line).expect("what the client prints as JSON decodes");
        }
    }
});
