//! Where a follower's records come from.
//!
//! Live followers share one stream consumer per gateway, the [`Hub`]: it
//! decodes each message once and hands each follower the records its filter
//! matches, through a bounded queue of its own. The hub never waits for a
//! follower: when one's queue is full, the hub lets go of it, noting the first
//! record it could not take, and the follower carries on from exactly there on
//! a stream consumer of its own ([`Feed`] does the switch), catching up at its
//! own pace. Followers that start in the past read on their own from the start.

mod feed;
mod hub;

use std::sync::Arc;

pub use feed::Feed;
pub use hub::Hub;

use crate::broker::StreamMessage;
use crate::record::Record;

/// One record and where it sits in the stream.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The stream offset of the message that holds the record.
    pub offset: i64,
    /// The record's index within that message (packed messages hold several).
    pub index: u32,
    /// Shared: the hub decodes a record once for all followers.
    pub record: Arc<Record>,
    /// The last record decoded from its message.
    pub last_in_message: bool,
}

impl Entry {
    /// Whether this entry comes at or after position (`offset`, `index`).
    pub fn at_or_after(&self, offset: i64, index: u32) -> bool {
        (self.offset, self.index) >= (offset, index)
    }
}

/// The loggate records in a message (one, or several when packed); anything
/// else someone published to the exchange is skipped and logged: the broker is
/// input too, and must not crash a tail. Each record keeps its index in the
/// message, bad lines included, so positions stay stable.
pub fn decode(message: &StreamMessage) -> Vec<Entry> {
    let offset = message.offset.unwrap_or(-1);
    let mut entries: Vec<Entry> = Record::from_message(message.content_type.as_deref(), &message.body)
        .into_iter()
        .enumerate()
        .filter_map(|(index, decoded)| match decoded {
            Ok(record) => Some(Entry {
                offset,
                index: u32::try_from(index).unwrap_or(u32::MAX),
                record: Arc::new(record),
                last_in_message: false,
            }),
            Err(error) => {
                tracing::warn!(offset, content_type = ?message.content_type, %error, "skipping a message that is not a loggate record");
                None
            }
        })
        .collect();
    if let Some(last) = entries.last_mut() {
        last.last_in_message = true;
    }
    entries
}
