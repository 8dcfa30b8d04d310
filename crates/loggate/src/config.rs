//! Command-line and environment configuration (clap derive). Every flag can
//! also be set through a `LOGGATE_*` environment variable; the doc comments
//! are the `--help` text.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::record::Level;

#[derive(Debug, Parser)]
#[command(
    name = "loggate",
    version,
    about = "A gRPC logging gateway in front of RabbitMQ"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(ServeConfig),
    /// Send one record and print its id.
    Log(LogArgs),
    /// Follow records live.
    Tail(TailArgs),
}

/// The gateway's configuration.
#[derive(Debug, Clone, Parser)]
// A flag given twice takes the later value (a wrapper script's defaults can
// be overridden by appending).
#[command(name = "loggate serve", args_override_self = true)]
pub struct ServeConfig {
    /// Address to serve gRPC on (port 0: any free port; see --address-file).
    #[arg(long, env = "LOGGATE_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Once listening, write the bound address (`127.0.0.1:43117`, one line)
    /// to this file, atomically: how scripts, supervisors and tests learn the
    /// port chosen for `--listen …:0`.
    #[arg(long, env = "LOGGATE_ADDRESS_FILE")]
    pub address_file: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub broker: BrokerArg,

    /// Topic exchange the records are published to; declared at start.
    #[arg(long, env = "LOGGATE_EXCHANGE", default_value = "loggate", value_parser = amqp_name)]
    pub exchange: String,

    /// Stream queue bound to the exchange with `#`: every record's history, read by Tail.
    #[arg(long, env = "LOGGATE_HISTORY_QUEUE", default_value = "loggate.history", value_parser = amqp_name)]
    pub history_queue: String,

    /// How long the history stream keeps records (RabbitMQ x-max-age: 7D, 12h, 30m, 1Y…).
    #[arg(long, env = "LOGGATE_HISTORY_MAX_AGE", default_value = "7D", value_parser = max_age)]
    pub history_max_age: String,

    /// How many bytes the history stream keeps (1GB, 500MB, 2GiB, or a number of bytes).
    #[arg(long, env = "LOGGATE_HISTORY_MAX_BYTES", default_value = "1GB", value_parser = byte_size)]
    pub history_max_bytes: u64,

    /// Size of the history stream's segment files (x-stream-max-segment-size-bytes).
    /// Retention removes whole segments; RabbitMQ's default is 500MB.
    #[arg(long, env = "LOGGATE_HISTORY_SEGMENT_BYTES", value_parser = byte_size)]
    pub history_segment_bytes: Option<u64>,

    /// Replicas of the history stream on a RabbitMQ cluster
    /// (x-initial-cluster-size), taken when the stream is first declared.
    /// RabbitMQ places at most one per node, so the default of 3 means
    /// min(3, cluster size): a single node gets one.
    #[arg(long, env = "LOGGATE_HISTORY_REPLICAS", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=255))]
    pub history_replicas: u16,

    /// Spool records to this directory when RabbitMQ is unreachable or
    /// blocked, and answer OK with `spooled = true` once they are fsynced; a
    /// background task publishes them, in order, when RabbitMQ is back. With
    /// a spool the gateway also starts when RabbitMQ is down. Off by default.
    #[arg(long, env = "LOGGATE_SPOOL_DIR")]
    pub spool_dir: Option<std::path::PathBuf>,

    /// Most bytes the spool holds; past it calls get RESOURCE_EXHAUSTED.
    #[arg(long, env = "LOGGATE_SPOOL_MAX_BYTES", default_value = "1GiB", value_parser = byte_size)]
    pub spool_max_bytes: u64,

    /// This instance's name, stamped on every record it accepts. Default: the host name.
    #[arg(long, env = "LOGGATE_INSTANCE")]
    pub instance: Option<String>,

    /// How long to wait for RabbitMQ at start before giving up.
    #[arg(long, env = "LOGGATE_BROKER_WAIT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub broker_wait: Duration,

