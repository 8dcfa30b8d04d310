//! The client subcommands' flags: `loggate log` and `loggate tail`.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Subcommand, ValueEnum};

use super::parse::{key_value, level, rfc3339};
use crate::record::Level;

/// Where the client subcommands find the gateway, and how they prove who
/// they are.
#[derive(Clone, Args)]
pub struct ServerArg {
    /// The gateway's address: http://host:port, or https://host:port for TLS.
    /// Several gateways, comma-separated or the flag repeated: the first that
    /// answers is used, and a call or a tail moves to the next when its
    /// gateway goes away.
    #[arg(
        long = "server",
        env = "LOGGATE_SERVER",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:50051"
    )]
    pub servers: Vec<String>,

    /// Bearer token sent as `authorization: Bearer <token>` (see `loggate token new`).
    #[arg(long, env = "LOGGATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Trust this CA (PEM) for an https:// --server (default: the system's roots).
    #[arg(long, env = "LOGGATE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) for a gateway that requires mTLS; needs --tls-key.
    #[arg(long, env = "LOGGATE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "LOGGATE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

// Hand-written so the token never reaches a log or a panic message.
impl std::fmt::Debug for ServerArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerArg")
            .field("servers", &self.servers)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .finish()
    }
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum TokenCommand {
    /// Print a fresh random token (once) and the `[[principal]]` block with
    /// its SHA-256, ready to paste into --auth-file.
    New(TokenNewArgs),
}

#[derive(Debug, Clone, Args)]
pub struct TokenNewArgs {
    /// The principal's name, stamped on every record it writes.
    #[arg(long)]
    pub name: String,

    /// A service it may write as (a glob: checkout, checkout-*, *); repeat for more.
    #[arg(long)]
    pub log: Vec<String>,

    /// A service whose records it may read (a glob); repeat for more.
    #[arg(long)]
    pub tail: Vec<String>,
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
