//! `loggate serve`'s flags, in groups: each group is one `--help` heading and
//! turns itself into the settings of the module it configures.
//!
//! Over 400 lines because it is a list of flags, each with the doc comment
//! that is its `--help` text; one struct per heading, and tests at the end.

use std::{
    net::SocketAddr,
    num::{NonZeroU16, NonZeroUsize},
    path::PathBuf,
    time::Duration,
};

use clap::{builder::TypedValueParser as _, Args, Parser};

use super::file::ConfigFileArg;
use super::parse::{amqp_name, byte_size, count, max_age, memory_size, positive_duration};
use super::security::SecurityArgs;
use crate::api::{CallLimits, TailSettings};
use crate::api::{QuotaSettings, Rate};
use crate::broker::{PublisherSettings, Retention, Topology};
use crate::proto::codec::MOST_RECORDS;
use crate::record::Limits;
use crate::spool::SpoolSettings;

/// The gateway's configuration.
#[derive(Debug, Clone, Parser)]
// A flag given twice takes the later value (a wrapper script's defaults can
// be overridden by appending).
#[command(name = "loggate serve", args_override_self = true)]
pub struct ServeConfig {
    /// `--config`: read by `config::file::parse`, which puts the file's
    /// settings below flags and environment variables (clap alone ignores it).
    #[command(flatten)]
    pub file: ConfigFileArg,
    #[command(flatten)]
    pub server: ListenArgs,
    #[command(flatten)]
    pub security: SecurityArgs,
    #[command(flatten)]
    pub rabbitmq: RabbitMqArgs,
    #[command(flatten)]
    pub history: HistoryArgs,
    #[command(flatten)]
    pub limits: LimitsArgs,
    #[command(flatten)]
    pub tails: TailsArgs,
    #[command(flatten)]
    pub spool: SpoolArgs,
    #[command(flatten)]
    pub observability: ObservabilityArgs,
}

impl ServeConfig {
    /// The exchange and the history stream behind it, as declared at start.
    pub fn topology(&self) -> Topology {
        Topology {
            exchange: self.rabbitmq.exchange.clone(),
            history_queue: self.history.history_queue.clone(),
            retention: self.history.retention(),
            replicas: self.history.history_replicas,
        }
    }
}

/// Where and how the gateway serves (the `server` module).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Serving")]
pub struct ListenArgs {
    /// Address to serve gRPC on (port 0: any free port; see --address-file).
    #[arg(long, env = "LOGGATE_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Once listening, write the bound address (`127.0.0.1:43117`, one line)
    /// to this file, atomically: how scripts, supervisors and tests learn the
    /// port chosen for `--listen …:0`.
    #[arg(long, env = "LOGGATE_ADDRESS_FILE")]
    pub address_file: Option<PathBuf>,

    /// Serve the live-tail web page (/) and its API (/api/tail, /api/stats)
    /// on this address: HTTP/1.1, over TLS with the gRPC port's certificate
    /// when --tls-cert is given, behind the same --auth-file. May name the
    /// --metrics-listen address: one listener then serves both. Off by default.
    #[arg(long, env = "LOGGATE_HTTP_LISTEN", value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,

    /// This instance's name, stamped on every record it accepts. Default: the host name.
    #[arg(long, env = "LOGGATE_INSTANCE")]
    pub instance: Option<String>,

    /// Async worker threads: 0 = one per core; 1 = a single-threaded runtime.
    /// (AMQP I/O runs on lapin's own threads either way.)
    #[arg(long, env = "LOGGATE_THREADS", default_value_t = 0)]
    pub threads: usize,

    /// How long shutdown waits for open calls and tails before it gives up.
    #[arg(long, env = "LOGGATE_SHUTDOWN_GRACE", default_value = "8s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
}

