//! The spool's file format: segment files of checksummed entries.
//!
//! A segment is `spool-<seq>.seg`: an 8-byte magic, then entries back to back.
//! An entry is `len: u32 LE | crc32(payload): u32 LE | payload`, the payload
//! being one record's JSON (the same bytes as its AMQP body). Entries are only
//! ever appended; a crash can leave a torn entry at the end, which the
//! checksum (or a length running past the end) gives away.

use std::{
    fs::File,
    io::{self, BufReader, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use super::file_options;

/// First bytes of every segment file (the format's version is its last byte).
pub(super) const MAGIC: &[u8; 8] = b"LGSPOOL1";
/// Where the first entry of a segment starts.
pub(super) const HEADER_BYTES: u64 = MAGIC.len() as u64;
/// `len` and `crc` before each payload.
pub(super) const ENTRY_OVERHEAD: u64 = 8;
/// No record's JSON comes near this; a larger length is corruption.
const MAX_PAYLOAD: u32 = 64 << 20;

const PREFIX: &str = "spool-";
const SUFFIX: &str = ".seg";

/// The path of segment `seq` in `dir`.
pub(super) fn path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{seq:020}{SUFFIX}"))
}

/// The sequence numbers of the segments in `dir`, oldest first. Only regular
/// files count: a symlink with a segment's name is not ours.
pub(super) fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.strip_suffix(SUFFIX))
            .and_then(|digits| digits.parse::<u64>().ok())
        {
            found.push(seq);
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Appends one entry for `payload` to `buf`.
pub(super) fn encode_entry(payload: &[u8], buf: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("a record's JSON is far below 4 GiB");
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

/// Creates segment `seq` (with its magic, synced) and returns it open for appending.
pub(super) fn create(dir: &Path, seq: u64) -> io::Result<File> {
    let mut file = file_options()
        .create_new(true)
        .append(true)
        .open(path(dir, seq))?;
    file.write_all(MAGIC)?;
    file.sync_data()?;
    // The new name must survive a crash too.
    File::open(dir)?.sync_all()?;
    Ok(file)
}

/// What a scan of a whole segment found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Scanned {
    /// Length of the valid prefix: the magic and every entry that checks out.
    pub valid_len: u64,
    /// Entries in the valid prefix at or after `from`.
    pub entries_after: u64,
    /// Bytes past the valid prefix (a torn or corrupt tail), 0 if none.
    pub dropped_bytes: u64,
    /// `from` is where an entry starts (or where the valid entries end).
    pub aligned: bool,
}

/// Reads segment `seq` and finds where its valid entries end; counts the
/// entries at or after byte `from`.
pub(super) fn scan(dir: &Path, seq: u64, from: u64) -> io::Result<Scanned> {
    let file = open_read(dir, seq)?;
    let file_len = file.metadata()?.len();
    let mut reader = Reader::new(file, 0)?;
    if !reader.check_magic()? {
        return Ok(Scanned {
            valid_len: 0,
            entries_after: 0,
            dropped_bytes: file_len,
            aligned: false,
        });
    }
    let mut entries_after = 0;
    let mut aligned = from == HEADER_BYTES;
    let mut payload = Vec::new();
    while let Some(entry) = reader.next(&mut payload)? {
        if entry.start >= from {
            entries_after += 1;
        }
        aligned |= entry.start == from || entry.end == from;
    }
    Ok(Scanned {
        valid_len: reader.position,
        entries_after,
        dropped_bytes: file_len - reader.position,
        aligned,
    })
}

/// Cuts segment `seq` back to `len` bytes (dropping a torn tail), durably.
pub(super) fn truncate(dir: &Path, seq: u64, len: u64) -> io::Result<()> {
    let file = file_options().write(true).open(path(dir, seq))?;
    file.set_len(len)?;
    file.sync_all()
}

/// One entry's place in its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EntrySpan {
    pub start: u64,
    pub end: u64,
}

/// Reads entries one after another from a position in a segment.
pub(super) struct Reader {
    inner: BufReader<File>,
    /// Byte offset of the next entry.
    pub position: u64,
}

impl Reader {
    pub(super) fn open(dir: &Path, seq: u64, position: u64) -> io::Result<Reader> {
        Reader::new(open_read(dir, seq)?, position)
    }

    fn new(mut file: File, position: u64) -> io::Result<Reader> {
        file.seek(SeekFrom::Start(position))?;
        Ok(Reader {
            inner: BufReader::with_capacity(256 * 1024, file),
            position,
        })
    }

    fn check_magic(&mut self) -> io::Result<bool> {
        let mut magic = [0u8; 8];
        if !read_full(&mut self.inner, &mut magic)? || &magic != MAGIC {
            return Ok(false);
        }
        self.position = HEADER_BYTES;
        Ok(true)
    }

    /// The next entry's payload into `payload`, or `None` at the end of the
    /// valid entries (end of file, a torn entry or a checksum mismatch; the
    /// position then stays before it).
    pub(super) fn next(&mut self, payload: &mut Vec<u8>) -> io::Result<Option<EntrySpan>> {
        let mut head = [0u8; 8];
        if !read_full(&mut self.inner, &mut head)? {
            return Ok(None);
        }
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        if len > MAX_PAYLOAD {
            return Ok(None);
        }
        payload.clear();
        payload.resize(len as usize, 0);
        if !read_full(&mut self.inner, payload)? || crc32fast::hash(payload) != crc {
            return Ok(None);
        }
        let start = self.position;
        self.position += ENTRY_OVERHEAD + u64::from(len);
        Ok(Some(EntrySpan {
            start,
            end: self.position,
        }))
    }
}

