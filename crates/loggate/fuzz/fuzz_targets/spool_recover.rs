//! Spool recovery over whatever is on disk: segment files of any bytes (torn,
//! corrupt, crafted) and optionally a cursor, as `Spool::open` finds them
//! after a crash or a meddling person. Recovery must not panic or fail; it
//! must agree with an independent reading of the format (entries whose
//! length and CRC check out, up to the first that does not); it must be
//! idempotent; and every entry it leaves to drain must be safe to decode.
//!
//! Input: a flags byte (bit 0: write a cursor; bits 1-2: its segment, 0-3;
//! bit 3: its offset is the next two bytes, little-endian, else the header
//! end), then up to three segment files separated by `|SEG|`.
#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use loggate::record::Record;

const MAGIC: &[u8] = b"LGSPOOL1";
const SEPARATOR: &[u8] = b"|SEG|";

fn dir() -> PathBuf {
    // tmpfs when there is one: recovery fsyncs what it truncates.
    let base = Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("loggate-fuzz-spool-{}", std::process::id()))
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("spool-{seq:020}.seg"))
}

/// The valid prefix of a segment and its entries' (start, end, payload).
fn valid_entries(bytes: &[u8]) -> Option<(usize, Vec<(usize, usize, &[u8])>)> {
    if !bytes.starts_with(MAGIC) {
        return None;
    }
    let mut at = MAGIC.len();
    let mut entries = Vec::new();
    while let Some(head) = bytes.get(at..at + 8) {
        let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().unwrap());
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        entries.push((at, at + 8 + len, payload));
        at += 8 + len;
    }
    Some((at, entries))
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(e.path()).expect("read");
            (name, bytes)
        })
        .collect();
    files.sort();
    files
}

fn split_segments(mut rest: &[u8]) -> Vec<&[u8]> {
    let mut segments = Vec::new();
    while segments.len() < 2 {
        match rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            Some(i) => {
                segments.push(&rest[..i]);
                rest = &rest[i + SEPARATOR.len()..];
            }
            None => break,
        }
    }
    segments.push(rest);
    segments
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let dir = dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");

    let cursor = if flags & 1 == 1 {
        let seq = u64::from((flags >> 1) & 3);
        let offset = if flags & 8 == 8 && rest.len() >= 2 {
            let offset = u64::from(u16::from_le_bytes([rest[0], rest[1]]));
            rest = &rest[2..];
            offset
        } else {
            MAGIC.len() as u64
        };
        std::fs::write(dir.join("cursor"), format!("{seq} {offset}\n")).expect("cursor");
        Some((seq, offset))
    } else {
        None
    };
    let segments = split_segments(rest);
    for (i, bytes) in segments.iter().enumerate() {
        std::fs::write(segment_path(&dir, i as u64 + 1), bytes).expect("segment");
    }

    let (records, bytes) =
        loggate::spool::recover_for_fuzzing(&dir).expect("recovery of a readable directory");

    // An independent reading of every segment.
    let mut all_records = 0u64;
    let mut all_bytes = 0u64;
    for (i, original) in segments.iter().enumerate() {
        let seq = i as u64 + 1;
        let path = segment_path(&dir, seq);
        let drained = cursor.is_some_and(|(cursor_seq, _)| seq < cursor_seq);
        match valid_entries(original) {
            _ if drained => assert!(!path.exists(), "a drained segment is deleted"),
            None => {
                assert!(!path.exists(), "a segment without the magic is set aside");
                assert_eq!(
                    std::fs::read(path.with_extension("bad")).expect("the .bad file"),
                    *original,
                    "set aside untouched"
                );
            }
            Some((valid, entries)) => {
                let on_disk = std::fs::read(&path).expect("a valid segment stays");
                assert_eq!(on_disk, original[..valid], "cut back to its valid entries");
                all_records += entries.len() as u64;
                all_bytes += (valid - MAGIC.len()) as u64;
                for (_, _, payload) in entries {
                    // What the drainer does with each entry before its checks.
                    if let Ok(record) = Record::from_json(payload) {
                        let _ = record.routing_key();
                    }
                }
            }
        }
    }
    if cursor.is_none() {
        assert_eq!((records, bytes), (all_records, all_bytes));
    } else {
        assert!(records <= all_records && bytes <= all_bytes);
    }

    // Recovery is idempotent: a second run changes nothing and finds the same.
    let before = snapshot(&dir);
    let again = loggate::spool::recover_for_fuzzing(&dir).expect("second recovery");
    assert_eq!(again, (records, bytes), "a second recovery finds the same");
    assert_eq!(snapshot(&dir), before, "a second recovery changes no file");
    let _ = std::fs::remove_dir_all(&dir);
});
