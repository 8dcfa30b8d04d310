//! What each of the gateway's message properties costs RabbitMQ: the same
//! persistent, confirmed ~226-byte messages published straight with lapin
//! into a stream (4 channels × 1,000 in flight), adding one property at a
//! time, in rounds (each round in the reverse order of the last, so drift on
//! a shared machine weighs on every variant alike), with the broker's CPU
//! time read from /proc/<pid>/stat around each variant.
//!
//! `cargo run --release --example properties -- BEAM_PID [MESSAGES] [ROUNDS]`
//! (against amqp://guest:guest@127.0.0.1:5672/%2f; names unique to the run,
//! deleted afterwards).

use std::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt};
use lapin::{
    options::{
        BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable, LongString, ShortString},
    BasicProperties, Channel, Connection, ConnectionProperties,
};
use loggate::broker::{Retention, Topology};

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const CHANNELS: usize = 4;
const WINDOW: usize = 1_000;

/// Cumulative: variant i has every property of variants 0..=i.
const VARIANTS: [&str; 8] = [
    "delivery_mode 2 only",
    "+ mandatory",
    "+ content_type",
    "+ message_id (36 chars)",
    "+ timestamp",
    "+ app_id, type",
    "+ headers service, level",
    "+ header node (the gateway's set)",
];

fn properties(variant: usize, n: u64) -> BasicProperties {
    let mut p = BasicProperties::default().with_delivery_mode(2);
    if variant >= 2 {
        p = p.with_content_type("application/json".into());
    }
    if variant >= 3 {
        p = p.with_message_id(ShortString::from(format!("{n:036}")));
    }
    if variant >= 4 {
        p = p.with_timestamp(1_764_000_000 + n / 1000);
    }
    if variant >= 5 {
        p = p
            .with_app_id("loggate".into())
            .with_type("loggate.v1.LogRecord".into());
    }
    if variant >= 6 {
        let mut headers = FieldTable::default();
        let text = |s: &str| AMQPValue::LongString(LongString::from(s));
        headers.insert("service".into(), text("bench"));
        headers.insert("level".into(), text("info"));
        if variant >= 7 {
            headers.insert("node".into(), text("bench-node"));
        }
        p = p.with_headers(headers);
    }
    p
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the broker's /proc/PID/stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("a stat line")
        .1
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields[i].parse::<f64>().expect("a number");
    (ticks(11) + ticks(12)) / 100.0
}

async fn flood(channel: Channel, exchange: String, variant: usize, count: u64) {
    let body = vec![b'x'; 226];
    let mut in_flight = FuturesUnordered::new();
    let mut issued = 0u64;
    loop {
        while in_flight.len() < WINDOW && issued < count {
            let (channel, exchange, body) = (&channel, exchange.as_str(), &body);
            let n = issued;
            in_flight.push(async move {
                channel
                    .basic_publish(
                        exchange.into(),
                        "bench.info".into(),
                        BasicPublishOptions {
                            mandatory: variant >= 1,
                            ..Default::default()
                        },
                        body,
                        properties(variant, n),
                    )
                    .await
                    .expect("published")
                    .await
                    .expect("confirmed")
            });
            issued += 1;
        }
        if in_flight.next().await.is_none() {
            break;
        }
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let pid: u32 = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: properties BEAM_PID [MESSAGES] [ROUNDS]");
    let messages: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let tag = format!("{}", std::process::id());
    let connection = Connection::connect(URL, ConnectionProperties::default())
        .await
        .expect("connects");
    let topology = Topology {
        exchange: format!("loggate-bench.{tag}.props"),
        history_queue: format!("loggate-bench.{tag}.props.history"),
        retention: Retention {
            max_age: "1h".into(),
            max_bytes: 2_000_000_000,
            segment_bytes: None,
        },
        replicas: 1,
    };
    let declaring = connection.create_channel().await.expect("a channel");
    topology.declare(&declaring).await.expect("declared");
    let mut cost = vec![Vec::new(); VARIANTS.len()];
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..VARIANTS.len()).collect()
        } else {
            (0..VARIANTS.len()).rev().collect()
        };
        for variant in order {
            let mut lanes = Vec::new();
            for _ in 0..CHANNELS {
                let channel = connection.create_channel().await.expect("a channel");
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .expect("confirm mode");
                lanes.push(channel);
            }
            let before = cpu_seconds(pid);
            let started = Instant::now();
            let tasks: Vec<_> = lanes
                .into_iter()
                .map(|channel| {
                    tokio::spawn(flood(
                        channel,
                        topology.exchange.clone(),
                        variant,
                        messages / CHANNELS as u64,
                    ))
                })
                .collect();
            for task in tasks {
                task.await.expect("a publisher");
            }
            let rate = messages as f64 / started.elapsed().as_secs_f64();
            let us = (cpu_seconds(pid) - before) * 1e6 / messages as f64;
            eprintln!(
                "round {round} {:<36} {us:6.1} µs/msg {rate:8.0} msg/s",
                VARIANTS[variant]
            );
            cost[variant].push(us);
        }
    }
    println!("broker CPU per message (µs), {messages} messages per variant and round:");
    for (variant, runs) in cost.iter().enumerate() {
        let mean = runs.iter().sum::<f64>() / runs.len() as f64;
        let shown: Vec<String> = runs.iter().map(|v| format!("{v:.1}")).collect();
        println!(
            "{:<36} mean {mean:5.1}  ({})",
            VARIANTS[variant],
            shown.join(", ")
        );
    }
    let _ = declaring
        .queue_delete(
            topology.history_queue.as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await;
    let _ = declaring
        .exchange_delete(
            topology.exchange.as_str().into(),
            ExchangeDeleteOptions::default(),
        )
        .await;
    let _ = connection.close(200, "done".into()).await;
}
