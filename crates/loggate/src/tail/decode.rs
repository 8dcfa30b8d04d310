//! Turning stream messages into entries without trusting them: anyone with
//! write access to the exchange can publish anything, so a message is bounded
//! before it is parsed, large ones are parsed on a blocking thread, a record
//! too large for a client is cut down once for every follower, and what is
//! skipped is logged at a bounded rate.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::task::JoinHandle;
use tracing::warn;

use super::Entry;
use crate::broker::StreamMessage;
use crate::metrics;
use crate::record::Record;
use crate::sync::lock;

/// The bounds a stream message is read within (`--tail-max-*`).
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Larger message bodies are skipped unread.
    pub max_message_bytes: usize,
    /// Messages packing more records are skipped unread.
    pub max_message_records: usize,
    /// A record whose Tail response would be larger is cut down to this.
    pub max_record_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_message_bytes: 16 << 20,
            max_message_records: 10_000,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// Tonic's default decode limit (4 MiB) less room for the Tail response's
/// other fields: a larger response breaks every stock client.
pub const DEFAULT_MAX_RECORD_BYTES: usize = (4 << 20) - (64 << 10);

/// The attribute a cut-down record carries: its size before, in bytes.
pub const TRUNCATED: &str = "loggate.truncated";

/// Bodies up to this size are parsed where they arrive; larger ones on a
/// blocking thread, so that parsing megabytes never holds up a runtime
/// worker that other tails and calls run on.
const INLINE_BYTES: usize = 64 << 10;

/// Fields other than the message and attributes are short in every record a
/// gateway writes; in a cut-down record each keeps at most this much.
const FIELD_CAP: usize = 1024;

/// Reads stream messages for the hub and for every feed of one gateway.
/// Clones share the warning budget.
#[derive(Clone)]
pub struct Decoder {
    limits: DecodeLimits,
    warnings: Arc<Mutex<Warnings>>,
}

/// A message being decoded: at once, or on a blocking thread. Awaiting
/// [`Decoding::entries`] again after a cancelled await loses nothing.
pub enum Decoding {
    Ready(Vec<Entry>),
    Blocking(JoinHandle<Vec<Entry>>),
}

impl Decoding {
    /// The message's entries (empty once taken).
    pub async fn entries(&mut self) -> Vec<Entry> {
        match self {
            Decoding::Ready(entries) => std::mem::take(entries),
            Decoding::Blocking(job) => {
                let entries = match job.await {
                    Ok(entries) => entries,
                    Err(error) => {
                        warn!(%error, "decoding a stream message failed; skipped");
                        metrics::stream_skipped(metrics::Skipped::DecodeFailed, 1);
                        Vec::new()
                    }
                };
                *self = Decoding::Ready(Vec::new());
                entries
            }
        }
    }
}

impl Decoder {
    pub fn new(limits: DecodeLimits) -> Decoder {
        Decoder {
            limits,
            warnings: Arc::new(Mutex::new(Warnings::default())),
        }
    }

    /// Starts decoding `message`, taking its body (what is left is enough
    /// to acknowledge it).
    pub fn start(&self, message: &mut StreamMessage) -> Decoding {
        let offset = message.offset.unwrap_or(-1);
        let content_type = message.content_type.clone();
        let body = std::mem::take(&mut message.body);
        if body.len() <= INLINE_BYTES {
            return Decoding::Ready(self.decode(offset, content_type.as_deref(), &body));
        }
        let decoder = self.clone();
        Decoding::Blocking(tokio::task::spawn_blocking(move || {
            decoder.decode(offset, content_type.as_deref(), &body)
        }))
    }

    /// The loggate records in a message (one, or several when packed);
    /// anything else is skipped and logged. Each record keeps its index in
    /// the message, bad lines included, so positions stay stable.
    fn decode(&self, offset: i64, content_type: Option<&str>, body: &[u8]) -> Vec<Entry> {
        let decoded = match Record::from_message_within(
            content_type,
            body,
            self.limits.max_message_bytes,
            self.limits.max_message_records,
        ) {
            Ok(decoded) => decoded,
            Err(oversized) => {
                metrics::stream_skipped(metrics::Skipped::Oversized, 1);
                self.warn(|suppressed, skipped| {
                    warn!(offset, ?content_type, reason = %oversized, suppressed, skipped,
                        "skipping an oversized stream message unread (--tail-max-message-bytes, --tail-max-message-records)");
                });
                return Vec::new();
            }
        };
        let mut bad = 0usize;
        let mut first_error = None;
        let mut entries: Vec<Entry> = decoded
            .into_iter()
            .enumerate()
            .filter_map(|(index, decoded)| match decoded {
                Ok(record) => Some(Entry::new(
                    offset,
                    u32::try_from(index).unwrap_or(u32::MAX),
                    fit(record, self.limits.max_record_bytes),
                )),
                Err(error) => {
                    bad += 1;
                    first_error.get_or_insert(error);
                    None
                }
            })
            .collect();
        if let Some(error) = first_error {
            metrics::stream_skipped(metrics::Skipped::Invalid, bad);
            self.warn(|suppressed, skipped| {
                warn!(offset, ?content_type, %error, bad, suppressed, skipped,
                    "skipping stream content that is not a loggate record");
            });
        }
        if let Some(last) = entries.last_mut() {
            last.last_in_message = true;
        }
        entries
    }

    /// Counts a skipped message and logs it if the budget allows, with how
    /// many warnings were suppressed since the last one logged.
    fn warn(&self, log: impl FnOnce(u64, u64)) {
        let admitted = lock(&self.warnings).admit(Instant::now());
        if let Some((suppressed, skipped)) = admitted {
            log(suppressed, skipped);
        }
    }
}

