//! `loggate-bench chaos FAULT`: steady load on a gateway of our own, one fault,
//! then the loss check: every record the gateway answered OK must be in the
//! history stream, and a live tail that stayed open must have seen it too.
//! Prints acked, found, missing, duplicated, the recovery time (broker back →
//! gateway SERVING), what the tail saw, and the gateway's peak RSS.
//!
//! Everything runs in a vhost of the run's own (deleted at the end), so the
//! faults that can be confined to it (close-connections, kill-gateway) touch
//! nothing else on the broker.

mod fault;
mod load;
mod observe;

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use loggate_testkit::Rabbitmqctl;
use time::OffsetDateTime;

use crate::bench::{
    report::megabytes,
    verify::{self, Tally},
};
use crate::config::{ChaosArgs, Fault};
use crate::error::Error;
use crate::process::SpawnedGateway;
use fault::{fault_name, inject, Run};
use load::Load;
use observe::{Follower, Watch, SAMPLE_EVERY};

/// Longest wait for the gateway to serve again once the load has ended.
const SETTLE: Duration = Duration::from_secs(60);

pub async fn run(args: ChaosArgs) -> Result<ExitCode, Error> {
    let tag = format!(
        "chaos-{}-{:x}",
        std::process::id(),
        OffsetDateTime::now_utc().unix_timestamp_nanos() % 0xffff_ffff
    );
    // kill-node moves it to a surviving node, which deletes the vhost.
    let mut rabbitmqctl = Rabbitmqctl::new(args.node.clone());
    let vhost = format!("loggate-{tag}");
    rabbitmqctl.run(&["add_vhost", &vhost]).await?;
    let outcome = run_in(&args, &tag, &vhost, &mut rabbitmqctl).await;
    if let Err(error) = rabbitmqctl.run(&["delete_vhost", &vhost]).await {
        eprintln!("loggate chaos: could not delete vhost {vhost}: {error}");
    }
    outcome
}

