//! `Tail`: follows the history stream from where the request says (live, a
//! time, a resume token, the beginning), filters in the gateway, and sends
//! records in stream order, each with the token that resumes right after it.
//! Live tails share the gateway's hub; the others read on their own (`tail/`).

use std::{cmp::Ordering, sync::Arc, time::Duration};

use time::OffsetDateTime;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{debug, info_span, Instrument};

use super::auth::caller;
use super::quota::TailPlace;
use super::tail_wire::{TailFrame, TailFrames};
use super::Gateway;
use crate::auth::{Caller, Denied};
use crate::broker::StreamStart;
use crate::proto::v1 as pb;
use crate::record::{timestamp, Filter, Invalid, ResumeToken};
use crate::tail::{Entry, Fed, Feed};

/// How long the closing status may wait for room in a full response buffer.
const FINAL_STATUS_WAIT: Duration = Duration::from_secs(1);

/// What a follower sends: gRPC's frames (`TailFrame`) or the web page's
/// events. The follower decides what to send and when; this only says how a
/// record, CaughtUp, a heartbeat and a gap are written.
pub trait TailEvent: Send + 'static {
    /// A record that matched, and the token that resumes right after it.
    fn record(entry: &Entry, resume_token: String) -> Self;
    fn caught_up() -> Self;
    fn heartbeat(beat: pb::Heartbeat) -> Self;
    fn gap(gap: pb::Gap) -> Self;
}

impl TailEvent for TailFrame {
    fn record(entry: &Entry, resume_token: String) -> Self {
        TailFrame::record(entry.encoded(), resume_token)
    }
    fn caught_up() -> Self {
        TailFrame::caught_up()
    }
    fn heartbeat(beat: pb::Heartbeat) -> Self {
        TailFrame::heartbeat(beat)
    }
    fn gap(gap: pb::Gap) -> Self {
        TailFrame::gap(gap)
    }
}

/// The events of one open tail; a `Status` ends it.
pub type TailEvents<E> = mpsc::Receiver<Result<E, Status>>;

pub(super) async fn tail(
    gateway: &Gateway,
    request: Request<pb::TailRequest>,
) -> Result<Response<TailFrames>, Status> {
    let caller = caller(&request)?;
    let events = open(gateway, caller, request.into_inner()).await?;
    Ok(Response::new(Box::pin(ReceiverStream::new(events))))
}

