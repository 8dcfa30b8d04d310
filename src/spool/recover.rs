//! Opening a spool left by an earlier run (stopped cleanly or killed): find
//! the segments, drop the ones already drained, cut torn tails off, count
//! what is still to be drained.

use std::{io, path::Path};

use tracing::warn;

use super::{read_cursor, segment, SegmentState, State, CURSOR};

/// What an existing spool directory holds.
pub(super) struct Recovered {
    pub state: State,
    /// Records still to be drained, and their bytes.
    pub records: u64,
    pub bytes: u64,
    /// The sequence number for the next new segment.
    pub next_seq: u64,
}

pub(super) fn recover(dir: &Path) -> io::Result<Recovered> {
    // A temporary cursor from a rename that never happened is meaningless.
    let _ = std::fs::remove_file(dir.join(format!("{CURSOR}.tmp")));
    let cursor = read_cursor(dir);
    let seqs = segment::list(dir)?;
    let mut recovered = Recovered {
        state: State::default(),
        records: 0,
        bytes: 0,
        next_seq: seqs
            .iter()
            .copied()
            .chain(cursor.map(|(seq, _)| seq))
            .max()
            .map_or(1, |seq| seq + 1),
    };

    for seq in seqs {
        let path = segment::path(dir, seq);
        if cursor.is_some_and(|(drained_before, _)| seq < drained_before) {
            // Fully drained before the last cursor was written; the delete
            // did not happen (or not durably) before the gateway stopped.
            std::fs::remove_file(&path)?;
            continue;
        }
        let first = recovered.state.segments.is_empty();
        let wanted = match cursor {
            Some((cursor_seq, offset)) if first && cursor_seq == seq => offset,
            _ => segment::HEADER_BYTES,
        };
        let mut scanned = segment::scan(dir, seq, wanted)?;
        if scanned.valid_len < segment::HEADER_BYTES {
            warn!(file = %path.display(), "not a spool segment (bad header); removing it");
            std::fs::remove_file(&path)?;
            continue;
        }
        if scanned.dropped_bytes > 0 {
            // Never acknowledged: a call is answered only after its entry's fsync.
            warn!(file = %path.display(), bytes = scanned.dropped_bytes, "dropping a torn or corrupt tail from the spool");
            segment::truncate(dir, seq, scanned.valid_len)?;
        }
        let from = if scanned.aligned {
            wanted
        } else {
            // Safer to publish the segment again than to read from the middle of an entry.
            warn!(file = %path.display(), offset = wanted, "the spool's cursor is not at an entry; draining the segment from its start");
            scanned = segment::scan(dir, seq, segment::HEADER_BYTES)?;
            segment::HEADER_BYTES
        };
        if first {
            recovered.state.read = from;
        }
        recovered.records += scanned.entries_after;
        recovered.bytes += scanned.valid_len - from;
        recovered.state.segments.push_back(SegmentState {
            seq,
            end: scanned.valid_len,
            sealed: true,
        });
    }
    if recovered.state.segments.is_empty() {
        recovered.state.read = segment::HEADER_BYTES;
    }
    Ok(recovered)
}
