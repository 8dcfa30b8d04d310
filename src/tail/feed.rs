//! A follower's supply of entries: from the hub, or from a stream consumer of
//! its own (from a start position, or after the hub let it go).

use std::{collections::VecDeque, sync::Arc};

use tokio::sync::mpsc;

use super::{decode, hub::Slot, Entry, Hub};
use crate::broker::{Error, StreamReader, StreamSource, StreamStart};
use crate::record::Filter;

/// Entries in stream order, whichever way they arrive.
pub enum Feed {
    /// From the shared live consumer.
    Shared {
        rx: mpsc::Receiver<Entry>,
        slot: Arc<Slot>,
        hub: Arc<Hub>,
    },
    /// From a consumer of its own (boxed: a reader is much larger than a queue).
    Own(Box<Own>),
}

pub struct Own {
    reader: StreamReader,
    /// Decoded but not yet taken.
    pending: VecDeque<Entry>,
    /// Entries before this position were already delivered (after a switch
    /// from the hub, the reader starts at a whole message).
    from: Option<(i64, u32)>,
    /// Arrival time of the newest record read, for heartbeats.
    latest: Option<time::OffsetDateTime>,
}

impl Feed {
    /// A live feed from the hub.
    pub async fn live(hub: &Arc<Hub>, filter: Arc<Filter>) -> Result<Feed, Error> {
        let (rx, slot) = hub.subscribe(filter).await?;
        Ok(Feed::Shared {
            rx,
            slot,
            hub: Arc::clone(hub),
        })
    }

    /// A feed of its own from `start`.
    pub async fn own(source: &StreamSource, start: StreamStart) -> Result<Feed, Error> {
        Ok(Feed::Own(Box::new(Own {
            reader: source.open(start).await?,
            pending: VecDeque::new(),
            from: None,
            latest: None,
        })))
    }

    /// The next entry; `Ok(None)` when the broker ended the consumer.
    pub async fn next(&mut self) -> Result<Option<Entry>, Error> {
        loop {
            match self {
                Feed::Shared { rx, slot, hub } => {
                    if let Some(entry) = rx.recv().await {
                        return Ok(Some(entry));
                    }
                    // The hub let go: everything it queued was taken above.
                    if let Some(reason) = slot.failure() {
                        return Err(Error::Consumer(reason));
                    }
                    let Some((offset, index)) = slot.resume_at() else {
                        return Ok(None);
                    };
                    *self = Feed::Own(Box::new(Own {
                        reader: hub.source().open(StreamStart::Offset(offset)).await?,
                        pending: VecDeque::new(),
                        from: Some((offset, index)),
                        latest: hub.latest(),
                    }));
                }
                Feed::Own(own) => return own.next().await,
            }
        }
    }

    /// Arrival time of the newest record this feed's consumer has read.
    pub fn latest(&self) -> Option<time::OffsetDateTime> {
        match self {
            Feed::Shared { hub, .. } => hub.latest(),
            Feed::Own(own) => own.latest,
        }
    }

    /// Cancels a consumer of its own, or leaves the hub.
    pub async fn close(self) {
        match self {
            Feed::Own(own) => own.reader.close().await,
            Feed::Shared { slot, hub, .. } => hub.leave(&slot),
        }
    }
}

impl Own {
    async fn next(&mut self) -> Result<Option<Entry>, Error> {
        loop {
            if let Some(entry) = self.pending.pop_front() {
                if self.from.is_some_and(|(o, i)| !entry.at_or_after(o, i)) {
                    continue;
                }
                self.from = None;
                return Ok(Some(entry));
            }
            let Some(message) = self.reader.next().await? else {
                return Ok(None);
            };
            let entries = decode(&message);
            let newest = entries.iter().map(|e| e.record.received_time).max();
            self.latest = self.latest.max(newest);
            self.pending.extend(entries);
            // Decoded and queued: grant the credit for the next message. At
            // most one message's records wait here, so memory stays bounded.
            self.reader.ack(&message).await?;
        }
    }
}
