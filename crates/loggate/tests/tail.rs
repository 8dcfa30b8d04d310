//! Tail against a real RabbitMQ: filtering, order, robustness, clean endings.

use std::time::Duration;

use loggate::proto::v1::{self as pb, log_gateway_client::LogGatewayClient};
use loggate_testkit::{
    close_connections, connections_named, consumers_of_connection, eventually, next_record, record,
    slow_live_tail, Gateway, AMQP_URL, WAIT,
};
use tonic::{transport::Channel, Streaming};

#[tokio::test]
async fn tail_sends_only_matching_records_in_stream_order() {
    let gateway = Gateway::start(&[]).await;
    let mut client = gateway.client().await;
    let mut stream = client
        .tail(pb::TailRequest {
            services: vec!["billing".into(), "auth".into()],
            min_level: pb::Level::Warn as i32,
            ..Default::default()
        })
        .await
        .expect("tail opens")
        .into_inner();

    let levels = [
        pb::Level::Info,
        pb::Level::Warn,
        pb::Level::Error,
        pb::Level::Debug,
    ];
    let records: Vec<pb::LogRecord> = (0..120)
        .map(|i| pb::LogRecord {
            level: levels[i % levels.len()] as i32,
            ..record(["billing", "auth", "search"][i % 3], &format!("m{i}"))
        })
        .collect();
    let expected: Vec<String> = records
        .iter()
        .filter(|r| r.service != "search" && r.level >= pb::Level::Warn as i32)
        .map(|r| r.message.clone())
        .collect();
    assert!(!expected.is_empty());
    client
        .log_batch(pb::LogBatchRequest { records })
        .await
        .expect("accepted");
    // A final matching record: once it arrives, everything before it has too.
    client
        .log(pb::LogRequest {
            record: Some(pb::LogRecord {
                level: pb::Level::Fatal as i32,
                ..record("auth", "last")
            }),
        })
        .await
        .expect("accepted");

    for message in expected {
        let got = next_record(&mut stream).await;
        assert_eq!(got.message, message);
        assert_eq!(got.gateway, gateway.instance);
        assert!(got.received_time.is_some() && got.time.is_some());
    }
    assert_eq!(next_record(&mut stream).await.message, "last");
}

#[tokio::test]
async fn tail_filters_on_node_trace_attributes_and_text() {
    let gateway = Gateway::start(&[]).await;
    let mut client = gateway.client().await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut stream = client
        .tail(pb::TailRequest {
            nodes: vec!["pod-1".into()],
            trace_id: trace.into(),
            attributes: [("region".into(), "eu".into())].into(),
            contains: "timeout".into(),
            ..Default::default()
        })
        .await
        .expect("tail opens")
        .into_inner();
    let matching = pb::LogRecord {
        node: "pod-1".into(),
        trace_id: trace.into(),
        attributes: [("region".into(), "eu".into()), ("x".into(), "y".into())].into(),
        ..record("api", "upstream timeout after 3s")
    };
    let records = vec![
        pb::LogRecord {
            node: "pod-2".into(),
            ..matching.clone()
        },
        pb::LogRecord {
            trace_id: String::new(),
            ..matching.clone()
        },
        pb::LogRecord {
            attributes: [("region".into(), "us".into())].into(),
            ..matching.clone()
        },
        pb::LogRecord {
            message: "all good".into(),
            ..matching.clone()
        },
        matching.clone(),
    ];
    client
        .log_batch(pb::LogBatchRequest { records })
        .await
        .expect("accepted");
    let got = next_record(&mut stream).await;
    assert_eq!(
        (got.node.as_str(), got.message.as_str()),
        ("pod-1", "upstream timeout after 3s")
    );
    assert_eq!(got.attributes, matching.attributes);
}

