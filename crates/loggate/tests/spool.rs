//! The spool (`--spool-dir`): while RabbitMQ cannot take records, calls are
//! answered OK with `spooled = true` once the records are fsynced; they reach
//! the history stream, in order, when RabbitMQ is back — also after the
//! gateway was killed with SIGKILL. Each test locks the gateway out of a
//! vhost of its own, so no other test's broker access is touched.
//!
//! Long because each test sets up a vhost the gateway is locked out of and
//! then let into; the set-up is shared, the scenarios are not.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use loggate::proto::v1::{self as pb, log_gateway_client::LogGatewayClient};
use loggate_testkit::{
    close_connections, eventually_async, fresh_names, history, record, serve_process, unique,
    Gateway, Probe, Vhost, NOT_SERVING, SERVING, WAIT,
};
use tokio::process::Child;
use tokio_stream::StreamExt;
use tonic::{transport::Channel, Code, Status};

/// A spool directory deleted when the test ends.
struct SpoolDir(PathBuf);

impl SpoolDir {
    fn new() -> SpoolDir {
        let dir = std::env::temp_dir().join(unique("spool"));
        SpoolDir(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp path")
    }

    fn segments(&self) -> usize {
        segment_files(&self.0)
    }
}

fn segment_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                .count()
        })
        .unwrap_or(0)
}

impl Drop for SpoolDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits until every id of `wanted` is in the history; returns the history's ids.
async fn history_with_all_of(
    client: &mut LogGatewayClient<Channel>,
    wanted: &[String],
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ids: Vec<String> = history(client).await.into_iter().map(|r| r.id).collect();
        let present: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        let missing = wanted
            .iter()
            .filter(|id| !present.contains(id.as_str()))
            .count();
        if missing == 0 || tokio::time::Instant::now() >= deadline {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_for_health(gateway: &Gateway, status: i32) {
    eventually_async("the expected health status", || async {
        gateway.health_status("").await == status
    })
    .await;
}

/// Asserts that `status` is what a client's own transport reports when the
/// gateway process dies under a call, and not an answer from the gateway.
/// tonic makes it from the connection's failure, which it keeps as the
/// status's source: UNKNOWN ("transport error" for a reset or broken pipe,
/// "h2 protocol error" for a response body cut off), UNAVAILABLE (the
/// reconnect is refused), or CANCELLED (the connection closed before the
/// response). A status the gateway sent comes from trailers and has no
/// source: any of those (RESOURCE_EXHAUSTED, UNAVAILABLE "shutting down", …)
/// fails here.
fn assert_the_gateway_died_under_the_call(status: &Status) {
    assert!(
        matches!(
            status.code(),
            Code::Unknown | Code::Unavailable | Code::Cancelled
        ),
        "not a dead connection's code: {status:?}"
    );
    assert!(
        std::error::Error::source(status).is_some(),
        "the gateway answered this, the transport did not fail: {status:?}"
    );
}

/// Sends SIGTERM to a gateway process and waits for its clean exit.
async fn terminate(mut child: Child) {
    let pid = child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits in time")
        .expect("status");
    assert!(status.success(), "exit 0 on SIGTERM, got {status}");
}

/// Every file in `dir` (the spool's segments, cursor, rejected file…) that
/// holds `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            std::fs::read(path).is_ok_and(|bytes| {
                bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes())
            })
        })
        .collect()
}

