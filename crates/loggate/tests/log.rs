//! Log and LogBatch against a real RabbitMQ, checked with an independent consumer.

use lapin::types::{AMQPValue, LongString};
use loggate::proto::v1 as pb;
use loggate_testkit::{record, Gateway, Probe, SuspendedStream, WAIT};
use tonic::{codec::CompressionEncoding, Code, Request};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

fn header<'a>(delivery: &'a lapin::message::Delivery, key: &str) -> Option<&'a AMQPValue> {
    delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(key))
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

#[tokio::test]
async fn log_publishes_one_message_with_the_documented_contract() {
    let gateway = Gateway::start(&[]).await;
    let mut probe = Probe::bind(&gateway.exchange, "#").await;
    let mut client = gateway.client().await;

    let input = pb::LogRecord {
        time: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_456_789,
        }),
        service: "billing".into(),
        node: "pod-7".into(),
        level: pb::Level::Error as i32,
        message: "card declined".into(),
        attributes: [("order".into(), "42".into())].into(),
        trace_id: TRACE.into(),
        span_id: SPAN.into(),
        ..Default::default()
    };
    let id = client
        .log(pb::LogRequest {
            record: Some(input),
        })
        .await
        .expect("accepted")
        .into_inner()
        .id;
    assert_eq!(
        uuid::Uuid::parse_str(&id).expect("uuid").get_version_num(),
        7
    );

    let delivery = probe.next().await;
    assert_eq!(delivery.routing_key.as_str(), "billing.error");
    let props = &delivery.properties;
    assert_eq!(*props.delivery_mode(), Some(2));
    assert_eq!(
        props.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(
        props.message_id().as_ref().map(|s| s.as_str()),
        Some(id.as_str())
    );
    assert_eq!(*props.timestamp(), Some(1_700_000_000));
    assert_eq!(props.app_id().as_ref().map(|s| s.as_str()), Some("loggate"));
    assert_eq!(
        props.kind().as_ref().map(|s| s.as_str()),
        Some("loggate.v1.LogRecord")
    );
    assert_eq!(header(&delivery, "service"), Some(&long_string("billing")));
    assert_eq!(header(&delivery, "level"), Some(&long_string("error")));
    assert_eq!(header(&delivery, "node"), Some(&long_string("pod-7")));
    assert_eq!(header(&delivery, "trace_id"), Some(&long_string(TRACE)));

    let body: serde_json::Value = serde_json::from_slice(&delivery.data).expect("json");
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["time"], "2023-11-14T22:13:20.123456789Z");
    assert!(body["received_time"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert_eq!(body["service"], "billing");
    assert_eq!(body["node"], "pod-7");
    assert_eq!(body["level"], "error");
    assert_eq!(body["message"], "card declined");
    assert_eq!(body["attributes"], serde_json::json!({"order": "42"}));
    assert_eq!(body["trace_id"], TRACE);
    assert_eq!(body["span_id"], SPAN);
    assert_eq!(body["gateway"], gateway.instance.as_str());
}

#[tokio::test]
async fn optional_headers_and_fields_are_left_out_when_empty() {
    let gateway = Gateway::start(&[]).await;
    let mut probe = Probe::bind(&gateway.exchange, "#").await;
    gateway
        .client()
        .await
        .log(pb::LogRequest {
            record: Some(record("auth", "login")),
        })
        .await
        .expect("accepted");

    let delivery = probe.next().await;
    assert_eq!(
        delivery.routing_key.as_str(),
        "auth.info",
        "UNSPECIFIED is read as INFO"
    );
    assert_eq!(header(&delivery, "node"), None);
    assert_eq!(header(&delivery, "trace_id"), None);
    let body: serde_json::Value = serde_json::from_slice(&delivery.data).expect("json");
    for absent in ["node", "attributes", "trace_id", "span_id"] {
        assert!(
            body.get(absent).is_none(),
            "{absent} should be left out: {body}"
        );
    }
}

#[tokio::test]
async fn a_client_id_becomes_the_message_id() {
    let gateway = Gateway::start(&[]).await;
    let mut probe = Probe::bind(&gateway.exchange, "#").await;
    let id = gateway
        .client()
        .await
        .log(pb::LogRequest {
            record: Some(pb::LogRecord {
                id: "order-42/attempt-1".into(),
                ..record("billing", "charged")
            }),
        })
        .await
        .expect("accepted")
        .into_inner()
        .id;
    assert_eq!(id, "order-42/attempt-1");
    let delivery = probe.next().await;
    assert_eq!(
        delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some("order-42/attempt-1")
    );
}

#[tokio::test]
async fn routing_keys_let_consumers_bind_by_service_and_level() {
    let gateway = Gateway::start(&[]).await;
    let mut errors = Probe::bind(&gateway.exchange, "*.error").await;
    let mut billing = Probe::bind(&gateway.exchange, "billing.*").await;
    let mut client = gateway.client().await;
    for (service, level) in [
        ("auth", pb::Level::Info),
        ("auth", pb::Level::Error),
        ("billing", pb::Level::Debug),
    ] {
        client
            .log(pb::LogRequest {
                record: Some(pb::LogRecord {
                    level: level as i32,
                    ..record(service, "x")
                }),
            })
            .await
            .expect("accepted");
    }
    assert_eq!(errors.next().await.routing_key.as_str(), "auth.error");
    assert_eq!(billing.next().await.routing_key.as_str(), "billing.debug");
}

#[tokio::test]
async fn log_batch_returns_ids_in_order_and_publishes_in_order() {
    let gateway = Gateway::start(&[]).await;
    let mut probe = Probe::bind(&gateway.exchange, "#").await;
    let records: Vec<pb::LogRecord> = (0..200)
        .map(|i| {
            let mut r = record(if i % 2 == 0 { "even" } else { "odd" }, &format!("m{i}"));
            if i == 7 {
                r.id = "client-chosen-7".into();
            }
            r
        })
        .collect();
    let ids = gateway
        .client()
        .await
        .log_batch(pb::LogBatchRequest { records })
        .await
        .expect("accepted")
        .into_inner()
        .ids;
    assert_eq!(ids.len(), 200);
    assert_eq!(ids[7], "client-chosen-7");
    for (i, id) in ids.iter().enumerate() {
        let body = probe.next_json().await;
        assert_eq!(body["message"], format!("m{i}"), "published in order");
        assert_eq!(body["id"], id.as_str(), "ids in request order");
    }
}

#[tokio::test]
async fn each_validation_refusal_names_the_field_and_publishes_nothing() {
    let gateway = Gateway::start(&["--max-message-bytes", "100"]).await;
    let mut probe = Probe::bind(&gateway.exchange, "#").await;
    let mut client = gateway.client().await;

    let cases: Vec<(pb::LogRecord, &str)> = vec![
        (record("", "m"), "record.service"),
        (record("no.dots", "m"), "record.service"),
        (
            pb::LogRecord {
                node: "a\tb".into(),
                ..record("s", "m")
            },
            "record.node",
        ),
        (
            pb::LogRecord {
                level: 42,
                ..record("s", "m")
            },
            "record.level",
        ),
        (record("s", &"x".repeat(101)), "record.message"),
        (
            pb::LogRecord {
                attributes: (0..65).map(|i| (format!("k{i}"), String::new())).collect(),
                ..record("s", "m")
            },
            "record.attributes",
        ),
        (
            pb::LogRecord {
                trace_id: "abc".into(),
                ..record("s", "m")
            },
            "record.trace_id",
        ),
        (
            pb::LogRecord {
                span_id: SPAN.into(),
                ..record("s", "m")
            },
            "record.span_id",
        ),
        (
            pb::LogRecord {
                id: "x".repeat(65),
                ..record("s", "m")
            },
            "record.id",
        ),
        (
            pb::LogRecord {
                time: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -5,
                }),
                ..record("s", "m")
            },
            "record.time",
        ),
    ];
    for (input, field) in cases {
        let status = client
            .log(pb::LogRequest {
                record: Some(input),
            })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().starts_with(field),
            "{field} should be named: {}",
            status.message()
        );
    }
    let status = client
        .log(pb::LogRequest { record: None })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("record"));

    // The first message the probe sees is the sentinel: nothing refused was published.
    client
        .log(pb::LogRequest {
            record: Some(record("sentinel", "after the refusals")),
        })
        .await
        .expect("accepted");
    assert_eq!(probe.next_json().await["service"], "sentinel");
}