#[tokio::test]
async fn tail_skips_messages_that_are_not_loggate_records() {
    let gateway = Gateway::start(&[]).await;
    let mut client = gateway.client().await;
    let mut stream = client
        .tail(pb::TailRequest::default())
        .await
        .expect("tail opens")
        .into_inner();

    // Someone else publishes garbage straight to the exchange.
    let connection = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    for body in [&b"not json"[..], b"{\"id\":1}", b"\xff\xfe"] {
        channel
            .basic_publish(
                gateway.exchange.as_str().into(),
                "foreign.info".into(),
                Default::default(),
                body,
                Default::default(),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }
    client
        .log(pb::LogRequest {
            record: Some(record("real", "after the garbage")),
        })
        .await
        .expect("accepted");
    assert_eq!(next_record(&mut stream).await.service, "real");
}

#[tokio::test]
async fn cancelling_a_tail_leaves_no_consumer_or_channel_on_the_broker() {
    let gateway = Gateway::start(&[]).await;
    let mut client = gateway.client().await;
    let stream = client
        .tail(pb::TailRequest::default())
        .await
        .expect("tail opens")
        .into_inner();
    let tail_connection = format!("loggate {} tail", gateway.instance);
    assert_eq!(consumers_of_connection(&tail_connection), 1);
    let channels = || {
        connections_named(&tail_connection)
            .first()
            .map(|(_, _, channels)| *channels)
    };
    assert_eq!(channels(), Some(1));

    drop(stream);
    eventually("the stream consumer is cancelled", || {
        consumers_of_connection(&tail_connection) == 0
    })
    .await;
    eventually("the tail's channel is closed", || channels() == Some(0)).await;

    // The gateway still serves tails afterwards.
    let mut again = client
        .tail(pb::TailRequest::default())
        .await
        .expect("tail opens")
        .into_inner();
    tokio::time::sleep(Duration::from_millis(50)).await;
    client
        .log(pb::LogRequest {
            record: Some(record("s", "still works")),
        })
        .await
        .expect("accepted");
    assert_eq!(next_record(&mut again).await.message, "still works");
}

#[tokio::test]
async fn an_invalid_min_level_is_refused() {
    let gateway = Gateway::start(&[]).await;
    let status = gateway
        .client()
        .await
        .tail(pb::TailRequest {
            min_level: 99,
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("min_level"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn tails_over_max_tails_are_refused_until_one_ends() {
    let gateway = Gateway::start(&["--max-tails", "2"]).await;
    let mut client = gateway.client().await;
    let first = client
        .tail(pb::TailRequest::default())
        .await
        .expect("first opens");
    let _second = client
        .tail(pb::TailRequest::default())
        .await
        .expect("second opens");
    let status = client
        .tail(pb::TailRequest::default())
        .await
        .expect_err("third refused");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(
        status.message().contains("--max-tails"),
        "{}",
        status.message()
    );

    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match client.tail(pb::TailRequest::default()).await {
            Ok(_) => break,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted);
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the slot never came back"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn messages_in_order(stream: &mut Streaming<pb::TailResponse>, count: usize) -> Vec<String> {
    let mut got = Vec::with_capacity(count);
    for _ in 0..count {
        got.push(next_record(stream).await.message);
    }
    got
}

#[tokio::test]
async fn live_tails_share_one_stream_consumer() {
    let gateway = Gateway::start(&[]).await;
    let mut client = gateway.client().await;
    let mut tails = Vec::new();
    for service in ["a", "b", "c", "d", "e"] {
        tails.push(
            client
                .tail(pb::TailRequest {
                    services: vec![service.into()],
                    ..Default::default()
                })
                .await
                .expect("tail opens")
                .into_inner(),
        );
    }
    let tail_connection = format!("loggate {} tail", gateway.instance);
    assert_eq!(
        consumers_of_connection(&tail_connection),
        1,
        "one shared consumer"
    );

    let records = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|s| record(s, &format!("for {s}")))
        .collect();
    client
        .log_batch(pb::LogBatchRequest { records })
        .await
        .expect("accepted");
    for (tail, service) in tails.iter_mut().zip(["a", "b", "c", "d", "e"]) {
        assert_eq!(next_record(tail).await.message, format!("for {service}"));
    }

    drop(tails);
    eventually("the shared consumer stops when nobody follows", || {
        consumers_of_connection(&tail_connection) == 0
    })
    .await;
}

#[tokio::test]
async fn a_slow_follower_is_detached_and_catches_up_without_slowing_others() {
    // Far more records than every buffer between the hub and a client that
    // reads nothing can hold: its hub queue, its Tail buffer, and a 1 KiB
    // HTTP/2 window. The fast follower's queue holds more than one batch.
    const RECORDS: usize = 5_000;
    const BATCH: usize = 50;
    let gateway = Gateway::start(&["--tail-hub-queue", "256", "--tail-buffer", "1"]).await;
    let mut client = gateway.client().await;
    let mut slow = slow_live_tail(&gateway.url()).await;
    let mut fast = client
        .tail(pb::TailRequest::default())
        .await
        .expect("tail opens")
        .into_inner();
    let tail_connection = format!("loggate {} tail", gateway.instance);
    assert_eq!(consumers_of_connection(&tail_connection), 1, "the hub");

    let expected = numbered("m", RECORDS);
    // The fast follower reads as the records are logged, while the slow one
    // reads nothing: the hub never waits for it.
    let reading = tokio::spawn(async move {
        let got = messages_in_order(&mut fast, RECORDS).await;
        (got, fast)
    });
    for chunk in expected.chunks(BATCH) {
        log_all(&mut client, chunk).await;
    }
    // (The fast tail stays open, so the hub keeps running.)
    let (got, mut fast) = reading.await.expect("fast reader");
    assert_eq!(got, expected, "by identity, in order");

    // The slow one still receives every record, once, in order…
    assert_eq!(messages_in_order(&mut slow, RECORDS).await, expected);
    // …from a consumer of its own: the hub and exactly one more.
    assert_eq!(
        consumers_of_connection(&tail_connection),
        2,
        "hub + the detached follower"
    );

    // Nothing more arrives for either after a final record but that record.
    log_all(&mut client, &["last".to_owned()]).await;
    assert_eq!(next_record(&mut slow).await.message, "last");
    assert_eq!(next_record(&mut fast).await.message, "last");
}

/// The next record's message, skipping events that carry none (CaughtUp).
async fn next_message(stream: &mut Streaming<pb::TailResponse>) -> String {
    loop {
        let response = tokio::time::timeout(WAIT, tokio_stream::StreamExt::next(stream))
            .await
            .expect("a record arrives in time")
            .expect("stream open")
            .expect("no error");
        if let Some(pb::tail_response::Event::Record(record)) = response.event {
            return record.message;
        }
    }
}

async fn log_all(client: &mut LogGatewayClient<Channel>, messages: &[String]) {
    client
        .log_batch(pb::LogBatchRequest {
            records: messages.iter().map(|m| record("resume", m)).collect(),
        })
        .await
        .expect("accepted");
}

fn numbered(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test]
async fn tails_resume_where_they_were_when_the_tail_connection_is_lost() {
    tails_resume_after_losing_the_tail_connection(&[]).await;
}

#[tokio::test]
async fn packed_tails_resume_where_they_were_when_the_tail_connection_is_lost() {
    // Batches of five in messages of four: positions inside messages too.
    tails_resume_after_losing_the_tail_connection(&["--amqp-batch-records", "4"]).await;
}

async fn tails_resume_after_losing_the_tail_connection(args: &[&str]) {
    let gateway = Gateway::start(args).await;
    let mut client = gateway.client().await;
    let before = numbered("before", 3);
    log_all(&mut client, &before).await;

    // One live tail (on the shared consumer), one from the beginning (on a
    // consumer of its own).
    let mut live = client
        .tail(pb::TailRequest::default())
        .await
        .expect("tail")
        .into_inner();
    let mut replay = client
        .tail(pb::TailRequest {
            start: Some(pb::tail_request::Start::FromBeginning(true)),
            ..Default::default()
        })
        .await
        .expect("tail")
        .into_inner();
    let first = numbered("a", 5);
    log_all(&mut client, &first).await;
    for expected in &first {
        assert_eq!(&next_message(&mut live).await, expected);
    }
    for expected in before.iter().chain(&first) {
        assert_eq!(&next_message(&mut replay).await, expected);
    }

    // The broker drops the tail connection; the publish connection stays, so
    // these records reach the stream while nobody is reading it.
    assert_eq!(close_connections(&format!("{} tail", gateway.instance)), 1);
    let during = numbered("b", 5);
    log_all(&mut client, &during).await;
    let after = numbered("c", 2);
    eventually("the tail connection is back", || {
        !connections_named(&format!("{} tail", gateway.instance)).is_empty()
    })
    .await;
    log_all(&mut client, &after).await;

    // Both continue exactly after their last record: nothing lost, nothing twice.
    for stream in [&mut live, &mut replay] {
        for expected in during.iter().chain(&after) {
            assert_eq!(&next_message(stream).await, expected);
        }
    }
}

#[tokio::test]
async fn a_live_tail_that_had_seen_nothing_resumes_from_when_it_began() {
    let gateway = Gateway::start(&[]).await;
    let mut client = gateway.client().await;
    log_all(&mut client, &numbered("old", 2)).await;
    // Opened, then the tail connection goes before the tail (or the shared
    // consumer) has read a single record: it has no position to resume from.
    let mut live = client
        .tail(pb::TailRequest::default())
        .await
        .expect("tail")
        .into_inner();
    assert_eq!(close_connections(&format!("{} tail", gateway.instance)), 1);
    let during = numbered("d", 3);
    log_all(&mut client, &during).await;
    for expected in &during {
        assert_eq!(&next_message(&mut live).await, expected);
    }
}