#[tokio::test]
async fn without_rabbitmq_records_are_spooled_then_drained_in_order_once_it_is_back() {
    let vhost = Vhost::create();
    vhost.revoke();
    let spool = SpoolDir::new();
    let gateway = Gateway::start_unready(
        &vhost.url(),
        fresh_names().2,
        &["--spool-dir", spool.path(), "--broker-wait", "300ms"],
    )
    .await;
    assert_eq!(gateway.health_status("").await, NOT_SERVING);
    let mut client = gateway.client().await;

    let mut spooled_ids = Vec::new();
    for i in 0..10 {
        let response = client
            .log(pb::LogRequest {
                record: Some(record("spooled", &format!("u{i}"))),
            })
            .await
            .expect("accepted into the spool")
            .into_inner();
        assert!(response.spooled, "RabbitMQ is out of reach");
        spooled_ids.push(response.id);
    }
    let batch = client
        .log_batch(pb::LogBatchRequest {
            records: (0..20)
                .map(|i| record("spooled", &format!("b{i}")))
                .collect(),
        })
        .await
        .expect("accepted into the spool")
        .into_inner();
    assert!(batch.spooled);
    spooled_ids.extend(batch.ids);

    let requests = (0..2u64).map(|seq| pb::LogStreamRequest {
        seq,
        records: (0..5)
            .map(|i| record("spooled", &format!("s{seq}.{i}")))
            .collect(),
    });
    let mut answers: Vec<pb::LogStreamResponse> = client
        .log_stream(tokio_stream::iter(requests))
        .await
        .expect("stream")
        .into_inner()
        .map(|answer| answer.expect("answer"))
        .collect()
        .await;
    answers.sort_by_key(|answer| answer.seq);
    assert_eq!(answers.len(), 2);
    for answer in answers {
        assert_eq!(answer.error, None);
        assert!(answer.spooled);
        spooled_ids.extend(answer.ids);
    }
    assert!(spool.segments() >= 1, "the records are on disk");

    // The CLI prints the id and says the record was spooled.
    let cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_loggate"))
        .args([
            "log",
            "--server",
            &gateway.url(),
            "--service",
            "spooled",
            "cli",
        ])
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("loggate log runs");
    assert!(cli.status.success(), "{cli:?}");
    assert!(
        String::from_utf8_lossy(&cli.stderr).contains("spooled the record"),
        "{cli:?}"
    );
    spooled_ids.push(String::from_utf8_lossy(&cli.stdout).trim().to_owned());

    // RabbitMQ lets the gateway in: it connects, and the spool drains.
    vhost.grant();
    wait_for_health(&gateway, SERVING).await;
    let found = history_with_all_of(&mut client, &spooled_ids).await;
    assert_eq!(found, spooled_ids, "every spooled record, once, in order");

    // Drained: records go straight to RabbitMQ again (a record may still be
    // spooled while the drainer books its last chunk).
    let mut direct = None;
    let mut extra = Vec::new();
    for _ in 0..50 {
        let response = client
            .log(pb::LogRequest {
                record: Some(record("spooled", "after")),
            })
            .await
            .expect("accepted")
            .into_inner();
        extra.push(response.id.clone());
        if !response.spooled {
            direct = Some(response.id);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(direct.is_some(), "publishing goes direct after the drain");
    let all: Vec<String> = spooled_ids.iter().cloned().chain(extra).collect();
    assert_eq!(history_with_all_of(&mut client, &all).await, all);

    gateway.stop().await.expect("clean stop");
    assert_eq!(
        spool.segments(),
        0,
        "a drained spool leaves no segment behind"
    );
}

#[tokio::test]
async fn a_gateway_that_loses_rabbitmq_midway_spools_and_catches_up() {
    let vhost = Vhost::create();
    let spool = SpoolDir::new();
    let gateway = Gateway::start_unready(
        &vhost.url(),
        fresh_names().2,
        &["--spool-dir", spool.path()],
    )
    .await;
    wait_for_health(&gateway, SERVING).await;
    let mut client = gateway.client().await;
    let first = client
        .log(pb::LogRequest {
            record: Some(record("midway", "before")),
        })
        .await
        .expect("accepted")
        .into_inner();
    assert!(!first.spooled, "RabbitMQ confirmed it");

    vhost.revoke();
    assert_eq!(close_connections(&gateway.instance), 2);
    wait_for_health(&gateway, NOT_SERVING).await;
    let mut ids = vec![first.id];
    for i in 0..5 {
        let response = client
            .log(pb::LogRequest {
                record: Some(record("midway", &format!("during {i}"))),
            })
            .await
            .expect("spooled, not refused")
            .into_inner();
        assert!(response.spooled);
        ids.push(response.id);
    }

    vhost.grant();
    wait_for_health(&gateway, SERVING).await;
    assert_eq!(history_with_all_of(&mut client, &ids).await, ids);
}

#[tokio::test]
async fn a_full_spool_refuses_with_resource_exhausted_and_keeps_what_it_took() {
    let vhost = Vhost::create();
    vhost.revoke();
    let spool = SpoolDir::new();
    let gateway = Gateway::start_unready(
        &vhost.url(),
        fresh_names().2,
        &[
            "--spool-dir",
            spool.path(),
            "--spool-max-bytes",
            "4KiB",
            "--broker-wait",
            "300ms",
        ],
    )
    .await;
    let mut client = gateway.client().await;
    let mut accepted = Vec::new();
    let refusal = loop {
        let outcome = client
            .log(pb::LogRequest {
                record: Some(record("full", &"x".repeat(400))),
            })
            .await;
        match outcome {
            Ok(response) => {
                assert!(response.get_ref().spooled);
                accepted.push(response.into_inner().id);
            }
            Err(status) => break status,
        }
        assert!(accepted.len() < 100, "4 KiB holds a handful of records");
    };
    assert_eq!(refusal.code(), Code::ResourceExhausted, "{refusal:?}");
    assert!(
        refusal.message().contains("--spool-max-bytes"),
        "{}",
        refusal.message()
    );
    assert!(accepted.len() >= 4, "{} records fit", accepted.len());

    vhost.grant();
    wait_for_health(&gateway, SERVING).await;
    assert_eq!(history_with_all_of(&mut client, &accepted).await, accepted);
}

#[tokio::test]
async fn every_spooled_record_survives_a_sigkill_of_the_gateway_mid_load() {
    let vhost = Vhost::create();
    vhost.revoke();
    let spool = SpoolDir::new();
    let (exchange, history_queue, names) = fresh_names();
    let url = vhost.url();
    let args = [
        "--amqp-url",
        url.as_str(),
        "--exchange",
        exchange.as_str(),
        "--history-queue",
        history_queue.as_str(),
        "--spool-dir",
        spool.path(),
        "--broker-wait",
        "200ms",
    ];
    let (mut first, grpc) = serve_process(&args).await;

    // Four clients send batches as fast as they are answered, until the
    // gateway dies under them; only OK answers count as acknowledged.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut load = tokio::task::JoinSet::new();
    for client_no in 0..4 {
        let grpc = grpc.clone();
        let acked = Arc::clone(&acked);
        load.spawn(async move {
            let mut client = LogGatewayClient::connect(grpc).await.expect("connect");
            for call in 0.. {
                let records = (0..25)
                    .map(|i| record("killed", &format!("c{client_no}.{call}.{i}")))
                    .collect();
                match client.log_batch(pb::LogBatchRequest { records }).await {
                    Ok(response) => {
                        let response = response.into_inner();
                        assert!(response.spooled);
                        acked.lock().expect("lock").extend(response.ids);
                    }
                    Err(status) => {
                        assert_the_gateway_died_under_the_call(&status);
                        return;
                    }
                }
            }
        });
    }
    eventually_async("some load acknowledged", || async {
        acked.lock().expect("lock").len() >= 2_000
    })
    .await;
    first.start_kill().expect("kill -9");
    first.wait().await.expect("reaped");
    while let Some(joined) = load.join_next().await {
        joined.expect("a client saw only spooled OKs, then the transport failing");
    }
    let acked = acked.lock().expect("lock").clone();

    // A new gateway on the same spool, with RabbitMQ reachable, drains it.
    vhost.grant();
    let second = Gateway::start_unready(&url, names, &args[6..]).await;
    wait_for_health(&second, SERVING).await;
    let mut client = second.client().await;
    let found = history_with_all_of(&mut client, &acked).await;
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for id in &found {
        *copies.entry(id.as_str()).or_default() += 1;
    }
    let missing = acked
        .iter()
        .filter(|id| !copies.contains_key(id.as_str()))
        .count();
    let duplicated = copies.values().filter(|&&n| n > 1).count();
    eprintln!(
        "acked {}, found {}, missing {missing}, duplicated {duplicated}",
        acked.len(),
        found.len()
    );
    assert_eq!(missing, 0, "every acknowledged record reached RabbitMQ");
}

/// How many records a SIGKILL of a draining gateway may have published
/// twice. The drainer (`spool/drain.rs`) publishes one chunk at a time, each
/// confirmed before the next, and moves its cursor only past a confirmed
/// chunk (the cursor file is replaced whole): a kill repeats at most the
/// chunk in flight, all of it when the kill lands between its confirms and
/// the cursor's move (seen here). A chunk ends at `CHUNK_RECORDS` (1,000)
/// records or `CHUNK_BYTES` (1 MiB), whichever comes first; these records
/// take about 210 bytes each on disk, so by bytes a chunk would hold ~5,000
/// of them and the record count bounds it. No margin above one whole chunk:
/// a second chunk repeated would be a second chunk in flight, which the
/// drainer must not have. (If either constant changes, this changes too.)
const ONE_DRAIN_CHUNK: usize = 1_000;

/// A probe that sees every record the gateway will publish to `exchange` in
/// the vhost at `url`: it declares the exchange first, as the gateway does
/// (a durable topic exchange), and binds to it before the gateway starts.
async fn probe_from_the_start(url: &str, exchange: &str) -> Probe {
    let connection = lapin::Connection::connect(url, Default::default())
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .exchange_declare(
            exchange.into(),
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .expect("the gateway's exchange, declared as it declares it");
    let _ = connection.close(200, "declared".into()).await;
    Probe::bind_at(url, exchange, "#").await
}

/// The id of the next record routed to `probe`.
async fn next_id(probe: &mut Probe) -> String {
    probe.next_json().await["id"]
        .as_str()
        .expect("a record id")
        .to_owned()
}

#[tokio::test]
async fn a_sigkill_while_the_spool_drains_loses_nothing_and_repeats_at_most_a_chunk() {
    /// Records spooled, in calls of the default --max-batch.
    const RECORDS: usize = 20_000;
    const BATCH: usize = 1_000;
    /// The second gateway is killed once RabbitMQ holds this many: a few
    /// chunks in, far from the end.
    const KILL_AT: usize = 3 * ONE_DRAIN_CHUNK;

    let vhost = Vhost::create();
    vhost.revoke();
    let spool = SpoolDir::new();
    let (exchange, history_queue) = (unique("x"), unique("history"));
    let url = vhost.url();
    let args = [
        "--amqp-url",
        url.as_str(),
        "--exchange",
        exchange.as_str(),
        "--history-queue",
        history_queue.as_str(),
        "--spool-dir",
        spool.path(),
        "--broker-wait",
        "200ms",
    ];

    // RabbitMQ is out of reach: every record is spooled, and a clean stop keeps them.
    let (first, grpc) = serve_process(&args).await;
    let mut client = LogGatewayClient::connect(grpc).await.expect("connect");
    let mut acked = Vec::with_capacity(RECORDS);
    for call in 0..RECORDS / BATCH {
        let records = (0..BATCH)
            .map(|i| record("drained", &format!("{call}.{i}")))
            .collect();
        let response = client
            .log_batch(pb::LogBatchRequest { records })
            .await
            .expect("accepted into the spool")
            .into_inner();
        assert!(response.spooled, "RabbitMQ is out of reach");
        acked.extend(response.ids);
    }
    drop(client);
    terminate(first).await;
    assert!(spool.segments() >= 1, "the spool is kept");

    // Let in, a second gateway drains the spool: SIGKILL it midway.
    vhost.grant();
    let mut probe = probe_from_the_start(&url, &exchange).await;
    let (mut second, _) = serve_process(&args).await;
    let mut seen = HashSet::new();
    while seen.len() < KILL_AT {
        seen.insert(next_id(&mut probe).await);
    }
    second.start_kill().expect("kill -9");
    second.wait().await.expect("reaped");
    // Whatever RabbitMQ took before the kill reaches the probe by now.
    while let Ok(id) = tokio::time::timeout(Duration::from_secs(1), next_id(&mut probe)).await {
        seen.insert(id);
    }
    let before_the_kill = seen.len();
    assert!(
        before_the_kill < RECORDS,
        "the drain finished before the kill: nothing was tested"
    );

    // A third gateway on the same spool drains the rest.
    let (third, grpc) = serve_process(&args).await;
    let mut missing: HashSet<&str> = acked
        .iter()
        .map(String::as_str)
        .filter(|id| !seen.contains(*id))
        .collect();
    // Until the probe saw them all, or saw nothing for a while (the history
    // then tells what is missing).
    while !missing.is_empty() {
        match tokio::time::timeout(WAIT / 2, next_id(&mut probe)).await {
            Ok(id) => missing.remove(id.as_str()),
            Err(_) => break,
        };
    }
    let mut client = LogGatewayClient::connect(grpc).await.expect("connect");
    let found = history_with_all_of(&mut client, &acked).await;
    drop(client);
    terminate(third).await;

    let mut copies: HashMap<&str, usize> = HashMap::new();
    for id in &found {
        *copies.entry(id.as_str()).or_default() += 1;
    }
    let acked_set: HashSet<&str> = acked.iter().map(String::as_str).collect();
    let lost = acked_set
        .iter()
        .filter(|id| !copies.contains_key(*id))
        .count();
    let strangers = copies.keys().filter(|id| !acked_set.contains(*id)).count();
    let repeated = found.len() - copies.len();
    eprintln!(
        "{before_the_kill} of {RECORDS} in RabbitMQ at the kill; {} in the history, {repeated} of them repeats",
        found.len()
    );
    assert_eq!(lost, 0, "every acknowledged record is in the history");
    assert_eq!(strangers, 0, "nothing but acknowledged records is");
    assert!(
        copies.values().all(|&n| n <= 2),
        "a record is published at most twice"
    );
    assert!(
        repeated <= ONE_DRAIN_CHUNK,
        "{repeated} records published twice: more than the one chunk in flight at the kill"
    );
}

#[tokio::test]
async fn an_unroutable_record_is_refused_and_never_spooled() {
    let spool = SpoolDir::new();
    let gateway = Gateway::start(&["--spool-dir", spool.path()]).await;
    // Remove the only binding: the exchange now routes nowhere, and
    // RabbitMQ returns every record (FAILED_PRECONDITION).
    gateway.bind_history(false).await;

    let marker = unique("unroutable");
    let mut client = gateway.client().await;
    let status = client
        .log(pb::LogRequest {
            record: Some(record("void", &marker)),
        })
        .await
        .expect_err("unroutable");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let status = client
        .log_batch(pb::LogBatchRequest {
            records: (0..3).map(|_| record("void", &marker)).collect(),
        })
        .await
        .expect_err("unroutable");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let request = pb::LogStreamRequest {
        seq: 0,
        records: vec![record("void", &marker)],
    };
    let answer = client
        .log_stream(tokio_stream::once(request))
        .await
        .expect("stream")
        .into_inner()
        .next()
        .await
        .expect("an answer")
        .expect("ok");
    let error = answer.error.expect("refused");
    assert_eq!(error.code, Code::FailedPrecondition as i32, "{error:?}");
    assert!(!answer.spooled);
    assert_eq!(
        files_holding(&spool.0, &marker),
        Vec::<PathBuf>::new(),
        "nothing of a refused record is in the spool"
    );

    // Nothing waits in the spool: with the binding back, a record goes
    // straight to RabbitMQ rather than behind spooled ones.
    gateway.bind_history(true).await;
    let response = client
        .log(pb::LogRequest {
            record: Some(record("void", "routed")),
        })
        .await
        .expect("accepted")
        .into_inner();
    assert!(!response.spooled, "the spool holds nothing to go first");
    gateway.stop().await.expect("clean stop");
    assert_eq!(
        files_holding(&spool.0, &marker),
        Vec::<PathBuf>::new(),
        "nor after the stop syncs the spool"
    );
}

#[tokio::test]
async fn a_graceful_stop_keeps_what_is_spooled_and_the_next_start_drains_it() {
    let vhost = Vhost::create();
    vhost.revoke();
    let spool = SpoolDir::new();
    let extra = ["--spool-dir", spool.path(), "--broker-wait", "300ms"];
    let mut first = Gateway::start_unready(&vhost.url(), fresh_names().2, &extra).await;
    let batch = first
        .client()
        .await
        .log_batch(pb::LogBatchRequest {
            records: (0..10).map(|i| record("kept", &format!("k{i}"))).collect(),
        })
        .await
        .expect("spooled")
        .into_inner();
    assert!(batch.spooled);
    let names = first.take_names();
    first
        .stop()
        .await
        .expect("a clean stop, with records still spooled");
    assert!(spool.segments() >= 1, "the spool is kept");
    assert!(
        spool.0.join("cursor").exists(),
        "the cursor is synced at stop"
    );

    vhost.grant();
    let second = Gateway::start_unready(&vhost.url(), names, &extra).await;
    wait_for_health(&second, SERVING).await;
    let mut client = second.client().await;
    assert_eq!(
        history_with_all_of(&mut client, &batch.ids).await,
        batch.ids
    );
}

/// A segment file as the spool writes it (`LGSPOOL1`, then `len | crc32 |
/// payload` entries, little-endian), holding `payloads` with valid checksums.
fn write_segment(dir: &Path, seq: u64, payloads: &[Vec<u8>]) {
    let mut bytes = b"LGSPOOL1".to_vec();
    for payload in payloads {
        let len = u32::try_from(payload.len()).expect("small");
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        bytes.extend_from_slice(payload);
    }
    std::fs::create_dir_all(dir).expect("spool dir");
    std::fs::write(dir.join(format!("spool-{seq:020}.seg")), bytes).expect("segment");
}

/// A spooled record's JSON (the AMQP body form) with the given id and time.
fn spooled_body(id: &str, time: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": id,
        "time": time,
        "received_time": "2024-01-01T00:00:00Z",
        "service": "crafted",
        "level": "info",
        "message": format!("body of {id}"),
    }))
    .expect("JSON")
}

