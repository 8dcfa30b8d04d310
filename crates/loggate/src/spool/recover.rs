//! Opening a spool left by an earlier run (stopped cleanly or killed): find
//! the segments, drop the ones already drained, cut torn tails off, count
//! what is still to be drained.

use std::{io, path::Path};

use tracing::warn;

use super::cursor::{read_cursor, CURSOR};
use super::{segment, SegmentState, State};

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
            .map_or(1, |seq| seq.saturating_add(1)),
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
            // Kept aside for a person to look at, never read again.
            warn!(file = %path.display(), "not a spool segment (bad header); renaming it to .bad");
            std::fs::rename(&path, path.with_extension("bad"))?;
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::spool::{cursor::write_cursor, segment};

    /// Writes a segment of `count` entries; returns each entry's end offset.
    fn segment_of(dir: &Path, seq: u64, count: usize) -> Vec<u64> {
        let mut file = segment::create(dir, seq).expect("create");
        let mut ends = Vec::new();
        let mut offset = segment::HEADER_BYTES;
        for i in 0..count {
            let mut entry = Vec::new();
            segment::encode_entry(format!("record {i}").as_bytes(), &mut entry);
            file.write_all(&entry).expect("write");
            offset += entry.len() as u64;
            ends.push(offset);
        }
        ends
    }

    #[test]
    fn an_empty_directory_starts_at_segment_one() {
        let dir = crate::spool::test_dir("empty");
        let recovered = recover(&dir).expect("recover");
        assert_eq!(recovered.records, 0);
        assert_eq!(recovered.next_seq, 1);
        assert!(recovered.state.segments.is_empty());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn everything_after_the_cursor_is_pending_and_drained_segments_go() {
        let dir = crate::spool::test_dir("cursor");
        segment_of(&dir, 1, 4);
        let ends = segment_of(&dir, 2, 5);
        segment_of(&dir, 3, 2);
        // Segment 1 was drained and deleted-to-be; two records of segment 2 too.
        write_cursor(&dir, 2, ends[1], false).expect("cursor");

        let recovered = recover(&dir).expect("recover");
        assert_eq!(recovered.records, 3 + 2);
        assert_eq!(recovered.state.read, ends[1]);
        let seqs: Vec<u64> = recovered.state.segments.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, [2, 3]);
        assert!(
            !segment::path(&dir, 1).exists(),
            "the drained segment is deleted"
        );
        assert_eq!(recovered.next_seq, 4);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_not_counted() {
        let dir = crate::spool::test_dir("torn");
        let ends = segment_of(&dir, 1, 3);
        std::fs::OpenOptions::new()
            .append(true)
            .open(segment::path(&dir, 1))
            .and_then(|mut f| f.write_all(&[9, 0, 0, 0, 1, 2]))
            .expect("torn bytes");
        let recovered = recover(&dir).expect("recover");
        assert_eq!(recovered.records, 3);
        assert_eq!(recovered.state.segments[0].end, ends[2]);
        let on_disk = std::fs::metadata(segment::path(&dir, 1))
            .expect("file")
            .len();
        assert_eq!(on_disk, ends[2], "the file was truncated");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_cursor_inside_an_entry_drains_the_segment_again_rather_than_misread() {
        let dir = crate::spool::test_dir("unaligned");
        let ends = segment_of(&dir, 5, 3);
        write_cursor(&dir, 5, ends[0] + 3, false).expect("cursor");
        let recovered = recover(&dir).expect("recover");
        assert_eq!(recovered.records, 3, "all of it, at least once");
        assert_eq!(recovered.state.read, segment::HEADER_BYTES);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_segment_without_its_header_is_set_aside() {
        let dir = crate::spool::test_dir("header");
        std::fs::write(segment::path(&dir, 1), b"LGSP").expect("write");
        segment_of(&dir, 2, 1);
        let recovered = recover(&dir).expect("recover");
        assert_eq!(recovered.records, 1);
        assert!(!segment::path(&dir, 1).exists());
        assert!(
            segment::path(&dir, 1).with_extension("bad").exists(),
            "kept aside"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
