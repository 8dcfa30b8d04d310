//! LogStream (pipelined ingest) and packed publishing (--amqp-batch-records).

use std::{collections::HashSet, time::Duration};

use lapin::{
    options::{QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
    Connection,
};
use loggate::proto::v1 as pb;
use loggate_testkit::{
    history, next_record, record, unique, Gateway, Names, Probe, SuspendedStream, AMQP_URL,
    SERVING, WAIT,
};
use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use tonic::{Code, Streaming};

fn request(seq: u64, service: &str, count: usize) -> pb::LogStreamRequest {
    pb::LogStreamRequest {
        seq,
        records: (0..count)
            .map(|i| record(service, &format!("{seq}/{i}")))
            .collect(),
    }
}

async fn answer(answers: &mut Streaming<pb::LogStreamResponse>) -> pb::LogStreamResponse {
    tokio::time::timeout(WAIT, answers.next())
        .await
        .expect("an answer in time")
        .expect("stream open")
        .expect("no error status")
}

/// Opens a LogStream; requests are sent through the returned sender.
async fn open(
    gateway: &Gateway,
) -> (
    mpsc::Sender<pb::LogStreamRequest>,
    Streaming<pb::LogStreamResponse>,
) {
    let (tx, rx) = mpsc::channel(1024);
    let answers = gateway
        .client()
        .await
        .log_stream(ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();
    (tx, answers)
}

#[tokio::test]
async fn pipelined_requests_are_each_answered_once_and_published_in_order() {
    let gateway = Gateway::start(&[]).await;
    let mut probe = Probe::bind(&gateway.exchange, "#").await;
    let (tx, mut answers) = open(&gateway).await;
    // Everything is sent before any answer is read: the requests are pipelined.
    for seq in 1..=50 {
        tx.send(request(seq, "svc", 20)).await.expect("send");
    }
    let mut answered = HashSet::new();
    let mut ids = Vec::new();
    for _ in 1..=50 {
        let answer = answer(&mut answers).await;
        assert!(answer.error.is_none(), "{answer:?}");
        assert_eq!(answer.ids.len(), 20);
        assert!(
            answered.insert(answer.seq),
            "seq {} answered twice",
            answer.seq
        );
        ids.extend(answer.ids);
    }
    assert_eq!(answered, (1..=50).collect());

    // The broker saw the records in the order they were sent.
    let mut seen = HashSet::new();
    for seq in 1..=50 {
        for i in 0..20 {
            let body = probe.next_json().await;
            assert_eq!(body["message"], format!("{seq}/{i}"));
            seen.insert(body["id"].as_str().expect("id").to_owned());
        }
    }
    assert_eq!(seen, ids.into_iter().collect());
}

#[tokio::test]
async fn a_refused_request_mid_stream_is_answered_with_its_error_and_the_stream_goes_on() {
    let gateway = Gateway::start(&[]).await;
    let mut probe = Probe::bind(&gateway.exchange, "#").await;
    let (tx, mut answers) = open(&gateway).await;

    tx.send(request(1, "good", 2)).await.expect("send");
    let mut bad = request(2, "good", 3);
    bad.records[1].service = "bad service".into();
    tx.send(bad).await.expect("send");
    tx.send(request(3, "good", 2)).await.expect("send");

    let mut by_seq = std::collections::HashMap::new();
    for _ in 0..3 {
        let answer = answer(&mut answers).await;
        by_seq.insert(answer.seq, answer);
    }
    let refused = &by_seq[&2];
    let error = refused.error.as_ref().expect("seq 2 refused");
    assert_eq!(error.code, Code::InvalidArgument as i32);
    assert!(
        error.message.starts_with("records[1].service"),
        "{}",
        error.message
    );
    assert!(refused.ids.is_empty());
    assert!(by_seq[&1].error.is_none() && by_seq[&3].error.is_none());

    // Nothing of seq 2 reached the broker.
    let messages: Vec<String> = probe_messages(&mut probe, 4).await;
    assert_eq!(messages, ["1/0", "1/1", "3/0", "3/1"]);
}

async fn probe_messages(probe: &mut Probe, count: usize) -> Vec<String> {
    let mut messages = Vec::new();
    for _ in 0..count {
        let body = probe.next_json().await;
        messages.push(body["message"].as_str().expect("message").to_owned());
    }
    messages
}

#[tokio::test]
async fn half_close_gets_every_answer_then_a_clean_end() {
    let gateway = Gateway::start(&[]).await;
    let (tx, mut answers) = open(&gateway).await;
    for seq in 0..10 {
        tx.send(request(seq, "svc", 5)).await.expect("send");
    }
    drop(tx); // half-close: no more requests
    let mut answered = 0;
    while let Some(answer) = tokio::time::timeout(WAIT, answers.next())
        .await
        .expect("in time")
    {
        let answer = answer.expect("no error status");
        assert!(answer.error.is_none());
        answered += 1;
    }
    assert_eq!(
        answered, 10,
        "every request answered before the stream ended OK"
    );
}

#[tokio::test]
async fn cancelling_mid_flight_loses_no_acked_record_and_leaks_no_room() {
    // Windows small enough that the cancel catches requests in flight, and
    // that room a cancelled request kept would be missed at once.
    let gateway = Gateway::start(&[
        "--max-inflight",
        "500",
        "--stream-inflight",
        "500",
        "--publish-timeout",
        "5s",
    ])
    .await;
    let (tx, mut answers) = open(&gateway).await;
    for seq in 0..100 {
        tx.send(request(seq, "svc", 50)).await.expect("send");
    }
    let mut acked = Vec::new();
    for _ in 0..10 {
        let answer = answer(&mut answers).await;
        assert!(answer.error.is_none(), "{answer:?}");
        acked.extend(answer.ids);
    }
    drop(answers);
    drop(tx);

    // Every record answered OK before the cancel is in the history, once.
    let mut client = gateway.client().await;
    let history = history(&mut client).await;
    let mut seen = HashSet::new();
    for record in &history {
        assert!(seen.insert(record.id.as_str()), "{} twice", record.id);
    }
    assert!(
        history.len() < 100 * 50,
        "the cancel came too late to catch anything in flight"
    );
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !seen.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "acked but not in the history: {missing:?}"
    );

    // The gateway serves on, with all of its room: one call may take the
    // whole --max-inflight again (a leaked permit would make it wait for
    // room until --publish-timeout, then UNAVAILABLE), and a new stream its
    // whole --stream-inflight.
    assert_eq!(gateway.health_status("").await, SERVING);
    let records = (0..500)
        .map(|i| record("svc", &format!("after/{i}")))
        .collect();
    let ids = client
        .log_batch(pb::LogBatchRequest { records })
        .await
        .expect("the whole --max-inflight is free again")
        .into_inner()
        .ids;
    assert_eq!(ids.len(), 500);
    let (tx, mut answers) = open(&gateway).await;
    tx.send(request(1000, "svc", 500)).await.expect("send");
    let answer = answer(&mut answers).await;
    assert!(answer.error.is_none(), "{answer:?}");
    assert_eq!(answer.ids.len(), 500);
}

#[tokio::test]
async fn a_stream_stops_reading_at_its_inflight_bound_until_records_are_confirmed() {
    // Room for 25 unanswered records: five requests of five.
    let gateway = Gateway::start(&["--stream-inflight", "25", "--publish-timeout", "60s"]).await;
    // Sees what the gateway publishes even while the history holds it unconfirmed.
    let mut probe = Probe::bind(&gateway.exchange, "#").await;
    let suspended = SuspendedStream::suspend(&gateway.history_queue).await;
    let (tx, mut answers) = open(&gateway).await;
    // Far more than 25 records' worth, and far less than HTTP/2's windows
    // hold: only the gateway's bound can keep them from being published.
    for seq in 0..40 {
        tx.send(request(seq, "svc", 5)).await.expect("send");
    }
    let mut published = probe_messages(&mut probe, 25).await;
    // Nothing more is published, and nothing is answered, while nothing is
    // confirmed. (This waits a second: a gateway slower than that to publish
    // would pass wrongly, never fail wrongly.)
    let more = tokio::time::timeout(Duration::from_secs(1), probe.next()).await;
    assert!(
        more.is_err(),
        "published past the bound of 25 records while none was confirmed"
    );
    assert!(
        tokio::time::timeout(Duration::ZERO, answers.next())
            .await
            .is_err(),
        "answered before RabbitMQ confirmed"
    );

    suspended.resume().await;
    let mut answered = HashSet::new();
    for _ in 0..40 {
        let answer = answer(&mut answers).await;
        assert!(answer.error.is_none(), "{answer:?}");
        assert_eq!(answer.ids.len(), 5);
        answered.insert(answer.seq);
    }
    assert_eq!(answered, (0..40).collect());
    published.extend(probe_messages(&mut probe, 175).await);
    let sent: Vec<String> = (0..40)
        .flat_map(|seq| (0..5).map(move |i| format!("{seq}/{i}")))
        .collect();
    assert_eq!(published, sent, "published once each, in the order sent");
}
#[tokio::test]
async fn packed_messages_round_trip_through_tail() {
    let gateway = Gateway::start(&["--amqp-batch-records", "10"]).await;
    let mut probe = Probe::bind(&gateway.exchange, "#").await;
    let mut client = gateway.client().await;
    let mut tail = client
        .tail(pb::TailRequest::default())
        .await
        .expect("tail")
        .into_inner();

    let records: Vec<pb::LogRecord> = (0..25)
        .map(|i| record(if i < 15 { "a" } else { "b" }, &format!("m{i}")))
        .collect();
    let ids = client
        .log_batch(pb::LogBatchRequest { records })
        .await
        .expect("accepted")
        .into_inner()
        .ids;
    assert_eq!(ids.len(), 25);

    // On the wire: 10 + 5 records of a.info, 10 of b.info.
    let mut counts = Vec::new();
    for _ in 0..3 {
        let delivery = probe.next().await;
        assert_eq!(
            delivery
                .properties
                .content_type()
                .as_ref()
                .map(|s| s.as_str()),
            Some("application/x-ndjson")
        );
        let header = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("records").cloned());
        let lines = delivery
            .data
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        assert_eq!(
            header,
            Some(lapin::types::AMQPValue::LongLongInt(lines as i64))
        );
        counts.push((delivery.routing_key.to_string(), lines));
    }
    assert_eq!(
        counts,
        [
            ("a.info".to_owned(), 10),
            ("a.info".to_owned(), 5),
            ("b.info".to_owned(), 10)
        ]
    );

    // Tail unpacks them: every record once, in order within each service.
    let mut got = Vec::new();
    for _ in 0..25 {
        got.push(next_record(&mut tail).await.id);
    }
    assert_eq!(got, ids, "a's records come first, then b's, each in order");
}

