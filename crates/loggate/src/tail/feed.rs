//! A follower's supplier of entries: from the hub, or from a stream consumer of
//! its own (from a start position, or after the hub let it go).
//!
//! A feed survives the broker going away: it remembers the position just past
//! the last entry it handed out, and when its consumer fails (a broker restart,
//! a lost connection, a cluster node gone) it waits for the tail connection to
//! come back and continues from there on a consumer of its own, losing and
//! repeating nothing. It gives up, with the error, after `--tail-resume-wait`.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use tokio::{
    sync::{mpsc, OwnedSemaphorePermit},
    time::Instant,
};
use tracing::{info, warn};

use super::{
    decode::{Decoder, Decoding},
    hub::Detachment,
    Entry, Fed, Hub,
};
use crate::broker::{Error, StreamReader, StreamSource, StreamStart};
use crate::metrics;
use crate::record::Filter;

/// Pause between attempts to reopen a consumer once connected.
const RETRY: Duration = Duration::from_millis(200);

/// Why a live tail the hub let go has no consumer of its own yet.
const NO_CHANNEL: &str = "no channel of the tail connection was free (--tail-channels)";

/// Entries in stream order, whichever way they arrive.
pub struct Feed {
    supplier: Supplier,
    source: Arc<StreamSource>,
    /// The gateway's, shared with the hub (one warning budget).
    decoder: Decoder,
    /// Where the next entry is: just past the last one handed out (or past
    /// everything the hub had read). `None` before the first.
    next_at: Option<(i64, u32)>,
    /// Where a consumer of its own would start if nothing was read yet.
    start: StreamStart,
    /// For a live feed: when it began. Without a position, it resumes from
    /// then (by arrival), so records sent during an outage are not skipped.
    live_since: Option<time::OffsetDateTime>,
    /// Arrival time of the newest record read, for heartbeats.
    latest: Option<time::OffsetDateTime>,
    /// How long to wait for RabbitMQ after the consumer failed.
    resume_wait: Duration,
    /// This feed's channel under `--tail-channels`, from its first consumer
    /// of its own to its end (through outages, so a resume never competes
    /// with new tails for one). `None` while it follows the hub.
    channel: Option<OwnedSemaphorePermit>,
}

/// Where a feed's entries come from right now.
enum Supplier {
    /// The hub: the shared live consumer.
    Hub {
        rx: mpsc::Receiver<Entry>,
        detachment: Arc<Detachment>,
        hub: Arc<Hub>,
    },
    /// From a consumer of its own (boxed: a reader is much larger than a queue).
    OwnConsumer(Box<OwnConsumer>),
    /// The consumer failed at `since`; waiting for the broker to reopen one.
    Lost { reason: String, since: Instant },
}

/// A stream consumer of the feed's own, and what it has read ahead.
struct OwnConsumer {
    reader: StreamReader,
    /// Decoded but not yet taken.
    pending: VecDeque<Entry>,
    /// The message being decoded, kept here so that a cancelled
    /// [`Feed::next`] loses none of it.
    /// The message being decoded, and its offset.
    decoding: Option<(Option<i64>, Decoding)>,
    /// Entries before this position were already delivered (the reader
    /// starts at a whole chunk).
    from: Option<(i64, u32)>,
    /// Entries that arrived before this time predate the tail (the reader
    /// starts at a whole chunk, up to a second early).
    not_before: Option<time::OffsetDateTime>,
    /// Counted as a tail on a consumer of its own while this lives.
    _active: metrics::TailActive,
}

impl Feed {
    /// A live feed from the hub.
    pub async fn live(
        hub: &Arc<Hub>,
        filter: Arc<Filter>,
        resume_wait: Duration,
    ) -> Result<Feed, Error> {
        let (rx, detachment) = hub.subscribe(filter).await?;
        Ok(Feed {
            supplier: Supplier::Hub {
                rx,
                detachment,
                hub: Arc::clone(hub),
            },
            source: Arc::clone(hub.source()),
            decoder: hub.decoder().clone(),
            next_at: None,
            start: StreamStart::Next,
            live_since: Some(time::OffsetDateTime::now_utc()),
            latest: hub.latest(),
            resume_wait,
            channel: None,
        })
    }

