//! A unary call's latency, taken apart. Round after round, one client thread
//! makes three calls in turn: a confirmed publish straight to RabbitMQ, a
//! `Log` through the gateway, and a `Log` the gateway refuses before any work
//! (no record: INVALID_ARGUMENT), whose round trip is gRPC's alone. Taken in
//! turn, all three meet the same broker and the same machine load, which
//! drift between separate runs by more than the differences measured here;
//! on a single-threaded runtime of their own, the client's thread hand-offs
//! weigh on none of them. What is left of a `Log` after the other two is the
//! gateway's own part: validating, stamping, encoding and handing over.

use std::time::{Duration, Instant};

use loggate::proto::v1 as pb;

use super::direct;
use super::report::Latency;
use crate::connect::Target;
use crate::error::Error;

/// Rounds of the three calls.
pub const ROUNDS: usize = 2_000;

/// The three latencies, each over every round.
pub struct Probe {
    pub direct: Latency,
    pub log: Latency,
    pub refused: Latency,
}

/// Runs [`ROUNDS`] rounds against `gateway` and, straight, the direct run's
/// `exchange` (publishing `body`), on a thread and runtime of its own.
pub async fn probe(
    amqp_url: &str,
    exchange: &str,
    gateway: &Target,
    template: &pb::LogRecord,
    body: &[u8],
) -> Result<Probe, Error> {
    let (amqp_url, exchange, gateway) = (amqp_url.to_owned(), exchange.to_owned(), gateway.clone());
    let (template, body) = (template.clone(), body.to_vec());
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Gateway(format!("cannot start the probe's runtime: {e}")))?;
        runtime.block_on(rounds(&amqp_url, &exchange, &gateway, template, &body))
    })
    .await
    .map_err(|e| Error::Gateway(e.to_string()))?
}

async fn rounds(
    amqp_url: &str,
    exchange: &str,
    gateway: &Target,
    template: pb::LogRecord,
    body: &[u8],
) -> Result<Probe, Error> {
    let broker = direct::Publisher::connect(amqp_url).await?;
    let mut client = gateway.connect().await?;
    let mut samples = [const { Vec::new() }; 3];
    let mut timed = |i: usize, started: Instant| samples[i].push(started.elapsed());
    let result = async {
        for n in 0..ROUNDS {
            let started = Instant::now();
            broker.publish(exchange, body, n as u64).await?;
            timed(0, started);

            let started = Instant::now();
            let record = Some(template.clone());
            client
                .log(pb::LogRequest { record })
                .await
                .map_err(|status| Error::Gateway(format!("Log failed: {status}")))?;
            timed(1, started);

            let started = Instant::now();
            match client.log(pb::LogRequest { record: None }).await {
                Err(status) if status.code() == tonic::Code::InvalidArgument => {}
                other => {
                    return Err(Error::Gateway(format!(
                        "a Log without a record should be INVALID_ARGUMENT, got {other:?}"
                    )))
                }
            }
            timed(2, started);
        }
        Ok(())
    }
    .await;
    broker.close().await;
    result?;
    let [direct, log, refused] = samples.map(|s| Latency::of(s).unwrap_or_default());
    Ok(Probe {
        direct,
        log,
        refused,
    })
}

impl Probe {
    /// The probe's lines of the report.
    pub fn print(&self) {
        let ms = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1e3);
        println!(
            "unary latency, side by side ({ROUNDS} rounds of a direct confirm, a Log and a refused Log, on one client thread):"
        );
        for (label, latency) in [
            ("direct confirm round trip", self.direct),
            ("gateway Log", self.log),
            ("gateway Log refused unpublished (gRPC alone)", self.refused),
        ] {
            println!(
                "  {label:<46} p50 {} ms, p99 {} ms",
                ms(latency.p50),
                ms(latency.p99)
            );
        }
        let own = self.log.p50.as_secs_f64()
            - self.direct.p50.as_secs_f64()
            - self.refused.p50.as_secs_f64();
        println!(
            "  Log/direct p50 {:.2}x, p99 {:.2}x; Log - direct - gRPC alone, p50: {:.3} ms (the gateway's own part)",
            ratio(self.log.p50, self.direct.p50),
            ratio(self.log.p99, self.direct.p99),
            own * 1e3
        );
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
}
