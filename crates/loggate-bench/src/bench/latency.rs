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

/// The three latencies, each over every round, and the median of what each
/// round's `Log` took beyond its other two calls.
pub struct Probe {
    pub direct: Latency,
    pub log: Latency,
    pub refused: Latency,
    pub own_p50_seconds: f64,
}

/// Runs [`ROUNDS`] rounds against `gateway` and, straight, names of its own
/// (declared for the run from `tag`, deleted after), publishing `body`, on a
/// thread and runtime of its own.
pub async fn probe(
    amqp_url: &str,
    tag: &str,
    gateway: &Target,
    template: &pb::LogRecord,
    body: &[u8],
) -> Result<Probe, Error> {
    let (amqp_url, tag, gateway) = (amqp_url.to_owned(), format!("{tag}.probe"), gateway.clone());
    let (template, body) = (template.clone(), body.to_vec());
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Gateway(format!("cannot start the probe's runtime: {e}")))?;
        runtime.block_on(async {
            let names = direct::Target::declare(&amqp_url, &tag).await?;
            let measured = rounds(&names, &gateway, template, &body).await;
            names.delete().await;
            measured
        })
    })
    .await
    .map_err(|e| Error::Gateway(e.to_string()))?
}

async fn rounds(
    names: &direct::Target,
    gateway: &Target,
    template: pb::LogRecord,
    body: &[u8],
) -> Result<Probe, Error> {
    let broker = names.one_at_a_time().await?;
    let mut client = gateway.connect().await?;
    let mut samples = [const { Vec::new() }; 3];
    let result = async {
        for n in 0..ROUNDS {
            let started = Instant::now();
            broker.publish(body, n as u64).await?;
            let direct = started.elapsed();

            let record = Some(template.clone());
            let started = Instant::now();
            client
                .log(pb::LogRequest { record })
                .await
                .map_err(|status| Error::Gateway(format!("Log failed: {status}")))?;
            let log = started.elapsed();

            let started = Instant::now();
            match client.log(pb::LogRequest { record: None }).await {
                Err(status) if status.code() == tonic::Code::InvalidArgument => {}
                other => {
                    return Err(Error::Gateway(format!(
                        "a Log without a record should be INVALID_ARGUMENT, got {other:?}"
                    )))
                }
            }
            let refused = started.elapsed();
            for (kept, sample) in samples.iter_mut().zip([direct, log, refused]) {
                kept.push(sample);
            }
        }
        Ok(())
    }
    .await;
    broker.close().await;
    result?;
    let mut own: Vec<f64> = (0..ROUNDS)
        .map(|i| {
            samples[1][i].as_secs_f64() - samples[0][i].as_secs_f64() - samples[2][i].as_secs_f64()
        })
        .collect();
    own.sort_by(f64::total_cmp);
    let [direct, log, refused] = samples.map(|s| Latency::of(s).unwrap_or_default());
    Ok(Probe {
        direct,
        log,
        refused,
        own_p50_seconds: own[own.len() / 2],
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
        println!(
            "  Log/direct p50 {:.2}x, p99 {:.2}x; a round's Log - direct - gRPC alone, median: {:.3} ms (the gateway's own part)",
            ratio(self.log.p50, self.direct.p50),
            ratio(self.log.p99, self.direct.p99),
            self.own_p50_seconds * 1e3
        );
    }
}

/// `a` as a multiple of `b`.
pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
}