impl ListenArgs {
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
/// ceiling, its loss check and the gateway it starts). Its `Debug` hides the
/// URLs' passwords.
#[derive(Clone, Args)]
pub struct BrokerArg {
    /// RabbitMQ's AMQP URL (the password is never logged); amqps:// for TLS.
    /// Repeat it, or give several comma-separated, for the nodes of a
    /// cluster: the gateway uses the first that answers and fails over to
    /// the next. To keep the password out of `ps`, use --amqp-url-file.
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

impl std::fmt::Debug for BrokerArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<String> = self
            .amqp_url
            .iter()
            .map(|url| crate::broker::redact_url(url))
            .collect();
        f.debug_struct("BrokerArg")
            .field("amqp_url", &shown)
            .finish()
    }
}

/// The broker connections and publishing (the `broker` module).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "RabbitMQ")]
pub struct RabbitMqArgs {
    #[command(flatten)]
    pub broker: BrokerArg,

    /// Read the AMQP URL(s) from this file instead of --amqp-url: one per
    /// line or comma-separated; blank lines and lines starting with # are
    /// skipped. Keeps the password out of `ps` and the environment. Cannot
    /// be combined with --amqp-url (or LOGGATE_AMQP_URL).
    #[arg(
        long,
        env = "LOGGATE_AMQP_URL_FILE",
        value_name = "PATH",
        conflicts_with = "amqp_url"
    )]
    pub amqp_url_file: Option<PathBuf>,

    /// For amqps:// URLs: trust RabbitMQ certificates signed by this CA (a
    /// PEM file), as well as the system's roots (which amqps:// trusts by
    /// default). Refused with amqp:// URLs, which would not use it.
    #[arg(long, env = "LOGGATE_AMQP_CA", value_name = "PEM")]
    pub amqp_ca: Option<PathBuf>,

    /// For amqps:// URLs: the certificate (PEM) to present to RabbitMQ, for
    /// brokers that check client certificates. Needs --amqp-client-key.
    #[arg(
        long,
        env = "LOGGATE_AMQP_CLIENT_CERT",
        value_name = "PEM",
        requires = "amqp_client_key"
    )]
    pub amqp_client_cert: Option<PathBuf>,

    /// The private key (unencrypted PEM) of --amqp-client-cert.
    #[arg(
        long,
        env = "LOGGATE_AMQP_CLIENT_KEY",
        value_name = "PEM",
        requires = "amqp_client_cert"
    )]
    pub amqp_client_key: Option<PathBuf>,

    /// Topic exchange the records are published to; declared at start.
    #[arg(long, env = "LOGGATE_EXCHANGE", default_value = "loggate", value_parser = amqp_name)]
    pub exchange: String,

    /// How long to wait for RabbitMQ at start before giving up.
    #[arg(long, env = "LOGGATE_BROKER_WAIT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub broker_wait: Duration,

    /// How long a call waits for RabbitMQ's confirms before answering UNAVAILABLE.
    #[arg(long, env = "LOGGATE_PUBLISH_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub publish_timeout: Duration,

    /// Confirm-mode channels that concurrent calls share.
    #[arg(long, env = "LOGGATE_PUBLISH_CHANNELS", default_value = "4", value_parser = count(clap::value_parser!(u16).range(1..=256)))]
    pub publish_channels: NonZeroUsize,

    /// Pack up to N records that share a routing key into one AMQP message
    /// (application/x-ndjson). 1 = one message per record. Only for exchanges
    /// whose consumers understand the packed form (loggate's Tail does).
    #[arg(long, env = "LOGGATE_AMQP_BATCH_RECORDS", default_value = "1", value_parser = count(clap::value_parser!(u32).range(1..=10_000)))]
    pub amqp_batch_records: NonZeroUsize,

    /// Records all calls together may have published but not yet confirmed.
    #[arg(long, env = "LOGGATE_MAX_INFLIGHT", default_value = "10000", value_parser = count(clap::value_parser!(u32).range(1..)))]
    pub max_inflight: NonZeroUsize,
}

