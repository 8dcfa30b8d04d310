//! The drainer: publishes spooled records to RabbitMQ in the order they were
//! spooled, a chunk at a time, each chunk with confirms before the next; moves
//! the cursor past a chunk only once it is confirmed, and deletes a segment
//! only once all of it is. Each entry is checked again before it is
//! published; one that fails goes to the `rejected` file. A supervisor
//! restarts the drainer if it ever fails.
//!
//! Over 400 lines because more than a third of it is tests (one per kind of
//! hostile entry); the drain loop itself is short.

use std::{
    future::Future,
    path::Path,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::cursor::write_cursor;
use super::rejected::{self, Rejection};
use super::{segment, Shared};
use crate::broker::Publisher;
use crate::record::Record;

/// Records per chunk: one pipelined publish, a few milliseconds of confirms.
const CHUNK_RECORDS: usize = 1000;
/// Bytes per chunk, whichever comes first.
const CHUNK_BYTES: u64 = 1 << 20;
/// Waits between failed attempts at a chunk.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Waits before restarting a drainer that failed, doubling while it keeps
/// failing: a fault that repeats is logged every minute, not in a tight loop.
pub(super) const RESTART_FIRST: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(60);

/// The drainer's next step, decided under the state lock.
enum Work {
    /// Publish entries of segment `seq` from byte `from` up to `end`.
    Read { seq: u64, from: u64, end: u64 },
    /// Segment `seq` is sealed and fully drained: delete it.
    Delete { seq: u64 },
    /// Nothing durable is waiting.
    Idle,
}

/// Runs the drainer that `start` makes until it ends by itself (stopped, or
/// its publisher gone). If it panics, the failure is logged and counted
/// (`Spool::drainer_failures`) and a new one is started after a pause: one
/// bad moment must not leave records in the spool for good while new calls
/// keep queueing behind them.
pub(super) async fn supervise<F, Fut>(
    shared: Arc<Shared>,
    stop: CancellationToken,
    first_delay: Duration,
    mut start: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut delay = first_delay;
    loop {
        let started = Instant::now();
        let failure = match tokio::spawn(start()).await {
            Ok(()) => return,
            Err(failure) => failure,
        };
        let failures = shared.drainer_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if started.elapsed() >= RESTART_MAX {
            // It ran well for a while: this is a new fault, not the same one again.
            delay = first_delay;
        }
        error!(error = %failure, failures, pending = shared.pending_records.load(Ordering::Acquire), restart_in = ?delay, "the spool's drainer failed; restarting it");
        shared.drainer_up.send_replace(false);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
        shared.drainer_up.send_replace(true);
        delay = (delay * 2).min(RESTART_MAX);
    }
}

pub(super) async fn run(shared: Arc<Shared>, publisher: Arc<Publisher>, stop: CancellationToken) {
    let mut ready = publisher.connected();
    let mut retry = RETRY_FIRST;
    let mut drained: u64 = 0;
    loop {
        // Only while RabbitMQ takes records: a blocked or lost connection
        // would just time the chunk out.
        while !*ready.borrow_and_update() {
            tokio::select! {
                changed = ready.changed() => if changed.is_err() { return },
                () = stop.cancelled() => return,
            }
        }
        match next_work(&shared) {
            Work::Idle => {
                if drained > 0 && !shared.has_pending() {
                    info!(records = drained, "the spool is drained");
                    drained = 0;
                }
                tokio::select! {
                    () = shared.appended.notified() => {}
                    () = stop.cancelled() => return,
                }
            }
            Work::Delete { seq } => {
                let deleting = Arc::clone(&shared);
                let deleted =
                    tokio::task::spawn_blocking(move || delete_segment(&deleting, seq)).await;
                if let Err(error) = deleted.unwrap_or_else(|join| Err(std::io::Error::other(join)))
                {
                    error!(%error, seq, "could not delete a drained spool segment");
                    if pause(&stop, &mut retry).await {
                        return;
                    }
                }
            }
            Work::Read { seq, from, end } => {
                let dir = shared.dir.clone();
                let chunk =
                    tokio::task::spawn_blocking(move || read_chunk(&dir, seq, from, end)).await;
                let chunk = match chunk {
                    Ok(Ok(chunk)) => chunk,
                    Ok(Err(error)) => {
                        error!(%error, seq, "reading the spool failed; retrying");
                        if pause(&stop, &mut retry).await {
                            return;
                        }
                        continue;
                    }
                    Err(join) => {
                        error!(error = %join, seq, "reading the spool failed; retrying");
                        if pause(&stop, &mut retry).await {
                            return;
                        }
                        continue;
                    }
                };
                // Not cancelled by `stop`: a chunk being published gets its
                // confirms (bounded by --publish-timeout) before shutdown.
                // A chunk of rejected entries only has nothing to publish.
                let published = if chunk.records.is_empty() {
                    Ok(())
                } else {
                    publisher.publish(&chunk.records).await
                };
                match published {
                    Ok(()) => {
                        retry = RETRY_FIRST;
                        drained += chunk.records.len() as u64;
                        crate::metrics::drained(chunk.records.len());
                        let advancing = Arc::clone(&shared);
                        // File work off the async workers.
                        let _ = tokio::task::spawn_blocking(move || {
                            advance(&advancing, seq, from, chunk)
                        })
                        .await;
                    }
                    Err(error) => {
                        warn!(%error, records = chunk.records.len(), "publishing spooled records failed; retrying");
                        if pause(&stop, &mut retry).await {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Sleeps the retry delay (doubling it); `true` if stopped meanwhile.
async fn pause(stop: &CancellationToken, retry: &mut Duration) -> bool {
    let delay = *retry;
    *retry = (*retry * 2).min(RETRY_MAX);
    tokio::select! {
        () = tokio::time::sleep(delay) => false,
        () = stop.cancelled() => true,
    }
}

fn next_work(shared: &Shared) -> Work {
    let state = shared.state();
    match state.segments.front() {
        None => Work::Idle,
        Some(front) if state.read < front.end => Work::Read {
            seq: front.seq,
            from: state.read,
            end: front.end,
        },
        Some(front) if front.sealed => Work::Delete { seq: front.seq },
        Some(_) => Work::Idle,
    }
}

/// Moves the cursor past a confirmed chunk, writes down its rejected
/// entries, and returns its records and bytes to the budget.
fn advance(shared: &Shared, seq: u64, from: u64, chunk: Chunk) {
    let Chunk {
        records,
        rejections,
        next,
    } = chunk;
    let records = records.len() as u64 + rejections.len() as u64;
    if !rejections.is_empty() {
        // Written once the chunk is through, so a retried chunk does not
        // write its rejections twice. If the file cannot be written the
        // entries still are not published: the error log names them.
        shared
            .rejected
            .fetch_add(rejections.len() as u64, Ordering::AcqRel);
        if let Err(error) = rejected::append(&shared.dir, &rejections) {
            error!(%error, entries = rejections.len(), seq, "could not write to the spool's rejected file");
        }
    }
    {
        let mut state = shared.state();
        if state.segments.front().is_some_and(|front| front.seq == seq) && state.read == from {
            state.read = next;
        }
    }
    shared.release(records, next - from);
    // Not synced: after a crash, a stale cursor only means some records are
    // published twice (with their ids). Shutdown syncs it.
    if let Err(error) = write_cursor(&shared.dir, seq, next, false) {
        warn!(%error, "could not record the spool's cursor");
    }
}

fn delete_segment(shared: &Shared, seq: u64) -> std::io::Result<()> {
    match std::fs::remove_file(segment::path(&shared.dir, seq)) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let next = {
        let mut state = shared.state();
        if state.segments.front().is_some_and(|front| front.seq == seq) {
            state.segments.pop_front();
            state.read = segment::HEADER_BYTES;
        }
        state.segments.front().map_or(seq + 1, |front| front.seq)
    };
    write_cursor(&shared.dir, next, segment::HEADER_BYTES, false)
}

/// Some consecutive records of one segment.
struct Chunk {
    records: Vec<Record>,
    /// Entries whose checksum held but whose content is not a record the
    /// gateway would accept (JSON that does not decode, or a record that
    /// fails validation): not published, but set aside, and counted so the
    /// books balance. Whole entries, so the ones after them are still read.
    rejections: Vec<Rejection>,
    /// Offset just past the chunk.
    next: u64,
}

fn read_chunk(dir: &Path, seq: u64, from: u64, end: u64) -> std::io::Result<Chunk> {
    let mut reader = segment::Reader::open(dir, seq, from)?;
    let mut chunk = Chunk {
        records: Vec::with_capacity(CHUNK_RECORDS),
        rejections: Vec::new(),
        next: from,
    };
    let mut payload = Vec::new();
    while chunk.next < end && chunk.records.len() < CHUNK_RECORDS && chunk.next - from < CHUNK_BYTES
    {
        let Some(entry) = reader.next(&mut payload)? else {
            // Inside what was fsynced, an entry that does not check out is
            // damage on disk. Skip the rest of the segment rather than stall
            // every later record behind it.
            error!(
                seq,
                offset = chunk.next,
                bytes = end - chunk.next,
                "a spool segment is damaged; skipping its unreadable rest"
            );
            chunk.next = end;
            break;
        };
        chunk.next = entry.end;
        // The same checks as a record arriving over gRPC: publishing trusts
        // them (an over-long id or an out-of-range time would panic there).
        let checked = Record::from_json(&payload)
            .map_err(|error| error.to_string())
            .and_then(|mut record| match record.check_stored() {
                Ok(()) => Ok(record),
                Err(invalid) => Err(invalid.to_string()),
            });
        match checked {
            Ok(record) => chunk.records.push(record),
            Err(reason) => {
                error!(%reason, seq, offset = entry.start, "a spooled entry is not a valid record; moving it to the rejected file");
                chunk.rejections.push(Rejection {
                    seq,
                    offset: entry.start,
                    reason,
                    entry: payload.clone(),
                });
            }
        }
    }
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::atomic::AtomicU32;

    use super::*;
    use crate::record::fixture;
    use crate::spool::{rejected::REJECTED, Spool, SpoolSettings};

    fn good(id: &str) -> Vec<u8> {
        Record {
            id: id.into(),
            ..fixture::record()
        }
        .to_json()
    }

    /// A good record's JSON with one field replaced.
    fn with(field: &str, value: serde_json::Value) -> Vec<u8> {
        let mut body: serde_json::Value = serde_json::from_slice(&good("crafted")).expect("JSON");
        body[field] = value;
        serde_json::to_vec(&body).expect("JSON")
    }

    /// A spool whose directory already holds one segment of `payloads`, each
    /// a whole entry with a valid checksum, as a crash or a person left it.
    fn spool_with(name: &str, payloads: &[Vec<u8>]) -> Spool {
        let dir = crate::spool::test_dir(name);
        std::fs::create_dir_all(&dir).expect("dir");
        let mut file = segment::create(&dir, 1).expect("segment");
        let mut bytes = Vec::new();
        for payload in payloads {
            segment::encode_entry(payload, &mut bytes);
        }
        file.write_all(&bytes).expect("write");
        Spool::open(SpoolSettings::new(dir, 1 << 20)).expect("open")
    }

    /// Does what the drainer does with every chunk, as if RabbitMQ confirmed
    /// each: returns the ids it would have published.
    fn drain(spool: &Spool) -> Vec<String> {
        let mut ids = Vec::new();
        while let Work::Read { seq, from, end } = next_work(&spool.shared) {
            let chunk = read_chunk(&spool.shared.dir, seq, from, end).expect("read");
            ids.extend(chunk.records.iter().map(|record| record.id.clone()));
            advance(&spool.shared, seq, from, chunk);
        }
        ids
    }

    /// The `rejected` file's lines, parsed.
    fn rejected_lines(spool: &Spool) -> Vec<serde_json::Value> {
        std::fs::read_to_string(spool.shared.dir.join(REJECTED))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
            .collect()
    }

    async fn finish(spool: Spool) {
        let dir = spool.shared.dir.clone();
        spool.close().await;
        std::fs::remove_dir_all(dir).ok();
    }

    /// Drains a segment of `good-1`, the crafted entry, `good-2`, `good-3`:
    /// checks the good ones are published, the crafted one is set aside with
    /// a reason naming `why`, and the books balance.
    async fn a_bad_entry_is_rejected_and_the_rest_drained(name: &str, bad: Vec<u8>, why: &str) {
        let spool = spool_with(
            name,
            &[good("good-1"), bad.clone(), good("good-2"), good("good-3")],
        );
        assert_eq!(spool.pending_records(), 4);

        assert_eq!(drain(&spool), ["good-1", "good-2", "good-3"]);
        let lines = rejected_lines(&spool);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let reason = lines[0]["reason"].as_str().expect("a reason");
        assert!(reason.contains(why), "{reason}");
        assert_eq!(lines[0]["entry"], String::from_utf8_lossy(&bad).as_ref());
        assert_eq!(lines[0]["segment"], 1);
        assert_eq!(spool.rejected_records(), 1);
        assert_eq!(spool.pending_records(), 0, "the books balance");
        assert!(!spool.has_pending());
        finish(spool).await;
    }

    #[tokio::test]
    async fn an_id_over_the_amqp_short_string_limit_is_rejected() {
        let id = "i".repeat(300);
        a_bad_entry_is_rejected_and_the_rest_drained("long-id", with("id", id.into()), "id").await;
    }

    #[tokio::test]
    async fn a_time_past_year_9999_in_utc_is_rejected() {
        a_bad_entry_is_rejected_and_the_rest_drained(
            "late-time",
            with("time", "9999-12-31T23:59:59-23:59".into()),
            "time",
        )
        .await;
    }

    #[tokio::test]
    async fn a_time_before_1970_in_utc_is_rejected() {
        a_bad_entry_is_rejected_and_the_rest_drained(
            "early-time",
            with("received_time", "0000-01-01T00:00:00+23:59".into()),
            "received_time",
        )
        .await;
    }

    #[tokio::test]
    async fn json_that_does_not_decode_is_rejected_despite_its_checksum() {
        a_bad_entry_is_rejected_and_the_rest_drained(
            "bad-json",
            b"{\"id\": \"x\"\n".to_vec(),
            "EOF",
        )
        .await;
    }

    #[tokio::test]
    async fn a_record_the_gateway_would_refuse_is_rejected() {
        a_bad_entry_is_rejected_and_the_rest_drained(
            "bad-service",
            with("service", "a.b".into()),
            "service",
        )
        .await;
    }

    #[tokio::test]
    async fn the_rejected_file_is_readable_by_its_owner_only() {
        let spool = spool_with("rejected-mode", &[b"not json".to_vec()]);
        assert!(drain(&spool).is_empty());
        let mode = std::fs::metadata(spool.shared.dir.join(REJECTED))
            .expect("rejected")
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        finish(spool).await;
    }

    #[tokio::test]
    async fn a_drainer_that_panics_is_counted_and_restarted() {
        let spool = spool_with("supervise", &[]);
        let mut up = spool.drainer_up();
        // A failure is reported down until the restart.
        let reported_down = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(5), up.wait_for(|up| !*up))
                .await
                .is_ok_and(|seen| seen.is_ok())
        });
        let runs = Arc::new(AtomicU32::new(0));
        let counting = Arc::clone(&runs);
        supervise(
            Arc::clone(&spool.shared),
            CancellationToken::new(),
            Duration::from_millis(20),
            move || {
                let run = counting.fetch_add(1, Ordering::AcqRel) + 1;
                async move {
                    assert!(run > 2, "a drainer that fails (run {run})");
                }
            },
        )
        .await;
        assert_eq!(
            runs.load(Ordering::Acquire),
            3,
            "restarted until it ended by itself"
        );
        assert_eq!(spool.drainer_failures(), 2);
        assert!(*spool.drainer_up().borrow(), "up once restarted");
        assert!(reported_down.await.expect("watcher"), "reported down");
        finish(spool).await;
    }
}
