//! The faults themselves, and the `rabbitmqctl` they are made with.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

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

/// Injects the fault; returns the gateway now serving (a new one after
/// kill-gateway) and when the broker was back.
pub(super) async fn inject(
    run: &Run<'_>,
    rabbitmqctl: &Rabbitmqctl,
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
            rabbitmqctl.wait_running().await?;
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
            let pid = rabbitmqctl.os_pid(&node).await?;
            rabbitmqctl.avoid(&node).await?;
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
            rabbitmqctl
                .run(&["clear_permissions", "-p", vhost, "guest"])
                .await?;
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

/// `rabbitmqctl`, on the chosen node (moved to a survivor after kill-node).
pub(super) struct Rabbitmqctl {
    pub node: Mutex<Option<String>>,
}

impl Rabbitmqctl {
    fn node(&self) -> Option<String> {
        self.node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub async fn run(&self, args: &[&str]) -> Result<String, Error> {
        self.run_on(self.node().as_deref(), args).await
    }

    /// From now on, talk to a running node other than `victim`.
    async fn avoid(&self, victim: &str) -> Result<(), Error> {
        let running = self.run(&["eval", "rabbit_nodes:all_running()."]).await?;
        let survivor = running
            .trim()
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|node| node.trim().trim_matches('\''))
            .find(|node| !node.is_empty() && *node != victim)
            .ok_or_else(|| Error::Gateway(format!("no running node besides {victim}")))?
            .to_owned();
        *self
            .node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(survivor);
        Ok(())
    }

    async fn run_on(&self, node: Option<&str>, args: &[&str]) -> Result<String, Error> {
        let mut command = Command::new("rabbitmqctl");
        if let Some(node) = node {
            command.args(["-n", node]);
        }
        let output = tokio::time::timeout(
            Duration::from_secs(60),
            command.args(["-q"]).args(args).output(),
        )
        .await
        .map_err(|_| Error::Gateway(format!("rabbitmqctl {} took over 60 s", args.join(" "))))?
        .map_err(|e| Error::Gateway(format!("cannot run rabbitmqctl: {e}")))?;
        if !output.status.success() {
            return Err(Error::Gateway(format!(
                "rabbitmqctl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub async fn grant(&self, vhost: &str) -> Result<(), Error> {
        self.run(&["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"])
            .await
            .map(drop)
    }

    async fn wait_running(&self) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut command = Command::new("rabbitmq-diagnostics");
            if let Some(node) = self.node() {
                command.args(["-n", node.as_str()]);
            }
            let ok = command
                .args(["-q", "check_running"])
                .output()
                .await
                .is_ok_and(|o| o.status.success());
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Gateway(
                    "RabbitMQ did not come back within 60 s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The node a connection (found by a part of its name) is on; its pid,
    /// `<node.1.2.3>`, names it.
    async fn node_of_connection(&self, needle: &str) -> Result<String, Error> {
        // The client-given name is in the client properties (`name` is the address).
        let table = self
            .run(&["list_connections", "pid", "client_properties"])
            .await?;
        table
            .lines()
            .filter(|line| line.contains(needle))
            .find_map(|line| {
                let pid = line.split('\t').next()?.trim().trim_start_matches('<');
                let mut parts = pid.rsplitn(4, '.');
                let _ = (parts.next(), parts.next(), parts.next());
                parts.next().map(str::to_owned)
            })
            .ok_or_else(|| Error::Gateway(format!("no connection named {needle:?} on the cluster")))
    }

    /// The OS process id of `node`'s Erlang VM.
    async fn os_pid(&self, node: &str) -> Result<String, Error> {
        let out = self.run_on(Some(node), &["eval", "os:getpid()."]).await?;
        let pid = out.trim().trim_matches('"').to_owned();
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::Gateway(format!("unexpected pid {out:?} for {node}")));
        }
        Ok(pid)
    }
}
