//! Reading the history stream: the consuming connection ([`StreamSource`]) and
//! one stream consumer per reader ([`StreamReader`]).
//!
//! Over 400 lines because a third of it is tests; the source, its channel
//! budget and the reader share one connection's state and stay together.

use std::{num::NonZeroU16, sync::Arc, time::Duration};

use futures::StreamExt;
use lapin::{
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions,
        QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable, LongString, ShortString},
    Channel, Connection,
};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use super::{
    link::{FirstConnect, Link, Prepare, Session},
    Brokers, Error,
};

/// Where a new reader starts in the stream (`x-stream-offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStart {
    /// Only records that arrive from now on.
    Next,
    /// The oldest record still retained.
    First,
    /// The last chunk written.
    Last,
    /// A stream offset (a record's position).
    Offset(i64),
    /// The first chunk written at or after this time (seconds since the epoch).
    Timestamp(u64),
}

struct ConsumeSession {
    connection: Connection,
}

impl Session for ConsumeSession {
    fn connection(&self) -> &Connection {
        &self.connection
    }
}

/// The consuming connection, kept apart from the publishing one so that a
/// blocked publisher never stops followers.
pub struct StreamSource {
    link: Link<ConsumeSession>,
    queue: ShortString,
    /// Unacknowledged deliveries per reader: the bound on what one reader
    /// buffers before the broker waits for acks.
    prefetch: u16,
    /// The channels tails' own consumers may use (`--tail-channels`).
    channels: ChannelBudget,
}

/// The tail connection's channels for consumers of tails' own. RabbitMQ
/// refuses a connection more channels than its `channel_max` (2047 by
/// default), and a refused channel is an error for whoever asked: without a
/// budget, a flood of history tails took them all and live tails (the hub,
/// and followers it lets go) failed with them. With it, a new tail that needs
/// a channel gets one from the open share or is refused at once; the
/// reserved share is only for tails already running (a live tail detached
/// from the hub, a live tail resuming after an outage), so a flood of new
/// tails cannot starve them. The hub's own consumer is outside the budget.
struct ChannelBudget {
    /// For any tail, new ones included.
    open: Arc<Semaphore>,
    /// Only for tails already running.
    reserved: Arc<Semaphore>,
    /// Permits `open` started with.
    open_count: usize,
    /// `open_count` plus the reserved share.
    total: usize,
}

impl ChannelBudget {
    /// `total` channels, a tenth (at least one) of them reserved.
    fn new(total: usize) -> ChannelBudget {
        let total = total.max(2);
        let reserved = (total / 10).max(1);
        let open_count = total - reserved;
        ChannelBudget {
            open: Arc::new(Semaphore::new(open_count)),
            reserved: Arc::new(Semaphore::new(reserved)),
            open_count,
            total,
        }
    }

    fn claim_new(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.open).try_acquire_owned().ok()
    }

    fn try_claim_running(&self) -> Option<OwnedSemaphorePermit> {
        self.claim_new()
            .or_else(|| Arc::clone(&self.reserved).try_acquire_owned().ok())
    }

    async fn claim_running(&self) -> OwnedSemaphorePermit {
        if let Some(permit) = self.try_claim_running() {
            return permit;
        }
        let open = Arc::clone(&self.open).acquire_owned();
        let reserved = Arc::clone(&self.reserved).acquire_owned();
        let permit = tokio::select! {
            permit = open => permit,
            permit = reserved => permit,
        };
        permit.expect("the budget's semaphores are never closed")
    }
}

/// Channels of the tail connection kept out of `--tail-channels`: the hub's
/// consumer, and room for channels still closing.
const UNBUDGETED_CHANNELS: usize = 7;