    /// How long a call waits for RabbitMQ's confirms before answering UNAVAILABLE.
    #[arg(long, env = "LOGGATE_PUBLISH_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub publish_timeout: Duration,

    /// Most records in one LogBatch call.
    #[arg(long, env = "LOGGATE_MAX_BATCH", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_batch: u32,

    /// Largest record message, in bytes.
    #[arg(long, env = "LOGGATE_MAX_MESSAGE_BYTES", default_value = "64KiB", value_parser = byte_size)]
    pub max_message_bytes: u64,

    /// Confirm-mode channels that concurrent calls share.
    #[arg(long, env = "LOGGATE_PUBLISH_CHANNELS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub publish_channels: u16,

    /// Pack up to N records that share a routing key into one AMQP message
    /// (application/x-ndjson). 1 = one message per record. Only for exchanges
    /// whose consumers understand the packed form (loggate's Tail does).
    #[arg(long, env = "LOGGATE_AMQP_BATCH_RECORDS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub amqp_batch_records: u32,

    /// Records one LogStream may have published but not yet confirmed; past
    /// it, the gateway stops reading that stream (gRPC flow control pushes back).
    #[arg(long, env = "LOGGATE_STREAM_INFLIGHT", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub stream_inflight: u32,

    /// Records all calls together may have published but not yet confirmed.
    #[arg(long, env = "LOGGATE_MAX_INFLIGHT", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_inflight: u32,

    /// Unacknowledged stream deliveries per Tail (the broker's prefetch).
    #[arg(long, env = "LOGGATE_TAIL_PREFETCH", default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..))]
    pub tail_prefetch: u16,

    /// Most Tail calls open at once; more get RESOURCE_EXHAUSTED.
    #[arg(long, env = "LOGGATE_MAX_TAILS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tails: u32,

    /// Records the shared live consumer queues per live Tail; a Tail whose
    /// queue fills is moved to a stream consumer of its own, losing nothing.
    #[arg(long, env = "LOGGATE_TAIL_HUB_QUEUE", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub tail_hub_queue: u32,

    /// How often a Tail gets a Heartbeat, so clients can tell quiet from dead.
    #[arg(long, env = "LOGGATE_TAIL_HEARTBEAT", default_value = "15s", value_parser = positive_duration)]
    pub tail_heartbeat: Duration,

    /// How long a Tail whose broker connection was lost waits for RabbitMQ to
    /// come back (it then resumes where it was) before it ends with UNAVAILABLE.
    #[arg(long, env = "LOGGATE_TAIL_RESUME_WAIT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub tail_resume_wait: Duration,

    /// Records buffered per Tail while its client is slow.
    #[arg(long, env = "LOGGATE_TAIL_BUFFER", default_value_t = 128, value_parser = clap::value_parser!(u16).range(1..))]
    pub tail_buffer: u16,

    /// Async worker threads: 0 = one per core; 1 = a single-threaded runtime.
    /// (AMQP I/O runs on lapin's own threads either way.)
    #[arg(long, env = "LOGGATE_THREADS", default_value_t = 0)]
    pub threads: usize,

    /// How long shutdown waits for open calls and tails before it gives up.
    #[arg(long, env = "LOGGATE_SHUTDOWN_GRACE", default_value = "8s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
}

impl ServeConfig {
    /// `--instance`, or the host name.
    pub fn instance_name(&self) -> String {
        self.instance.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|name| name.trim().to_owned())
                .ok()
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| "loggate".to_owned())
        })
    }
}

/// Where RabbitMQ is: for `serve`, and for `loggate-bench` (its direct
/// ceiling, its loss check and the gateway it starts).
#[derive(Debug, Clone, Args)]
pub struct BrokerArg {
    /// RabbitMQ's AMQP URL (the password is never logged). Repeat it, or give
    /// several comma-separated, for the nodes of a cluster: the gateway uses
    /// the first that answers and fails over to the next.
    #[arg(
        long,
        env = "LOGGATE_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub amqp_url: Vec<String>,
}

