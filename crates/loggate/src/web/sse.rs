//! How a tail is written as Server-Sent Events: each record as its JSON body
//! (the AMQP contract's form, as `loggate tail --output json` prints it) in
//! an unnamed event whose `id` is its resume token, so a browser's
//! `Last-Event-ID` resumes right after it; `caught_up` and `gap` as named
//! events; heartbeats as comments (they keep proxies from closing a quiet
//! stream, and EventSource ignores them); a tail that fails ends with a
//! `failed` event saying why. Pure: bytes in, bytes out.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::json;
use tonic::Status;

use crate::api::TailEvent;
use crate::proto::v1 as pb;
use crate::tail::Entry;

/// What a web follower sends; written by [`write`].
#[derive(Debug, Clone, PartialEq)]
pub enum WebEvent {
    /// A record's JSON body (shared by every web follower), and its token.
    Record {
        json: Bytes,
        resume_token: String,
    },
    CaughtUp,
    Heartbeat(pb::Heartbeat),
    Gap(pb::Gap),
}

impl TailEvent for WebEvent {
    fn record(entry: &Entry, resume_token: String) -> Self {
        WebEvent::Record {
            json: entry.json(),
            resume_token,
        }
    }
    fn caught_up() -> Self {
        WebEvent::CaughtUp
    }
    fn heartbeat(beat: pb::Heartbeat) -> Self {
        WebEvent::Heartbeat(beat)
    }
    fn gap(gap: pb::Gap) -> Self {
        WebEvent::Gap(gap)
    }
}

/// The first bytes of every stream: how long a browser's EventSource waits
/// before it reconnects (the page's own client uses the same), and a comment
/// so that the stream is visibly open.
pub const PREAMBLE: &[u8] = b"retry: 1000\n: loggate tail\n\n";

/// Appends one event to `out`. A record's JSON holds no line break (JSON
/// escapes them inside strings), and a resume token is hex, so neither can
/// end a field early.
pub fn write(event: &WebEvent, out: &mut BytesMut) {
    match event {
        WebEvent::Record { json, resume_token } => {
            out.put_slice(b"id: ");
            out.put_slice(resume_token.as_bytes());
            out.put_slice(b"\ndata: ");
            out.put_slice(json);
            out.put_slice(b"\n\n");
        }
        WebEvent::CaughtUp => out.put_slice(b"event: caught_up\ndata: {}\n\n"),
        WebEvent::Gap(gap) => named(out, "gap", &json!({ "reason": gap.reason })),
        WebEvent::Heartbeat(beat) => {
            // Comments: "time" and "head_time" as RFC 3339 for the curious.
            out.put_slice(b": heartbeat");
            for (name, at) in [("time", beat.time), ("head_time", beat.head_time)] {
                if let Some(at) = at.and_then(rfc3339) {
                    out.put_slice(format!(" {name}={at}").as_bytes());
                }
            }
            out.put_slice(b"\n\n");
        }
    }
}

/// The event that ends a stream the gateway could not go on with.
pub fn write_failure(status: &Status, out: &mut BytesMut) {
    named(
        out,
        "failed",
        &json!({ "code": crate::metrics::code_name(status.code()), "message": status.message() }),
    );
}

fn named(out: &mut BytesMut, name: &str, data: &serde_json::Value) {
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_slice(b"\ndata: ");
    // serde_json writes no raw line break.
    out.put_slice(data.to_string().as_bytes());
    out.put_slice(b"\n\n");
}

fn rfc3339(at: prost_types::Timestamp) -> Option<String> {
    let nanos = i128::from(at.seconds) * 1_000_000_000 + i128::from(at.nanos);
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(event: WebEvent) -> String {
        let mut out = BytesMut::new();
        write(&event, &mut out);
        String::from_utf8(out.to_vec()).expect("UTF-8")
    }

    #[test]
    fn a_record_is_its_json_with_its_token_as_id() {
        let record = crate::record::fixture::record();
        let entry = Entry::new(7, 0, Record::clone(&record));
        let text = written(WebEvent::record(&entry, "7631".into()));
        let body = String::from_utf8(record.to_json()).expect("UTF-8");
        assert_eq!(text, format!("id: 7631\ndata: {body}\n\n"));
    }

    #[test]
    fn a_message_with_line_breaks_stays_one_data_line() {
        let record = Record {
            message: "one\ntwo\r\nthree".into(),
            ..crate::record::fixture::record()
        };
        let text = written(WebEvent::record(&Entry::new(1, 0, record), "t".into()));
        assert_eq!(text.matches('\n').count(), 3, "{text}");
        assert!(text.contains(r#""message":"one\ntwo\r\nthree""#));
    }

    #[test]
    fn caught_up_gap_and_heartbeat_have_their_own_forms() {
        assert_eq!(
            written(WebEvent::CaughtUp),
            "event: caught_up\ndata: {}\n\n"
        );
        assert_eq!(
            written(WebEvent::Gap(pb::Gap {
                reason: "gone".into()
            })),
            "event: gap\ndata: {\"reason\":\"gone\"}\n\n"
        );
        let beat = pb::Heartbeat {
            time: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            head_time: None,
        };
        assert_eq!(
            written(WebEvent::Heartbeat(beat)),
            ": heartbeat time=2023-11-14T22:13:20Z\n\n"
        );
    }

    #[test]
    fn a_failure_names_its_code() {
        let mut out = BytesMut::new();
        write_failure(&Status::unavailable("shutting down"), &mut out);
        assert_eq!(
            out,
            "event: failed\ndata: {\"code\":\"UNAVAILABLE\",\"message\":\"shutting down\"}\n\n"
        );
    }

    use crate::record::Record;
}