/// Opens a tail for `caller`: every check a Tail call gets (its tail scope,
/// `--max-tails`, the per-principal quotas, the broker channel budget), then
/// a follower that sends events until the receiver is dropped. The gRPC Tail
/// and the web page's `/api/tail` both come through here, so they cannot
/// differ in what they let a caller read.
pub async fn open<E: TailEvent>(
    gateway: &Gateway,
    caller: Caller,
    request: pb::TailRequest,
) -> Result<TailEvents<E>, Status> {
    let scope = caller.tail_scope();
    // A principal that may read nothing gets no tail at all: an empty one
    // would still hold a place and, from the past, a broker channel.
    if scope.globs().is_empty() {
        return Err(Denied::NoTail {
            principal: caller.name().to_owned(),
        }
        .into());
    }
    if let Some((i, service)) = request
        .services
        .iter()
        .enumerate()
        .find(|(_, service)| !scope.allows(service))
    {
        return Err(Denied::Tail {
            field: format!("services[{i}]"),
            principal: caller.name().to_owned(),
            service: service.clone(),
        }
        .into());
    }
    // Held by the follower until it ends.
    let place = Arc::clone(&gateway.open_tails)
        .try_acquire_owned()
        .map_err(|_| {
            Status::resource_exhausted(format!(
                "{} tails are open, the most this gateway serves (--max-tails)",
                gateway.tails.max_tails
            ))
        })?;
    let principal_place = gateway.quotas.open_tail(&caller)?;
    // Its share of the broker channels, when it starts in the past.
    let mut history_place = None;
    let filter = Arc::new(Filter::from_request(&request)?.within(scope));
    let queue = gateway.source.queue().to_owned();
    let start = Start::from_request(&request, &queue, OffsetDateTime::now_utc())?;
    let (feed, catch_up, nothing_behind) = match start.position() {
        StreamStart::Next if request.history_only => {
            return Err(Invalid::new(
                "history_only",
                "needs a start: since, start_time, resume_token or from_beginning",
            )
            .into());
        }
        StreamStart::Next => (
            Feed::live(&gateway.hub, Arc::clone(&filter), gateway.tails.resume_wait).await?,
            CatchUp::Live,
            NOTHING_BEHIND,
        ),
        position => {
            // No one principal may hold more than a tenth of the channels.
            let (_, total) = gateway.source.channel_budget();
            history_place = Some(
                gateway
                    .quotas
                    .open_history_tail(&caller, (total / 10).max(1))?,
            );
            // A consumer of its own takes a channel of the tail connection,
            // and RabbitMQ has only so many per connection: past the budget,
            // refuse clearly rather than let the broker refuse channels to
            // tails already running. (Reading the head uses the same one.)
            let channel = gateway.source.claim_channel().ok_or_else(|| {
                let (open, total) = gateway.source.channel_budget();
                Status::resource_exhausted(format!(
                    "{open} tails that start in the past are open, the most this gateway \
                     has broker channels for (--tail-channels {total}, a tenth of them \
                     kept for live tails); try again later or follow live"
                ))
            })?;
            // The head as it is now, before reading: "caught up" means past it.
            let head = gateway.source.head().await?;
            let feed =
                Feed::own(&gateway.hub, position, gateway.tails.resume_wait, channel).await?;
            let catch_up = match head.offset {
                Some(offset) => CatchUp::Behind {
                    head: offset,
                    seen_any: false,
                },
                None => CatchUp::Due,
            };
            (feed, catch_up, nothing_behind(head.latency))
        }
    };
    let (tx, rx) = mpsc::channel(gateway.tails.buffer.get());
    let follower = Follower {
        filter,
        start,
        queue,
        limit: (request.limit > 0).then_some(u64::from(request.limit)),
        catch_up,
        nothing_behind,
        history_only: request.history_only,
        heartbeat: gateway.tails.heartbeat,
        tx,
        shutdown: gateway.shutdown.clone(),
        _place: place,
        _principal_place: principal_place,
        _history_place: history_place,
        newest_in_scope: None,
        scoped: !caller.tail_scope().is_everything(),
        reloads: caller.reloads(),
        caller,
    };
    tokio::spawn(follower.run(feed).instrument(info_span!("tail")));
    Ok(rx)
}

/// Where a tail begins, and what it must skip at first because the stream
/// can only start at a chunk (a time) or a whole message (an offset).
#[derive(Debug)]
enum Start {
    Live,
    Beginning,
    /// Records that arrived at this time or later.
    Since(OffsetDateTime),
    /// Right after this record. `reached` once the record's own message was
    /// read: a consumer asked to start at it starts there if it still
    /// exists, so going beyond it unread means retention removed it.
    After {
        token: ResumeToken,
        reached: bool,
    },
}

