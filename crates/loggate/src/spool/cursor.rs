//! The drainer's position on disk: one small `cursor` file naming a segment
//! and a byte offset in it, always whole (written aside, then renamed).

use std::{fs::File, io, path::Path};

/// Name of the file holding the drainer's position.
pub(super) const CURSOR: &str = "cursor";

/// Records the drainer's position: segment `seq`, byte `offset`. Written
/// to a temporary file and renamed, so the cursor is always whole.
pub(super) fn write_cursor(dir: &Path, seq: u64, offset: u64, sync: bool) -> io::Result<()> {
    let temporary = dir.join(format!("{CURSOR}.tmp"));
    let text = format!("{seq} {offset}\n");
    {
        let mut file = File::create(&temporary)?;
        io::Write::write_all(&mut file, text.as_bytes())?;
        if sync {
            file.sync_all()?;
        }
    }
    std::fs::rename(&temporary, dir.join(CURSOR))?;
    if sync {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The drainer's last recorded position, if there is a readable one.
pub(super) fn read_cursor(dir: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(dir.join(CURSOR)).ok()?;
    let mut parts = text.split_whitespace();
    let seq = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    Some((seq, offset))
}
