//! `bench --compare-auth`: what authentication (and, with `--tls`, TLS)
//! costs, measured in one run against the same gateway without it.
//!
//! Each side runs in `--rounds` phases in ABBA order (off, on, on, off, …).
//! Every phase starts a gateway of its own with fresh names, drives its share
//! of the records, verifies them and stops it, so two gateways never share
//! the CPU, no side inherits the other's warm stream, and a machine that
//! drifts over the run (other builds on the same cores) weighs on both sides
//! alike. Each side's rows pool its phases: records over elapsed time, and
//! percentiles over every call's latency.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use loggate::auth::new_token;
use loggate_testkit::TestPki;

use super::{
    cleanup, gateway_args, load, measure, report, row, verify, Ceiling, Measured, ProcessUse,
};
use crate::config::{BenchArgs, BenchMode};
use crate::connect::Target;
use crate::error::Error;
use crate::process::SpawnedGateway;
use report::{Latency, Row};
use verify::Tally;

/// Issue 10's budget for auth: at most this share of ingest throughput…
const THROUGHPUT_BUDGET: f64 = 0.05;
/// …and at most this much on a unary call's median latency.
const UNARY_P50_BUDGET: Duration = Duration::from_micros(50);

/// The explanation that goes into the run's header line.
pub fn header(args: &BenchArgs) -> String {
    let order: Vec<&str> = (0..args.rounds)
        .flat_map(|round| sides(round).map(Side::short))
        .collect();
    format!(
        "compare-auth: auth off vs {} in {} phases alternated ABBA ({}), each its own gateway started alone, {} records per side split over them",
        Side::On { tls: args.tls }.name(),
        order.len(),
        order.join(","),
        args.records,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Off,
    On { tls: bool },
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Off => "auth off",
            Side::On { tls: false } => "auth on (token)",
            Side::On { tls: true } => "auth on (token+TLS)",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Side::Off => "off",
            Side::On { .. } => "on",
        }
    }
}

/// Round `round`'s two phases: even rounds off first, odd rounds on first.
fn sides(round: u32) -> [Side; 2] {
    // The TLS flag is filled in by the caller; only the order matters here.
    let on = Side::On { tls: false };
    if round.is_multiple_of(2) {
        [Side::Off, on]
    } else {
        [on, Side::Off]
    }
}

/// The auth-on side's files: a token's auth file and, with TLS, a CA and a
/// server certificate. Removed when dropped.
struct Secured {
    /// Held for its drop, which removes the auth file.
    _dir: TempDir,
    pki: Option<TestPki>,
    token: String,
    serve_args: Vec<String>,
}