#[tokio::test]
async fn log_stream_refuses_a_request_over_max_batch_without_ending() {
    let gateway = Gateway::start(&["--max-batch", "3"]).await;
    let (tx, mut answers) = open(&gateway).await;
    tx.send(request(1, "s", 4)).await.expect("send");
    tx.send(request(2, "s", 3)).await.expect("send");
    let first = answer(&mut answers).await;
    let second = answer(&mut answers).await;
    let (refused, accepted) = if first.seq == 1 {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(
        refused.error.expect("refused").code,
        Code::InvalidArgument as i32
    );
    assert_eq!(accepted.ids.len(), 3);
}

#[tokio::test]
async fn a_request_that_cannot_be_decoded_ends_the_stream_with_its_status() {
    let gateway = Gateway::start(&[]).await;
    let (tx, mut answers) = open(&gateway).await;
    tx.send(request(1, "s", 2)).await.expect("send");
    assert_eq!(answer(&mut answers).await.ids.len(), 2);
    // More records than any --max-batch: refused before it is decoded, so
    // it has no seq to be answered by, and the stream ends with the reason.
    let flood = pb::LogStreamRequest {
        seq: 2,
        records: vec![pb::LogRecord::default(); 100_001],
    };
    tx.send(flood).await.expect("send");
    let ended = tokio::time::timeout(WAIT, answers.next())
        .await
        .expect("an end in time")
        .expect("a status, not a bare end")
        .expect_err("an error status");
    assert_eq!(ended.code(), Code::InvalidArgument, "{ended:?}");
    assert!(ended.message().contains("--max-batch"), "{ended:?}");
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn log_stream_records_take_the_calls_traceparent() {
    let gateway = Gateway::start(&[]).await;
    let mut probe = Probe::bind(&gateway.exchange, "#").await;
    let (tx, rx) = mpsc::channel(16);
    let mut call = tonic::Request::new(ReceiverStream::new(rx));
    call.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE}-{SPAN}-01").parse().expect("ascii"),
    );
    let mut answers = gateway
        .client()
        .await
        .log_stream(call)
        .await
        .expect("stream opens")
        .into_inner();
    let own_trace = "a".repeat(32);
    tx.send(request(1, "svc", 1)).await.expect("send");
    tx.send(pb::LogStreamRequest {
        seq: 2,
        records: vec![
            pb::LogRecord {
                trace_id: own_trace.clone(),
                ..record("svc", "keeps its own")
            },
            record("svc", "a later request inherits too"),
        ],
    })
    .await
    .expect("send");
    for _ in 0..2 {
        let answer = answer(&mut answers).await;
        assert!(answer.error.is_none(), "{answer:?}");
    }

    let first = probe.next_json().await;
    assert_eq!(first["message"], "1/0");
    assert_eq!(
        (&first["trace_id"], &first["span_id"]),
        (&TRACE.into(), &SPAN.into())
    );
    let own = probe.next_json().await;
    assert_eq!(own["trace_id"], own_trace.as_str());
    assert!(own.get("span_id").is_none(), "{own}");
    let later = probe.next_json().await;
    assert_eq!(
        (&later["trace_id"], &later["span_id"]),
        (&TRACE.into(), &SPAN.into())
    );
}

