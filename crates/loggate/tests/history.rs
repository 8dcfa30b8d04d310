//! Tail from the past: start positions, limits and resume tokens.

use std::time::Duration;

use loggate::proto::v1::{self as pb, tail_request::Start};
use loggate::record::ResumeToken;
use loggate_testkit::{next_record, record, Gateway, WAIT};
use tokio_stream::StreamExt;
use tonic::{Code, Streaming};

async fn tail(gateway: &Gateway, start: Start, limit: u32) -> Streaming<pb::TailResponse> {
    gateway
        .client()
        .await
        .tail(pb::TailRequest {
            start: Some(start),
            limit,
            ..Default::default()
        })
        .await
        .expect("tail opens")
        .into_inner()
}

/// Reads records until the stream ends (it must, thanks to the limit):
/// (message, resume token) pairs.
async fn drain(mut stream: Streaming<pb::TailResponse>) -> Vec<(String, String)> {
    let mut got = Vec::new();
    while let Some(response) = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("the stream ends in time")
    {
        let response = response.expect("no error");
        match response.event {
            Some(pb::tail_response::Event::Record(record)) => {
                got.push((record.message, response.resume_token))
            }
            Some(pb::tail_response::Event::CaughtUp(_)) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    got
}

async fn log_messages(
    gateway: &Gateway,
    service: &str,
    messages: impl IntoIterator<Item = String>,
) {
    let records = messages.into_iter().map(|m| record(service, &m)).collect();
    gateway
        .client()
        .await
        .log_batch(pb::LogBatchRequest { records })
        .await
        .expect("accepted");
}

fn messages(got: &[(String, String)]) -> Vec<&str> {
    got.iter().map(|(m, _)| m.as_str()).collect()
}

#[tokio::test]
async fn from_beginning_replays_in_order_and_a_limit_ends_the_stream() {
    let gateway = Gateway::start(&[]).await;
    log_messages(&gateway, "s", (0..20).map(|i| format!("m{i}"))).await;
    let got = drain(tail(&gateway, Start::FromBeginning(true), 20).await).await;
    let expected: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    assert_eq!(messages(&got), expected);
    assert!(
        got.iter().all(|(_, token)| !token.is_empty()),
        "every record carries a token"
    );
}

#[tokio::test]
async fn start_time_and_since_select_by_arrival() {
    let gateway = Gateway::start(&[]).await;
    log_messages(&gateway, "s", ["before".to_owned()]).await;
    // The stream starts at whole seconds; the gateway skips what came before.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    log_messages(&gateway, "s", ["after-1".to_owned(), "after-2".to_owned()]).await;

    let start_time = Start::StartTime(prost_types::Timestamp {
        seconds: at.as_secs() as i64,
        nanos: at.subsec_nanos() as i32,
    });
    let got = drain(tail(&gateway, start_time, 2).await).await;
    assert_eq!(messages(&got), ["after-1", "after-2"]);

    let hour = Start::Since(prost_types::Duration {
        seconds: 3600,
        nanos: 0,
    });
    let got = drain(tail(&gateway, hour, 3).await).await;
    assert_eq!(messages(&got), ["before", "after-1", "after-2"]);
}

#[tokio::test]
async fn a_resume_token_continues_after_its_record_on_another_gateway() {
    let mut first = Gateway::start(&[]).await;
    log_messages(&first, "s", (0..10).map(|i| format!("m{i}"))).await;
    let got = drain(tail(&first, Start::FromBeginning(true), 4).await).await;
    assert_eq!(messages(&got), ["m0", "m1", "m2", "m3"]);
    let token = got[3].1.clone();

    // The first gateway goes away; a second one serves the same history.
    let names = first.take_names();
    first.stop().await.expect("clean stop");
    let second = Gateway::start_on(names, &[]).await;
    log_messages(&second, "s", (10..15).map(|i| format!("m{i}"))).await;

    let got = drain(tail(&second, Start::ResumeToken(token), 11).await).await;
    let expected: Vec<String> = (4..15).map(|i| format!("m{i}")).collect();
    assert_eq!(messages(&got), expected, "no gap, no duplicate");
}

#[tokio::test]
async fn a_resume_token_inside_a_packed_message_continues_with_the_next_line() {
    let gateway = Gateway::start(&["--amqp-batch-records", "10"]).await;
    log_messages(&gateway, "s", (0..25).map(|i| format!("m{i}"))).await;
    let got = drain(tail(&gateway, Start::FromBeginning(true), 12).await).await;
    assert_eq!(got.len(), 12);
    let token = got[11].1.clone();
    let got = drain(tail(&gateway, Start::ResumeToken(token), 13).await).await;
    let expected: Vec<String> = (12..25).map(|i| format!("m{i}")).collect();
    assert_eq!(messages(&got), expected);
}

#[tokio::test]
async fn tokens_that_do_not_fit_are_refused() {
    let gateway = Gateway::start(&[]).await;
    let mut client = gateway.client().await;
    let foreign = ResumeToken {
        queue: "someone-elses.history".into(),
        offset: 0,
        index: 0,
    }
    .encode();
    for (token, says) in [
        ("not-a-token", "issued"),
        (foreign.as_str(), "someone-elses.history"),
    ] {
        let status = client
            .tail(pb::TailRequest {
                start: Some(Start::ResumeToken(token.to_owned())),
                ..Default::default()
            })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().starts_with("resume_token"),
            "{}",
            status.message()
        );
        assert!(status.message().contains(says), "{}", status.message());
    }
}

/// Every event until the stream ends, as short words: `r:<message>`, `caught-up`.
async fn events(mut stream: Streaming<pb::TailResponse>) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(response) = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("the stream ends in time")
    {
        match response.expect("no error").event {
            Some(pb::tail_response::Event::Record(record)) => {
                got.push(format!("r:{}", record.message))
            }
            Some(pb::tail_response::Event::CaughtUp(_)) => got.push("caught-up".into()),
            other => panic!("unexpected event {other:?}"),
        }
    }
    got
}

