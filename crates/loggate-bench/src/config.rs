//! `loggate-bench`'s command line: `bench` and `chaos`, the load and fault lab
//! that measures a `loggate` gateway from the outside.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use loggate::config::BrokerArg;

#[derive(Debug, Parser)]
#[command(
    name = "loggate-bench",
    version,
    about = "Load and fault tests for a loggate gateway: throughput against RabbitMQ's own ceiling, and loss checks"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure a gateway against RabbitMQ's own ceiling, and check nothing was lost.
    Bench(BenchArgs),
    /// Load a gateway, inject one fault, then check that every acknowledged
    /// record reached RabbitMQ.
    Chaos(ChaosArgs),
}

/// Which `loggate` binary the bench and chaos runs start.
#[derive(Debug, Clone, Args)]
pub struct GatewayBin {
    /// The `loggate` binary to start (default: the one next to this binary).
    #[arg(long, env = "LOGGATE_BIN")]
    pub gateway_bin: Option<PathBuf>,
}

/// The faults `loggate-bench chaos` can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fault {
    /// Stop RabbitMQ (`rabbitmqctl stop_app`) for --outage, then start it.
    Restart,
    /// `rabbitmqctl close_all_connections` in the run's vhost.
    CloseConnections,
    /// kill -9 the cluster node the gateway publishes through.
    KillNode,
    /// A memory alarm (`set_vm_memory_high_watermark 0`) for --outage.
    Alarm,
    /// Lock the gateway out of RabbitMQ (it spools), kill -9 it after half
    /// of --outage, let it back in and start it again on the same spool.
    KillGateway,
}

/// `loggate-bench chaos FAULT`: starts its own gateway (the `loggate` next to this binary) in a vhost of
/// its own, sends --rate records/s for --duration, injects the fault at
/// --fault-at, then reads the history stream back and counts every
/// acknowledged record. Exits 1 if one is missing. It runs `rabbitmqctl`, so
/// it needs to run where the broker does, as a user allowed to use it.
#[derive(Debug, Clone, Args)]
pub struct ChaosArgs {
    #[arg(value_enum)]
    pub fault: Fault,

    /// Records per second, over all clients.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate: u32,

    /// How long the load runs.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// When the fault starts, counted from the start of the load.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub fault_at: Duration,

    /// How long RabbitMQ stays stopped or alarmed (restart, alarm, kill-gateway).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub outage: Duration,

    /// Concurrent clients.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub concurrency: u32,

    /// Records per LogBatch call.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,

    /// RabbitMQ (repeat or comma-separate for a cluster's nodes). The run uses
    /// a vhost of its own on it, deleted afterwards.
    #[command(flatten)]
    pub broker: BrokerArg,

    /// The RabbitMQ node `rabbitmqctl -n` talks to (default: rabbitmqctl's
    /// own). kill-node kills the node the gateway publishes through.
    #[arg(long)]
    pub node: Option<String>,

    /// The gateway's spool directory (kill-gateway always has one; default:
    /// a fresh temporary directory, removed afterwards).
    #[arg(long)]
    pub spool_dir: Option<PathBuf>,

    /// Give the gateway a spool for every fault, not only kill-gateway.
    #[arg(long)]
    pub spool: bool,

    /// An extra `serve` flag for the gateway; repeat for more.
    #[arg(long = "gateway-arg", allow_hyphen_values = true)]
    pub gateway_args: Vec<String>,

    #[command(flatten)]
    pub gateway: GatewayBin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchMode {
    /// One Log call per record.
    Unary,
    /// LogBatch calls of --batch-size records.
    Batch,
    /// One LogStream per client, pipelining requests of --batch-size records.
    Stream,
    /// Live fan-out: --followers tails, each following one of --services,
    /// while records arrive at --rate for --seconds.
    Tail,
    /// Replay: --records published, then read back from the start by one tail,
    /// against lapin reading the same stream without decoding.
    Replay,
    /// LogBatch and OTLP `LogsService/Export` calls of --batch-size records,
    /// the same records, side by side against one gateway (--records each).
    Otlp,
}

/// `loggate-bench bench`: by default it starts its own gateway (the `loggate` next to this binary, with
/// unique exchange and stream names, deleted afterwards), so the numbers and
/// the loss check cover exactly this run.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value_t = BenchMode::Batch)]
    pub mode: BenchMode,

    /// Records to send through the gateway.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub records: u64,