/// A queue of the test's own, bound to `exchange` with `binding`, that
/// refuses every message (`x-max-length` 0, `x-overflow` reject-publish), so
/// that RabbitMQ nacks whatever is routed to it. Deleted when the guard drops.
async fn refusing_queue(exchange: &str, binding: &str) -> Names {
    let name = unique("refusing");
    let connection = Connection::connect(AMQP_URL, Default::default())
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(0));
    arguments.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    let names = Names {
        exchanges: Vec::new(),
        queues: vec![name.clone()],
    };
    channel
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions::default(),
            arguments,
        )
        .await
        .expect("declare the refusing queue");
    channel
        .queue_bind(
            name.as_str().into(),
            exchange.into(),
            binding.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind the refusing queue");
    let _ = connection.close(200, "declared".into()).await;
    names
}

#[tokio::test]
async fn a_nacked_publish_is_answered_unavailable_and_the_stream_goes_on() {
    let gateway = Gateway::start(&[]).await;
    // The history stream takes everything; this queue refuses "refused.*",
    // and one queue refusing is enough for RabbitMQ to nack.
    let _refusing = refusing_queue(&gateway.exchange, "refused.*").await;
    let (tx, mut answers) = open(&gateway).await;
    tx.send(request(1, "refused", 3)).await.expect("send");
    tx.send(request(2, "fine", 2)).await.expect("send");
    let mut by_seq = std::collections::HashMap::new();
    for _ in 0..2 {
        let answer = answer(&mut answers).await;
        by_seq.insert(answer.seq, answer);
    }
    let nacked = &by_seq[&1];
    let error = nacked.error.as_ref().expect("seq 1 is not acked");
    assert_eq!(error.code, Code::Unavailable as i32, "{error:?}");
    assert!(nacked.ids.is_empty() && !nacked.spooled, "{nacked:?}");
    assert!(by_seq[&2].error.is_none(), "{:?}", by_seq[&2]);
    assert_eq!(by_seq[&2].ids.len(), 2);

    // The unary calls answer the same.
    let mut client = gateway.client().await;
    let status = client
        .log(pb::LogRequest {
            record: Some(record("refused", "one")),
        })
        .await
        .expect_err("nacked");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let status = client
        .log_batch(pb::LogBatchRequest {
            records: vec![record("fine", "ok"), record("refused", "no")],
        })
        .await
        .expect_err("one nack fails the batch");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}