impl Secured {
    fn create(tls: bool) -> Result<Secured, Error> {
        let dir = TempDir::create()?;
        let token = new_token().map_err(|e| Error::Gateway(format!("no random token: {e}")))?;
        let auth_file = dir.0.join("auth.toml");
        std::fs::write(
            &auth_file,
            loggate_testkit::principal("bench", &token, r#"["*"]"#, r#"["*"]"#),
        )
        .map_err(|e| Error::Gateway(format!("writing {}: {e}", auth_file.display())))?;
        let mut serve_args = vec!["--auth-file".to_owned(), path_arg(&auth_file)];
        let pki = tls.then(|| TestPki::new("loggate-bench CA"));
        if let Some(pki) = &pki {
            let server = pki.server("gateway");
            serve_args.extend([
                "--tls-cert".to_owned(),
                path_arg(&server.cert),
                "--tls-key".to_owned(),
                path_arg(&server.key),
            ]);
        }
        Ok(Secured {
            _dir: dir,
            pki,
            token,
            serve_args,
        })
    }

    /// How a client reaches `gateway` when it runs with these files.
    fn target(&self, gateway: &SpawnedGateway) -> Result<Target, Error> {
        match &self.pki {
            Some(pki) => Target::own_tls(
                &format!("https://{}", gateway.address),
                pki.ca_pem(),
                Some(&self.token),
            ),
            None => Target::new(&gateway.url, None, Some(&self.token)),
        }
    }
}

/// The "auth on" side must really be on: a call without the token is
/// refused UNAUTHENTICATED, or the comparison would measure nothing.
async fn refuses_without_token(target: &Target) -> Result<(), Error> {
    let mut client = target.without_token().connect().await?;
    let call = client
        .log(loggate::proto::v1::LogRequest {
            record: Some(loggate::proto::v1::LogRecord {
                service: "bench".into(),
                message: "without a token".into(),
                ..Default::default()
            }),
        })
        .await;
    match call {
        Err(status) if status.code() == tonic::Code::Unauthenticated => Ok(()),
        other => Err(Error::Gateway(format!(
            "the auth-on gateway took a call without a token: {other:?}"
        ))),
    }
}

fn path_arg(path: &std::path::Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A directory of this run's own under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> Result<TempDir, Error> {
        let dir = std::env::temp_dir().join(loggate_testkit::unique("loggate-bench-auth"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Gateway(format!("creating {}: {e}", dir.display())))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Both sides' phases, then both pooled rows and the on/off ratios.
pub async fn run(
    args: &BenchArgs,
    tag: &str,
    mode: &str,
    plan: load::Plan,
    mut rows: Vec<Row>,
    ceiling: Option<Ceiling>,
) -> Result<ExitCode, Error> {
    let bin = args.gateway.resolve()?;
    let secured = Secured::create(args.tls)?;
    let on = Side::On { tls: args.tls };
    let phases: Vec<Side> = (0..args.rounds)
        .flat_map(sides)
        .map(|side| if side == Side::Off { side } else { on })
        .collect();
    // Each side's --records split over its phases, the remainder to the first.
    let share = |index_in_side: u64| {
        let rounds = u64::from(args.rounds);
        args.records / rounds + u64::from(index_in_side < args.records % rounds)
    };

    let (mut off_runs, mut on_runs) = (Vec::new(), Vec::new());
    for (number, side) in phases.iter().copied().enumerate() {
        let runs = if side == Side::Off {
            &mut off_runs
        } else {
            &mut on_runs
        };
        let phase_plan = load::Plan {
            records: share(runs.len() as u64),
            template: plan.template.clone(),
            ..plan
        };
        let security = match side {
            Side::Off => Vec::new(),
            Side::On { .. } => secured.serve_args.clone(),
        };
        let gateway = SpawnedGateway::start(
            &bin,
            args.broker.primary(),
            &format!("{tag}-{number}"),
            &gateway_args(args, &security),
        )
        .await?;
        let target = match side {
            Side::Off => Target::new(&gateway.url, None, None),
            Side::On { .. } => match secured.target(&gateway) {
                Ok(target) => refuses_without_token(&target).await.map(|()| target),
                Err(error) => Err(error),
            },
        };
        let (history, pid) = (gateway.history_queue.clone(), gateway.pid);
        let label = format!("{}, run {}", side.name(), number + 1);
        let measured = match target {
            Ok(target) => {
                measure(
                    &target,
                    &history,
                    Some(pid),
                    verify::from_first(),
                    &phase_plan,
                    args.broker.primary(),
                    &label,
                )
                .await
            }
            Err(error) => Err(error),
        };
        cleanup(gateway, args.broker.primary()).await;
        let measured = measured?;
        rows.push(row(
            &format!("gateway ({mode}), {label}"),
            Some(measured.rate()),
            Latency::of(measured.outcome.latencies.clone()),
        ));
        runs.push((phase_plan.records, measured));
    }
    drop(secured);

    let off = Pooled::of(&off_runs);
    let on_pooled = Pooled::of(&on_runs);
    for (side, pooled) in [(Side::Off, &off), (on, &on_pooled)] {
        rows.push(row(
            &format!("gateway ({mode}), {}, all runs", side.name()),
            Some(pooled.rate),
            pooled.latency,
        ));
    }
    report::print_table(&rows);

    let ratio = on_pooled.rate / off.rate;
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let difference = |pick: fn(&Latency) -> Duration| match (off.latency, on_pooled.latency) {
        (Some(off), Some(on)) => Some(micros(pick(&on)) - micros(pick(&off))),
        _ => None,
    };
    let p50 = difference(|l| l.p50);
    let p99 = difference(|l| l.p99);
    let signed = |us: Option<f64>| us.map_or_else(|| "-".to_owned(), |us| format!("{us:+.1} µs"));
    println!(
        "{} / auth off: throughput {ratio:.3} ({:+.1}%), p50 {}, p99 {}, gateway CPU per record {:.1} → {:.1} µs",
        on.name(),
        (ratio - 1.0) * 100.0,
        signed(p50),
        signed(p99),
        off.cpu_micros_per_record,
        on_pooled.cpu_micros_per_record,
    );
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    let throughput_met = met(ratio >= 1.0 - THROUGHPUT_BUDGET);
    let p50_verdict = match (args.mode, p50) {
        (BenchMode::Unary, Some(us)) => {
            format!("unary p50 {}", met(us <= micros(UNARY_P50_BUDGET)))
        }
        _ => "unary p50 is judged with --mode unary".to_owned(),
    };
    println!(
        "target (issue 10: ≤ {:.0}% of throughput, ≤ {} µs of unary p50): throughput {throughput_met}; {p50_verdict}",
        THROUGHPUT_BUDGET * 100.0,
        UNARY_P50_BUDGET.as_micros(),
    );
    if let Some(ceiling) = ceiling {
        match (args.mode, ceiling.trip, off.latency, on_pooled.latency) {
            (BenchMode::Unary, Some(trip), Some(off), Some(on)) => println!(
                "latency vs direct round trip: p50 {:.2}x off, {:.2}x on",
                off.p50.as_secs_f64() / trip.p50.as_secs_f64(),
                on.p50.as_secs_f64() / trip.p50.as_secs_f64()
            ),
            (BenchMode::Unary, ..) => {}
            _ => println!(
                "ratio gateway/direct (best of 1 and 4 channels): {:.2} off, {:.2} on",
                off.rate / ceiling.best,
                on_pooled.rate / ceiling.best
            ),
        }
    }
    for (side, pooled) in [(Side::Off, &off), (on, &on_pooled)] {
        println!(
            "gateway process, {}: peak RSS {} (highest of its runs), CPU {:.2} s under load",
            side.name(),
            report::megabytes(pooled.peak_rss_bytes),
            pooled.cpu_seconds
        );
    }
    for (side, pooled) in [(Side::Off, &off), (on, &on_pooled)] {
        let t = &pooled.tally;
        println!(
            "verified {}: {} acked, {} found in the history stream, {} missing, {} duplicated; {} failed calls",
            side.name(),
            t.acked,
            t.found,
            t.missing,
            t.duplicated,
            pooled.failed_calls
        );
        if let Some(failure) = &pooled.first_failure {
            println!("first failure, {}: {failure}", side.name());
        }
    }
    let passed = off_runs
        .iter()
        .chain(&on_runs)
        .all(|(records, measured)| measured.passed(*records));
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One side's phases taken together.
struct Pooled {
    rate: f64,
    latency: Option<Latency>,
    tally: Tally,
    failed_calls: u64,
    first_failure: Option<String>,
    cpu_seconds: f64,
    cpu_micros_per_record: f64,
    peak_rss_bytes: u64,
}

impl Pooled {
    fn of(runs: &[(u64, Measured)]) -> Pooled {
        let acked: usize = runs.iter().map(|(_, m)| m.outcome.acked.len()).sum();
        let elapsed: Duration = runs.iter().map(|(_, m)| m.outcome.elapsed).sum();
        let latencies = runs
            .iter()
            .flat_map(|(_, m)| m.outcome.latencies.iter().copied())
            .collect();
        let mut tally = Tally::default();
        for (_, m) in runs {
            tally.acked += m.tally.acked;
            tally.found += m.tally.found;
            tally.missing += m.tally.missing;
            tally.duplicated += m.tally.duplicated;
        }
        let processes: Vec<ProcessUse> = runs.iter().filter_map(|(_, m)| m.process).collect();
        let cpu_seconds: f64 = processes.iter().map(|p| p.cpu_seconds).sum();
        Pooled {
            rate: acked as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
            latency: Latency::of(latencies),
            tally,
            failed_calls: runs.iter().map(|(_, m)| m.outcome.failed_calls).sum(),
            first_failure: runs
                .iter()
                .find_map(|(_, m)| m.outcome.first_failure.clone()),
            cpu_seconds,
            cpu_micros_per_record: cpu_seconds * 1e6 / acked.max(1) as f64,
            peak_rss_bytes: processes
                .iter()
                .map(|p| p.peak_rss_bytes)
                .max()
                .unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_alternate_abba() {
        let order: Vec<&str> = (0..4).flat_map(|r| sides(r).map(Side::short)).collect();
        assert_eq!(order, ["off", "on", "on", "off", "off", "on", "on", "off"]);
    }
}
