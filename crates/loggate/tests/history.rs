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

/// An event as a short word: `r:<message>`, `caught-up`, `gap`.
fn word(event: Option<pb::tail_response::Event>) -> String {
    match event {
        Some(pb::tail_response::Event::Record(record)) => format!("r:{}", record.message),
        Some(pb::tail_response::Event::CaughtUp(_)) => "caught-up".into(),
        Some(pb::tail_response::Event::Gap(gap)) => {
            assert!(!gap.reason.is_empty(), "a gap says why");
            "gap".into()
        }
        other => panic!("unexpected event {other:?}"),
    }
}

/// Every event until the stream ends, as short words (see [`word`]).
async fn events(mut stream: Streaming<pb::TailResponse>) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(response) = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("the stream ends in time")
    {
        got.push(word(response.expect("no error").event));
    }
    got
}

/// Events of a tail that started in the past, up to and including its
/// CaughtUp, as short words; the tail stays open for what follows.
async fn events_until_caught_up(stream: &mut Streaming<pb::TailResponse>) -> Vec<String> {
    let mut got = Vec::new();
    while got.last().map(String::as_str) != Some("caught-up") {
        let response = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("a tail from the past says CaughtUp in time")
            .expect("the tail is open")
            .expect("no error");
        got.push(word(response.event));
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

/// A tail with `request`, the start and other options set by the caller.
async fn open_tail(gateway: &Gateway, request: pb::TailRequest) -> Streaming<pb::TailResponse> {
    gateway
        .client()
        .await
        .tail(request)
        .await
        .expect("tail opens")
        .into_inner()
}

fn resume(token: &str, history_only: bool) -> pb::TailRequest {
    pb::TailRequest {
        start: Some(Start::ResumeToken(token.to_owned())),
        history_only,
        ..Default::default()
    }
}

fn words(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("r:{prefix}{i}")).collect()
}

#[tokio::test]
async fn a_token_whose_record_retention_removed_gets_a_gap_then_the_oldest_retained_record() {
    // RabbitMQ 3.10 drops whole segments, oldest first, and only when the
    // writer rolls over to a new segment: small segments (a few records
    // each) and a small cap make that happen after a few dozen records.
    let gateway = Gateway::start(&[
        "--history-max-bytes",
        "20000",
        "--history-segment-bytes",
        "4000",
    ])
    .await;
    log_messages(&gateway, "s", (0..5).map(|i| format!("early{i}"))).await;
    let got = drain(tail(&gateway, Start::FromBeginning(true), 3).await).await;
    assert_eq!(messages(&got), ["early0", "early1", "early2"]);
    let token = got[2].1.clone();

    // Log until the oldest retained record is no longer an early one.
    let mut batches = 0;
    let oldest = loop {
        log_messages(&gateway, "s", (0..20).map(|i| format!("late{batches}.{i}"))).await;
        batches += 1;
        let first = drain(tail(&gateway, Start::FromBeginning(true), 1).await).await;
        let (message, _) = first.into_iter().next().expect("the history is not empty");
        if !message.starts_with("early") {
            break message;
        }
        assert!(
            batches < 25,
            "retention removed nothing after {} records",
            batches * 20
        );
    };
    // Nothing is logged any more, so nothing rolls and nothing else is removed.
    let limited = pb::TailRequest {
        limit: 1,
        ..resume(&token, false)
    };
    assert_eq!(
        events(open_tail(&gateway, limited).await).await,
        ["gap".to_owned(), format!("r:{oldest}")],
        "the gap comes first, then the oldest record still retained"
    );
    // The same as history_only: the gap, then everything retained, then the end.
    let history = events(open_tail(&gateway, resume(&token, true)).await).await;
    assert_eq!(history[..2], ["gap".to_owned(), format!("r:{oldest}")]);
    assert_eq!(history.last().map(String::as_str), Some("caught-up"));
    assert_eq!(
        history.iter().filter(|w| *w == "gap").count(),
        1,
        "one gap: {history:?}"
    );
    assert!(history.iter().all(|w| !w.starts_with("r:early")));
}

#[tokio::test]
async fn caught_up_comes_when_the_filter_skips_the_last_record() {
    let gateway = Gateway::start(&[]).await;
    log_messages(&gateway, "a", ["a0".to_owned(), "a1".to_owned()]).await;
    log_messages(&gateway, "b", ["b0".to_owned()]).await;
    let only_a = pb::TailRequest {
        services: vec!["a".into()],
        start: Some(Start::FromBeginning(true)),
        ..Default::default()
    };

    let mut following = open_tail(&gateway, only_a.clone()).await;
    assert_eq!(
        events_until_caught_up(&mut following).await,
        ["r:a0", "r:a1", "caught-up"]
    );
    log_messages(&gateway, "a", ["a2".to_owned()]).await;
    assert_eq!(next_record(&mut following).await.message, "a2");

    let history_only = pb::TailRequest {
        history_only: true,
        ..only_a
    };
    assert_eq!(
        events(open_tail(&gateway, history_only).await).await,
        ["r:a0", "r:a1", "r:a2", "caught-up"]
    );
}

#[tokio::test]
async fn caught_up_comes_when_the_filter_skips_the_last_line_of_a_packed_message() {
    let gateway = Gateway::start(&["--amqp-batch-records", "10"]).await;
    // One message of three lines: the last one is filtered out.
    log_messages(&gateway, "s", ["keep0", "keep1", "drop"].map(str::to_owned)).await;
    let keep = pb::TailRequest {
        contains: "keep".into(),
        start: Some(Start::FromBeginning(true)),
        ..Default::default()
    };
    let mut following = open_tail(&gateway, keep.clone()).await;
    assert_eq!(
        events_until_caught_up(&mut following).await,
        ["r:keep0", "r:keep1", "caught-up"]
    );
    assert_eq!(
        events(
            open_tail(
                &gateway,
                pb::TailRequest {
                    history_only: true,
                    ..keep
                }
            )
            .await
        )
        .await,
        ["r:keep0", "r:keep1", "caught-up"]
    );
}

#[tokio::test]
async fn a_following_tail_catches_up_when_the_last_message_is_not_a_record() {
    let gateway = Gateway::start(&[]).await;
    log_messages(&gateway, "svc", ["one".to_owned(), "two".to_owned()]).await;
    loggate_testkit::publish_raw(&gateway.exchange, "svc.info", "text/plain", b"not a record")
        .await;
    let from_beginning = pb::TailRequest {
        start: Some(Start::FromBeginning(true)),
        ..Default::default()
    };
    let mut following = open_tail(&gateway, from_beginning.clone()).await;
    assert_eq!(
        events_until_caught_up(&mut following).await,
        ["r:one", "r:two", "caught-up"]
    );
    // Past the foreign message, it follows live.
    log_messages(&gateway, "svc", ["three".to_owned()]).await;
    assert_eq!(next_record(&mut following).await.message, "three");

    // With a filter that also skips every record before it.
    let nobody = pb::TailRequest {
        services: vec!["nobody".into()],
        history_only: true,
        ..from_beginning
    };
    loggate_testkit::publish_raw(&gateway.exchange, "svc.info", "text/plain", b"not a record")
        .await;
    assert_eq!(
        events(open_tail(&gateway, nobody).await).await,
        ["caught-up"]
    );
}

#[tokio::test]
async fn resume_tokens_in_packed_messages_continue_with_the_next_record() {
    let gateway = Gateway::start(&["--amqp-batch-records", "5"]).await;
    // Three messages of five lines each.
    log_messages(&gateway, "s", (0..15).map(|i| format!("m{i}"))).await;
    let got = drain(tail(&gateway, Start::FromBeginning(true), 15).await).await;
    assert_eq!(got.len(), 15);
    let tokens: Vec<ResumeToken> = got
        .iter()
        .map(|(_, token)| ResumeToken::decode(token).expect("a token the gateway issued"))
        .collect();
    // The layout the cases below rely on: m4 ends the first message, m5
    // starts the next one, m7 is inside the second.
    assert_eq!(tokens[4].index, 4);
    assert_eq!((tokens[5].index, tokens[7].index), (0, 2));
    assert!(tokens[5].offset > tokens[4].offset);
    assert_eq!(tokens[7].offset, tokens[5].offset);

    for (at, expected) in [
        // The last line of a message: the next message's first record.
        (4, words("m", 5..15)),
        // A middle line: the rest of its message, then the next one.
        (7, words("m", 8..15)),
        // The last record of all: nothing more, no gap.
        (14, Vec::new()),
    ] {
        let expected: Vec<String> = expected.into_iter().chain(["caught-up".into()]).collect();
        assert_eq!(
            events(open_tail(&gateway, resume(&got[at].1, true)).await).await,
            expected,
            "resuming after m{at}: no gap, no duplicate"
        );
    }

    // The same when following: then what comes next, live.
    let mut following = open_tail(&gateway, resume(&got[4].1, false)).await;
    let mut expected = words("m", 5..15);
    expected.push("caught-up".into());
    assert_eq!(events_until_caught_up(&mut following).await, expected);
    log_messages(&gateway, "s", ["m15".to_owned()]).await;
    assert_eq!(next_record(&mut following).await.message, "m15");
}

/// RabbitMQ 3.10 starts every stream segment with a chunk of its own (a
/// tracking snapshot) that takes an offset but is never delivered: the
/// offsets a consumer sees skip one at each segment boundary. A resume token
/// on the last record before such a boundary must not report a gap.
#[tokio::test]
async fn a_resume_token_on_the_last_record_of_a_segment_gets_no_gap() {
    let gateway = Gateway::start(&["--history-segment-bytes", "4000"]).await;
    for i in 0..30 {
        // One call per record: one message, and one chunk, each.
        log_messages(&gateway, "s", [format!("m{i}")]).await;
    }
    let got = drain(tail(&gateway, Start::FromBeginning(true), 30).await).await;
    let offsets: Vec<i64> = got
        .iter()
        .map(|(_, token)| ResumeToken::decode(token).expect("issued").offset)
        .collect();
    let boundary = offsets
        .windows(2)
        .position(|pair| pair[1] > pair[0] + 1)
        .expect("30 records span more than one 4000-byte segment, and offsets skip one there");
    let mut expected = words("m", boundary + 1..30);
    expected.push("caught-up".into());
    assert_eq!(
        events(open_tail(&gateway, resume(&got[boundary].1, true)).await).await,
        expected,
        "offsets {offsets:?}"
    );
}