/// Warnings per second about skipped messages, at most: a flood of junk must
/// not become a flood of log lines.
const WARNINGS_PER_WINDOW: u32 = 3;
const WINDOW: Duration = Duration::from_secs(1);

/// The warning budget, and what was skipped without a word.
#[derive(Debug, Default)]
struct Warnings {
    window_start: Option<Instant>,
    in_window: u32,
    suppressed: u64,
    /// Messages or lines skipped since the gateway started.
    skipped: u64,
}

impl Warnings {
    /// `Some((suppressed since the last warning, skipped in all))` if a
    /// warning may be logged now.
    fn admit(&mut self, now: Instant) -> Option<(u64, u64)> {
        self.skipped += 1;
        if self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= WINDOW)
        {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.in_window >= WARNINGS_PER_WINDOW {
            self.suppressed += 1;
            return None;
        }
        self.in_window += 1;
        Some((std::mem::take(&mut self.suppressed), self.skipped))
    }
}

/// About the size of `record` in a Tail response (protobuf): each field's
/// bytes and its tag and length prefix.
fn wire_size(record: &Record) -> usize {
    const FIELD: usize = 6;
    let strings = [
        &record.id,
        &record.service,
        &record.node,
        &record.message,
        &record.trace_id,
        &record.span_id,
        &record.gateway,
        &record.principal,
    ];
    let attributes: usize = record
        .attributes
        .iter()
        .map(|(key, value)| key.len() + value.len() + 3 * FIELD)
        .sum();
    64 + strings.iter().map(|s| s.len() + FIELD).sum::<usize>() + attributes
}

/// `record`, cut down to about `budget` bytes on the wire if it is larger:
/// short fields capped, attributes kept while they fit a quarter of the
/// budget, the message cut to the rest (at a character boundary), and the
/// original size in the `loggate.truncated` attribute.
fn fit(mut record: Record, budget: usize) -> Record {
    let original = wire_size(&record);
    if original <= budget {
        return record;
    }
    for field in [
        &mut record.id,
        &mut record.service,
        &mut record.node,
        &mut record.trace_id,
        &mut record.span_id,
        &mut record.gateway,
        &mut record.principal,
    ] {
        truncate(field, FIELD_CAP);
    }
    let mut room = budget / 4;
    record.attributes.retain(|key, value| {
        let size = key.len() + value.len() + 18;
        let keep = size <= room;
        if keep {
            room -= size;
        }
        keep
    });
    record
        .attributes
        .insert(TRUNCATED.to_owned(), original.to_string());
    let others = wire_size(&record) - record.message.len();
    truncate(&mut record.message, budget.saturating_sub(others));
    record
}

/// Cuts `text` to at most `max` bytes, at a character boundary.
fn truncate(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{fixture::record, NDJSON};

    fn message(content_type: &str, body: Vec<u8>) -> StreamMessage {
        StreamMessage::for_test(Some(7), Some(content_type.to_owned()), body)
    }

    #[tokio::test]
    async fn junk_lines_cost_one_warning_and_no_entries() {
        let decoder = Decoder::new(DecodeLimits::default());
        let mut junk = message(NDJSON, b"x\n".repeat(2_000_000));
        assert!(decoder.start(&mut junk).entries().await.is_empty());
        assert!(junk.body.is_empty(), "the body was taken");
        assert_eq!(lock(&decoder.warnings).skipped, 1);
    }

    #[tokio::test]
    async fn good_records_keep_their_positions_around_bad_lines() {
        let decoder = Decoder::new(DecodeLimits::default());
        let mut body = record().to_json();
        body.extend_from_slice(b"\nnot json\n");
        body.extend_from_slice(&record().to_json());
        let entries = decoder.start(&mut message(NDJSON, body)).entries().await;
        let positions: Vec<_> = entries
            .iter()
            .map(|e| (e.offset, e.index, e.last_in_message))
            .collect();
        assert_eq!(positions, [(7, 0, false), (7, 2, true)]);
    }

    #[test]
    fn warnings_are_rate_limited_and_count_what_they_suppressed() {
        let mut warnings = Warnings::default();
        let start = Instant::now();
        let logged: Vec<_> = (0..10).map(|_| warnings.admit(start)).collect();
        assert_eq!(logged.iter().filter(|w| w.is_some()).count(), 3);
        assert_eq!(warnings.admit(start + WINDOW), Some((7, 11)));
    }

    #[test]
    fn a_record_too_large_for_a_client_is_cut_down_and_says_so() {
        let big = Record {
            message: "é".repeat(3_000_000),
            ..record()
        };
        let original = wire_size(&big);
        let cut = fit(big, DEFAULT_MAX_RECORD_BYTES);
        assert!(wire_size(&cut) <= DEFAULT_MAX_RECORD_BYTES);
        assert!(cut.message.len() > DEFAULT_MAX_RECORD_BYTES - 4096);
        assert_eq!(cut.attributes[TRUNCATED], original.to_string());
        assert_eq!(cut.attributes["order"], "42");
        assert_eq!(cut.service, record().service);
        // Small records are left alone.
        assert_eq!(fit(record(), DEFAULT_MAX_RECORD_BYTES), record());
    }

    #[test]
    fn huge_attributes_and_fields_are_cut_too() {
        let mut attributes = std::collections::BTreeMap::new();
        for i in 0..200_000 {
            attributes.insert(format!("k{i}"), "v".repeat(32));
        }
        let big = Record {
            node: "n".repeat(10_000_000),
            attributes,
            ..record()
        };
        let cut = fit(big, 1 << 20);
        assert!(wire_size(&cut) <= 1 << 20);
        assert_eq!(cut.node.len(), FIELD_CAP);
        assert!(cut.attributes.contains_key(TRUNCATED));
    }
}
