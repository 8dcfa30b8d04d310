//! The hub: one shared live stream consumer fanning out to every live follower.

use std::{
    num::NonZeroUsize,
    sync::{Arc, Mutex},
};

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{
    decode::{DecodeLimits, Decoder},
    rate::Rates,
    Entry,
};
use crate::broker::{Error, StreamReader, StreamSource, StreamStart};
use crate::metrics;
use crate::record::Filter;
// Nothing is held across a panic point under the hub's locks.
use crate::sync::lock;

/// One live stream consumer shared by every live follower of this gateway.
pub struct Hub {
    source: Arc<StreamSource>,
    /// Entries queued per follower before it is let go (memory per follower).
    capacity: usize,
    /// Shared with every feed of this gateway: one warning budget.
    decoder: Decoder,
    state: Mutex<State>,
    /// Serialises starting the consumer, so a follower only returns once the
    /// consumer that will feed it is attached.
    starting: tokio::sync::Mutex<()>,
    /// Arrival time of the newest record read, for heartbeats.
    latest: Mutex<Option<time::OffsetDateTime>>,
    /// Rung when a follower leaves, so the consumer stops without waiting
    /// for the next message once nobody follows.
    left: tokio::sync::Notify,
    /// Records read per second by level: the web page's rate chart.
    rates: Rates,
}

#[derive(Default)]
struct State {
    running: bool,
    /// Copied on write: fan-out takes a snapshot and runs every filter
    /// without the lock, so joining and leaving never wait for filters.
    followers: Arc<Vec<Arc<Subscriber>>>,
}

struct Subscriber {
    filter: Arc<Filter>,
    tx: mpsc::Sender<Entry>,
    detachment: Arc<Detachment>,
    /// Counted as a hub tail while the hub holds it.
    _active: metrics::TailActive,
}

/// How the hub let go of a follower: where to resume, or why the hub failed.
/// Written by the hub, read by the follower once its queue ends.
#[derive(Debug, Default)]
pub struct Detachment {
    /// Where to continue: the first matching entry it could not take.
    resume_at: Mutex<Option<(i64, u32)>>,
    /// The hub's consumer failed (the broker went away).
    failed: Mutex<Option<Failure>>,
}

/// Why the hub stopped, and how far it had read.
#[derive(Debug, Clone)]
pub struct Failure {
    pub reason: String,
    /// The offset after the last message the hub read and fanned out; `None`
    /// if it read none.
    pub next_offset: Option<i64>,
}

impl Detachment {
    pub fn resume_at(&self) -> Option<(i64, u32)> {
        *lock(&self.resume_at)
    }

    pub fn failure(&self) -> Option<Failure> {
        lock(&self.failed).clone()
    }
}

