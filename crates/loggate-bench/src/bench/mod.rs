//! `loggate-bench bench`: how close the gateway comes to RabbitMQ's own ceiling, and
//! proof that nothing it acknowledged was lost or duplicated.
//!
//! One run: (1) the ceiling — the same messages published straight to
//! RabbitMQ with lapin, on 1 and on 4 channels, plus the one-at-a-time confirm
//! round trip; (2) the gateway under `--concurrency` clients (over
//! `--connections` HTTP/2 connections) in `--mode`, with
//! its RSS and CPU time from /proc; (3) the history stream read back, every
//! acked id counted. Every name it declares is unique to the run and deleted.
//! `--compare-auth` runs (2) and (3) without and with auth (`compare`); an
//! external gateway (`--server`) is reached with `--token` and `--tls-ca`.

mod compare;
mod direct;
mod fanout;
mod latency;
mod load;
mod otlp;
pub(crate) mod report;
pub(crate) mod verify;

use std::{process::ExitCode, time::Duration};

use indicatif::{ProgressBar, ProgressStyle};
use time::OffsetDateTime;

use loggate::proto::v1 as pb;
use loggate::record::{Level, Record};

use crate::broker_node;
use crate::config::{BenchArgs, BenchMode};
use crate::connect::Target;
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
        BenchMode::Tail | BenchMode::Replay if args.compare_auth => {
            return Err(Error::Gateway(
                "--compare-auth measures ingest: use --mode unary, batch or stream".into(),
            ))
        }
        BenchMode::Tail | BenchMode::Replay => return fanout::run(&args, &tag, template).await,
        BenchMode::Otlp if args.compare_auth => {
            return Err(Error::Gateway(
                "--mode otlp compares LogBatch with OTLP: leave out --compare-auth".into(),
            ))
        }
        BenchMode::Otlp => return otlp::run(&args, &tag, template, body.len()).await,
    };
    let comparison = args.compare_auth.then(|| compare::header(&args));
    println!(
        "loggate bench: mode={mode} records={} concurrency={} connections={} batch-size={} record body={} B amqp-batch-records={} cores={}{}",
        args.records,
        args.concurrency,
        args.connections(),
        args.batch_size,
        body.len(),
        args.amqp_batch_records,
        std::thread::available_parallelism().map_or(0, usize::from),
        comparison.map(|c| format!("; {c}")).unwrap_or_default(),
    );

    // RabbitMQ shares the machine: its CPU per record is part of the cost.
    let broker = broker_node::find(args.broker.primary());
    let mut rows = Vec::new();
    let mut ceiling = None;
    if !args.skip_direct {
        eprintln!(
            "direct: publishing {} records straight to RabbitMQ…",
            args.direct_records
        );
        let target = direct::Target::declare(args.broker.primary(), &tag).await?;
        let measured = async {
            let (one, one_cpu) =
                broker_node::cpu_during(broker, target.throughput(&body, args.direct_records, 1))
                    .await;
            let (four, four_cpu) =
                broker_node::cpu_during(broker, target.throughput(&body, args.direct_records, 4))
                    .await;
            let trips = target.round_trips(&body, ROUND_TRIP_SAMPLES).await?;
            let per_record = |cpu: Option<f64>| cpu.map(|s| s * 1e6 / args.direct_records as f64);
            Ok::<_, Error>((
                (one?, per_record(one_cpu)),
                (four?, per_record(four_cpu)),
                trips,
            ))
        }
        .await;
        target.delete().await;
        let (one, four, trips) = measured?;
        rows.push(row("direct lapin, 1 channel", Some(one.0), None));
        rows.push(row("direct lapin, 4 channels", Some(four.0), None));
        let trip = Latency::of(trips);
        rows.push(row("direct confirm round trip", None, trip));
        ceiling = Some(Ceiling {
            best: one.0.max(four.0),
            one_channel: one.0,
            trip,
            broker_us: [one.1, four.1],
        });
    }

    let plan = load::Plan {
        mode: args.mode,
        records: args.records,
        concurrency: args.concurrency as usize,
        connections: args.connections() as usize,
        batch_size: args.batch_size as usize,
        stream_window: args.stream_window as usize,
        template,
    };
    if args.compare_auth {
        return compare::run(&args, &tag, mode, plan, rows, ceiling).await;
    }

    // The gateway: ours, or the one given.
    let (target, history, pid, spawned) = match &args.server {
        Some(server) => {
            let ca = args.tls_ca.as_deref().map(Target::read_ca).transpose()?;
            let target = Target::new(server, ca, args.token.as_deref())?;
            let history = args.history_queue.clone().unwrap_or_default();
            (target, history, args.gateway_pid, None)
        }
        None => {
            let gateway = SpawnedGateway::start(
                &args.gateway.resolve()?,
                args.broker.primary(),
                &tag,
                &gateway_args(&args, &[]),
            )
            .await?;
            let target = Target::new(&gateway.url, None, None)?;
            let (history, pid) = (gateway.history_queue.clone(), Some(gateway.pid));
            (target, history, pid, Some(gateway))
        }
    };
    // Our own gateway's stream holds only this run; an external one's is
    // read from just before the load started.
    let start = match spawned {
        Some(_) => verify::from_first(),
        None => verify::from_time(
            u64::try_from(OffsetDateTime::now_utc().unix_timestamp() - 1).unwrap_or(0),
        ),
    };
    let measured = measure(
        &target,
        &history,
        pid,
        start,
        &plan,
        args.broker.primary(),
        "gateway",
    )
    .await;
    // After the load and its verification, so the probe's records are no
    // part of either.
    let probe = match args.mode {
        BenchMode::Unary if measured.is_ok() && !args.skip_direct => {
            Some(latency::probe(args.broker.primary(), &tag, &target, &plan.template, &body).await)
        }
        _ => None,
    };
    if let Some(gateway) = spawned {
        cleanup(gateway, args.broker.primary()).await;
    }
    let measured = measured?;
    let probe = probe.transpose()?;

    let latency = Latency::of(measured.outcome.latencies.clone());
    rows.push(row(
        &format!("gateway ({mode})"),
        Some(measured.rate()),
        latency,
    ));
    report::print_table(&rows);

    // A unary call is compared with one confirmed publish; batches and
    // streams with the broker's throughput.
    if let Some(ceiling) = ceiling {
        match (ceiling.trip, latency, args.mode) {
            (Some(trip), Some(latency), BenchMode::Unary) => println!(
                "latency vs direct round trip: p50 {:.2}x, p99 {:.2}x",
                latency::ratio(latency.p50, trip.p50),
                latency::ratio(latency.p99, trip.p99)
            ),
            (_, _, BenchMode::Unary) => {}
            _ => println!("{}", throughput_ratios(&args, &ceiling, measured.rate())),
        }
    }
    if let Some(probe) = probe {
        probe.print();
    }
    match measured.process {
        Some(process) => println!(
            "gateway process: idle RSS {}, peak RSS {}, CPU {:.2} s under load ({:.2} µs per record)",
            megabytes(process.idle_rss_bytes),
            megabytes(process.peak_rss_bytes),
            process.cpu_seconds,
            measured.per_record_us(process.cpu_seconds)
        ),
        None => println!("gateway process: not measured (give --gateway-pid for an external gateway)"),
    }
    println!(
        "{}",
        broker_line(broker, ceiling.map(|c| c.broker_us), measured.broker_us())
    );
    if let Some(line) = measured.cpu_line() {
        println!("{line}");
    }
    println!("verified: {}", measured.verified());
    if let Some(failure) = &measured.outcome.first_failure {
        println!("first failure: {failure}");
    }
    Ok(if measured.passed(args.records) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// RabbitMQ's own numbers, published straight with lapin.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ceiling {
    /// Records/s, the better of 1 and 4 channels.
    pub best: f64,
    /// Records/s on one channel: all a LogStream uses, to keep its order.
    pub one_channel: f64,
    /// One confirmed publish at a time.
    pub trip: Option<Latency>,
    /// RabbitMQ's CPU µs per record on 1 and on 4 channels, when its process is known.
    pub broker_us: [Option<f64>; 2],
}

