//! Hostile data on the broker: anyone with AMQP write access can publish
//! anything to the gateway's exchange, and no such message may stall live
//! tails, flood the gateway's log, or break a stock client.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use lapin::{
    types::{AMQPValue, FieldTable},
    Connection,
};
use loggate::proto::v1::{self as pb, log_gateway_client::LogGatewayClient};
use loggate_testkit::{
    fresh_names, memory_bytes, next_record, publish_raw, record, serve_process_logged, MemoryField,
    Stderr, AMQP_URL, WAIT,
};
use tonic::{transport::Channel, Streaming};

/// A gateway process on `exchange` and `history`, its stderr counted.
async fn gateway_on(exchange: &str, history: &str) -> (tokio::process::Child, String, Stderr) {
    serve_process_logged(&["--exchange", exchange, "--history-queue", history]).await
}

/// A well-formed loggate body for `service` whose message is `message_bytes` long.
fn big_record(service: &str, message_bytes: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": "big-1",
        "time": "2024-01-01T00:00:00Z",
        "received_time": "2024-01-01T00:00:00Z",
        "service": service,
        "level": "info",
        "message": "m".repeat(message_bytes),
    }))
    .expect("json")
}

async fn live_tail(
    client: &mut LogGatewayClient<Channel>,
    service: &str,
) -> Streaming<pb::TailResponse> {
    client
        .tail(pb::TailRequest {
            services: vec![service.into()],
            ..Default::default()
        })
        .await
        .expect("tail opens")
        .into_inner()
}

/// Sends one record through the gateway and returns how long it took to
/// reach `stream`, which must deliver it next.
async fn round_trip(
    client: &mut LogGatewayClient<Channel>,
    stream: &mut Streaming<pb::TailResponse>,
    service: &str,
    message: &str,
) -> Duration {
    let sent = Instant::now();
    client
        .log(pb::LogRequest {
            record: Some(record(service, message)),
        })
        .await
        .expect("accepted");
    let got = next_record(stream).await;
    assert_eq!(got.message, message);
    sent.elapsed()
}

fn p99(latencies: &mut [Duration]) -> Duration {
    latencies.sort();
    latencies[(latencies.len() * 99).div_ceil(100).saturating_sub(1)]
}

#[tokio::test]
async fn two_million_junk_lines_neither_stall_a_live_tail_nor_flood_the_log() {
    let (exchange, history, _names) = fresh_names();
    let (child, url, stderr) = gateway_on(&exchange, &history).await;
    let mut client = LogGatewayClient::connect(url).await.expect("connect");
    let mut stream = live_tail(&mut client, "good").await;
    round_trip(&mut client, &mut stream, "good", "warm-up").await;
    stderr.settle(Duration::from_millis(200)).await;
    let lines_before = stderr.lines();

    let junk = b"x\n".repeat(2_000_000);
    publish_raw(&exchange, "junk.info", "application/x-ndjson", &junk).await;
    let took = round_trip(&mut client, &mut stream, "good", "after the junk").await;
    assert!(
        took < Duration::from_secs(1),
        "the next good record took {took:?}"
    );

    stderr.settle(Duration::from_millis(300)).await;
    let logged = stderr.lines() - lines_before;
    assert!(
        logged < 100,
        "{logged} log lines for one junk message; the first:\n{}",
        stderr.head()
    );
    let peak = memory_bytes(child.id().expect("running"), MemoryField::Peak);
    eprintln!(
        "next good record after the junk: {took:?}; {logged} log lines; peak RSS {} MiB",
        peak >> 20
    );
}

#[tokio::test]
async fn a_20_mb_record_straight_to_the_stream_does_not_stop_tails() {
    let (exchange, history, _names) = fresh_names();
    let (child, url, _stderr) = gateway_on(&exchange, &history).await;
    let mut client = LogGatewayClient::connect(url).await.expect("connect");
    // A stock client: tonic's default 4 MiB decode limit.
    let mut stream = live_tail(&mut client, "big").await;

    publish_raw(
        &exchange,
        "big.info",
        "application/json",
        &big_record("big", 20 << 20),
    )
    .await;
    let took = round_trip(&mut client, &mut stream, "big", "after the 20 MB record").await;
    assert!(
        took < Duration::from_secs(5),
        "the next good record took {took:?}"
    );
    let peak = memory_bytes(child.id().expect("running"), MemoryField::Peak);
    eprintln!(
        "next good record after 20 MB: {took:?}; peak RSS {} MiB",
        peak >> 20
    );
}