#[tokio::test]
async fn entries_that_would_break_a_publish_are_rejected_and_the_rest_drained() {
    let vhost = Vhost::create();
    vhost.revoke();
    let spool = SpoolDir::new();
    let good: Vec<String> = (1..=4).map(|i| unique(&format!("good{i}"))).collect();
    let fine = "2024-01-01T00:00:00Z";
    // Whole entries (valid checksums) whose content is bad, between good ones:
    // an id over AMQP's 255-byte short string, a time past year 9999 in UTC,
    // and JSON that does not decode.
    write_segment(
        &spool.0,
        1,
        &[
            spooled_body(&good[0], fine),
            spooled_body(&"x".repeat(300), fine),
            spooled_body(&good[1], fine),
            spooled_body(&unique("late"), "9999-12-31T23:59:59-23:59"),
            spooled_body(&good[2], fine),
            b"{\"id\": \"torn by hand\"".to_vec(),
            spooled_body(&good[3], fine),
        ],
    );
    let gateway = Gateway::start_unready(
        &vhost.url(),
        fresh_names().2,
        &["--spool-dir", spool.path(), "--broker-wait", "300ms"],
    )
    .await;
    let mut client = gateway.client().await;
    // Spooled behind the crafted segment while RabbitMQ is out of reach.
    let behind = client
        .log(pb::LogRequest {
            record: Some(record("crafted", "behind")),
        })
        .await
        .expect("accepted into the spool")
        .into_inner();
    assert!(behind.spooled);

    vhost.grant();
    wait_for_health(&gateway, SERVING).await;
    let wanted: Vec<String> = good.iter().cloned().chain([behind.id]).collect();
    let found = history_with_all_of(&mut client, &wanted).await;
    assert_eq!(
        found, wanted,
        "the good entries, in order, and nothing else"
    );

    // The drainer is still there: the spool empties and calls go direct again.
    let mut direct = false;
    for _ in 0..50 {
        let response = client
            .log(pb::LogRequest {
                record: Some(record("crafted", "after")),
            })
            .await
            .expect("accepted")
            .into_inner();
        if !response.spooled {
            direct = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(direct, "the spool drained past the bad entries");

    let rejected = std::fs::read_to_string(spool.0.join("rejected")).expect("a rejected file");
    let reasons: Vec<String> = rejected
        .lines()
        .map(|line| {
            let line: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            line["reason"].as_str().expect("a reason").to_owned()
        })
        .collect();
    assert_eq!(reasons.len(), 3, "{rejected}");
    assert!(reasons[0].starts_with("id:"), "{reasons:?}");
    assert!(reasons[1].starts_with("time:"), "{reasons:?}");
    assert!(reasons[2].contains("EOF"), "{reasons:?}");
    gateway.stop().await.expect("clean stop");
}
