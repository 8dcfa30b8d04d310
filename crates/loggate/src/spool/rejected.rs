//! The `rejected` file: spooled entries that were whole (their checksum held)
//! but not fit to publish, kept for a person to look at instead of being
//! published or silently dropped.
//!
//! Append-only, 0600, one JSON object per line: where the entry was, why it
//! was refused, and the entry itself as text (invalid UTF-8 replaced), so a
//! line can never be broken or forged by what the entry holds.

use std::{io, path::Path};

use serde_json::json;

use super::file_options;

/// Name of the file of rejected entries in the spool directory.
pub(super) const REJECTED: &str = "rejected";

/// One entry the drainer refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rejection {
    /// Its segment and byte offset there.
    pub seq: u64,
    pub offset: u64,
    /// Why: the JSON error, or the field and rule it broke.
    pub reason: String,
    /// Its payload as stored.
    pub entry: Vec<u8>,
}

/// Appends `rejections` to the `rejected` file in `dir`, durably.
pub(super) fn append(dir: &Path, rejections: &[Rejection]) -> io::Result<()> {
    if rejections.is_empty() {
        return Ok(());
    }
    let mut lines = Vec::new();
    for rejection in rejections {
        let line = json!({
            "segment": rejection.seq,
            "offset": rejection.offset,
            "reason": rejection.reason,
            "entry": String::from_utf8_lossy(&rejection.entry),
        });
        serde_json::to_writer(&mut lines, &line).map_err(io::Error::other)?;
        lines.push(b'\n');
    }
    let mut file = file_options()
        .create(true)
        .append(true)
        .open(dir.join(REJECTED))?;
    io::Write::write_all(&mut file, &lines)?;
    file.sync_data()
}
