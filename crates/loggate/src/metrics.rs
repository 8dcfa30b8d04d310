//! The gateway's Prometheus metrics: every name, label, bucket and help text
//! is defined here, once, with the recording helpers the rest of the code
//! calls in one line each.
//!
//! Off by default: until `server` calls [`enable`] (for `--metrics-listen`),
//! every helper is one relaxed atomic load and nothing else. On, a helper is
//! a few atomic adds on handles made when the metrics were built; only a
//! refusal (its gRPC code a label) looks its series up. Recording happens per
//! call, per batch or per event, never per record.
//!
//! The metrics are the process's (statics, as Prometheus clients keep them):
//! gateways run in one process, as tests do, add up. Gauges that describe
//! one gateway's state (in-flight records, the spool) are sampled by the
//! HTTP listener just before it renders ([`sample_publish_inflight`],
//! [`sample_spool`]), so they cannot drift.
//!
//! Imports nothing of ours: every other module may record.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        LazyLock,
    },
    time::Duration,
};

use prometheus_client::{
    encoding::prometheus_text,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// The `Content-Type` of [`render`]'s output (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Set once, by [`enable`]; read by every helper.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Built on first use (by [`enable`] or [`render`]).
static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Upper bounds of the `loggate_batch_records` buckets: records per request,
/// up to `--max-batch`'s default and beyond.
const BATCH_BUCKETS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0, 10000.0,
];
/// Upper bounds of the `loggate_publish_confirm_seconds` buckets: from a
/// quick local broker to `--publish-timeout`'s default.
const CONFIRM_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Starts recording. Called by `server` when `--metrics-listen` is given,
/// before it connects to anything, so no event is missed.
pub fn enable() {
    LazyLock::force(&METRICS);
    ENABLED.store(true, Ordering::Relaxed);
}

/// The metrics, if recording is on.
fn on() -> Option<&'static Metrics> {
    if ENABLED.load(Ordering::Relaxed) {
        Some(&METRICS)
    } else {
        None
    }
}

/// Every metric, in the Prometheus text format.
pub fn render() -> String {
    let mut text = String::with_capacity(8 * 1024);
    prometheus_text::encode(&mut text, &METRICS.registry).expect("writing to a String cannot fail");
    text
}

/// The RPCs that take records (the `rpc` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    Log,
    LogBatch,
    LogStream,
    /// OTLP's `LogsService/Export`.
    OtlpExport,
}

impl Rpc {
    const ALL: [Rpc; 4] = [Rpc::Log, Rpc::LogBatch, Rpc::LogStream, Rpc::OtlpExport];

    /// The method's name as gRPC spells it.
    fn label(self) -> &'static str {
        match self {
            Rpc::Log => "Log",
            Rpc::LogBatch => "LogBatch",
            Rpc::LogStream => "LogStream",
            Rpc::OtlpExport => "Export",
        }
    }
}

/// What became of a call's (or a LogStream request's) records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// RabbitMQ confirmed them.
    Published,
    /// The spool fsynced them.
    Spooled,
    /// Refused, with this status (the `code` label).
    Refused(tonic::Code),
}

impl Outcome {
    /// Taken: spooled or published.
    pub fn taken(spooled: bool) -> Outcome {
        if spooled {
            Outcome::Spooled
        } else {
            Outcome::Published
        }
    }
}

/// The broker connections (the `connection` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    Publish,
    Tail,
}

impl Connection {
    const ALL: [Connection; 2] = [Connection::Publish, Connection::Tail];

    fn label(self) -> &'static str {
        match self {
            Connection::Publish => "publish",
            Connection::Tail => "tail",
        }
    }
}

/// Where a tail's records come from (the `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailKind {
    /// The hub: the shared live consumer.
    Hub,
    /// A stream consumer of its own.
    Own,
}

impl TailKind {
    const ALL: [TailKind; 2] = [TailKind::Hub, TailKind::Own];

    fn label(self) -> &'static str {
        match self {
            TailKind::Hub => "hub",
            TailKind::Own => "own",
        }
    }
}