async fn run_in(
    args: &ChaosArgs,
    tag: &str,
    vhost: &str,
    rabbitmqctl: &mut Rabbitmqctl,
) -> Result<ExitCode, Error> {
    let bin = args.gateway.resolve()?;
    rabbitmqctl.grant(vhost).await?;
    let urls: Vec<String> = args
        .broker
        .amqp_url
        .iter()
        .map(|url| in_vhost(url, vhost))
        .collect();
    let joined = urls.join(",");

    // A fixed port, so a restarted gateway is where the clients left it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| Error::Gateway(format!("no free port: {e}")))?
        .port();
    let temporary_spool = std::env::temp_dir().join(format!("loggate-{tag}-spool"));
    let spool = (args.spool || args.fault == Fault::KillGateway)
        .then(|| args.spool_dir.clone().unwrap_or(temporary_spool.clone()));
    let mut extra = vec!["--listen".to_owned(), format!("127.0.0.1:{port}")];
    if let Some(dir) = &spool {
        extra.extend(["--spool-dir".to_owned(), dir.display().to_string()]);
    }
    extra.extend(args.gateway_args.iter().cloned());

    println!(
        "loggate chaos: fault={} rate={}/s duration={} fault-at={} outage={} brokers={} spool={}",
        fault_name(args.fault),
        args.rate,
        humantime::format_duration(args.duration),
        humantime::format_duration(args.fault_at),
        humantime::format_duration(args.outage),
        urls.len(),
        spool
            .as_ref()
            .map_or("off".to_owned(), |d| d.display().to_string()),
    );
    let gateway = SpawnedGateway::start(&bin, &joined, tag, &extra).await?;
    let history_queue = gateway.history_queue.clone();
    let url = gateway.url.clone();
    let watch = Watch::start(&url, gateway.pid);

    // A live tail follows the run through the fault: it should see every
    // acknowledged record too (tails resume after the broker comes back).
    let follower = Follower::start(&url).await?;
    let load = Load::start(&url, args);
    let fault_at = load.started + args.fault_at;
    tokio::time::sleep(args.fault_at).await;
    let run = Run {
        args,
        tag,
        vhost,
        urls: &joined,
        extra: &extra,
        bin: &bin,
    };
    let injected = inject(&run, rabbitmqctl, gateway, &watch).await;
    let (gateway, broker_back) = match injected {
        Ok(done) => done,
        Err(error) => {
            load.stop().await;
            return Err(error);
        }
    };
    let elapsed = load.started.elapsed();
    if let Some(rest) = args.duration.checked_sub(elapsed) {
        tokio::time::sleep(rest).await;
    }
    let sent = load.stop().await;

    // Let the gateway recover and drain before reading the history back.
    let recovered = watch.serving_after(broker_back, SETTLE).await;
    let recovery = recovered.map(|at| at.saturating_duration_since(broker_back));
    let seen = read_back(&urls, &history_queue, &sent.acked).await?;
    let followed = follower.finish(&sent.acked).await;
    let tally = Tally::of(&sent.acked, &seen);
    let peak_rss = watch.stop();
    gateway.stop().await;
    if spool.is_some() && args.spool_dir.is_none() {
        let _ = std::fs::remove_dir_all(&temporary_spool);
    }

    let seconds = sent.elapsed.as_secs_f64();
    if let Some((first, last)) = sent.failures_between {
        let since_fault = |at: Instant| at.saturating_duration_since(fault_at).as_secs_f64();
        println!(
            "refused:  calls failed from {:.2} s to {:.2} s after the fault began",
            since_fault(first),
            since_fault(last)
        );
    }
    println!(
        "load:     {} records acked in {seconds:.1} s ({:.0}/s); {} answered spooled; {} calls failed{}",
        sent.acked.len(),
        sent.acked.len() as f64 / seconds.max(0.001),
        sent.spooled,
        sent.failed,
        sent.first_failure
            .as_ref()
            .map_or(String::new(), |f| format!(" (first: {f})")),
    );
    match recovery {
        Some(took) if took.is_zero() => println!(
            "recovery: gateway SERVING when the broker was back (health is sampled every {} ms)",
            SAMPLE_EVERY.as_millis()
        ),
        Some(took) => println!(
            "recovery: gateway SERVING {:.2} s after the broker was back",
            took.as_secs_f64()
        ),
        None => println!(
            "recovery: the gateway was not SERVING within {} of the broker being back",
            humantime::format_duration(SETTLE)
        ),
    }
    println!(
        "history:  acked {}  found {}  missing {}  duplicated {}",
        tally.acked, tally.found, tally.missing, tally.duplicated
    );
    match &followed.ended {
        None => println!(
            "tail:     a live tail saw {} of the acked records ({} missing)",
            sent.acked.len() as u64 - followed.missing,
            followed.missing
        ),
        Some(status) => println!(
            "tail:     the live tail ended: {status} (it saw {} of the acked records)",
            sent.acked.len() as u64 - followed.missing
        ),
    }
    println!("gateway:  peak RSS {}", megabytes(peak_rss));
    if tally.missing > 0 {
        eprintln!(
            "loggate chaos: {} acknowledged records are missing",
            tally.missing
        );
        return Ok(ExitCode::FAILURE);
    }
    if followed.ended.is_none() && followed.missing > 0 {
        eprintln!(
            "loggate chaos: the live tail stayed open but missed {} acknowledged records",
            followed.missing
        );
        return Ok(ExitCode::FAILURE);
    }
    if recovery.is_none() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `url` with its vhost replaced by `vhost`.
fn in_vhost(url: &str, vhost: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{}", &base[..path_start], vhost);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Reads the history back from the first broker that answers.
async fn read_back(
    urls: &[String],
    queue: &str,
    acked: &[String],
) -> Result<std::collections::HashMap<String, u32>, Error> {
    let mut last = None;
    for url in urls {
        match verify::read_stream(
            url,
            queue,
            lapin::types::AMQPValue::LongString("first".into()),
            acked,
            Duration::from_secs(15),
        )
        .await
        {
            Ok(seen) => return Ok(seen),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| Error::Gateway("no --amqp-url".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vhost_replaces_the_urls_path() {
        assert_eq!(
            in_vhost("amqp://guest:guest@127.0.0.1:5672/%2f", "v1"),
            "amqp://guest:guest@127.0.0.1:5672/v1"
        );
        assert_eq!(
            in_vhost("amqp://127.0.0.1:5672", "v"),
            "amqp://127.0.0.1:5672/v"
        );
        assert_eq!(
            in_vhost("amqp://h:1/x?frame_max=8192", "v"),
            "amqp://h:1/v?frame_max=8192"
        );
    }
}