impl RabbitMqArgs {
    /// The brokers to connect to: from --amqp-url-file, else --amqp-url,
    /// with the amqps:// TLS settings read from their files. Errors never
    /// show a URL's password.
    pub fn brokers(&self) -> Result<crate::broker::Brokers, String> {
        let brokers = match &self.amqp_url_file {
            Some(path) => crate::broker::Brokers::parse_file(path)?,
            None => crate::broker::Brokers::parse(&self.broker.amqp_url)
                .map_err(|e| format!("--amqp-url: {e}"))?,
        };
        let tls = crate::broker::AmqpsSettings::load(crate::broker::AmqpsFiles {
            ca: self.amqp_ca.as_deref(),
            client_cert: self.amqp_client_cert.as_deref(),
            client_key: self.amqp_client_key.as_deref(),
        })?;
        brokers
            .with_tls(tls)
            .map_err(|e| format!("--amqp-url: {e}"))
    }

    /// How the publisher publishes.
    pub fn publisher_settings(&self) -> PublisherSettings {
        PublisherSettings {
            channels: self.publish_channels,
            timeout: self.publish_timeout,
            batch_records: self.amqp_batch_records,
            max_inflight: self.max_inflight,
        }
    }
}

/// The history stream (the `broker` module's [`Topology`]).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "History stream")]
pub struct HistoryArgs {
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
}

impl HistoryArgs {
    /// What the history stream keeps.
    pub fn retention(&self) -> Retention {
        Retention {
            max_age: self.history_max_age.clone(),
            max_bytes: self.history_max_bytes,
            segment_bytes: self.history_segment_bytes,
        }
    }
}

/// Bounds on the ingest calls (the `api` module's [`CallLimits`]).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitsArgs {
    /// Most records in one LogBatch call (or LogStream request).
    #[arg(long, env = "LOGGATE_MAX_BATCH", default_value = "1000", value_parser = count(clap::value_parser!(u32).range(1..=MOST_RECORDS as i64)))]
    pub max_batch: NonZeroUsize,

    /// Largest record message, in bytes.
    #[arg(long, env = "LOGGATE_MAX_MESSAGE_BYTES", default_value = "64KiB", value_parser = memory_size)]
    pub max_message_bytes: usize,

    /// Records one LogStream may have published but not yet confirmed; past
    /// it, the gateway stops reading that stream (gRPC flow control pushes back).
    #[arg(long, env = "LOGGATE_STREAM_INFLIGHT", default_value = "10000", value_parser = count(clap::value_parser!(u32).range(1..)))]
    pub stream_inflight: NonZeroUsize,

    /// Requests one LogStream may have read but not yet answered, empty and
    /// refused ones included; past it, the gateway stops reading that stream.
    /// Bounds what a client that never reads its answers can make it hold.
    #[arg(long, env = "LOGGATE_STREAM_REQUESTS", default_value = "256", value_parser = count(clap::value_parser!(u32).range(1..=65_536)))]
    pub stream_requests: NonZeroUsize,

    /// Calls (HTTP/2 streams) one client connection may have open at once,
    /// tails included (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS). Clients
    /// queue the excess until a call ends.
    #[arg(long, env = "LOGGATE_MAX_STREAMS_PER_CONNECTION", default_value = "100", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_connection: u32,

    /// How often the gateway pings an HTTP/2 connection, to find peers that
    /// vanished without closing it (and keep idle tails through NATs).
    #[arg(long, env = "LOGGATE_HTTP2_KEEPALIVE_INTERVAL", default_value = "60s", value_parser = positive_duration)]
    pub http2_keepalive_interval: Duration,

    /// How long a ping may go unanswered before the connection is closed.
    #[arg(long, env = "LOGGATE_HTTP2_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = positive_duration)]
    pub http2_keepalive_timeout: Duration,

    /// Ask a client connection older than this to go away (HTTP/2 GOAWAY):
    /// its open calls, tails included, carry on, new calls need a new
    /// connection, so clients rebalance across gateways. Off by default.
    #[arg(long, env = "LOGGATE_MAX_CONNECTION_AGE", value_parser = positive_duration)]
    pub max_connection_age: Option<Duration>,

    /// Records per second each principal of --auth-file may write (Log,
    /// LogBatch and LogStream together); the excess gets RESOURCE_EXHAUSTED.
    /// Off by default: the right number depends on what the broker takes.
    #[arg(long, env = "LOGGATE_RATE_PER_PRINCIPAL", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_per_principal: Option<u32>,

    /// Records a principal may write at once above --rate-per-principal (the
    /// token bucket's size). Default: one second's worth of the rate.
    #[arg(long, env = "LOGGATE_BURST_PER_PRINCIPAL", requires = "rate_per_principal", value_parser = clap::value_parser!(u32).range(1..))]
    pub burst_per_principal: Option<u32>,

    /// Tail calls each principal of --auth-file may have open at once; more
    /// get RESOURCE_EXHAUSTED. (Without --auth-file only --max-tails applies.)
    #[arg(long, env = "LOGGATE_MAX_TAILS_PER_PRINCIPAL", default_value = "1000", value_parser = count(clap::value_parser!(u32).range(1..)))]
    pub max_tails_per_principal: NonZeroUsize,
}

