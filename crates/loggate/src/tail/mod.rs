//! Where a follower's records come from.
//!
//! Live followers share one stream consumer per gateway, the [`Hub`]: it
//! decodes each message once and hands each follower the records its filter
//! matches, through a bounded queue of its own. The hub never waits for a
//! follower: when one's queue is full, the hub lets go of it, noting the first
//! record it could not take, and the follower carries on from exactly there on
//! a stream consumer of its own ([`Feed`] does the switch), catching up at its
//! own pace. Followers that start in the past read on their own from the start.
//!
//! The broker is input too: every message is read within bounds (`decode`),
//! so junk published straight to the exchange is skipped, not a stall.

mod decode;
mod feed;
mod hub;
mod rate;

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use prost::Message as _;

pub use decode::{DecodeLimits, DEFAULT_MAX_RECORD_BYTES, TRUNCATED};
pub use feed::Feed;
pub use hub::{unix_second_now, Hub};
pub use rate::{Counts, Rates, WINDOW_SECONDS};

use crate::record::Record;

/// What a feed hands a follower next.
#[derive(Debug)]
pub enum Fed {
    /// A record.
    Entry(Entry),
    /// The message at this offset held no record (it was not a loggate
    /// record, or too big to read): nothing to send, but the follower has
    /// read past it, which is how a tail that started in the past learns it
    /// reached a head that holds no record, or that a resume point is
    /// followed by such a message rather than by a gap.
    Passed(i64),
}

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
    /// The record as a wire `LogRecord`, encoded by the first follower that
    /// sends it and shared with every other.
    encoded: Arc<OnceLock<Bytes>>,
    /// The record as its JSON body (the web page's form), likewise once.
    json: Arc<OnceLock<Bytes>>,
}

impl Entry {
    pub fn new(offset: i64, index: u32, record: Record) -> Entry {
        Entry {
            offset,
            index,
            record: Arc::new(record),
            last_in_message: false,
            encoded: Arc::default(),
            json: Arc::default(),
        }
    }

    /// The record encoded as a `LogRecord`: once for all followers. (The
    /// one copy into the wire struct is made once per record, not per
    /// follower; another follower sending the same record meanwhile waits
    /// for that encoding rather than doing it again.)
    pub fn encoded(&self) -> Bytes {
        self.encoded
            .get_or_init(|| {
                let wire = crate::proto::v1::LogRecord::from(Record::clone(&self.record));
                Bytes::from(wire.encode_to_vec())
            })
            .clone()
    }

    /// The record as its JSON body (the AMQP contract's form): once for
    /// all web followers, like [`Entry::encoded`].
    pub fn json(&self) -> Bytes {
        self.json
            .get_or_init(|| Bytes::from(self.record.to_json()))
            .clone()
    }

    /// Whether this entry comes at or after position (`offset`, `index`).
    pub fn at_or_after(&self, offset: i64, index: u32) -> bool {
        (self.offset, self.index) >= (offset, index)
    }
}
