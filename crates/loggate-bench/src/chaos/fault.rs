//! The faults themselves, made with the testkit's `rabbitmqctl`.

use std::time::{Duration, Instant};

use loggate_testkit::Rabbitmqctl;
use tokio::process::Command;

use super::observe::Watch;
use crate::config::{ChaosArgs, Fault};
use crate::error::Error;
use crate::process::{ProcStat, SpawnedGateway};

/// What `inject` needs to know about the run.
pub(super) struct Run<'a> {
    pub args: &'a ChaosArgs,
    pub tag: &'a str,
    pub vhost: &'a str,
    /// Every broker URL, comma-separated, in the run's vhost.
    pub urls: &'a str,
    /// The gateway's extra `serve` flags (to start it again the same way).
    pub extra: &'a [String],
    /// The `loggate` binary (to start it again).
    pub bin: &'a std::path::Path,
}

/// Longest a broker stopped with `stop_app` may take to run again.
const BACK_WITHIN: Duration = Duration::from_secs(60);

/// Injects the fault; returns the gateway now serving (a new one after
/// kill-gateway) and when the broker was back. After kill-node,
/// `rabbitmqctl` talks to a surviving node.
pub(super) async fn inject(
    run: &Run<'_>,
    rabbitmqctl: &mut Rabbitmqctl,
    gateway: SpawnedGateway,
    watch: &Watch,
) -> Result<(SpawnedGateway, Instant), Error> {
    let Run {
        args,
        tag,
        vhost,
        urls,
        extra,
        bin,
    } = *run;
    let at = |what: &str| println!("fault:    {what}");
    match args.fault {
        Fault::Restart => {
            at("rabbitmqctl stop_app");
            rabbitmqctl.run(&["stop_app"]).await?;
            tokio::time::sleep(args.outage).await;
            rabbitmqctl.run(&["start_app"]).await?;
            // start_app returns once the broker runs: that is "back".
            let back = Instant::now();
            rabbitmqctl.wait_running(BACK_WITHIN).await?;
            at("rabbitmqctl start_app: RabbitMQ is back");
            return Ok((gateway, back));
        }
        Fault::CloseConnections => {
            at("rabbitmqctl close_all_connections in the run's vhost");
            // The broker never went away: recovery counts from the cut.
            let cut = Instant::now();
            rabbitmqctl
                .run(&["close_all_connections", "-p", vhost, "loggate chaos"])
                .await?;
            return Ok((gateway, cut));
        }
        Fault::KillNode => {
            let node = rabbitmqctl
                .node_of_connection(&format!("bench-{tag} publish"))
                .await?;
            let pid = Rabbitmqctl::on(&node).os_pid().await?;
            *rabbitmqctl = rabbitmqctl.survivor_of(&node).await?;
            at(&format!(
                "kill -9 {pid} (node {node}, where the gateway publishes)"
            ));
            let killed = Command::new("kill")
                .args(["-9", &pid])
                .status()
                .await
                .map_err(|e| Error::Gateway(format!("kill: {e}")))?;
            if !killed.success() {
                return Err(Error::Gateway(format!("kill -9 {pid} failed")));
            }
            println!("          (the node stays down; restart it with scripts/rabbitmq-cluster start-node)");
        }
        Fault::Alarm => {
            let previous = rabbitmqctl
                .run(&["eval", "vm_memory_monitor:get_vm_memory_high_watermark()."])
                .await?;
            let previous = previous.trim().to_owned();
            at("memory alarm: set_vm_memory_high_watermark 0");
            rabbitmqctl
                .run(&["set_vm_memory_high_watermark", "0"])
                .await?;
            tokio::time::sleep(args.outage).await;
            let restore = if previous.starts_with("{absolute") {
                let bytes = previous
                    .trim_matches(|c| c == '{' || c == '}')
                    .split(',')
                    .nth(1)
                    .unwrap_or("0")
                    .trim()
                    .to_owned();
                rabbitmqctl
                    .run(&["set_vm_memory_high_watermark", "absolute", &bytes])
                    .await
            } else {
                rabbitmqctl
                    .run(&["set_vm_memory_high_watermark", &previous])
                    .await
            };
            restore?;
            at(&format!("watermark restored to {previous}"));
        }
        Fault::KillGateway => {
            at("the gateway is locked out of RabbitMQ: it spools");
            rabbitmqctl.revoke(vhost).await?;
            rabbitmqctl
                .run(&["close_all_connections", "-p", vhost, "loggate chaos"])
                .await?;
            tokio::time::sleep(args.outage / 2).await;
            let peak = ProcStat::read(gateway.pid).map_or(0, |s| s.peak_rss_bytes);
            watch.note_rss(peak);
            at("kill -9 the gateway");
            gateway.kill().await;
            tokio::time::sleep(args.outage / 2).await;
            rabbitmqctl.grant(vhost).await?;
            let back = Instant::now();
            at("RabbitMQ lets the gateway in; starting it again on the same spool");
            let restarted = SpawnedGateway::start(bin, urls, tag, extra).await?;
            watch.follow(restarted.pid);
            return Ok((restarted, back));
        }
    }
    Ok((gateway, Instant::now()))
}

pub(super) fn fault_name(fault: Fault) -> &'static str {
    match fault {
        Fault::Restart => "restart",
        Fault::CloseConnections => "close-connections",
        Fault::KillNode => "kill-node",
        Fault::Alarm => "alarm",
        Fault::KillGateway => "kill-gateway",
    }
}