impl Start {
    fn from_request(
        request: &pb::TailRequest,
        queue: &str,
        now: OffsetDateTime,
    ) -> Result<Start, Invalid> {
        use pb::tail_request::Start as S;
        Ok(match &request.start {
            None | Some(S::FromBeginning(false)) => Start::Live,
            Some(S::FromBeginning(true)) => Start::Beginning,
            Some(S::Since(since)) => {
                if since.seconds < 0 || since.nanos < 0 {
                    return Err(Invalid::new("since", "must not be negative"));
                }
                if since.nanos >= 1_000_000_000 {
                    return Err(Invalid::new("since", "nanos must be below 1e9"));
                }
                let since = time::Duration::new(since.seconds, since.nanos);
                Start::Since(now.checked_sub(since).unwrap_or(OffsetDateTime::UNIX_EPOCH))
            }
            Some(S::StartTime(at)) => {
                let nanos = i128::from(at.seconds) * 1_000_000_000 + i128::from(at.nanos);
                let at = OffsetDateTime::from_unix_timestamp_nanos(nanos)
                    .map_err(|e| Invalid::new("start_time", e))?;
                Start::Since(at.max(OffsetDateTime::UNIX_EPOCH))
            }
            Some(S::ResumeToken(token)) => {
                let token = ResumeToken::decode(token)?;
                if token.queue != queue {
                    return Err(Invalid::new(
                        "resume_token",
                        format_args!(
                            "was issued for history queue {:?}; this gateway reads {queue:?}",
                            token.queue
                        ),
                    ));
                }
                Start::After {
                    token,
                    reached: false,
                }
            }
        })
    }

    /// Where the stream consumer starts: at or before the first wanted record.
    fn position(&self) -> StreamStart {
        match self {
            Start::Live => StreamStart::Next,
            Start::Beginning => StreamStart::First,
            Start::Since(at) => {
                StreamStart::Timestamp(u64::try_from(at.unix_timestamp()).unwrap_or(0))
            }
            Start::After { token, .. } => StreamStart::Offset(token.offset),
        }
    }
}

/// One follower's state.
struct Follower<E> {
    filter: Arc<Filter>,
    /// Consulted until the first wanted record; `Live` afterwards.
    start: Start,
    queue: String,
    /// Matching records still to send, if limited.
    limit: Option<u64>,
    catch_up: CatchUp,
    /// How long a history consumer may receive nothing before it is taken
    /// to have started beyond the head.
    nothing_behind: Duration,
    /// End once caught up.
    history_only: bool,
    heartbeat: Duration,
    tx: mpsc::Sender<Result<E, Status>>,
    shutdown: CancellationToken,
    /// This follower's place under `--max-tails`, returned when it ends.
    _place: OwnedSemaphorePermit,
    /// Its place under `--max-tails-per-principal`, likewise.
    _principal_place: TailPlace,
    /// Its principal's share of the broker channels, for a tail that
    /// started in the past.
    _history_place: Option<TailPlace>,
    /// Who opened it: checked again whenever the auth file is reloaded, so
    /// a revoked principal's tail ends instead of reading on.
    caller: Caller,
    /// Arrival time of the newest record this follower read that its
    /// caller may see: a heartbeat's `head_time` for a caller with a tail
    /// scope, which must not learn when other services last logged.
    newest_in_scope: Option<OffsetDateTime>,
    /// The caller may tail only some services.
    scoped: bool,
    /// Changes on every reload of the auth file (`None`: auth is off).
    reloads: Option<watch::Receiver<u64>>,
}

/// How far a tail that started in the past is from the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CatchUp {
    /// Started live: nothing to catch up with.
    Live,
    /// Reading history up to the message at offset `head`.
    Behind { head: i64, seen_any: bool },
    /// At the head already (an empty stream): say so first thing.
    Due,
    /// CaughtUp was sent.
    Done,
}

/// A history consumer that has received nothing for this long started beyond
/// the head (e.g. a start time after the last record): it is caught up.
/// RabbitMQ 3.10 gives no way over AMQP to know it at once (no committed
/// offset), so the wait grows with how slowly the broker delivered the head.
const NOTHING_BEHIND: Duration = Duration::from_secs(1);
const NOTHING_BEHIND_MAX: Duration = Duration::from_secs(10);

/// The quiet that means "nothing behind", for a broker that took `latency`
/// to deliver the head: four times that, within bounds.
fn nothing_behind(latency: Duration) -> Duration {
    (latency * 4).clamp(NOTHING_BEHIND, NOTHING_BEHIND_MAX)
}

/// Why a follower stops.
enum Stop {
    /// The client left, or the limit was reached: nothing more to say.
    Done,
    Fail(Status),
}