#[tokio::test]
async fn a_record_too_big_for_a_client_arrives_truncated_and_says_so() {
    let (exchange, history, _names) = fresh_names();
    let (_child, url, _stderr) = gateway_on(&exchange, &history).await;
    let mut client = LogGatewayClient::connect(url).await.expect("connect");
    let mut stream = live_tail(&mut client, "big").await;

    let body = big_record("big", 6 << 20);
    publish_raw(&exchange, "big.info", "application/json", &body).await;
    let got = next_record(&mut stream).await;
    assert_eq!(got.id, "big-1");
    assert!(got.message.len() < 4 << 20, "{} bytes", got.message.len());
    assert!(got.message.len() > 3 << 20, "{} bytes", got.message.len());
    let original: usize = got
        .attributes
        .get("loggate.truncated")
        .expect("says it was truncated")
        .parse()
        .expect("a size");
    assert!(original > 6 << 20, "{original}");
    // And the tail goes on.
    round_trip(&mut client, &mut stream, "big", "after the truncated one").await;
}

#[tokio::test]
async fn a_record_is_held_once_however_many_slow_followers_it_goes_to() {
    const FOLLOWERS: usize = 30;
    const RECORDS: usize = 10;
    const SIZE: usize = 1 << 20;
    let (exchange, history, _names) = fresh_names();
    let (child, url, _stderr) = gateway_on(&exchange, &history).await;
    let mut client = LogGatewayClient::connect(url.clone())
        .await
        .expect("connect");
    // Followers whose client reads nothing yet: every record they match
    // waits in the gateway for them. Each on a connection of its own, or
    // their unread data would close the connection's flow-control window
    // to the reading one.
    let mut tails = Vec::new();
    for _ in 0..FOLLOWERS {
        let mut own = LogGatewayClient::connect(url.clone())
            .await
            .expect("connect");
        tails.push(live_tail(&mut own, "big").await);
    }
    // Each follower is in the hub once a record reaches it.
    let mut first = live_tail(&mut client, "big").await;
    round_trip(&mut client, &mut first, "big", "warm-up").await;
    let before = memory_bytes(child.id().expect("running"), MemoryField::Resident);
    for _ in 0..RECORDS {
        publish_raw(
            &exchange,
            "big.info",
            "application/json",
            &big_record("big", SIZE),
        )
        .await;
    }
    // Every follower has its records queued once the reading one has them.
    for _ in 0..RECORDS {
        assert_eq!(next_record(&mut first).await.message.len(), SIZE);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak = memory_bytes(child.id().expect("running"), MemoryField::Peak);
    let copies = (FOLLOWERS * RECORDS * SIZE) >> 20;
    eprintln!(
        "{FOLLOWERS} followers x {RECORDS} records of {} MiB: RSS {} MiB before, peak {} MiB \
         (a copy per follower would be {copies} MiB)",
        SIZE >> 20,
        before >> 20,
        peak >> 20
    );
    // And nothing is lost: each follower gets all of them when it reads.
    for tail in &mut tails {
        assert_eq!(next_record(tail).await.message, "warm-up");
        for _ in 0..RECORDS {
            assert_eq!(next_record(tail).await.message.len(), SIZE);
        }
    }
    // What remains per follower is the one record being written to its
    // connection (tonic's encode buffer and HTTP/2's send buffer).
    let grown = (peak.saturating_sub(before) >> 20) as usize;
    assert!(
        grown < copies / 2,
        "RSS grew {grown} MiB; a copy per follower and record is {copies} MiB"
    );
}

/// A well-behaved record's body is never larger than this.
const GOOD_BODY_MAX: usize = 64 << 10;

/// A plain AMQP consumer of the history stream, next to the gateway's: when
/// each record with a `message` reached it, to tell the broker's delivery
/// delay from what the gateway adds.
fn watch_stream(history: String) -> Arc<Mutex<HashMap<String, Instant>>> {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        let connection = Connection::connect(AMQP_URL, Default::default())
            .await
            .expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        channel
            .basic_qos(1000, Default::default())
            .await
            .expect("qos");
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-stream-offset".into(),
            AMQPValue::LongString("next".into()),
        );
        let mut consumer = channel
            .basic_consume(
                history.as_str().into(),
                "".into(),
                Default::default(),
                arguments,
            )
            .await
            .expect("consume");
        while let Some(Ok(delivery)) = consumer.next().await {
            let at = Instant::now();
            // Parsing a junk body here would hold back the timestamps of
            // the messages behind it, hiding what the gateway adds.
            let message = (delivery.data.len() <= GOOD_BODY_MAX)
                .then(|| serde_json::from_slice::<serde_json::Value>(&delivery.data).ok())
                .flatten()
                .and_then(|body| body["message"].as_str().map(str::to_owned));
            if let Some(message) = message {
                record.lock().expect("not poisoned").insert(message, at);
            }
            let _ = delivery.ack(Default::default()).await;
        }
    });
    seen
}