/// Why content on the history stream was skipped (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// A message over `--tail-max-message-bytes` or `--tail-max-message-records`.
    Oversized,
    /// A message, or a line of a packed one, that is not a loggate record.
    Invalid,
    /// Decoding failed (the decoding task panicked).
    DecodeFailed,
}

impl Skipped {
    const ALL: [Skipped; 3] = [Skipped::Oversized, Skipped::Invalid, Skipped::DecodeFailed];

    fn label(self) -> &'static str {
        match self {
            Skipped::Oversized => "oversized",
            Skipped::Invalid => "invalid",
            Skipped::DecodeFailed => "decode_failed",
        }
    }
}

/// Counts `count` records of one call (or LogStream request) of `rpc` and
/// what became of them, and observes the request's size.
pub fn records(rpc: Rpc, count: usize, outcome: Outcome) {
    let Some(metrics) = on() else { return };
    let count = count as u64;
    let rpc_index = rpc as usize;
    match outcome {
        Outcome::Published => metrics.taken[rpc_index][0].inc_by(count),
        Outcome::Spooled => metrics.taken[rpc_index][1].inc_by(count),
        Outcome::Refused(code) => metrics
            .records
            .get_or_create(&[
                ("rpc", rpc.label()),
                ("outcome", "refused"),
                ("code", code_name(code)),
            ])
            .inc_by(count),
    };
    metrics.batch_records[rpc_index].observe(count as f64);
}

/// Records OTLP's `partial_success.rejected_log_records`: records of an
/// Export that were not accepted while the rest were.
pub fn otlp_records_rejected(records: usize) {
    if let Some(metrics) = on() {
        metrics.otlp_rejected.inc_by(records as u64);
    }
}

/// One publish's confirms all arrived, `latency` after it was sent.
pub fn confirmed(latency: Duration) {
    if let Some(metrics) = on() {
        metrics.confirm_seconds.observe(latency.as_secs_f64());
    }
}

/// The spool's drainer published (with confirms) `records` spooled records.
pub fn drained(records: usize) {
    if let Some(metrics) = on() {
        metrics.spool_drained.inc_by(records as u64);
    }
}

/// A broker connection came up (`true`) or went away.
pub fn broker_connected(connection: Connection, up: bool) {
    if let Some(metrics) = on() {
        metrics.broker_connected[connection as usize].set(i64::from(up));
    }
}

/// The broker blocked (`true`) or unblocked a connection (a resource alarm).
pub fn broker_blocked(connection: Connection, blocked: bool) {
    if let Some(metrics) = on() {
        metrics.broker_blocked[connection as usize].set(i64::from(blocked));
    }
}

/// A lost broker connection was re-established.
pub fn broker_reconnected(connection: Connection) {
    if let Some(metrics) = on() {
        metrics.broker_reconnects[connection as usize].inc();
    }
}

/// The hub let go of a follower whose queue was full.
pub fn hub_detached() {
    if let Some(metrics) = on() {
        metrics.hub_detaches.inc();
    }
}

/// `count` messages (or lines of a packed message) read from the history
/// stream were skipped for `reason`.
pub fn stream_skipped(reason: Skipped, count: usize) {
    if let Some(metrics) = on() {
        metrics.skipped[reason as usize].inc_by(count as u64);
    }
}

/// Records published and not yet confirmed, as the publisher counts them now.
pub fn sample_publish_inflight(records: usize) {
    if let Some(metrics) = on() {
        metrics.publish_inflight.set(saturating_i64(records as u64));
    }
}

/// What the spool holds now, not yet drained.
pub fn sample_spool(records: u64, bytes: u64) {
    if let Some(metrics) = on() {
        metrics.spool_records.set(saturating_i64(records));
        metrics.spool_bytes.set(saturating_i64(bytes));
    }
}

/// Counts one tail of `kind` while it lives: keep it where the tail keeps
/// its supply (dropped with it, or when the tail changes kind).
pub fn tail_active(kind: TailKind) -> TailActive {
    TailActive(on().map(|metrics| {
        let gauge = metrics.tails_active[kind as usize].clone();
        gauge.inc();
        gauge
    }))
}