impl BrokerArg {
    /// The first URL: where `bench` declares, publishes directly and reads back.
    pub fn primary(&self) -> &str {
        self.amqp_url.first().map_or("", String::as_str)
    }
}

/// Where the client subcommands find the gateway.
#[derive(Debug, Clone, Args)]
pub struct ServerArg {
    /// The gateway's address.
    #[arg(long, env = "LOGGATE_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
}

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    #[command(flatten)]
    pub server: ServerArg,

    /// The emitting service (1..64 of A-Z a-z 0-9 _ -).
    #[arg(long, env = "LOGGATE_SERVICE")]
    pub service: String,

    /// trace, debug, info, warn, error or fatal.
    #[arg(long, env = "LOGGATE_LEVEL", default_value = "info", value_parser = level)]
    pub level: Level,

    /// Host, pod or instance.
    #[arg(long, env = "LOGGATE_NODE")]
    pub node: Option<String>,

    /// An attribute, as key=value; repeat for more.
    #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = key_value)]
    pub attributes: Vec<(String, String)>,

    /// W3C trace id (32 lowercase hex digits).
    #[arg(long, env = "LOGGATE_TRACE_ID")]
    pub trace_id: Option<String>,

    /// W3C span id (16 lowercase hex digits); needs --trace-id.
    #[arg(long)]
    pub span_id: Option<String>,

    /// Idempotency key; the gateway assigns a UUIDv7 when absent.
    #[arg(long)]
    pub id: Option<String>,

    /// The message.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// `time level service node message k=v…`, level coloured on a terminal.
    Text,
    /// The AMQP body form: one JSON object per line.
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub server: ServerArg,

    /// Only this service; repeat for more.
    #[arg(long = "service")]
    pub services: Vec<String>,

    /// Only this level and above.
    #[arg(long, env = "LOGGATE_TAIL_LEVEL", value_parser = level)]
    pub level: Option<Level>,

    /// Only this node; repeat for more.
    #[arg(long = "node")]
    pub nodes: Vec<String>,

    /// Only records of this trace.
    #[arg(long)]
    pub trace_id: Option<String>,

    /// Only records with this attribute, as key=value; repeat for more (all must match).
    #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = key_value)]
    pub attributes: Vec<(String, String)>,

    /// Only records whose message contains this text.
    #[arg(long)]
    pub contains: Option<String>,

    /// Output format.
    #[arg(long, env = "LOGGATE_OUTPUT", value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// Start with records that arrived this long ago (15m, 2h, 1day…).
    #[arg(long, group = "start", value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,

    /// Start with records that arrived at this time or later (RFC 3339, e.g. 2026-11-26T02:00:00Z).
    #[arg(long, group = "start", value_parser = rfc3339)]
    pub start_time: Option<time::OffsetDateTime>,

    /// Start with the oldest record still retained.
    #[arg(long, group = "start")]
    pub from_start: bool,

    /// Continue right after the record this token came with (printed on Ctrl-C).
    #[arg(long, group = "start", value_name = "TOKEN")]
    pub resume: Option<String>,

    /// Stop after this many records.
    #[arg(long)]
    pub limit: Option<u32>,

    /// Print what the history held when the tail started, then exit (needs a start flag).
    #[arg(long, requires = "start")]
    pub history_only: bool,

    /// When the gateway goes away, reconnect and continue where the tail was.
    #[arg(long)]
    pub follow_reconnect: bool,
}

fn level(word: &str) -> Result<Level, String> {
    Level::from_word(&word.to_ascii_lowercase())
        .ok_or_else(|| "expected trace, debug, info, warn, error or fatal".to_owned())
}

/// A duration greater than zero (a period or a timeout that can elapse).
fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be more than 0".to_owned());
    }
    Ok(duration)
}

