//! The drainer: publishes spooled records to RabbitMQ in the order they were
//! spooled, a chunk at a time, each chunk with confirms before the next; moves
//! the cursor past a chunk only once it is confirmed, and deletes a segment
//! only once all of it is.

use std::{path::Path, sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::cursor::write_cursor;
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

/// The drainer's next step, decided under the state lock.
enum Work {
    /// Publish entries of segment `seq` from byte `from` up to `end`.
    Read { seq: u64, from: u64, end: u64 },
    /// Segment `seq` is sealed and fully drained: delete it.
    Delete { seq: u64 },
    /// Nothing durable is waiting.
    Idle,
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
                        error!(error = %join, "the spool reader stopped");
                        return;
                    }
                };
                // Not cancelled by `stop`: a chunk being published gets its
                // confirms (bounded by --publish-timeout) before shutdown.
                match publisher.publish(&chunk.records).await {
                    Ok(()) => {
                        retry = RETRY_FIRST;
                        drained += chunk.records.len() as u64;
                        let records = chunk.records.len() as u64 + chunk.undecodable;
                        let next = chunk.next;
                        let advancing = Arc::clone(&shared);
                        // File work off the async workers.
                        let _ = tokio::task::spawn_blocking(move || {
                            advance(&advancing, seq, from, records, next)
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

/// Moves the cursor past a confirmed chunk (`records` entries, ending at
/// `next`), and returns its records and bytes to the budget.
fn advance(shared: &Shared, seq: u64, from: u64, records: u64, next: u64) {
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
    /// Entries whose checksum held but whose JSON did not decode (a bug, not
    /// a torn write): skipped, and counted so the books balance.
    undecodable: u64,
    /// Offset just past the chunk.
    next: u64,
}

fn read_chunk(dir: &Path, seq: u64, from: u64, end: u64) -> std::io::Result<Chunk> {
    let mut reader = segment::Reader::open(dir, seq, from)?;
    let mut chunk = Chunk {
        records: Vec::with_capacity(CHUNK_RECORDS),
        undecodable: 0,
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
        match Record::from_json(&payload) {
            Ok(record) => chunk.records.push(record),
            Err(error) => {
                error!(%error, seq, offset = entry.start, "a spooled record does not decode; skipping it");
                chunk.undecodable += 1;
            }
        }
    }
    Ok(chunk)
}
