//! `loggate-bench bench`: how close the gateway comes to RabbitMQ's own ceiling, and
//! proof that nothing it acknowledged was lost or duplicated.
//!
//! One run: (1) the ceiling — the same messages published straight to
//! RabbitMQ with lapin, on 1 and on 4 channels, plus the one-at-a-time confirm
//! round trip; (2) the gateway under `--concurrency` clients in `--mode`, with
//! its RSS and CPU time from /proc; (3) the history stream read back, every
//! acked id counted. Every name it declares is unique to the run and deleted.

mod direct;
mod fanout;
mod load;
pub(crate) mod report;
pub(crate) mod verify;

use std::{process::ExitCode, time::Duration};

use indicatif::{ProgressBar, ProgressStyle};
use time::OffsetDateTime;

use loggate::proto::v1 as pb;
use loggate::record::{Level, Record};

use crate::config::{BenchArgs, BenchMode};
use crate::error::Error;
use crate::process::{ProcStat, SpawnedGateway};
use report::{megabytes, Latency, Row};
use verify::Tally;

/// Confirm round trips sampled for the direct latency baseline.
const ROUND_TRIP_SAMPLES: usize = 2_000;

pub async fn run(args: BenchArgs) -> Result<ExitCode, Error> {
    let tag = format!(
        "{}-{:x}",
        std::process::id(),
        OffsetDateTime::now_utc().unix_timestamp_nanos() % 0xffff_ffff
    );
    let (template, body) = sample(args.record_bytes as usize);
    let mode = match args.mode {
        BenchMode::Unary => "unary",
        BenchMode::Batch => "batch",
        BenchMode::Stream => "stream",
        BenchMode::Tail | BenchMode::Replay => return fanout::run(&args, &tag, template).await,
    };
    println!(
        "loggate bench: mode={mode} records={} concurrency={} batch-size={} record body={} B amqp-batch-records={} cores={}",
        args.records,
        args.concurrency,
        args.batch_size,
        body.len(),
        args.amqp_batch_records,
        std::thread::available_parallelism().map_or(0, usize::from),
    );

    let mut rows = Vec::new();
    let mut ceiling = None;
    if !args.skip_direct {
        eprintln!(
            "direct: publishing {} records straight to RabbitMQ…",
            args.direct_records
        );
        let target = direct::Target::declare(args.broker.primary(), &tag).await?;
        let measured = async {
            let one = target.throughput(&body, args.direct_records, 1).await?;
            let four = target.throughput(&body, args.direct_records, 4).await?;
            let trips = target.round_trips(&body, ROUND_TRIP_SAMPLES).await?;
            Ok::<_, Error>((one, four, trips))
        }
        .await;
        target.delete().await;
        let (one, four, trips) = measured?;
        rows.push(row("direct lapin, 1 channel", Some(one), None));
        rows.push(row("direct lapin, 4 channels", Some(four), None));
        let trip = Latency::of(trips);
        rows.push(row("direct confirm round trip", None, trip));
        ceiling = Some((one.max(four), trip));
    }

    // The gateway: ours, or the one given.
    let mut extra = args.gateway_args.clone();
    if args.amqp_batch_records > 1 {
        extra.extend([
            "--amqp-batch-records".to_owned(),
            args.amqp_batch_records.to_string(),
        ]);
    }
    let spawned = match &args.server {
        Some(_) => None,
        None => Some(
            SpawnedGateway::start(
                &args.gateway.resolve()?,
                args.broker.primary(),
                &tag,
                &extra,
            )
            .await?,
        ),
    };
    let (url, history, pid) = match (&spawned, &args.server) {
        (Some(gateway), _) => (
            gateway.url.clone(),
            gateway.history_queue.clone(),
            Some(gateway.pid),
        ),
        (None, Some(server)) => (
            server.clone(),
            args.history_queue.clone().unwrap_or_default(),
            args.gateway_pid,
        ),
        (None, None) => unreachable!("a gateway is either spawned or given"),
    };
    let started_at = OffsetDateTime::now_utc().unix_timestamp();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = pid.and_then(ProcStat::read);

    let plan = load::Plan {
        mode: args.mode,
        records: args.records,
        concurrency: args.concurrency as usize,
        batch_size: args.batch_size as usize,
        stream_window: args.stream_window as usize,
        template,
    };
    let progress = ProgressBar::new(args.records).with_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:40}] {pos}/{len} records, {per_sec}, eta {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    progress.set_prefix("gateway");
    let before = pid.and_then(ProcStat::read);
    let outcome = load::drive(&url, &plan, &progress).await;
    let after = pid.and_then(ProcStat::read);
    progress.finish_and_clear();
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            if let Some(gateway) = spawned {
                cleanup(gateway, args.broker.primary()).await;
            }
            return Err(error);
        }
    };

    eprintln!("verify: reading the history stream back…");
    let start = if spawned.is_some() {
        verify::from_first()
    } else {
        verify::from_time(u64::try_from(started_at - 1).unwrap_or(0))
    };
    let seen = verify::read_stream(
        args.broker.primary(),
        &history,
        start,
        &outcome.acked,
        Duration::from_secs(10),
    )
    .await;
    if let Some(gateway) = spawned {
        cleanup(gateway, args.broker.primary()).await;
    }
    let tally = Tally::of(&outcome.acked, &seen?);

    let rate = outcome.acked.len() as f64 / outcome.elapsed.as_secs_f64();
    let latency = Latency::of(outcome.latencies);
    rows.push(row(&format!("gateway ({mode})"), Some(rate), latency));
    report::print_table(&rows);

    // A unary call is compared with one confirmed publish; batches and
    // streams with the broker's throughput.
    match (ceiling, args.mode) {
        (Some((_, Some(trip))), BenchMode::Unary) => {
            if let Some(latency) = latency {
                println!(
                    "latency vs direct round trip: p50 {:.2}x, p99 {:.2}x",
                    latency.p50.as_secs_f64() / trip.p50.as_secs_f64(),
                    latency.p99.as_secs_f64() / trip.p99.as_secs_f64()
                );
            }
        }
        (Some((best, _)), _) => {
            println!(
                "ratio gateway/direct (best of 1 and 4 channels): {:.2}",
                rate / best
            );
        }
        (None, _) => {}
    }
    match (idle, before, after) {
        (Some(idle), Some(before), Some(after)) => {
            let cpu = after.cpu_seconds - before.cpu_seconds;
            println!(
                "gateway process: idle RSS {}, peak RSS {}, CPU {:.2} s under load ({:.1} µs per record)",
                megabytes(idle.rss_bytes),
                // VmHWM: the kernel's own high-water mark, so no sampling is needed.
                megabytes(after.peak_rss_bytes),
                cpu,
                cpu * 1e6 / outcome.acked.len().max(1) as f64
            );
        }
        _ => println!("gateway process: not measured (give --gateway-pid for an external gateway)"),
    }
    println!(
        "verified: {} acked, {} found in the history stream, {} missing, {} duplicated; {} failed calls",
        tally.acked, tally.found, tally.missing, tally.duplicated, outcome.failed_calls
    );
    if let Some(failure) = &outcome.first_failure {
        println!("first failure: {failure}");
    }
    let complete = outcome.acked.len() as u64 == args.records;
    Ok(
        if tally.lossless() && outcome.failed_calls == 0 && complete {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

fn row(label: &str, records_per_second: Option<f64>, latency: Option<Latency>) -> Row {
    Row {
        label: label.to_owned(),
        records_per_second,
        latency,
    }
}

pub(crate) async fn cleanup(gateway: SpawnedGateway, amqp_url: &str) {
    let (exchange, queue) = (gateway.exchange.clone(), gateway.history_queue.clone());
    gateway.stop().await;
    if let Ok(connection) = lapin::Connection::connect(amqp_url, Default::default()).await {
        direct::delete_names(&connection, &queue, &exchange).await;
    }
}

/// The record every client sends, and the JSON body of one like it (for the
/// direct run), sized to about `record_bytes` once the gateway has stamped it.
fn sample(record_bytes: usize) -> (pb::LogRecord, Vec<u8>) {
    let stamped = |message: String| Record {
        id: uuid::Uuid::now_v7().to_string(),
        time: OffsetDateTime::now_utc(),
        received_time: OffsetDateTime::now_utc(),
        service: "bench".into(),
        node: "bench-node".into(),
        level: Level::Info,
        message,
        attributes: Default::default(),
        trace_id: String::new(),
        span_id: String::new(),
        gateway: "bench-gateway".into(),
    };
    let base = stamped(String::new()).to_json().len();
    let message = "x".repeat(record_bytes.saturating_sub(base));
    let body = stamped(message.clone()).to_json();
    let template = pb::LogRecord {
        service: "bench".into(),
        node: "bench-node".into(),
        level: pb::Level::Info as i32,
        message,
        ..Default::default()
    };
    (template, body)
}