/// One tail counted in `loggate_tails_active` until dropped. (Counted only
/// if recording was on when it began, so the gauge never goes below zero.)
#[derive(Debug)]
#[must_use = "the tail is counted only while this lives"]
pub struct TailActive(Option<Gauge>);

impl Drop for TailActive {
    fn drop(&mut self) {
        if let Some(gauge) = &self.0 {
            gauge.dec();
        }
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// gRPC's canonical name of a status code, as `grpcurl` and the spec write it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

type Labels<const N: usize> = [(&'static str, &'static str); N];

/// Every metric's handle, and the registry that renders them.
struct Metrics {
    registry: Registry,
    /// `loggate_records_total{rpc,outcome,code}`; looked up for refusals only.
    records: Family<Labels<3>, Counter>,
    /// Its published (0) and spooled (1) series per [`Rpc`], made up front.
    taken: [[Counter; 2]; 4],
    /// `loggate_batch_records{rpc}`, per [`Rpc`].
    batch_records: [Histogram; 4],
    confirm_seconds: Histogram,
    publish_inflight: Gauge,
    spool_records: Gauge,
    spool_bytes: Gauge,
    spool_drained: Counter,
    /// Per [`Connection`].
    broker_connected: [Gauge; 2],
    broker_blocked: [Gauge; 2],
    broker_reconnects: [Counter; 2],
    /// Per [`TailKind`].
    tails_active: [Gauge; 2],
    hub_detaches: Counter,
    /// Per [`Skipped`].
    skipped: [Counter; 3],
    otlp_rejected: Counter,
}

impl Metrics {
    /// Registers every metric. The series of every bounded label set are
    /// made here, so they read 0 from the start rather than appear later
    /// (refusals, labelled by code, appear with the first one).
    fn new() -> Metrics {
        let mut registry = Registry::default();

        let records = Family::<Labels<3>, Counter>::default();
        registry.register(
            "loggate_records",
            "Records the ingest RPCs took (outcome published or spooled, code OK) or refused (code: the gRPC status), by RPC",
            records.clone(),
        );
        let taken = Rpc::ALL.map(|rpc| {
            ["published", "spooled"].map(|outcome| {
                records.get_or_create_owned(&[
                    ("rpc", rpc.label()),
                    ("outcome", outcome),
                    ("code", "OK"),
                ])
            })
        });

        let batches = Family::<Labels<1>, Histogram>::new_with_constructor(
            (|| Histogram::new(BATCH_BUCKETS)) as fn() -> Histogram,
        );
        registry.register(
            "loggate_batch_records",
            "Records per call (per request for LogStream), taken or refused, by RPC",
            batches.clone(),
        );
        let batch_records =
            Rpc::ALL.map(|rpc| batches.get_or_create_owned(&[("rpc", rpc.label())]));

        let confirm_seconds = Histogram::new(CONFIRM_BUCKETS);
        registry.register(
            "loggate_publish_confirm_seconds",
            "Time from publishing a batch to RabbitMQ confirming all of it",
            confirm_seconds.clone(),
        );
        let publish_inflight = gauge(
            &mut registry,
            "loggate_publish_inflight_records",
            "Records published (or waiting to be) and not yet confirmed, under --max-inflight",
        );
        let spool_records = gauge(
            &mut registry,
            "loggate_spool_pending_records",
            "Records in the spool not yet drained to RabbitMQ",
        );
        let spool_bytes = gauge(
            &mut registry,
            "loggate_spool_pending_bytes",
            "Bytes in the spool not yet drained, under --spool-max-bytes",
        );
        let spool_drained = Counter::default();
        registry.register(
            "loggate_spool_drained_records",
            "Spooled records the drainer published to RabbitMQ, with confirms",
            spool_drained.clone(),
        );

        let connected = Family::<Labels<1>, Gauge>::default();
        registry.register(
            "loggate_broker_connected",
            "1 while the broker connection is up, 0 while it is being re-established",
            connected.clone(),
        );
        let blocked = Family::<Labels<1>, Gauge>::default();
        registry.register(
            "loggate_broker_blocked",
            "1 while RabbitMQ blocks the connection (a memory or disk alarm)",
            blocked.clone(),
        );
        let reconnects = Family::<Labels<1>, Counter>::default();
        registry.register(
            "loggate_broker_reconnects",
            "Times a lost broker connection was re-established",
            reconnects.clone(),
        );
        let by_connection = |family: &Family<Labels<1>, _>| {
            Connection::ALL.map(|c| family.get_or_create_owned(&[("connection", c.label())]))
        };
        let broker_connected = by_connection(&connected);
        let broker_blocked = by_connection(&blocked);
        let broker_reconnects =
            Connection::ALL.map(|c| reconnects.get_or_create_owned(&[("connection", c.label())]));

        let tails = Family::<Labels<1>, Gauge>::default();
        registry.register(
            "loggate_tails_active",
            "Tails open, by where their records come from: the shared live consumer (hub) or a stream consumer of their own (own)",
            tails.clone(),
        );
        let tails_active = TailKind::ALL.map(|k| tails.get_or_create_owned(&[("kind", k.label())]));
        let hub_detaches = Counter::default();
        registry.register(
            "loggate_hub_detaches",
            "Live tails the hub let go because their queue was full (they carry on with a consumer of their own)",
            hub_detaches.clone(),
        );
        let skipped_family = Family::<Labels<1>, Counter>::default();
        registry.register(
            "loggate_stream_messages_skipped",
            "Messages (or lines of packed messages) on the history stream skipped as they were read, by reason; counted per read",
            skipped_family.clone(),
        );
        let skipped =
            Skipped::ALL.map(|r| skipped_family.get_or_create_owned(&[("reason", r.label())]));
        let otlp_rejected = Counter::default();
        registry.register(
            "loggate_otlp_records_rejected",
            "OTLP log records refused in an Export whose other records were taken (partial success)",
            otlp_rejected.clone(),
        );

        Metrics {
            registry,
            records,
            taken,
            batch_records,
            confirm_seconds,
            publish_inflight,
            spool_records,
            spool_bytes,
            spool_drained,
            broker_connected,
            broker_blocked,
            broker_reconnects,
            tails_active,
            hub_detaches,
            skipped,
            otlp_rejected,
        }
    }
}

fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let gauge = Gauge::default();
    registry.register(name, help, gauge.clone());
    gauge
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the series whose line starts with `series ` (exact).
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|value| value.parse().ok())
    }

    #[test]
    fn names_and_labels_render_as_documented() {
        enable();
        let text = render();
        for name in [
            "loggate_records_total",
            "loggate_batch_records",
            "loggate_publish_confirm_seconds",
            "loggate_publish_inflight_records",
            "loggate_spool_pending_records",
            "loggate_spool_pending_bytes",
            "loggate_spool_drained_records_total",
            "loggate_broker_connected",
            "loggate_broker_blocked",
            "loggate_broker_reconnects_total",
            "loggate_tails_active",
            "loggate_hub_detaches_total",
            "loggate_stream_messages_skipped_total",
            "loggate_otlp_records_rejected_total",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}:\n{text}");
        }
        assert!(
            value(
                &text,
                r#"loggate_records_total{rpc="LogStream",outcome="spooled",code="OK"}"#
            )
            .is_some(),
            "{text}"
        );
    }

    #[test]
    fn a_refusal_is_counted_under_its_code() {
        enable();
        let series =
            r#"loggate_records_total{rpc="Export",outcome="refused",code="RESOURCE_EXHAUSTED"}"#;
        let before = value(&render(), series).unwrap_or(0.0);
        records(
            Rpc::OtlpExport,
            7,
            Outcome::Refused(tonic::Code::ResourceExhausted),
        );
        assert_eq!(value(&render(), series), Some(before + 7.0));
    }

    #[test]
    fn a_tail_is_counted_while_it_lives() {
        enable();
        let series = r#"loggate_tails_active{kind="own"}"#;
        let gauge = &METRICS.tails_active[TailKind::Own as usize];
        let before = gauge.get();
        let active = tail_active(TailKind::Own);
        assert_eq!(gauge.get(), before + 1);
        drop(active);
        assert_eq!(gauge.get(), before);
        assert!(value(&render(), series).is_some());
    }
}