/// Opens segment `seq` for reading, never through a symlink.
fn open_read(dir: &Path, seq: u64) -> io::Result<File> {
    file_options().read(true).open(path(dir, seq))
}

/// Fills `buf`; `false` if the input ended first.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;

    use super::*;

    fn write_entries(dir: &Path, seq: u64, payloads: &[&[u8]]) -> u64 {
        let mut file = create(dir, seq).expect("create");
        let mut buf = Vec::new();
        for payload in payloads {
            encode_entry(payload, &mut buf);
        }
        file.write_all(&buf).expect("write");
        HEADER_BYTES + buf.len() as u64
    }

    fn read_all(dir: &Path, seq: u64) -> Vec<Vec<u8>> {
        let mut reader = Reader::open(dir, seq, HEADER_BYTES).expect("open");
        let mut out = Vec::new();
        let mut payload = Vec::new();
        while reader.next(&mut payload).expect("read").is_some() {
            out.push(payload.clone());
        }
        out
    }

    #[test]
    fn entries_read_back_in_order() {
        let dir = crate::spool::test_dir("order");
        let end = write_entries(&dir, 1, &[b"one", b"two", b"three"]);
        assert_eq!(
            read_all(&dir, 1),
            [b"one".to_vec(), b"two".into(), b"three".into()]
        );
        let scanned = scan(&dir, 1, HEADER_BYTES).expect("scan");
        assert_eq!(
            scanned,
            Scanned {
                valid_len: end,
                entries_after: 3,
                dropped_bytes: 0,
                aligned: true,
            }
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_torn_last_entry_is_detected_and_dropped() {
        let dir = crate::spool::test_dir("torn");
        let end = write_entries(&dir, 7, &[b"kept", b"also kept"]);
        // A crash in the middle of writing the third entry: its header and
        // half its payload made it to disk.
        let mut torn = Vec::new();
        encode_entry(b"never acknowledged", &mut torn);
        torn.truncate(torn.len() - 5);
        OpenOptions::new()
            .append(true)
            .open(path(&dir, 7))
            .and_then(|mut f| f.write_all(&torn))
            .expect("append torn");

        let scanned = scan(&dir, 7, HEADER_BYTES).expect("scan");
        assert_eq!(scanned.valid_len, end);
        assert_eq!(scanned.entries_after, 2);
        assert_eq!(scanned.dropped_bytes, torn.len() as u64);
        truncate(&dir, 7, scanned.valid_len).expect("truncate");
        assert_eq!(read_all(&dir, 7), [b"kept".to_vec(), b"also kept".into()]);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_checksum_mismatch_ends_the_valid_entries() {
        let dir = crate::spool::test_dir("crc");
        write_entries(&dir, 2, &[b"first", b"second", b"third"]);
        // Flip one byte of the second payload.
        let mut bytes = std::fs::read(path(&dir, 2)).expect("read");
        let second_payload = HEADER_BYTES as usize + 8 + 5 + 8;
        bytes[second_payload] ^= 0x20;
        std::fs::write(path(&dir, 2), &bytes).expect("write");

        assert_eq!(read_all(&dir, 2), [b"first".to_vec()]);
        let scanned = scan(&dir, 2, HEADER_BYTES).expect("scan");
        assert_eq!(scanned.entries_after, 1);
        assert_eq!(scanned.valid_len, HEADER_BYTES + 8 + 5);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_file_without_the_magic_has_no_entries() {
        let dir = crate::spool::test_dir("magic");
        std::fs::write(path(&dir, 3), b"not a spool segment").expect("write");
        let scanned = scan(&dir, 3, HEADER_BYTES).expect("scan");
        assert_eq!(scanned.valid_len, 0);
        assert_eq!(scanned.entries_after, 0);
        assert_eq!(scanned.dropped_bytes, 19);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn an_absurd_length_is_corruption_not_an_allocation() {
        let dir = crate::spool::test_dir("length");
        let end = write_entries(&dir, 4, &[b"ok"]);
        let mut bogus = Vec::new();
        bogus.extend_from_slice(&u32::MAX.to_le_bytes());
        bogus.extend_from_slice(&0u32.to_le_bytes());
        OpenOptions::new()
            .append(true)
            .open(path(&dir, 4))
            .and_then(|mut f| f.write_all(&bogus))
            .expect("append");
        assert_eq!(scan(&dir, 4, HEADER_BYTES).expect("scan").valid_len, end);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn segments_are_listed_oldest_first_ignoring_other_files() {
        let dir = crate::spool::test_dir("list");
        for seq in [10, 2, 33] {
            create(&dir, seq).expect("create");
        }
        std::fs::write(dir.join("cursor"), b"x").expect("write");
        std::fs::write(dir.join("spool-x.seg"), b"x").expect("write");
        assert_eq!(list(&dir).expect("list"), [2, 10, 33]);
        std::fs::remove_dir_all(dir).ok();
    }
}