    /// Calls in flight: concurrent clients, each making one call (or, in
    /// stream mode, holding one LogStream) at a time.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,

    /// HTTP/2 connections the clients share, client i on connection i mod N
    /// (default: one per client). gRPC clients usually multiplex every call
    /// over one connection: --connections 1.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: Option<u32>,

    /// Records per LogBatch call or LogStream request.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,

    /// Tail mode: live followers.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub followers: u32,

    /// Tail mode: services the records are spread over; follower i follows service i mod N
    /// (0 = every follower follows everything).
    #[arg(long, default_value_t = 100)]
    pub services: u32,

    /// Tail mode: records per second.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate: u32,

    /// Tail mode: how long records are sent.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Tail mode: follower 0 reads nothing for this long after it opens (a
    /// paused client), then everything it matched; reported on its own.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub pause_one: Option<Duration>,

    /// Requests each LogStream client keeps unanswered (its pipeline depth).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub stream_window: u32,

    /// Approximate size of one record's JSON body, in bytes.
    #[arg(long, default_value_t = 220, value_parser = clap::value_parser!(u32).range(200..=1_000_000))]
    pub record_bytes: u32,

    #[command(flatten)]
    pub broker: BrokerArg,

    /// Drive this running gateway instead of starting one (then give --history-queue).
    #[arg(long, requires = "history_queue")]
    pub server: Option<String>,

    /// The external gateway's history stream, read to check every acked record.
    #[arg(long)]
    pub history_queue: Option<String>,

    /// The external gateway's process id, for its RSS and CPU time.
    #[arg(long)]
    pub gateway_pid: Option<u32>,

    /// Bearer token sent with every call to the external gateway (one started
    /// with --auth-file). Not tied to --server: a shell that exports
    /// LOGGATE_TOKEN for the CLI must still run the bench's own gateway.
    #[arg(long, env = "LOGGATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// The CA (PEM) that signed an https:// --server's certificate (default:
    /// the system's roots).
    #[arg(long, requires = "server")]
    pub tls_ca: Option<PathBuf>,

    /// Measure what auth costs: start our own gateway without auth and with a
    /// generated token and auth file, one after the other, drive the same
    /// load (--records each) against both, verify both, and print both rows
    /// with the on/off ratios. Unary, batch and stream modes only.
    #[arg(long, conflicts_with = "server")]
    pub compare_auth: bool,

    /// With --compare-auth: the gateway with auth also serves TLS (a CA made
    /// for the run), so the comparison is plaintext against token over TLS.
    #[arg(long, requires = "compare_auth")]
    pub tls: bool,

    /// With --compare-auth: rounds of one run each way, in ABBA order (off,
    /// on, then on, off, …) so that a machine drifting over the run weighs on
    /// both sides alike; --records is split over the rounds.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,

    /// Passed to the spawned gateway: records packed per AMQP message.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub amqp_batch_records: u32,

    /// Skip the direct-publish ceiling (faster; no ratio).
    #[arg(long)]
    pub skip_direct: bool,

    /// A flag for the spawned gateway, e.g. --gateway-arg=--publish-channels=8; repeatable.
    #[arg(long = "gateway-arg", allow_hyphen_values = true)]
    pub gateway_args: Vec<String>,

    /// Records published directly to RabbitMQ for the ceiling (per channel count).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub direct_records: u64,

    #[command(flatten)]
    pub gateway: GatewayBin,
}

impl BenchArgs {
    /// The HTTP/2 connections the clients share: `--connections`, at most
    /// one per client; one per client when not given.
    pub fn connections(&self) -> u32 {
        self.connections
            .map_or(self.concurrency, |n| n.min(self.concurrency))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bench(args: &[&str]) -> BenchArgs {
        let cli =
            Cli::try_parse_from(["loggate-bench", "bench"].iter().chain(args)).expect("parses");
        match cli.command {
            Command::Bench(args) => args,
            Command::Chaos(_) => unreachable!("bench was given"),
        }
    }

    #[test]
    fn connections_default_to_one_per_client_and_never_exceed_them() {
        assert_eq!(bench(&["--concurrency", "8"]).connections(), 8);
        assert_eq!(
            bench(&["--concurrency", "8", "--connections", "1"]).connections(),
            1
        );
        assert_eq!(
            bench(&["--concurrency", "2", "--connections", "4"]).connections(),
            2
        );
        assert!(Cli::try_parse_from(["loggate-bench", "bench", "--connections", "0"]).is_err());
    }
}
