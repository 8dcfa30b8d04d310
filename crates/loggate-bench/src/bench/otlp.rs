//! `bench --mode otlp`: the same records sent as LogBatch calls and as OTLP
//! `LogsService/Export` calls of `--batch-size` records each, against one
//! gateway, in alternating phases (LogBatch, OTLP, OTLP, LogBatch; each side
//! gets half of `--records` per phase), and reported side by side.
//!
//! An OTLP answer carries no record ids, so the loss check counts instead:
//! each side writes as a service of its own (`bench-lb`, `bench-ot`: the
//! same length, so the same bytes), and every acknowledged record must be
//! in the history stream exactly as often as it was acknowledged.

use std::{
    collections::HashMap,
    process::ExitCode,
    sync::{atomic::AtomicU64, Arc},
    time::{Duration, Instant},
};

use futures::StreamExt;
use indicatif::ProgressBar;
use lapin::options::BasicAckOptions;
use tonic::transport::{Channel, Endpoint};

use loggate::proto::otlp::{
    collector::{logs_service_client::LogsServiceClient, ExportLogsServiceRequest},
    common::{any_value::Value, AnyValue, InstrumentationScope, KeyValue},
    logs::{LogRecord, ResourceLogs, ScopeLogs},
    resource::Resource,
};
use loggate::proto::v1 as pb;
use loggate::record::Record;

use super::report::{self, Latency};
use super::{cleanup, gateway_args, load, row, verify};
use crate::config::{BenchArgs, BenchMode};
use crate::connect::Target;
use crate::error::Error;
use crate::process::{ProcStat, SpawnedGateway};

/// The services the two sides write as.
const BATCH_SERVICE: &str = "bench-lb";
const OTLP_SERVICE: &str = "bench-ot";
/// The target: OTLP at least this fraction of LogBatch's rate.
const TARGET_RATIO: f64 = 0.9;

/// One side's phases added up.
#[derive(Default)]
struct Side {
    acked: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
    failed_calls: u64,
    first_failure: Option<String>,
    cpu_seconds: f64,
}