impl<E: TailEvent> Follower<E> {
    /// Forwards records until the client leaves or the limit is reached (no
    /// status), the gateway shuts down or the broker fails (UNAVAILABLE).
    /// Always closes the feed, so no consumer is left behind on the broker.
    async fn run(mut self, mut feed: Feed) {
        debug!(start = ?self.start, "tail started");
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + self.heartbeat, self.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let nothing_behind = tokio::time::sleep(self.nothing_behind);
        tokio::pin!(nothing_behind);
        let stop = loop {
            if self.catch_up == CatchUp::Due {
                if let Err(stop) = self.caught_up().await {
                    break stop;
                }
            }
            let waiting_for_first = matches!(
                self.catch_up,
                CatchUp::Behind {
                    seen_any: false,
                    ..
                }
            );
            let entry = tokio::select! {
                () = self.shutdown.cancelled() => break shutting_down(),
                () = self.tx.closed() => break Stop::Done,
                () = reloaded(&mut self.reloads) => {
                    if let Err(revoked) = self.caller.still_admitted() {
                        break Stop::Fail(revoked.into());
                    }
                    continue;
                }
                () = &mut nothing_behind, if waiting_for_first => {
                    self.catch_up = CatchUp::Due;
                    continue;
                }
                _ = heartbeat.tick() => {
                    let head = if self.scoped {
                        self.newest_in_scope
                    } else {
                        feed.latest()
                    };
                    let beat = pb::Heartbeat {
                        time: Some(timestamp(OffsetDateTime::now_utc())),
                        head_time: head.map(timestamp),
                    };
                    if let Err(stop) = self.send(E::heartbeat(beat)).await {
                        break stop;
                    }
                    continue;
                }
                next = feed.next() => match next {
                    Ok(Some(Fed::Entry(entry))) => entry,
                    Ok(Some(Fed::Passed(offset))) => {
                        if let Err(stop) = self.passed(offset).await {
                            break stop;
                        }
                        continue;
                    }
                    Ok(None) => break Stop::Fail(Status::unavailable("RabbitMQ cancelled the history stream consumer")),
                    Err(error) => break Stop::Fail(Status::from(error)),
                },
            };
            if let Err(stop) = self.forward(entry).await {
                break stop;
            }
        };
        feed.close().await;
        if let Stop::Fail(status) = stop {
            let _ = self.tx.send_timeout(Err(status), FINAL_STATUS_WAIT).await;
        }
        debug!("tail ended");
    }

    /// Sends CaughtUp once; ends the tail if only history was asked for.
    async fn caught_up(&mut self) -> Result<(), Stop> {
        self.catch_up = CatchUp::Done;
        self.send(E::caught_up()).await?;
        if self.history_only {
            return Err(Stop::Done);
        }
        Ok(())
    }

    /// The message at `offset` held no record: it still moves the tail
    /// along. Reaching the head this way is being caught up; and a resume
    /// point followed by such a message is no gap.
    async fn passed(&mut self, offset: i64) -> Result<(), Stop> {
        if let CatchUp::Behind { head, seen_any } = &mut self.catch_up {
            *seen_any = true;
            if offset >= *head {
                self.caught_up().await?;
            }
        }
        if let Start::After { token, reached } = &mut self.start {
            let (past, gone) = resume_step(token, reached, offset, None);
            if past {
                self.start = Start::Live;
            }
            if gone {
                self.gap().await?;
            }
        }
        Ok(())
    }

    /// Sends one entry if it is past the start and matches.
    async fn forward(&mut self, entry: Entry) -> Result<(), Stop> {
        let offset = entry.offset;
        // Only a scoped caller's heartbeats need it (see `newest_in_scope`).
        if self.scoped && self.caller.tail_scope().allows(&entry.record.service) {
            self.newest_in_scope = self.newest_in_scope.max(Some(entry.record.received_time));
        }
        let mut reaches_head = false;
        if let CatchUp::Behind { head, seen_any } = &mut self.catch_up {
            *seen_any = true;
            if offset > *head {
                // Past the head without a record there (it was empty or
                // foreign): caught up before this one.
                self.caught_up().await?;
            } else {
                reaches_head = offset == *head && entry.last_in_message;
            }
        }
        let sent = self.deliver(&entry).await;
        if reaches_head {
            self.caught_up().await?;
        }
        sent
    }