impl Hub {
    pub fn new(
        source: Arc<StreamSource>,
        capacity: NonZeroUsize,
        limits: DecodeLimits,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            source,
            capacity: capacity.get(),
            decoder: Decoder::new(limits),
            state: Mutex::default(),
            starting: tokio::sync::Mutex::new(()),
            left: tokio::sync::Notify::new(),
            latest: Mutex::new(None),
            rates: Rates::default(),
        })
    }

    /// The source followers read on their own from.
    pub fn source(&self) -> &Arc<StreamSource> {
        &self.source
    }

    /// How this gateway reads stream messages.
    pub(super) fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// Registers a live follower: it gets every matching record that arrives
    /// from now on. Starts the shared consumer if it is not running.
    pub async fn subscribe(
        self: &Arc<Self>,
        filter: Arc<Filter>,
    ) -> Result<(mpsc::Receiver<Entry>, Arc<Detachment>), Error> {
        let (tx, rx) = mpsc::channel(self.capacity);
        let detachment = Arc::new(Detachment::default());
        let subscriber = Arc::new(Subscriber {
            filter,
            tx,
            detachment: Arc::clone(&detachment),
            _active: metrics::tail_active(metrics::TailKind::Hub),
        });
        let _starting = self.starting.lock().await;
        // Joining a running hub and the hub retiring both happen under the
        // state lock, so a follower never joins a hub that has just stopped.
        {
            let mut state = lock(&self.state);
            if state.running {
                Arc::make_mut(&mut state.followers).push(subscriber);
                return Ok((rx, detachment));
            }
        }
        let reader = self.source.open(StreamStart::Next).await?;
        {
            let mut state = lock(&self.state);
            state.running = true;
            Arc::make_mut(&mut state.followers).push(subscriber);
        }
        tokio::spawn(Arc::clone(self).run(reader));
        info!("live tail hub started");
        Ok((rx, detachment))
    }

    /// Reads the stream and fans out until no follower is left or the
    /// consumer fails.
    async fn run(self: Arc<Self>, mut reader: StreamReader) {
        let mut next_offset = None;
        let failure = loop {
            if self.retire_if_idle() {
                break None;
            }
            let next = tokio::select! {
                next = reader.next() => next,
                () = self.left.notified() => continue,
            };
            let mut message = match next {
                Ok(Some(message)) => message,
                Ok(None) => {
                    break Some("RabbitMQ cancelled the history stream consumer".to_owned())
                }
                Err(error) => break Some(error.to_string()),
            };
            // A large body is parsed on a blocking thread meanwhile.
            let mut decoding = self.decoder.start(&mut message);
            // The hub never waits on a follower, so ack (grant credit) at once.
            if let Err(error) = reader.ack(&message).await {
                break Some(error.to_string());
            }
            self.fan_out(&decoding.entries().await);
            next_offset = message.offset.map(|offset| offset + 1).or(next_offset);
        };
        reader.close().await;
        if let Some(reason) = failure {
            warn!(%reason, "live tail hub stopped");
            let mut state = lock(&self.state);
            state.running = false;
            for follower in std::mem::take(&mut state.followers).iter() {
                *lock(&follower.detachment.failed) = Some(Failure {
                    reason: reason.clone(),
                    next_offset,
                });
            }
        } else {
            info!("live tail hub stopped: no follower left");
        }
    }

    /// A follower is done: forget it, and let the consumer stop if it was the last.
    pub fn leave(&self, detachment: &Arc<Detachment>) {
        let mut state = lock(&self.state);
        if state
            .followers
            .iter()
            .any(|f| Arc::ptr_eq(&f.detachment, detachment))
        {
            Arc::make_mut(&mut state.followers).retain(|f| !Arc::ptr_eq(&f.detachment, detachment));
        }
        drop(state);
        self.left.notify_one();
    }

    /// Stops the hub when every follower has gone.
    fn retire_if_idle(&self) -> bool {
        let mut state = lock(&self.state);
        if state.followers.iter().any(|f| f.tx.is_closed()) {
            Arc::make_mut(&mut state.followers).retain(|f| !f.tx.is_closed());
        }
        if state.followers.is_empty() {
            state.running = false;
            return true;
        }
        false
    }

    /// Arrival time of the newest record the hub has read.
    pub fn latest(&self) -> Option<time::OffsetDateTime> {
        *lock(&self.latest)
    }

    /// Records read per second by level, while the hub runs.
    pub fn rates(&self) -> &Rates {
        &self.rates
    }

    fn fan_out(&self, entries: &[Entry]) {
        let Some(newest) = entries.iter().map(|e| e.record.received_time).max() else {
            return;
        };
        self.rates
            .count(unix_second_now(), entries.iter().map(|e| e.record.level));
        {
            let mut latest = lock(&self.latest);
            *latest = (*latest).max(Some(newest));
        }
        // Filters run without the lock (a `contains` over a 4 MiB message
        // takes a while): on a snapshot of the followers.
        let followers = Arc::clone(&lock(&self.state).followers);
        let mut gone: Vec<&Arc<Detachment>> = Vec::new();
        for follower in followers.iter() {
            if !follower.offer(entries) {
                gone.push(&follower.detachment);
            }
        }
        if !gone.is_empty() {
            let mut state = lock(&self.state);
            Arc::make_mut(&mut state.followers)
                .retain(|f| !gone.iter().any(|g| Arc::ptr_eq(g, &f.detachment)));
        }
    }
}

/// The current Unix second, by the system clock.
pub fn unix_second_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        })
}

impl Subscriber {
    /// Queues the entries this follower's filter matches; `false` if it is
    /// gone or was let go (its queue was full).
    fn offer(&self, entries: &[Entry]) -> bool {
        for entry in entries.iter().filter(|e| self.filter.matches(&e.record)) {
            // A clone of the entry shares the record: no copy per follower.
            match self.tx.try_send(entry.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Let go; the follower continues on its own from here.
                    *lock(&self.detachment.resume_at) = Some((entry.offset, entry.index));
                    metrics::hub_detached();
                    debug!(
                        offset = entry.offset,
                        "a slow follower was detached from the hub"
                    );
                    return false;
                }
            }
        }
        true
    }
}