    /// A feed of its own from `start`, on the hub's source.
    /// `channel` is its claim on the tail connection's channels.
    pub async fn own(
        hub: &Hub,
        start: StreamStart,
        resume_wait: Duration,
        channel: OwnedSemaphorePermit,
    ) -> Result<Feed, Error> {
        let source = hub.source();
        Ok(Feed {
            supplier: Supplier::OwnConsumer(Box::new(OwnConsumer {
                reader: source.open(start).await?,
                pending: VecDeque::new(),
                decoding: None,
                from: None,
                not_before: None,
                _active: metrics::tail_active(metrics::TailKind::Own),
            })),
            source: Arc::clone(source),
            decoder: hub.decoder().clone(),
            next_at: None,
            start,
            live_since: None,
            latest: None,
            resume_wait,
            channel: Some(channel),
        })
    }

    /// The next entry; `Ok(None)` when the broker ended the consumer and it
    /// could not be reopened. Cancel-safe: a cancelled call loses no entry.
    pub async fn next(&mut self) -> Result<Option<Fed>, Error> {
        loop {
            let outcome = match &mut self.supplier {
                Supplier::Hub {
                    rx,
                    detachment,
                    hub,
                } => match rx.recv().await {
                    Some(entry) => Ok(Some(Fed::Entry(entry))),
                    None => {
                        // The hub let go: everything it queued was taken above.
                        if let Some(failure) = detachment.failure() {
                            if let Some(offset) = failure.next_offset {
                                self.next_at = self.next_at.max(Some((offset, 0)));
                            }
                            Err(failure.reason)
                        } else if let Some((offset, index)) = detachment.resume_at() {
                            // A consumer of its own needs a channel, from the
                            // share new tails cannot take if need be; without
                            // one it waits like a consumer the broker lost.
                            if self.channel.is_none() {
                                self.channel = hub.source().try_claim_running_channel();
                            }
                            let opened = match &self.channel {
                                Some(_) => hub
                                    .source()
                                    .open(StreamStart::Offset(offset))
                                    .await
                                    .map_err(|error| error.to_string()),
                                None => Err(NO_CHANNEL.to_owned()),
                            };
                            match opened {
                                Ok(reader) => {
                                    self.supplier = Supplier::OwnConsumer(Box::new(OwnConsumer {
                                        reader,
                                        pending: VecDeque::new(),
                                        decoding: None,
                                        from: Some((offset, index)),
                                        not_before: None,
                                        _active: metrics::tail_active(metrics::TailKind::Own),
                                    }));
                                    continue;
                                }
                                // Recovers from there like any lost consumer.
                                Err(reason) => {
                                    self.next_at = self.next_at.max(Some((offset, index)));
                                    Err(reason)
                                }
                            }
                        } else {
                            return Ok(None);
                        }
                    }
                },
                Supplier::OwnConsumer(own) => match own.next(&self.decoder, &mut self.latest).await
                {
                    Ok(Some(fed)) => Ok(Some(fed)),
                    Ok(None) => Err("RabbitMQ cancelled the history stream consumer".to_owned()),
                    Err(error) => Err(error.to_string()),
                },
                Supplier::Lost { .. } => {
                    self.recover().await?;
                    continue;
                }
            };
            match outcome {
                Ok(Some(Fed::Entry(entry))) => {
                    self.next_at = Some(if entry.last_in_message {
                        (entry.offset + 1, 0)
                    } else {
                        (entry.offset, entry.index + 1)
                    });
                    if let Supplier::Hub { hub, .. } = &self.supplier {
                        self.latest = self.latest.max(hub.latest());
                    }
                    return Ok(Some(Fed::Entry(entry)));
                }
                Ok(Some(Fed::Passed(offset))) => {
                    self.next_at = self.next_at.max(Some((offset + 1, 0)));
                    return Ok(Some(Fed::Passed(offset)));
                }
                Ok(None) => return Ok(None),
                Err(reason) => {
                    warn!(%reason, at = ?self.next_at, "a tail's consumer failed; resuming once RabbitMQ is back");
                    self.supplier = Supplier::Lost {
                        reason,
                        since: Instant::now(),
                    };
                }
            }
        }
    }

