//! The OTLP receiver's mapping: an `ExportLogsServiceRequest` decoded with
//! prost from any bytes (what an Export call carries), mapped, validated and
//! stamped. Never a panic; every record is either accepted or counted as
//! rejected; what is accepted is within loggate's limits and publishable
//! (its JSON body reads back the same record).
#![no_main]

use libfuzzer_sys::fuzz_target;
use loggate::proto::otlp::collector::ExportLogsServiceRequest;
use loggate::record::{otlp, Acceptance, Limits, Record};
use prost::Message;

const MAX_MESSAGE_BYTES: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = ExportLogsServiceRequest::decode(data) else {
        return;
    };
    let total = otlp::count(&request);
    let acceptance = Acceptance {
        received_time: time::macros::datetime!(2024-05-06 07:08:09.123456789 UTC),
        gateway: "gw-1",
        principal: "fuzz",
        traceparent: None,
        limits: Limits {
            max_message_bytes: MAX_MESSAGE_BYTES,
        },
    };
    let mapped = otlp::accept(&acceptance, request);
    assert_eq!(mapped.records.len() + mapped.rejected, total);
    assert_eq!(mapped.places.len(), mapped.records.len());
    assert_eq!(mapped.first_rejection.is_some(), mapped.rejected > 0);
    let _ = mapped.rejection_message();
    for record in &mapped.records {
        assert!(record.message.len() <= MAX_MESSAGE_BYTES);
        assert!(!record.service.is_empty() && record.service.len() <= 64);
        assert!(record.attributes.len() <= 64);
        let body = record.to_json();
        let decoded = Record::from_json(&body).expect("an accepted record's body decodes");
        assert_eq!(&decoded, record, "the JSON body round-trips");
    }
});