impl StreamSource {
    /// Connects (see [`FirstConnect`]).
    pub async fn connect(
        endpoint: Brokers,
        connection_name: String,
        first: FirstConnect,
        history_queue: &str,
        prefetch: NonZeroU16,
        channels: NonZeroU16,
    ) -> Result<StreamSource, Error> {
        let prepare: Prepare<ConsumeSession> =
            Arc::new(|connection| Box::pin(async move { Ok(ConsumeSession { connection }) }));
        let link = Link::establish(
            endpoint,
            connection_name,
            crate::metrics::Connection::Tail,
            first,
            prepare,
        )
        .await?;
        let mut channels = usize::from(channels.get());
        // A broker configured with a lower channel_max than the budget
        // would refuse channels the budget grants: stay below it.
        if let Ok(session) = link.session() {
            let channel_max = usize::from(session.connection.configuration().channel_max());
            let room = channel_max.saturating_sub(UNBUDGETED_CHANNELS);
            if channel_max > 0 && channels > room {
                warn!(
                    tail_channels = channels,
                    channel_max,
                    "--tail-channels is above what RabbitMQ allows a connection; using {room}"
                );
                channels = room;
            }
        }
        Ok(StreamSource {
            link,
            queue: ShortString::from(history_queue),
            prefetch: prefetch.get(),
            channels: ChannelBudget::new(channels),
        })
    }

    /// A channel for a new tail's consumer of its own, from the share any
    /// tail may take; `None` when that share is taken (refuse the tail).
    /// Held for the tail's life: dropping it returns the channel.
    pub fn claim_channel(&self) -> Option<OwnedSemaphorePermit> {
        self.channels.claim_new()
    }

    /// A channel for a tail already running, without waiting: from the
    /// reserved share too.
    pub fn try_claim_running_channel(&self) -> Option<OwnedSemaphorePermit> {
        self.channels.try_claim_running()
    }

    /// A channel for a tail already running; waits for one (bound it).
    pub async fn claim_running_channel(&self) -> OwnedSemaphorePermit {
        self.channels.claim_running().await
    }

    /// How many channels new tails may claim, and how many in all (the
    /// rest is reserved for running tails): for refusals that name the limit.
    pub fn channel_budget(&self) -> (usize, usize) {
        (self.channels.open_count, self.channels.total)
    }

    /// The history queue this source reads.
    pub fn queue(&self) -> &str {
        self.queue.as_str()
    }

    /// Opens a stream consumer on its own channel, starting at `start`.
    /// Apart from the hub's one consumer, callers hold a claim on the
    /// channel ([`StreamSource::claim_channel`]) while the reader is open.
    pub async fn open(&self, start: StreamStart) -> Result<StreamReader, Error> {
        let session = self.link.session()?;
        let channel = session.connection.create_channel().await?;
        let reader = async {
            // Streams refuse consumers without a prefetch limit.
            channel
                .basic_qos(self.prefetch, BasicQosOptions::default())
                .await?;
            let mut arguments = FieldTable::default();
            let offset = match start {
                StreamStart::Next => AMQPValue::LongString(LongString::from("next")),
                StreamStart::First => AMQPValue::LongString(LongString::from("first")),
                StreamStart::Last => AMQPValue::LongString(LongString::from("last")),
                StreamStart::Offset(offset) => AMQPValue::LongLongInt(offset),
                StreamStart::Timestamp(seconds) => AMQPValue::Timestamp(seconds),
            };
            arguments.insert("x-stream-offset".into(), offset);
            let consumer = channel
                .basic_consume(
                    self.queue.clone(),
                    ShortString::from(""),
                    BasicConsumeOptions::default(),
                    arguments,
                )
                .await?;
            Ok::<_, Error>(consumer)
        };
        match reader.await {
            Ok(consumer) => Ok(StreamReader {
                channel,
                consumer,
                closed: false,
                unacked: 0,
                ack_every: (self.prefetch / 4).max(1),
            }),
            Err(error) => {
                let _ = channel.close(200, "consume failed".into()).await;
                Err(error)
            }
        }
    }