fn rfc3339(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("expected an RFC 3339 time such as 2026-11-26T02:00:00Z: {e}"))
}

fn key_value(pair: &str) -> Result<(String, String), String> {
    match pair.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err("expected KEY=VALUE with a non-empty key".to_owned()),
    }
}

/// Exchange and queue names are AMQP short strings.
fn amqp_name(name: &str) -> Result<String, String> {
    if name.is_empty() || name.len() > 255 {
        return Err("must be 1..255 bytes".to_owned());
    }
    if name.starts_with("amq.") {
        return Err("names starting with \"amq.\" are reserved by RabbitMQ".to_owned());
    }
    Ok(name.to_owned())
}

/// RabbitMQ's x-max-age: a positive number followed by Y, M, D, h, m or s.
fn max_age(age: &str) -> Result<String, String> {
    let split = age.len().saturating_sub(1);
    let (number, unit) = age.split_at(split);
    let valid = matches!(unit, "Y" | "M" | "D" | "h" | "m" | "s")
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
        && number.parse::<u64>().is_ok_and(|n| n > 0);
    if valid {
        Ok(age.to_owned())
    } else {
        Err("expected a number and a unit Y, M, D, h, m or s, such as 7D or 12h".to_owned())
    }
}

/// `1GB`, `500MB`, `64KiB`, `2GiB` or a plain number of bytes.
fn byte_size(size: &str) -> Result<u64, String> {
    let size = size.trim();
    let digits = size.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = size.split_at(digits);
    let number: u64 = number.parse().map_err(|_| {
        "expected a number of bytes, optionally with a unit (KB, MB, GB, KiB, MiB, GiB)".to_owned()
    })?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => {
            return Err(format!(
                "unknown unit {other:?}; use KB, MB, GB, KiB, MiB or GiB"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .filter(|&bytes| bytes > 0)
        .ok_or_else(|| "must be more than 0 and fit in 64 bits".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_readme() {
        let config = ServeConfig::try_parse_from(["serve"]).expect("defaults parse");
        assert_eq!(config.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(
            config.broker.amqp_url,
            ["amqp://guest:guest@127.0.0.1:5672/%2f"]
        );
        assert_eq!(config.exchange, "loggate");
        assert_eq!(config.history_queue, "loggate.history");
        assert_eq!(config.history_max_age, "7D");
        assert_eq!(config.history_max_bytes, 1_000_000_000);
        assert_eq!(config.broker_wait, Duration::from_secs(15));
        assert_eq!(config.publish_timeout, Duration::from_secs(10));
        assert_eq!(config.max_batch, 1000);
        assert_eq!(config.max_message_bytes, 64 * 1024);
    }

    #[test]
    fn sizes_and_ages_are_checked() {
        assert_eq!(byte_size("500MB"), Ok(500_000_000));
        assert_eq!(byte_size("2GiB"), Ok(2 << 30));
        assert_eq!(byte_size("12345"), Ok(12345));
        assert!(byte_size("lots").is_err());
        assert!(byte_size("0").is_err());
        assert!(byte_size("1PB").is_err());
        assert_eq!(max_age("7D"), Ok("7D".to_owned()));
        for bad in ["", "D", "7", "7d", "0h", "-1h", "1.5h"] {
            assert!(max_age(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn periods_must_be_positive() {
        assert!(ServeConfig::try_parse_from(["serve", "--tail-heartbeat", "0s"]).is_err());
        assert!(ServeConfig::try_parse_from(["serve", "--publish-timeout", "0ms"]).is_err());
        assert!(ServeConfig::try_parse_from(["serve", "--tail-heartbeat", "250ms"]).is_ok());
    }

    #[test]
    fn attributes_need_a_key() {
        assert_eq!(key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(key_value("a="), Ok(("a".into(), String::new())));
        assert!(key_value("=b").is_err());
        assert!(key_value("ab").is_err());
    }
}