impl LimitsArgs {
    pub fn settings(&self) -> CallLimits {
        CallLimits {
            record: Limits {
                max_message_bytes: self.max_message_bytes,
            },
            max_batch: self.max_batch,
            stream_inflight: self.stream_inflight,
            stream_requests: self.stream_requests,
        }
    }

    /// What each principal may use (the `quota` module).
    pub fn quotas(&self) -> QuotaSettings {
        QuotaSettings {
            rate: self.rate_per_principal.map(|rate| Rate {
                per_second: rate,
                burst: self.burst_per_principal.unwrap_or(rate),
            }),
            max_tails: self.max_tails_per_principal,
        }
    }
}

/// Tail calls (the `api` module's [`TailSettings`]) and the stream consumers
/// behind them.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Tails")]
pub struct TailsArgs {
    /// Unacknowledged stream deliveries per Tail (the broker's prefetch).
    #[arg(long, env = "LOGGATE_TAIL_PREFETCH", default_value = "256", value_parser = clap::value_parser!(u16).range(1..).try_map(NonZeroU16::try_from))]
    pub tail_prefetch: NonZeroU16,

    /// Stream consumers (each a channel of the tail connection) for Tails
    /// that read on one of their own: those that start in the past, and
    /// live ones moved off the shared consumer. A tenth is kept for the live
    /// ones; past the rest, new Tails that start in the past get
    /// RESOURCE_EXHAUSTED. Each also holds a file descriptor on the broker,
    /// and a RabbitMQ out of them (1024 is a common limit) fails the whole
    /// tail connection: raise this only with the broker's limit. Capped at
    /// RabbitMQ's channel_max (2047 by default) less 7.
    #[arg(long, env = "LOGGATE_TAIL_CHANNELS", default_value = "500", value_parser = clap::value_parser!(u16).range(2..).try_map(NonZeroU16::try_from))]
    pub tail_channels: NonZeroU16,

    /// Most Tail calls open at once; more get RESOURCE_EXHAUSTED.
    #[arg(long, env = "LOGGATE_MAX_TAILS", default_value = "10000", value_parser = count(clap::value_parser!(u32).range(1..)))]
    pub max_tails: NonZeroUsize,

    /// Records the shared live consumer queues per live Tail; a Tail whose
    /// queue fills is moved to a stream consumer of its own, losing nothing.
    #[arg(long, env = "LOGGATE_TAIL_HUB_QUEUE", default_value = "1024", value_parser = count(clap::value_parser!(u32).range(1..)))]
    pub tail_hub_queue: NonZeroUsize,

    /// How often a Tail gets a Heartbeat, so clients can tell quiet from dead.
    #[arg(long, env = "LOGGATE_TAIL_HEARTBEAT", default_value = "15s", value_parser = positive_duration)]
    pub tail_heartbeat: Duration,

    /// How long a Tail whose broker connection was lost waits for RabbitMQ to
    /// come back (it then resumes where it was) before it ends with UNAVAILABLE.
    #[arg(long, env = "LOGGATE_TAIL_RESUME_WAIT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub tail_resume_wait: Duration,