impl Side {
    fn rate(&self) -> f64 {
        self.acked as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Runs both sides; `body_bytes` is the size of one stamped record's JSON.
pub async fn run(
    args: &BenchArgs,
    tag: &str,
    template: pb::LogRecord,
    body_bytes: usize,
) -> Result<ExitCode, Error> {
    if args.server.is_some() {
        return Err(Error::Gateway(
            "--mode otlp starts its own gateway: leave out --server".into(),
        ));
    }
    println!(
        "loggate bench: mode=otlp (LogBatch vs OTLP Export, phases ABBA) records={} per side concurrency={} batch-size={} record body={body_bytes} B cores={}",
        args.records,
        args.concurrency,
        args.batch_size,
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    let gateway = SpawnedGateway::start(
        &args.gateway.resolve()?,
        args.broker.primary(),
        tag,
        &gateway_args(args, &[]),
    )
    .await?;
    let measured = measure(args, &gateway, template).await;
    let history = gateway.history_queue.clone();
    let counted = match &measured {
        Ok((batch, otlp)) => {
            eprintln!("verify: reading the history stream back…");
            count_services(args.broker.primary(), &history, batch.acked + otlp.acked).await
        }
        Err(_) => Ok(HashMap::new()),
    };
    cleanup(gateway, args.broker.primary()).await;
    let (batch, otlp) = measured?;
    let counted = counted?;

    report::print_table(&[
        row(
            "gateway (LogBatch)",
            Some(batch.rate()),
            Latency::of(batch.latencies.clone()),
        ),
        row(
            "gateway (OTLP Export)",
            Some(otlp.rate()),
            Latency::of(otlp.latencies.clone()),
        ),
    ]);
    let ratio = otlp.rate() / batch.rate();
    println!(
        "ratio OTLP/LogBatch: {ratio:.2} (target ≥ {TARGET_RATIO}: {})",
        if ratio >= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        }
    );
    let mut passed = true;
    for (name, side, service) in [
        ("LogBatch", &batch, BATCH_SERVICE),
        ("OTLP", &otlp, OTLP_SERVICE),
    ] {
        let found = counted.get(service).copied().unwrap_or(0);
        println!(
            "{name}: gateway CPU {:.1} µs per record; verified: {} acked, {found} in the history stream; {} failed calls",
            side.cpu_seconds * 1e6 / side.acked.max(1) as f64,
            side.acked,
            side.failed_calls,
        );
        if let Some(failure) = &side.first_failure {
            println!("{name}: first failure: {failure}");
        }
        passed &= found == side.acked && side.acked == args.records && side.failed_calls == 0;
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The four phases against `gateway`, with the gateway's CPU time for each.
async fn measure(
    args: &BenchArgs,
    gateway: &SpawnedGateway,
    template: pb::LogRecord,
) -> Result<(Side, Side), Error> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let target = Target::new(&gateway.url, None, None)?;
    let first_half = args.records / 2;
    let halves = [first_half, args.records - first_half];
    let (mut batch, mut otlp) = (Side::default(), Side::default());
    let batch_template = pb::LogRecord {
        service: BATCH_SERVICE.into(),
        ..template.clone()
    };
    for (phase, is_otlp) in [false, true, true, false].into_iter().enumerate() {
        let records = halves[phase / 2];
        let before = ProcStat::read(gateway.pid);
        let side = if is_otlp {
            eprintln!("phase {}: OTLP Export, {records} records…", phase + 1);
            let outcome = drive_otlp(&gateway.url, args, records, &template).await?;
            add(&mut otlp, outcome);
            &mut otlp
        } else {
            eprintln!("phase {}: LogBatch, {records} records…", phase + 1);
            let plan = load::Plan {
                mode: BenchMode::Batch,
                records,
                concurrency: args.concurrency as usize,
                // As the OTLP side: a connection per client.
                connections: args.concurrency as usize,
                batch_size: args.batch_size as usize,
                stream_window: args.stream_window as usize,
                template: batch_template.clone(),
            };
            let outcome = load::drive(&target, &plan, &ProgressBar::hidden()).await?;
            add(&mut batch, outcome);
            &mut batch
        };
        if let (Some(before), Some(after)) = (before, ProcStat::read(gateway.pid)) {
            side.cpu_seconds += after.cpu_seconds - before.cpu_seconds;
        }
    }
    Ok((batch, otlp))
}

fn add(side: &mut Side, outcome: load::Outcome) {
    side.acked += outcome.acked.len() as u64;
    side.elapsed += outcome.elapsed;
    side.latencies.extend(outcome.latencies);
    side.failed_calls += outcome.failed_calls;
    side.first_failure = side.first_failure.take().or(outcome.first_failure);
}

/// OTLP Export calls of `--batch-size` records from `--concurrency` clients,
/// each on its own connection. `acked` holds one empty id per acknowledged
/// record (OTLP answers carry none).
async fn drive_otlp(
    url: &str,
    args: &BenchArgs,
    records: u64,
    template: &pb::LogRecord,
) -> Result<load::Outcome, Error> {
    let remaining = Arc::new(AtomicU64::new(records));
    let mut clients = Vec::new();
    for _ in 0..args.concurrency {
        let channel: Channel = Endpoint::from_shared(url.to_owned())
            .map_err(|e| Error::Gateway(e.to_string()))?
            .connect()
            .await
            .map_err(|e| Error::Gateway(format!("connecting to {url}: {e}")))?;
        clients.push(LogsServiceClient::new(channel).max_decoding_message_size(64 << 20));
    }
    let batch = u64::from(args.batch_size);
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for mut client in clients {
        let remaining = Arc::clone(&remaining);
        let template = template.clone();
        workers.spawn(async move {
            let mut outcome = load::Outcome::default();
            loop {
                let n = load::take(&remaining, batch);
                if n == 0 {
                    return outcome;
                }
                let call = Instant::now();
                let result = client.export(request(&template, n)).await;
                outcome.latencies.push(call.elapsed());
                match result {
                    Ok(answer) => {
                        let rejected = answer
                            .into_inner()
                            .partial_success
                            .map_or(0, |p| u64::try_from(p.rejected_log_records).unwrap_or(0));
                        let accepted = n.saturating_sub(rejected);
                        outcome.acked.extend((0..accepted).map(|_| String::new()));
                        if rejected > 0 {
                            outcome.failed_calls += 1;
                            outcome
                                .first_failure
                                .get_or_insert_with(|| format!("{rejected} records rejected"));
                        }
                    }
                    Err(status) => {
                        outcome.failed_calls += 1;
                        outcome
                            .first_failure
                            .get_or_insert_with(|| status.to_string());
                    }
                }
            }
        });
    }
    load::gather(workers, started).await
}

/// `n` records like `template`, as an OTLP SDK sends them: one resource
/// (service.name, host.name), one scope, INFO, the message as a string body,
/// no time (the gateway's receive time, as for the LogBatch records).
fn request(template: &pb::LogRecord, n: u64) -> ExportLogsServiceRequest {
    let text = |s: &str| {
        Some(AnyValue {
            value: Some(Value::StringValue(s.to_owned())),
        })
    };
    let attribute = |key: &str, value: &str| KeyValue {
        key: key.to_owned(),
        value: text(value),
        ..KeyValue::default()
    };
    let record = LogRecord {
        severity_number: 9,
        body: text(&template.message),
        ..LogRecord::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    attribute("service.name", OTLP_SERVICE),
                    attribute("host.name", &template.node),
                ],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope::default()),
                log_records: (0..n).map(|_| record.clone()).collect(),
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

/// Records per service in the history stream, read from the start until
/// `expected` were seen and it was quiet for a moment (or quiet for 10 s).
async fn count_services(
    amqp_url: &str,
    history: &str,
    expected: u64,
) -> Result<HashMap<String, u64>, Error> {
    let (connection, channel, mut consumer) =
        verify::open_consumer(amqp_url, history, verify::from_first()).await?;
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut seen = 0u64;
    loop {
        let wait = if seen >= expected {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(10)
        };
        let delivery = match tokio::time::timeout(wait, consumer.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(delivery)) => delivery?,
        };
        let content_type = delivery
            .properties
            .content_type()
            .as_ref()
            .map(|s| s.as_str().to_owned());
        for record in Record::from_message(content_type.as_deref(), &delivery.data)
            .into_iter()
            .flatten()
        {
            *counts.entry(record.service).or_default() += 1;
            seen += 1;
        }
        if delivery.delivery_tag % 500 == 0 {
            channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true })
                .await?;
        }
    }
    let _ = channel.close(200, "verified".into()).await;
    let _ = connection.close(200, "verified".into()).await;
    Ok(counts)
}
