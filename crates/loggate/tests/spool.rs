//! The spool (`--spool-dir`): while RabbitMQ cannot take records, calls are
//! answered OK with `spooled = true` once the records are fsynced; they reach
//! the history stream, in order, when RabbitMQ is back — also after the
//! gateway was killed with SIGKILL. Each test locks the gateway out of a
//! vhost of its own, so no other test's broker access is touched.
//!
//! Long because each test sets up a vhost the gateway is locked out of and
//! then let into; the set-up is shared, the scenarios are not.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use loggate::proto::v1::{self as pb, log_gateway_client::LogGatewayClient};
use loggate_testkit::{
    close_connections, eventually_async, fresh_names, history, record, serve_process, unique,
    Gateway, Vhost, NOT_SERVING, SERVING, WAIT,
};
use tokio_stream::StreamExt;
use tonic::{transport::Channel, Code};

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
                    Err(_) => return,
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
        joined.expect("a client saw only spooled OKs, then the gateway's death");
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