    /// Sends a record if it is past the start and matches.
    async fn deliver(&mut self, entry: &Entry) -> Result<(), Stop> {
        if !self.wanted(entry).await? || !self.filter.matches(&entry.record) {
            return Ok(());
        }
        let resume_token = ResumeToken {
            queue: self.queue.clone(),
            offset: entry.offset,
            index: entry.index,
        }
        .encode();
        self.send(E::record(entry, resume_token)).await?;
        if let Some(left) = &mut self.limit {
            *left -= 1;
            if *left == 0 {
                return Err(Stop::Done);
            }
        }
        Ok(())
    }

    /// Whether the record at (`offset`, `index`) is past the start; tells the
    /// client once when records it asked for are gone.
    async fn wanted(&mut self, entry: &Entry) -> Result<bool, Stop> {
        let (offset, index) = (entry.offset, entry.index);
        let (wanted, gone) = match &mut self.start {
            Start::Live | Start::Beginning => (true, false),
            Start::Since(at) => (entry.record.received_time >= *at, false),
            Start::After { token, reached } => resume_step(token, reached, offset, Some(index)),
        };
        if gone {
            self.gap().await?;
        }
        if wanted {
            // Past the start: from here on everything counts (even a record
            // stamped a little earlier by another gateway's clock).
            self.start = Start::Live;
        }
        Ok(wanted)
    }

    /// Tells the client that records after its resume point are gone.
    async fn gap(&self) -> Result<(), Stop> {
        let reason = "records after the resume point are gone (older than the history's \
                      retention); continuing at the oldest retained record"
            .to_owned();
        self.send(E::gap(pb::Gap { reason })).await
    }

    async fn send(&self, frame: E) -> Result<(), Stop> {
        tokio::select! {
            () = self.shutdown.cancelled() => Err(shutting_down()),
            sent = self.tx.send(Ok(frame)) => sent.map_err(|_| Stop::Done),
        }
    }
}

/// Where the message at `offset` (its record at `index`; `None`: a message
/// that held no record) stands to a resume point: whether it is past it, and
/// whether records after the resume point are gone. A consumer asked to start
/// at the token's message starts there if it still exists, so reaching past
/// it unread means retention removed it. (Offsets alone cannot tell: RabbitMQ
/// 3.10 uses one up at every segment start without delivering it.)
fn resume_step(
    token: &ResumeToken,
    reached: &mut bool,
    offset: i64,
    index: Option<u32>,
) -> (bool, bool) {
    match offset.cmp(&token.offset) {
        Ordering::Less => (false, false),
        Ordering::Equal => {
            *reached = true;
            (index.is_some_and(|index| index > token.index), false)
        }
        Ordering::Greater => (true, !*reached),
    }
}

fn shutting_down() -> Stop {
    Stop::Fail(Status::unavailable("the gateway is shutting down"))
}

/// Resolves when the auth file is reloaded; never when auth is off (or the
/// auth file is gone with the gateway).
async fn reloaded(reloads: &mut Option<watch::Receiver<u64>>) {
    let changed = match reloads {
        Some(reloads) => reloads.changed().await.is_ok(),
        None => false,
    };
    if !changed {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nothing_behind_wait_grows_with_the_brokers_delay_within_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(nothing_behind(ms(5)), NOTHING_BEHIND);
        assert_eq!(nothing_behind(ms(600)), ms(2_400));
        assert_eq!(nothing_behind(ms(9_000)), NOTHING_BEHIND_MAX);
    }
}