    /// Where the stream ends now: the offset of the newest message (`None`
    /// if it is empty), and how long the broker took to deliver from it.
    /// AMQP 0-9-1 has no call for it, so this reads the last chunk
    /// (`x-stream-offset` = last): its messages arrive in one burst, and the
    /// stream going quiet, or a time bound on a busy stream, ends the read.
    /// An empty stream delivers nothing: after `HEAD_FIRST_WAIT` it is taken
    /// as empty, unless the queue's message count says it holds messages,
    /// when a loaded broker gets up to `HEAD_FIRST_WAIT_HOLDING` (the count
    /// cannot prove a stream empty: on 3.10 it counts committed chunks and
    /// was seen to read 0 on a stream with records).
    pub async fn head(&self) -> Result<Head, Error> {
        let mut reader = self.open(StreamStart::Last).await?;
        let started = tokio::time::Instant::now();
        let mut first_wait = HEAD_FIRST_WAIT;
        let mut head = None;
        let mut latency = None;
        let outcome = loop {
            // A loaded broker may take a while for the first delivery; after
            // it, the rest of the chunk follows at once.
            let wait = match head {
                None => started + first_wait,
                Some(_) => {
                    (tokio::time::Instant::now() + HEAD_QUIET).min(started + HEAD_READ_LIMIT)
                }
            };
            match tokio::time::timeout_at(wait, reader.next()).await {
                Err(_) if head.is_none() && first_wait < HEAD_FIRST_WAIT_HOLDING => {
                    // Bounded like every wait here: a broker that does not
                    // answer holds nothing as far as this tail can tell.
                    let asked = tokio::time::timeout_at(
                        started + HEAD_FIRST_WAIT_HOLDING,
                        reader.holds_messages(&self.queue),
                    );
                    match asked.await {
                        Ok(Ok(true)) => first_wait = HEAD_FIRST_WAIT_HOLDING,
                        Ok(Ok(false)) | Err(_) => break Ok(None),
                        Ok(Err(error)) => break Err(error),
                    }
                }
                Err(_) => break Ok(head),
                Ok(Ok(Some(message))) => {
                    latency.get_or_insert_with(|| started.elapsed());
                    head = head.max(message.offset);
                    if let Err(error) = reader.ack(&message).await {
                        break Err(error);
                    }
                }
                Ok(Ok(None)) => break Ok(head),
                Ok(Err(error)) => break Err(error),
            }
        };
        reader.close().await;
        Ok(Head {
            offset: outcome?,
            latency: latency.unwrap_or_else(|| started.elapsed()),
        })
    }

    /// `true` while connected; changes when the connection drops or recovers.
    pub fn connected(&self) -> watch::Receiver<bool> {
        self.link.connected()
    }

    /// Closes the connection (every reader on it ends).
    pub async fn close(&self) {
        self.link.close().await;
    }
}

/// How long the stream must stay quiet for [`StreamSource::head`] to know it
/// has read the whole last chunk.
const HEAD_QUIET: Duration = Duration::from_millis(150);
/// On a busy stream new messages keep coming: the head is then the newest
/// message read within this time.
const HEAD_READ_LIMIT: Duration = Duration::from_secs(3);
/// How long a stream may take to deliver its last chunk's first message
/// before it is taken as empty.
const HEAD_FIRST_WAIT: Duration = Duration::from_secs(1);
/// The same for a stream whose message count says it holds messages.
const HEAD_FIRST_WAIT_HOLDING: Duration = Duration::from_secs(10);

/// Where a stream ends, as [`StreamSource::head`] found it.
#[derive(Debug, Clone, Copy)]
pub struct Head {
    /// The newest message's offset; `None`: the stream is empty.
    pub offset: Option<i64>,
    /// How long the broker took to deliver the first message of the last
    /// chunk (or the whole wait, if none came): a measure of its load that
    /// a tail's own waits can scale with.
    pub latency: Duration,
}

/// One message read from the stream.
#[derive(Debug)]
pub struct StreamMessage {
    /// The message's position in the stream (`x-stream-offset` header).
    pub offset: Option<i64>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    delivery_tag: u64,
}

#[cfg(test)]
impl StreamMessage {
    /// A message as if read from the stream, for decoding tests.
    pub fn for_test(offset: Option<i64>, content_type: Option<String>, body: Vec<u8>) -> Self {
        StreamMessage {
            offset,
            content_type,
            body,
            delivery_tag: 0,
        }
    }
}

