//! The gateway under test as a process: spawning one of our own, and reading
//! its memory and CPU time from /proc.

use std::{path::Path, process::Stdio, time::Duration};

use loggate_testkit::spawn_serving;
use tokio::process::{Child, Command};

use crate::error::Error;

/// How long a gateway may take to bind its port (it waits for RabbitMQ first).
const START_WITHIN: Duration = Duration::from_secs(20);

/// A `loggate serve` started for this run, with names no one else uses.
pub struct SpawnedGateway {
    child: Child,
    pub url: String,
    /// Where it listens (for an `https://` URL when it serves TLS).
    pub address: std::net::SocketAddr,
    pub pid: u32,
    pub exchange: String,
    pub history_queue: String,
}

impl SpawnedGateway {
    /// Starts `bin serve` on a free loopback port (unless `extra` names one)
    /// and waits until it has bound it, learnt through `--address-file`.
    pub async fn start(
        bin: &Path,
        amqp_url: &str,
        tag: &str,
        extra: &[String],
    ) -> Result<SpawnedGateway, Error> {
        let exchange = format!("loggate-bench.{tag}");
        let history_queue = format!("loggate-bench.{tag}.history");
        let mut command = Command::new(bin);
        command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--exchange",
                &exchange,
                "--history-queue",
                &history_queue,
                "--instance",
                &format!("bench-{tag}"),
                "--broker-wait",
                "10s",
            ])
            .args(extra)
            .env("LOGGATE_AMQP_URL", amqp_url)
            // Auth and TLS are what the run passes in `extra`, never what the
            // shell happens to export: an auth-off side must really be off.
            .env_remove("LOGGATE_AUTH_FILE")
            .env_remove("LOGGATE_TLS_CERT")
            .env_remove("LOGGATE_TLS_KEY")
            .env_remove("LOGGATE_TLS_CLIENT_CA")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let (child, address) = spawn_serving(command, START_WITHIN)
            .await
            .map_err(|e| Error::Gateway(format!("{}: {e}", bin.display())))?;
        let pid = child
            .id()
            .ok_or_else(|| Error::Gateway("the gateway exited at once".into()))?;
        Ok(SpawnedGateway {
            child,
            url: format!("http://{address}"),
            address,
            pid,
            exchange,
            history_queue,
        })
    }

    /// SIGKILL: the gateway gets no chance to finish anything.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM, then wait for a clean exit.
    pub async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(12), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// A process's memory and CPU time, from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStat {
    /// Resident set now (VmRSS).
    pub rss_bytes: u64,
    /// Highest resident set since the process started (VmHWM).
    pub peak_rss_bytes: u64,
    /// User + system CPU time so far.
    pub cpu_seconds: f64,
}

/// Linux reports CPU times in clock ticks of USER_HZ, 100 on every mainstream
/// architecture.
const TICKS_PER_SECOND: f64 = 100.0;

impl ProcStat {
    pub fn read(pid: u32) -> Option<ProcStat> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib = |key: &str| -> Option<u64> {
            status
                .lines()
                .find(|l| l.starts_with(key))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
                .map(|k| k * 1024)
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which may itself contain spaces.
        let after_name = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some(ProcStat {
            rss_bytes: kib("VmRSS:")?,
            peak_rss_bytes: kib("VmHWM:")?,
            cpu_seconds: (utime + stime) / TICKS_PER_SECOND,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let stat = ProcStat::read(std::process::id()).expect("/proc is readable");
        assert!(stat.rss_bytes > 0);
        assert!(stat.peak_rss_bytes >= stat.rss_bytes);
    }
}
