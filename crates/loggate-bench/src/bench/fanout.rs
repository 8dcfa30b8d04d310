//! The tail side: live fan-out to many followers (`--mode tail`), and replay
//! of a long history to one (`--mode replay`), each against the broker.

use std::{
    collections::{HashMap, HashSet},
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use lapin::options::BasicAckOptions;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use loggate::proto::v1::{self as pb, log_gateway_client::LogGatewayClient, tail_request::Start};
use loggate::sync::lock;

use super::{cleanup, gateway_args, report};
use crate::config::{BenchArgs, BenchMode};
use crate::error::Error;
use crate::process::{ProcStat, SpawnedGateway};

/// Tail streams multiplexed on one HTTP/2 connection.
const STREAMS_PER_CONNECTION: usize = 100;
/// Publishing ticks per second in tail mode.
const TICKS_PER_SECOND: u64 = 100;

pub async fn run(args: &BenchArgs, tag: &str, template: pb::LogRecord) -> Result<ExitCode, Error> {
    let gateway = SpawnedGateway::start(
        &args.gateway.resolve()?,
        args.broker.primary(),
        tag,
        &gateway_args(args, &[]),
    )
    .await?;
    let idle = ProcStat::read(gateway.pid);
    let outcome = match args.mode {
        BenchMode::Replay => replay(args, &gateway, template).await,
        _ => fan_out(args, &gateway, template).await,
    };
    let after = ProcStat::read(gateway.pid);
    cleanup(gateway, args.broker.primary()).await;
    let lossless = outcome?;
    if let (Some(idle), Some(after)) = (idle, after) {
        println!(
            "gateway process: idle RSS {}, peak RSS {}, CPU {:.2} s in all",
            report::megabytes(idle.rss_bytes),
            report::megabytes(after.peak_rss_bytes),
            after.cpu_seconds - idle.cpu_seconds
        );
    }
    Ok(if lossless {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn clients(url: &str, count: usize) -> Result<Vec<LogGatewayClient<Channel>>, Error> {
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        clients.push(client(url, None).await?);
    }
    Ok(clients)
}

/// One client on a connection of its own; with `stream_window`, HTTP/2
/// lets the gateway send only that many bytes per call before it reads.
async fn client(url: &str, stream_window: Option<u32>) -> Result<LogGatewayClient<Channel>, Error> {
    let channel = Channel::from_shared(url.to_owned())
        .map_err(|e| Error::Gateway(e.to_string()))?
        .initial_stream_window_size(stream_window)
        .connect()
        .await
        .map_err(|e| Error::Gateway(format!("cannot reach {url}: {e}")))?;
    Ok(LogGatewayClient::new(channel))
}

/// The paused follower's HTTP/2 window: small, so that its pause really
/// pushes back on the gateway instead of being absorbed by the client's
/// default window (which holds thousands of small records).
const PAUSED_WINDOW_BYTES: u32 = 1024;

/// What one follower received: (record id, when).
type Received = Arc<Mutex<Vec<(String, Instant)>>>;

/// Live fan-out; returns whether every follower got exactly what it matched.
async fn fan_out(
    args: &BenchArgs,
    gateway: &SpawnedGateway,
    template: pb::LogRecord,
) -> Result<bool, Error> {
    let followers = args.followers as usize;
    let services = args.services as usize;
    let service_of = |i: usize| (services > 0).then(|| format!("svc-{}", i % services));
    println!(
        "loggate bench: mode=tail followers={followers} services={} rate={}/s duration={}",
        if services == 0 {
            "all".to_owned()
        } else {
            services.to_string()
        },
        args.rate,
        humantime::format_duration(args.duration)
    );

    let connections = followers.div_ceil(STREAMS_PER_CONNECTION);
    let tail_clients = clients(&gateway.url, connections).await?;
    let stop = CancellationToken::new();
    let mut received: Vec<Received> = Vec::with_capacity(followers);
    let mut readers = tokio::task::JoinSet::new();
    eprintln!("tail: opening {followers} followers on {connections} connections…");
    for i in 0..followers {
        let pause = if i == 0 { args.pause_one } else { None };
        let mut client = match pause {
            Some(_) => client(&gateway.url, Some(PAUSED_WINDOW_BYTES)).await?,
            None => tail_clients[i % connections].clone(),
        };
        let request = pb::TailRequest {
            services: service_of(i).into_iter().collect(),
            ..Default::default()
        };
        let mut stream = client
            .tail(request)
            .await
            .map_err(|status| Error::Gateway(format!("tail {i} refused: {status}")))?
            .into_inner();
        let log: Received = Arc::default();
        received.push(Arc::clone(&log));
        let stop = stop.clone();
        readers.spawn(async move {
            if let Some(pause) = pause {
                tokio::time::sleep(pause).await;
            }
            loop {
                let next = tokio::select! {
                    next = stream.next() => next,
                    () = stop.cancelled() => return,
                };
                match next {
                    Some(Ok(response)) => {
                        if let Some(pb::tail_response::Event::Record(record)) = response.event {
                            let now = Instant::now();
                            lock(&log).push((record.id, now));
                        }
                    }
                    _ => return,
                }
            }
        });
    }

    // Publish at the rate, spreading records over the services.
    eprintln!("tail: publishing…");
    let mut publisher = clients(&gateway.url, 1).await?.remove(0);
    let mut returned: HashMap<String, (Instant, usize)> = HashMap::new();
    let per_tick = f64::from(args.rate) / TICKS_PER_SECOND as f64;
    let ticks = (args.duration.as_secs_f64() * TICKS_PER_SECOND as f64).ceil() as u64;
    let mut ticker = tokio::time::interval(Duration::from_millis(1000 / TICKS_PER_SECOND));
    let (mut owed, mut sent) = (0.0f64, 0usize);
    let mut failed = 0u64;
    for _ in 0..ticks {
        ticker.tick().await;
        owed += per_tick;
        let n = owed.floor() as usize;
        owed -= n as f64;
        if n == 0 {
            continue;
        }
        let batch: Vec<(pb::LogRecord, usize)> = (sent..sent + n)
            .map(|k| {
                let service = if services == 0 { 0 } else { k % services };
                let record = pb::LogRecord {
                    service: format!("svc-{service}"),
                    ..template.clone()
                };
                (record, service)
            })
            .collect();
        sent += n;
        let services_of: Vec<usize> = batch.iter().map(|(_, s)| *s).collect();
        let request = pb::LogBatchRequest {
            records: batch.into_iter().map(|(r, _)| r).collect(),
        };
        match publisher.log_batch(request).await {
            Ok(response) => {
                let now = Instant::now();
                for (id, service) in response.into_inner().ids.into_iter().zip(services_of) {
                    returned.insert(id, (now, service));
                }
            }
            Err(_) => failed += 1,
        }
    }

    // Give every follower time to receive what it matched.
    let expected_for = |i: usize| -> usize {
        if services == 0 {
            returned.len()
        } else {
            returned
                .values()
                .filter(|(_, s)| *s == i % services)
                .count()
        }
    };
    let expected: Vec<usize> = (0..followers).map(expected_for).collect();
    let deadline = Instant::now() + Duration::from_secs(15) + args.pause_one.unwrap_or_default();
    loop {
        let done = received
            .iter()
            .zip(&expected)
            .all(|(log, want)| lock(log).len() >= *want);
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    while readers.join_next().await.is_some() {}

    // By identity: each follower must get exactly the acknowledged ids of
    // its service, each once; anything else it got is counted as unexpected.
    let (mut lost, mut duplicated, mut delivered, mut unexpected) =
        (0usize, 0usize, 0usize, 0usize);
    let mut latencies = Vec::new();
    for (i, log) in received.iter().enumerate() {
        let log = lock(log);
        let paused = i == 0 && args.pause_one.is_some();
        let wanted = |service: usize| services == 0 || service == i % services;
        let mut unique = HashSet::new();
        let mut copies = 0;
        for (id, at) in log.iter() {
            if !returned
                .get(id)
                .is_some_and(|(_, service)| wanted(*service))
            {
                unexpected += 1;
                continue;
            }
            if !unique.insert(id.as_str()) {
                copies += 1;
                continue;
            }
            // The paused follower's latency is its pause: kept out of the others'.
            if let (Some((sent_at, _)), false) = (returned.get(id), paused) {
                latencies.push(at.saturating_duration_since(*sent_at));
            }
        }
        let missing = returned
            .iter()
            .filter(|(id, (_, service))| wanted(*service) && !unique.contains(id.as_str()))
            .count();
        if paused {
            println!(
                "paused follower: {} of {} records after its pause, {missing} lost, {copies} duplicated",
                unique.len(),
                expected[i]
            );
        }
        delivered += unique.len();
        lost += missing;
        duplicated += copies;
    }
    let latency = report::Latency::of(latencies);
    let label = if args.pause_one.is_some() {
        "Log returned → received (others)"
    } else {
        "Log returned → record received"
    };
    report::print_table(&[report::Row {
        label: label.into(),
        records_per_second: Some(delivered as f64 / args.duration.as_secs_f64()),
        latency,
    }]);
    println!(
        "fan-out: {} records sent ({failed} failed calls), {} deliveries expected, {delivered} delivered, {lost} lost, {duplicated} duplicated, {unexpected} unexpected",
        returned.len(),
        expected.iter().sum::<usize>(),
    );
    Ok(lost == 0 && duplicated == 0 && unexpected == 0 && failed == 0)
}

/// Replay of `--records` to one tail, against lapin reading the same stream.
async fn replay(
    args: &BenchArgs,
    gateway: &SpawnedGateway,
    template: pb::LogRecord,
) -> Result<bool, Error> {
    let records = args.records as usize;
    println!(
        "loggate bench: mode=replay records={records} amqp-batch-records={}",
        args.amqp_batch_records
    );
    eprintln!("replay: publishing {records} records…");
    let mut publisher = clients(&gateway.url, 1).await?.remove(0);
    let mut left = records;
    while left > 0 {
        let n = left.min(1000);
        let request = pb::LogBatchRequest {
            records: (0..n).map(|_| template.clone()).collect(),
        };
        publisher
            .log_batch(request)
            .await
            .map_err(|status| Error::Gateway(format!("publishing failed: {status}")))?;
        left -= n;
    }

    eprintln!("replay: lapin reading the stream from the start…");
    let (messages, raw_seconds) = raw_replay(args.broker.primary(), &gateway.history_queue).await?;

    eprintln!("replay: one tail from the start…");
    let started = Instant::now();
    let mut stream = publisher
        .tail(pb::TailRequest {
            start: Some(Start::FromBeginning(true)),
            history_only: true,
            ..Default::default()
        })
        .await
        .map_err(|status| Error::Gateway(format!("tail refused: {status}")))?
        .into_inner();
    let mut got = 0usize;
    let mut last = started;
    while let Some(response) = stream.next().await {
        let response =
            response.map_err(|status| Error::Gateway(format!("tail failed: {status}")))?;
        if let Some(pb::tail_response::Event::Record(_)) = response.event {
            got += 1;
            last = Instant::now();
        }
    }
    let tail_seconds = last.duration_since(started).as_secs_f64();
    let raw_rate = messages as f64 / raw_seconds;
    let tail_rate = got as f64 / tail_seconds;
    report::print_table(&[
        report::Row {
            label: "raw lapin replay (messages/s)".into(),
            records_per_second: Some(raw_rate),
            latency: None,
        },
        report::Row {
            label: "gateway tail replay (records/s)".into(),
            records_per_second: Some(tail_rate),
            latency: None,
        },
    ]);
    println!(
        "replay: {got} of {records} records, {messages} messages; records/s ÷ raw messages/s = {:.2}",
        tail_rate / raw_rate
    );
    Ok(got == records)
}

/// Reads the whole stream from `first` without decoding: (messages, seconds).
async fn raw_replay(amqp_url: &str, queue: &str) -> Result<(usize, f64), Error> {
    let (connection, channel, mut consumer) =
        super::verify::open_consumer(amqp_url, queue, super::verify::from_first()).await?;
    let started = Instant::now();
    let (mut messages, mut last) = (0usize, started);
    while let Ok(Some(delivery)) =
        tokio::time::timeout(Duration::from_secs(1), consumer.next()).await
    {
        let delivery = delivery?;
        messages += 1;
        last = Instant::now();
        if messages % 500 == 0 {
            channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true })
                .await?;
        }
    }
    let _ = channel.close(200, "replayed".into()).await;
    let _ = connection.close(200, "replayed".into()).await;
    Ok((
        messages,
        last.duration_since(started).as_secs_f64().max(1e-9),
    ))
}