    /// Records buffered per Tail while its client is slow.
    #[arg(long, env = "LOGGATE_TAIL_BUFFER", default_value = "128", value_parser = count(clap::value_parser!(u16).range(1..)))]
    pub tail_buffer: NonZeroUsize,

    /// Larger messages on the history stream (anyone with write access to
    /// the exchange can publish one) are skipped unread, with a warning.
    #[arg(long, env = "LOGGATE_TAIL_MAX_MESSAGE_BYTES", default_value = "16MiB", value_parser = memory_size)]
    pub tail_max_message_bytes: usize,

    /// Messages on the history stream packing more records (lines of
    /// application/x-ndjson) are skipped unread, with a warning.
    #[arg(long, env = "LOGGATE_TAIL_MAX_MESSAGE_RECORDS", default_value = "10000", value_parser = count(clap::value_parser!(u32).range(1..)))]
    pub tail_max_message_records: NonZeroUsize,

    /// A record larger than this is sent to Tails cut down to it (the message
    /// first), with the attribute loggate.truncated = its original size. The
    /// default keeps every Tail response under gRPC clients' usual 4 MiB
    /// limit; at least 64KiB.
    #[arg(long, env = "LOGGATE_TAIL_MAX_RECORD_BYTES", default_value = "4032KiB", value_parser = |text: &str| {
        memory_size(text).and_then(|n| if n < 64 << 10 { Err("must be at least 64KiB".to_owned()) } else { Ok(n) })
    })]
    pub tail_max_record_bytes: usize,
}

impl TailsArgs {
    /// How Tail calls are served. (`--tail-prefetch` goes to the consuming
    /// connection instead.)
    pub fn settings(&self) -> TailSettings {
        TailSettings {
            buffer: self.tail_buffer,
            max_tails: self.max_tails,
            hub_queue: self.tail_hub_queue,
            heartbeat: self.tail_heartbeat,
            resume_wait: self.tail_resume_wait,
            decode: crate::tail::DecodeLimits {
                max_message_bytes: self.tail_max_message_bytes,
                max_message_records: self.tail_max_message_records.get(),
                max_record_bytes: self.tail_max_record_bytes,
            },
        }
    }
}

/// The local spool (the `spool` module).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Spool")]
pub struct SpoolArgs {
    /// Spool records to this directory when RabbitMQ is unreachable or
    /// blocked, and answer OK with `spooled = true` once they are fsynced; a
    /// background task publishes them, in order, when RabbitMQ is back. With
    /// a spool the gateway also starts when RabbitMQ is down. Off by default.
    #[arg(long, env = "LOGGATE_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,

    /// Most bytes the spool holds; past it calls get RESOURCE_EXHAUSTED.
    #[arg(long, env = "LOGGATE_SPOOL_MAX_BYTES", default_value = "1GiB", value_parser = byte_size)]
    pub spool_max_bytes: u64,
}

impl SpoolArgs {
    /// The spool's settings, if `--spool-dir` asks for one.
    pub fn settings(&self) -> Option<SpoolSettings> {
        let dir = self.spool_dir.clone()?;
        Some(SpoolSettings::new(dir, self.spool_max_bytes))
    }
}