#[tokio::test]
async fn a_batch_with_one_bad_record_is_refused_whole() {
    let gateway = Gateway::start(&[]).await;
    let mut probe = Probe::bind(&gateway.exchange, "#").await;
    let mut client = gateway.client().await;
    let mut records: Vec<pb::LogRecord> = (0..10).map(|i| record("s", &format!("{i}"))).collect();
    records[6].service = "bad service".into();
    let status = client
        .log_batch(pb::LogBatchRequest { records })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("records[6].service"),
        "{}",
        status.message()
    );

    client
        .log(pb::LogRequest {
            record: Some(record("sentinel", "after the refusal")),
        })
        .await
        .expect("accepted");
    assert_eq!(probe.next_json().await["service"], "sentinel");
}

#[tokio::test]
async fn a_batch_over_max_batch_is_refused() {
    let gateway = Gateway::start(&["--max-batch", "5"]).await;
    let records = (0..6).map(|i| record("s", &format!("{i}"))).collect();
    let status = gateway
        .client()
        .await
        .log_batch(pb::LogBatchRequest { records })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("records:"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_request_of_more_records_than_any_max_batch_is_refused_before_decoding() {
    // Empty records: two bytes each on the wire, a few hundred in memory;
    // a 64 MiB request of them must not be decoded at all.
    let gateway = Gateway::start(&[]).await;
    let records = vec![pb::LogRecord::default(); 100_001];
    let status = gateway
        .client()
        .await
        .log_batch(pb::LogBatchRequest { records })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "records: more than 100000, the most any --max-batch allows"
    );
}

#[tokio::test]
async fn an_unroutable_record_is_failed_precondition() {
    let gateway = Gateway::start(&[]).await;
    // Remove the only binding: the exchange now routes nowhere.
    gateway.bind_history(false).await;

    let status = gateway
        .client()
        .await
        .log(pb::LogRequest {
            record: Some(record("billing", "into the void")),
        })
        .await
        .expect_err("unroutable");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("billing.info"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn traceparent_metadata_fills_a_missing_trace_id() {
    let gateway = Gateway::start(&[]).await;
    let mut probe = Probe::bind(&gateway.exchange, "#").await;
    let mut client = gateway.client().await;
    let own_trace = "a".repeat(32);

    let mut request = Request::new(pb::LogBatchRequest {
        records: vec![
            record("s", "inherits"),
            pb::LogRecord {
                trace_id: own_trace.clone(),
                ..record("s", "keeps its own")
            },
        ],
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE}-{SPAN}-01").parse().expect("ascii"),
    );
    client.log_batch(request).await.expect("accepted");

    let inherited = probe.next_json().await;
    assert_eq!(inherited["trace_id"], TRACE);
    assert_eq!(inherited["span_id"], SPAN);
    let kept = probe.next_json().await;
    assert_eq!(kept["trace_id"], own_trace.as_str());
    assert!(kept.get("span_id").is_none());
}

#[tokio::test]
async fn a_publish_without_a_confirm_in_time_is_unavailable_and_frees_its_room() {
    // Room for one record: a call whose confirm never came must give its
    // room back, or the next call would wait for it.
    let gateway = Gateway::start(&["--publish-timeout", "1s", "--max-inflight", "1"]).await;
    let mut client = gateway.client().await;
    let held = SuspendedStream::suspend(&gateway.history_queue).await;
    let refused = tokio::time::timeout(
        WAIT,
        client.log(pb::LogRequest {
            record: Some(record("svc", "unconfirmed")),
        }),
    )
    .await
    .expect("answered, not left waiting for ever")
    .expect_err("no confirm while the history stream's writer is held");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("--publish-timeout"),
        "names the limit: {}",
        refused.message()
    );
    held.resume().await;
    let accepted = client
        .log(pb::LogRequest {
            record: Some(record("svc", "confirmed")),
        })
        .await
        .expect("confirmed once the stream takes records again");
    assert!(!accepted.into_inner().spooled);
}

#[tokio::test]
async fn a_call_waits_for_room_under_max_inflight_then_is_unavailable() {
    let timeout = std::time::Duration::from_secs(1);
    let gateway = Gateway::start(&["--publish-timeout", "1s", "--max-inflight", "1"]).await;
    let mut client = gateway.client().await;
    let held = SuspendedStream::suspend(&gateway.history_queue).await;
    // The first call takes the only room and waits for its confirm; the
    // second waits for room rather than being refused, and is answered
    // UNAVAILABLE once its --publish-timeout is spent (the room the first
    // call gives back at its timeout is not confirmed either).
    let log = |message: &str| pb::LogRequest {
        record: Some(record("svc", message)),
    };
    let (mut first, mut second) = (client.clone(), client.clone());
    let (first, (second, waited)) = tokio::join!(
        tokio::time::timeout(WAIT, first.log(log("holds the room"))),
        async {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let sent = std::time::Instant::now();
            let answer = tokio::time::timeout(WAIT, second.log(log("waits for room"))).await;
            (answer, sent.elapsed())
        }
    );
    let first = first.expect("answered").expect_err("unconfirmed");
    let second = second.expect("answered").expect_err("no room");
    assert_eq!(first.code(), Code::Unavailable, "{first:?}");
    assert_eq!(second.code(), Code::Unavailable, "{second:?}");
    // The gateway's clock for the call starts after the client's: a call
    // refused at once, instead of waiting, would be answered sooner.
    assert!(waited >= timeout, "answered after only {waited:?}");
    held.resume().await;
    client
        .log(log("after"))
        .await
        .expect("room again once the broker confirms");
}

#[tokio::test]
async fn a_gzip_compressed_batch_is_accepted() {
    let gateway = Gateway::start(&[]).await;
    let mut probe = Probe::bind(&gateway.exchange, "#").await;
    let records = vec![record("zipped", "one"), record("zipped", "two")];
    let response = gateway
        .client()
        .await
        .send_compressed(CompressionEncoding::Gzip)
        .log_batch(pb::LogBatchRequest { records })
        .await
        .expect("a gzip request is accepted")
        .into_inner();
    assert_eq!(response.ids.len(), 2);
    assert_eq!(probe.next_json().await["message"], "one");
    assert_eq!(probe.next_json().await["message"], "two");
}
