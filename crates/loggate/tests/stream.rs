//! LogStream (pipelined ingest) and packed publishing (--amqp-batch-records).

use std::collections::HashSet;

use loggate::proto::v1 as pb;
use loggate_testkit::{next_record, record, Gateway, Probe, WAIT};
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
async fn cancelling_mid_flight_never_acks_an_unconfirmed_record() {
    let gateway = Gateway::start(&[]).await;
    let mut probe = Probe::bind(&gateway.exchange, "#").await;
    let (tx, mut answers) = open(&gateway).await;
    for seq in 0..200 {
        tx.send(request(seq, "svc", 50)).await.expect("send");
    }
    let mut acked = Vec::new();
    for _ in 0..20 {
        let answer = answer(&mut answers).await;
        assert!(answer.error.is_none());
        acked.extend(answer.ids);
    }
    drop(answers);
    drop(tx);

    // Every acked id is in the broker: read until all are found.
    let mut missing: HashSet<String> = acked.into_iter().collect();
    while !missing.is_empty() {
        let body = probe.next_json().await;
        missing.remove(body["id"].as_str().expect("id"));
    }
}

#[tokio::test]
async fn a_stream_over_its_inflight_bound_still_gets_every_answer() {
    // 30 requests of 10 records with room for 25 unanswered records: the
    // gateway must stop reading and resume as answers go out.
    let gateway = Gateway::start(&["--stream-inflight", "25"]).await;
    let (tx, mut answers) = open(&gateway).await;
    let sender = tokio::spawn(async move {
        for seq in 0..30 {
            tx.send(request(seq, "svc", 10)).await.expect("send");
        }
    });
    let mut answered = HashSet::new();
    for _ in 0..30 {
        let answer = answer(&mut answers).await;
        assert!(answer.error.is_none(), "{answer:?}");
        answered.insert(answer.seq);
    }
    assert_eq!(answered.len(), 30);
    sender.await.expect("sender done");
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