/// The gateway's rate against the direct ceiling; a single LogStream's also
/// against one channel, all it publishes on (RabbitMQ takes one channel's
/// messages in one process: the ceiling of any publisher that keeps order).
fn throughput_ratios(args: &BenchArgs, ceiling: &Ceiling, rate: f64) -> String {
    let mut line = format!(
        "ratio gateway/direct (best of 1 and 4 channels): {:.2}",
        rate / ceiling.best
    );
    if args.mode == BenchMode::Stream && args.concurrency == 1 {
        line += &format!(
            "; gateway/direct 1 channel (the one a LogStream publishes on, in order): {:.2}",
            rate / ceiling.one_channel
        );
    }
    line
}

/// RabbitMQ's CPU per record straight from lapin and through the gateway.
fn broker_line(pid: Option<u32>, direct: Option<[Option<f64>; 2]>, gateway: Option<f64>) -> String {
    let Some(pid) = pid else {
        return "broker process: not measured (no process on this machine listens on the AMQP URL's address, or /proc hides it)".to_owned();
    };
    let us = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1} µs"));
    let mut line = format!(
        "broker process (pid {pid}): CPU per record through the gateway {}",
        us(gateway)
    );
    if let Some([one, four]) = direct {
        line += &format!(", direct 1 channel {}, 4 channels {}", us(one), us(four));
        // Against each: a LogStream publishes on one channel, concurrent
        // calls on the pool (4 by default).
        let ratio = |direct: Option<f64>| match (gateway, direct) {
            (Some(gateway), Some(direct)) if direct > 0.0 => format!("{:.2}x", gateway / direct),
            _ => "-".to_owned(),
        };
        line += &format!(
            " (gateway/direct: {} 1 channel, {} 4 channels)",
            ratio(one),
            ratio(four)
        );
    }
    line
}

/// What the gateway process used during one load, from /proc.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcessUse {
    pub idle_rss_bytes: u64,
    /// VmHWM: the kernel's own high-water mark, so no sampling is needed.
    pub peak_rss_bytes: u64,
    /// CPU time spent while the load ran.
    pub cpu_seconds: f64,
}