    /// Waits for the tail connection, then reopens a consumer of its own
    /// where the feed stopped. Gives up `resume_wait` after the failure.
    async fn recover(&mut self) -> Result<(), Error> {
        let Supplier::Lost { reason, since } = &self.supplier else {
            return Ok(());
        };
        let deadline = *since + self.resume_wait;
        let waited = humantime::format_duration(self.resume_wait);
        let give_up = |reason: &str| {
            Error::Consumer(format!(
                "{reason}; RabbitMQ did not come back within {waited} (--tail-resume-wait)"
            ))
        };
        let (start, from, not_before) = match (self.next_at, self.live_since) {
            (Some((offset, index)), _) => {
                (StreamStart::Offset(offset), Some((offset, index)), None)
            }
            (None, Some(since)) => (
                StreamStart::Timestamp(u64::try_from(since.unix_timestamp()).unwrap_or(0)),
                None,
                Some(since),
            ),
            (None, None) => (self.start, None, None),
        };
        if self.channel.is_none() {
            // A live tail the hub let go or lost: it waits for a channel no
            // longer than it would for the broker.
            match tokio::time::timeout_at(deadline, self.source.claim_running_channel()).await {
                Ok(channel) => self.channel = Some(channel),
                Err(_) => {
                    return Err(Error::Consumer(format!(
                        "{reason}; {NO_CHANNEL} within {waited}"
                    )))
                }
            }
        }
        let mut connected = self.source.connected();
        loop {
            while !*connected.borrow_and_update() {
                match tokio::time::timeout_at(deadline, connected.changed()).await {
                    Ok(Ok(())) => {}
                    _ => return Err(give_up(reason)),
                }
            }
            // Bounded too: a broker that accepts but never answers must not
            // keep the tail waiting past the deadline.
            let opened = match tokio::time::timeout_at(deadline, self.source.open(start)).await {
                Ok(opened) => opened,
                Err(_) => return Err(give_up(reason)),
            };
            match opened {
                Ok(reader) => {
                    info!(at = ?self.next_at, "a tail resumed after RabbitMQ came back");
                    self.supplier = Supplier::OwnConsumer(Box::new(OwnConsumer {
                        reader,
                        pending: VecDeque::new(),
                        decoding: None,
                        from,
                        not_before,
                        _active: metrics::tail_active(metrics::TailKind::Own),
                    }));
                    return Ok(());
                }
                Err(error) if Instant::now() + RETRY < deadline => {
                    warn!(%error, "reopening a tail's consumer failed; retrying");
                    tokio::time::sleep(RETRY).await;
                }
                Err(error) => return Err(give_up(&format!("{reason}; then {error}"))),
            }
        }
    }

    /// Arrival time of the newest record this feed's consumer has read.
    pub fn latest(&self) -> Option<time::OffsetDateTime> {
        match &self.supplier {
            Supplier::Hub { hub, .. } => self.latest.max(hub.latest()),
            _ => self.latest,
        }
    }

    /// Cancels a consumer of its own, or leaves the hub.
    pub async fn close(self) {
        match self.supplier {
            Supplier::OwnConsumer(own) => own.reader.close().await,
            Supplier::Hub {
                detachment, hub, ..
            } => hub.leave(&detachment),
            Supplier::Lost { .. } => {}
        }
    }
}

impl OwnConsumer {
    async fn next(
        &mut self,
        decoder: &Decoder,
        latest: &mut Option<time::OffsetDateTime>,
    ) -> Result<Option<Fed>, Error> {
        loop {
            if let Some(entry) = self.pending.pop_front() {
                if self.from.is_some_and(|(o, i)| !entry.at_or_after(o, i)) {
                    continue;
                }
                if self
                    .not_before
                    .is_some_and(|since| entry.record.received_time < since)
                {
                    continue;
                }
                self.from = None;
                self.not_before = None;
                return Ok(Some(Fed::Entry(entry)));
            }
            if let Some((offset, decoding)) = &mut self.decoding {
                let entries = decoding.entries().await;
                let offset = *offset;
                self.decoding = None;
                if entries.is_empty() {
                    if let Some(offset) = offset {
                        return Ok(Some(Fed::Passed(offset)));
                    }
                    continue;
                }
                let newest = entries.iter().map(|e| e.record.received_time).max();
                *latest = (*latest).max(newest);
                self.pending.extend(entries);
                continue;
            }
            let Some(mut message) = self.reader.next().await? else {
                return Ok(None);
            };
            self.decoding = Some((message.offset, decoder.start(&mut message)));
            // Being decoded: grant the credit for the next message. At most
            // one message's records wait here, so memory stays bounded.
            self.reader.ack(&message).await?;
        }
    }
}