async fn history_only(gateway: &Gateway, start: Start) -> Streaming<pb::TailResponse> {
    gateway
        .client()
        .await
        .tail(pb::TailRequest {
            start: Some(start),
            history_only: true,
            ..Default::default()
        })
        .await
        .expect("tail opens")
        .into_inner()
}

#[tokio::test]
async fn history_only_ends_at_the_head_as_it_was_when_the_call_started() {
    let gateway = Gateway::start(&[]).await;
    log_messages(&gateway, "s", (0..5).map(|i| format!("old{i}"))).await;
    let stream = history_only(&gateway, Start::FromBeginning(true)).await;
    // Arrives after the call started: not part of the history asked for.
    log_messages(&gateway, "s", ["new".to_owned()]).await;
    assert_eq!(
        events(stream).await,
        [
            "r:old0",
            "r:old1",
            "r:old2",
            "r:old3",
            "r:old4",
            "caught-up"
        ]
    );
}

#[tokio::test]
async fn a_history_tail_says_when_it_caught_up_then_follows_live() {
    let gateway = Gateway::start(&[]).await;
    log_messages(&gateway, "s", ["h0".to_owned(), "h1".to_owned()]).await;
    let mut stream = tail(&gateway, Start::FromBeginning(true), 0).await;
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("caught-up") {
        let response = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("ok");
        match response.event {
            Some(pb::tail_response::Event::Record(r)) => seen.push(r.message),
            Some(pb::tail_response::Event::CaughtUp(_)) => seen.push("caught-up".into()),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["h0", "h1", "caught-up"]);
    log_messages(&gateway, "s", ["live".to_owned()]).await;
    assert_eq!(next_record(&mut stream).await.message, "live");
}

#[tokio::test]
async fn history_only_on_an_empty_history_or_past_its_end_ends_at_once() {
    let gateway = Gateway::start(&[]).await;
    assert_eq!(
        events(history_only(&gateway, Start::FromBeginning(true)).await).await,
        ["caught-up"]
    );

    log_messages(&gateway, "s", ["old".to_owned()]).await;
    let later = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        + Duration::from_secs(5);
    let start = Start::StartTime(prost_types::Timestamp {
        seconds: later.as_secs() as i64,
        nanos: 0,
    });
    assert_eq!(
        events(history_only(&gateway, start).await).await,
        ["caught-up"]
    );
}

#[tokio::test]
async fn history_only_needs_a_start() {
    let gateway = Gateway::start(&[]).await;
    let status = gateway
        .client()
        .await
        .tail(pb::TailRequest {
            history_only: true,
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("history_only"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn heartbeats_tell_a_quiet_stream_from_a_dead_one() {
    let gateway = Gateway::start(&["--tail-heartbeat", "200ms"]).await;
    log_messages(&gateway, "s", ["before".to_owned()]).await;
    let mut stream = gateway
        .client()
        .await
        .tail(pb::TailRequest {
            services: vec!["nobody".into()],
            ..Default::default()
        })
        .await
        .expect("tail opens")
        .into_inner();
    log_messages(&gateway, "s", ["filtered out".to_owned()]).await;
    for _ in 0..3 {
        let response = tokio::time::timeout(Duration::from_secs(2), stream.next())
            .await
            .expect("a heartbeat within 2 s")
            .expect("open")
            .expect("ok");
        let Some(pb::tail_response::Event::Heartbeat(beat)) = response.event else {
            panic!("expected a heartbeat");
        };
        assert!(beat.time.is_some());
        assert!(response.resume_token.is_empty());
    }
}

#[tokio::test]
async fn malformed_start_positions_are_refused() {
    let gateway = Gateway::start(&[]).await;
    let mut client = gateway.client().await;
    for (start, field) in [
        (
            Start::Since(prost_types::Duration {
                seconds: i64::MAX,
                nanos: 1_500_000_000,
            }),
            "since",
        ),
        (
            Start::Since(prost_types::Duration {
                seconds: -5,
                nanos: 0,
            }),
            "since",
        ),
        (
            Start::StartTime(prost_types::Timestamp {
                seconds: i64::MAX,
                nanos: 0,
            }),
            "start_time",
        ),
    ] {
        let status = client
            .tail(pb::TailRequest {
                start: Some(start),
                ..Default::default()
            })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with(field), "{}", status.message());
    }
    // Huge but well-formed: everything retained.
    log_messages(&gateway, "s", ["x".to_owned()]).await;
    let huge = Start::Since(prost_types::Duration {
        seconds: i64::MAX,
        nanos: 0,
    });
    let got = drain(tail(&gateway, huge, 1).await).await;
    assert_eq!(messages(&got), ["x"]);
}

/// The events of a tail until it ends (history_only), within `WAIT`.
async fn events_until_end(
    mut stream: Streaming<pb::TailResponse>,
) -> Vec<pb::tail_response::Event> {
    let mut events = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("a history_only tail ends by itself")
        {
            Some(Ok(response)) => events.extend(response.event),
            Some(Err(status)) => panic!("the tail failed: {status:?}"),
            None => return events,
        }
    }
}

#[tokio::test]
async fn history_only_ends_when_the_last_message_is_not_a_record() {
    let gateway = Gateway::start(&[]).await;
    let mut client = gateway.client().await;
    for message in ["one", "two"] {
        client
            .log(pb::LogRequest {
                record: Some(record("svc", message)),
            })
            .await
            .expect("logged");
    }
    // Anyone with write access to the exchange can publish this.
    loggate_testkit::publish_raw(&gateway.exchange, "svc.info", "text/plain", b"not a record")
        .await;

    let mut request = pb::TailRequest {
        start: Some(Start::FromBeginning(true)),
        history_only: true,
        ..Default::default()
    };
    let events = events_until_end(
        client
            .tail(request.clone())
            .await
            .expect("tail")
            .into_inner(),
    )
    .await;
    let messages: Vec<String> = events
        .iter()
        .filter_map(|event| match event {
            pb::tail_response::Event::Record(record) => Some(record.message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(messages, ["one", "two"]);
    assert!(
        matches!(events.last(), Some(pb::tail_response::Event::CaughtUp(_))),
        "{events:?}"
    );
    request.start = Some(Start::Since(prost_types::Duration {
        seconds: 3600,
        nanos: 0,
    }));
    let events = events_until_end(client.tail(request).await.expect("tail").into_inner()).await;
    assert_eq!(
        events
            .iter()
            .filter(|event| matches!(event, pb::tail_response::Event::Record(_)))
            .count(),
        2
    );
}

#[tokio::test]
async fn a_message_that_is_not_a_record_after_the_resume_point_is_no_gap() {
    let gateway = Gateway::start(&[]).await;
    let mut client = gateway.client().await;
    client
        .log(pb::LogRequest {
            record: Some(record("svc", "before")),
        })
        .await
        .expect("logged");
    loggate_testkit::publish_raw(&gateway.exchange, "svc.info", "text/plain", b"not a record")
        .await;
    client
        .log(pb::LogRequest {
            record: Some(record("svc", "after")),
        })
        .await
        .expect("logged");

    let mut first = tail(&gateway, Start::FromBeginning(true), 1).await;
    let token = loop {
        let response = tokio::time::timeout(WAIT, first.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("ok");
        if matches!(response.event, Some(pb::tail_response::Event::Record(_))) {
            break response.resume_token;
        }
    };
    let resumed = client
        .tail(pb::TailRequest {
            start: Some(Start::ResumeToken(token)),
            history_only: true,
            ..Default::default()
        })
        .await
        .expect("tail")
        .into_inner();
    let events = events_until_end(resumed).await;
    assert!(
        !events
            .iter()
            .any(|event| matches!(event, pb::tail_response::Event::Gap(_))),
        "nothing was lost, so no gap: {events:?}"
    );
    let messages: Vec<String> = events
        .iter()
        .filter_map(|event| match event {
            pb::tail_response::Event::Record(record) => Some(record.message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(messages, ["after"]);
}