// Two workers: the plain consumer must not wait for the tail's reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_well_behaved_live_tail_keeps_its_latency_under_hostile_messages() {
    let (exchange, history, _names) = fresh_names();
    let (child, url, stderr) = gateway_on(&exchange, &history).await;
    let mut client = LogGatewayClient::connect(url).await.expect("connect");
    let mut stream = live_tail(&mut client, "good").await;
    round_trip(&mut client, &mut stream, "good", "warm-up").await;
    let broker_seen = watch_stream(history.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Junk keeps arriving while the tail is measured.
    let junk_exchange = exchange.clone();
    let hostile = tokio::spawn(async move {
        for round in 0..4 {
            let lines = b"x\n".repeat(2_000_000);
            publish_raw(&junk_exchange, "junk.info", "application/x-ndjson", &lines).await;
            let size = if round % 2 == 0 { 20 << 20 } else { 6 << 20 };
            publish_raw(
                &junk_exchange,
                "big.info",
                "application/json",
                &big_record("big", size),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    // From Log to the tail; and from the plain consumer to the tail (what
    // the gateway adds to the broker's own delivery delay).
    let (mut latencies, mut added) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let mut n = 0;
    while !hostile.is_finished() || latencies.len() < 100 {
        n += 1;
        let message = format!("good {n}");
        let took = round_trip(&mut client, &mut stream, "good", &message).await;
        let arrived = Instant::now();
        latencies.push(took);
        let broker = eventually_seen(&broker_seen, &message).await;
        added.push(arrived.saturating_duration_since(broker));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    hostile.await.expect("publisher");
    let count = latencies.len();
    let p99_total = p99(&mut latencies);
    let p99_added = p99(&mut added);
    let peak = memory_bytes(child.id().expect("running"), MemoryField::Peak);
    eprintln!(
        "{count} records over {:?}: Log to tail p99 {p99_total:?} (max {:?}); \
         added by the gateway after a plain AMQP consumer got it: p99 {p99_added:?} (max {:?}); \
         peak RSS {} MiB; {} log lines",
        started.elapsed(),
        latencies[count - 1],
        added[count - 1],
        peak >> 20,
        stderr.lines()
    );
    // Generous: the test host is shared; the numbers above are the measurement.
    assert!(
        p99_added < Duration::from_secs(1),
        "p99 added {p99_added:?}"
    );
    assert!(peak < 128 << 20, "peak RSS {} MiB", peak >> 20);
}

/// When the plain consumer got `message` (it may be a moment behind the tail).
async fn eventually_seen(seen: &Mutex<HashMap<String, Instant>>, message: &str) -> Instant {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(at) = seen.lock().expect("not poisoned").get(message) {
            return *at;
        }
        assert!(
            Instant::now() < deadline,
            "the plain consumer never got {message}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