/// What the gateway tells its operator: metrics and probes over HTTP, and
/// its own logs (the `http` and `metrics` modules, and `main`'s logging).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Observability")]
pub struct ObservabilityArgs {
    /// Serve Prometheus metrics on this address over plain HTTP: /metrics,
    /// /healthz (200 while the process runs) and /readyz (200 while gRPC
    /// health is SERVING, else 503). No authentication: give it a loopback
    /// or internal address. Off by default.
    #[arg(long, env = "LOGGATE_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// The gateway's own log lines on stderr: text, or json (one object per
    /// line, for log shippers). RUST_LOG picks what is logged either way.
    #[arg(long, env = "LOGGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How the gateway writes its own log lines (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    Text,
    /// One JSON object per line: timestamp, level, target, message and the
    /// event's fields at the top level, and its spans.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_readme() {
        let config = ServeConfig::try_parse_from(["serve"]).expect("defaults parse");
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(
            config.rabbitmq.broker.amqp_url,
            ["amqp://guest:guest@127.0.0.1:5672/%2f"]
        );
        assert_eq!(config.rabbitmq.exchange, "loggate");
        assert_eq!(config.history.history_queue, "loggate.history");
        assert_eq!(config.history.history_max_age, "7D");
        assert_eq!(config.history.history_max_bytes, 1_000_000_000);
        assert_eq!(config.rabbitmq.broker_wait, Duration::from_secs(15));
        assert_eq!(config.rabbitmq.publish_timeout, Duration::from_secs(10));
        assert_eq!(config.limits.max_batch.get(), 1000);
        assert_eq!(config.limits.max_message_bytes, 64 * 1024);
    }

    #[test]
    fn metrics_are_off_and_logs_are_text_by_default() {
        let config = ServeConfig::try_parse_from(["serve"]).expect("defaults parse");
        assert_eq!(config.observability.metrics_listen, None);
        assert_eq!(config.server.http_listen, None);
        assert_eq!(config.observability.log_format, LogFormat::Text);
        let config = ServeConfig::try_parse_from([
            "serve",
            "--metrics-listen",
            "127.0.0.1:9464",
            "--log-format",
            "json",
        ])
        .expect("parses");
        assert_eq!(
            config.observability.metrics_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
        );
        assert_eq!(config.observability.log_format, LogFormat::Json);
        assert!(ServeConfig::try_parse_from(["serve", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn the_url_file_replaces_the_url_flag() {
        let config = ServeConfig::try_parse_from(["serve", "--amqp-url-file", "/run/urls"])
            .expect("the default --amqp-url does not conflict");
        assert_eq!(
            config.rabbitmq.amqp_url_file.as_deref(),
            Some(std::path::Path::new("/run/urls"))
        );
        let both = ServeConfig::try_parse_from([
            "serve",
            "--amqp-url-file",
            "/run/urls",
            "--amqp-url",
            "amqp://u:s3cret@h/%2f",
        ]);
        assert!(both.is_err());
        assert!(ServeConfig::try_parse_from(["serve", "--amqp-client-cert", "c.pem"]).is_err());
    }

    #[test]
    fn debug_hides_the_password() {
        let config = ServeConfig::try_parse_from([
            "serve",
            "--amqp-url",
            "amqp://guest:s3cret@rabbit:5672/%2f,amqp:guest:s3cret@broken",
        ])
        .expect("parses (URLs are checked when the gateway starts)");
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("amqp://***@rabbit:5672/%2f"), "{shown}");
    }

    #[test]
    fn periods_must_be_positive() {
        assert!(ServeConfig::try_parse_from(["serve", "--tail-heartbeat", "0s"]).is_err());
        assert!(ServeConfig::try_parse_from(["serve", "--publish-timeout", "0ms"]).is_err());
        assert!(ServeConfig::try_parse_from(["serve", "--tail-heartbeat", "250ms"]).is_ok());
    }

    #[test]
    fn counts_keep_their_ranges() {
        for (flag, low, high) in [
            ("--max-batch", "0", "100001"),
            ("--publish-channels", "0", "257"),
            ("--amqp-batch-records", "0", "10001"),
            ("--tail-buffer", "0", "65536"),
            ("--tail-prefetch", "0", "65536"),
        ] {
            assert!(
                ServeConfig::try_parse_from(["serve", flag, low]).is_err(),
                "{flag} {low}"
            );
            assert!(
                ServeConfig::try_parse_from(["serve", flag, high]).is_err(),
                "{flag} {high}"
            );
        }
        let config = ServeConfig::try_parse_from(["serve", "--max-batch", "100000"])
            .expect("the upper bound is allowed");
        assert_eq!(config.limits.max_batch.get(), 100_000);
    }
}