/// A stream consumer on its own channel. Close it with [`StreamReader::close`];
/// if it is dropped instead, its channel is closed in the background so that
/// nothing is left behind on the broker.
pub struct StreamReader {
    channel: Channel,
    consumer: lapin::Consumer,
    closed: bool,
    /// Messages read but not yet acknowledged.
    unacked: u16,
    /// Acknowledge after this many (a quarter of the prefetch).
    ack_every: u16,
}

impl StreamReader {
    /// Whether `queue`'s message count (a passive declare on this reader's
    /// channel) says it holds messages.
    async fn holds_messages(&self, queue: &ShortString) -> Result<bool, Error> {
        let declared = self
            .channel
            .queue_declare(
                queue.clone(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(declared.message_count() > 0)
    }

    /// The next message; `Ok(None)` when the broker cancelled the consumer.
    pub async fn next(&mut self) -> Result<Option<StreamMessage>, Error> {
        match self.consumer.next().await {
            None => Ok(None),
            Some(Err(error)) => Err(error.into()),
            Some(Ok(delivery)) => {
                let offset = delivery
                    .properties
                    .headers()
                    .as_ref()
                    .and_then(|h| h.inner().get("x-stream-offset"))
                    .and_then(|v| match v {
                        AMQPValue::LongLongInt(n) => Some(*n),
                        _ => None,
                    });
                Ok(Some(StreamMessage {
                    offset,
                    content_type: delivery
                        .properties
                        .content_type()
                        .as_ref()
                        .map(ToString::to_string),
                    body: delivery.data,
                    delivery_tag: delivery.delivery_tag,
                }))
            }
        }
    }

    /// Acknowledges a message: on a stream, acks are credit for the next
    /// ones. They are sent a quarter of the prefetch at a time (one `multiple`
    /// ack), so the broker always has credit left and a fast reader does not
    /// pay a frame per message.
    pub async fn ack(&mut self, message: &StreamMessage) -> Result<(), Error> {
        self.unacked += 1;
        if self.unacked >= self.ack_every {
            self.channel
                .basic_ack(message.delivery_tag, BasicAckOptions { multiple: true })
                .await?;
            self.unacked = 0;
        }
        Ok(())
    }

    /// Cancels the consumer and closes its channel.
    pub async fn close(mut self) {
        self.closed = true;
        cancel_and_close(self.channel.clone(), self.consumer.tag()).await;
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(cancel_and_close(self.channel.clone(), self.consumer.tag()));
        }
    }
}

/// Cancel, then close: bounded, because the broker may be gone.
async fn cancel_and_close(channel: Channel, tag: ShortString) {
    let work = async {
        if channel.status().connected() {
            let _ = channel
                .basic_cancel(tag, BasicCancelOptions::default())
                .await;
            let _ = channel.close(200, "tail ended".into()).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(2), work)
        .await
        .is_err()
    {
        debug!("closing a stream reader timed out");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_tails_cannot_take_the_reserved_share() {
        let budget = ChannelBudget::new(20);
        assert_eq!((budget.open_count, budget.total), (18, 20));
        let new: Vec<_> = std::iter::from_fn(|| budget.claim_new()).collect();
        assert_eq!(new.len(), 18);
        let running: Vec<_> = std::iter::from_fn(|| budget.try_claim_running()).collect();
        assert_eq!(running.len(), 2, "the reserve is left for running tails");
        drop(running);
        assert!(budget.claim_new().is_none(), "the reserve stays reserved");
    }

    #[tokio::test]
    async fn a_running_tail_waits_for_a_returned_channel() {
        let budget = Arc::new(ChannelBudget::new(2));
        let mut held: Vec<_> = std::iter::from_fn(|| budget.try_claim_running()).collect();
        assert_eq!(held.len(), 2);
        let waiting = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.claim_running().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        held.pop();
        let permit = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("a returned channel is handed on")
            .expect("no panic");
        drop(permit);
    }
}