/// One load against one gateway, and its verification.
pub(crate) struct Measured {
    pub outcome: load::Outcome,
    pub tally: Tally,
    pub process: Option<ProcessUse>,
    /// RabbitMQ's CPU seconds while the load ran, when its process is known.
    pub broker_cpu_seconds: Option<f64>,
    /// This process's CPU seconds while the load ran: the clients' own cost,
    /// on the same cores as the gateway's and the broker's.
    pub client_cpu_seconds: Option<f64>,
}

impl Measured {
    /// RabbitMQ's CPU µs per acked record.
    pub fn broker_us(&self) -> Option<f64> {
        self.broker_cpu_seconds.map(|s| self.per_record_us(s))
    }

    /// CPU seconds as µs per acked record.
    pub fn per_record_us(&self, seconds: f64) -> f64 {
        seconds * 1e6 / self.outcome.acked.len().max(1) as f64
    }

    /// Who spent the machine's CPU on the load, per record: the gateway, this
    /// process's clients and RabbitMQ, and how many cores that adds up to.
    pub fn cpu_line(&self) -> Option<String> {
        let gateway = self.per_record_us(self.process?.cpu_seconds);
        let client = self.per_record_us(self.client_cpu_seconds?);
        let broker = self.broker_us()?;
        let total = gateway + client + broker;
        Some(format!(
            "CPU per record: gateway {gateway:.2} µs + bench clients {client:.2} µs + broker {broker:.2} µs = {total:.2} µs, {:.2} cores busy at this rate",
            total * self.rate() / 1e6
        ))
    }

    pub fn rate(&self) -> f64 {
        self.outcome.acked.len() as f64 / self.outcome.elapsed.as_secs_f64()
    }

    /// The verification line's text (after "verified").
    pub fn verified(&self) -> String {
        let tally = &self.tally;
        format!(
            "{} acked, {} found in the history stream, {} missing, {} duplicated; {} failed calls",
            tally.acked, tally.found, tally.missing, tally.duplicated, self.outcome.failed_calls
        )
    }

    /// Every record sent was acked, and every acked one is in the stream once.
    pub fn passed(&self, records: u64) -> bool {
        self.tally.lossless()
            && self.outcome.failed_calls == 0
            && self.outcome.acked.len() as u64 == records
    }
}

/// Drives `plan` against `target`, reads the process `pid`'s use meanwhile,
/// then reads `history` back from `start` and counts every acked id.
pub(crate) async fn measure(
    target: &Target,
    history: &str,
    pid: Option<u32>,
    start: lapin::types::AMQPValue,
    plan: &load::Plan,
    amqp_url: &str,
    label: &str,
) -> Result<Measured, Error> {
    // Let a fresh gateway settle before its idle RSS is read.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = pid.and_then(ProcStat::read);
    let progress = ProgressBar::new(plan.records).with_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:40}] {pos}/{len} records, {per_sec}, eta {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    progress.set_prefix(label.to_owned());
    let before = pid.and_then(ProcStat::read);
    let client_before = ProcStat::read(std::process::id());
    let (outcome, broker_cpu_seconds) = broker_node::cpu_during(
        broker_node::find(amqp_url),
        load::drive(target, plan, &progress),
    )
    .await;
    let after = pid.and_then(ProcStat::read);
    let client_cpu_seconds = ProcStat::read(std::process::id())
        .zip(client_before)
        .map(|(after, before)| after.cpu_seconds - before.cpu_seconds);
    progress.finish_and_clear();
    let outcome = outcome?;

    eprintln!("verify ({label}): reading the history stream back…");
    let seen = verify::read_stream(
        amqp_url,
        history,
        start,
        &outcome.acked,
        Duration::from_secs(10),
    )
    .await?;
    let tally = Tally::of(&outcome.acked, &seen);
    let process = match (idle, before, after) {
        (Some(idle), Some(before), Some(after)) => Some(ProcessUse {
            idle_rss_bytes: idle.rss_bytes,
            peak_rss_bytes: after.peak_rss_bytes,
            cpu_seconds: after.cpu_seconds - before.cpu_seconds,
        }),
        _ => None,
    };
    Ok(Measured {
        outcome,
        tally,
        process,
        broker_cpu_seconds,
        client_cpu_seconds,
    })
}

/// The `serve` flags of a gateway this run starts: the user's, the packing,
/// and `security` (auth and TLS, for the auth-on side of a comparison).
pub(crate) fn gateway_args(args: &BenchArgs, security: &[String]) -> Vec<String> {
    let mut extra = args.gateway_args.clone();
    if args.amqp_batch_records > 1 {
        extra.extend([
            "--amqp-batch-records".to_owned(),
            args.amqp_batch_records.to_string(),
        ]);
    }
    extra.extend_from_slice(security);
    extra
}

pub(crate) fn row(label: &str, records_per_second: Option<f64>, latency: Option<Latency>) -> Row {
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
        // Auth off. With auth on, the gateway adds the principal's name to
        // the body and a header: part of what auth costs, so not sized away.
        principal: String::new(),
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
