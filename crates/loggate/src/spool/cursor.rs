//! The drainer's position on disk: one small `cursor` file naming a segment
//! and a byte offset in it, always whole (written aside, then renamed).

use std::{fs::File, io, path::Path};

use super::file_options;

/// Name of the file holding the drainer's position.
pub(super) const CURSOR: &str = "cursor";

/// Records the drainer's position: segment `seq`, byte `offset`. Written
/// to a temporary file and renamed, so the cursor is always whole. The
/// temporary file is made anew each time (`create_new`, never through a
/// symlink): whatever stands at its name is removed, not written through.
pub(super) fn write_cursor(dir: &Path, seq: u64, offset: u64, sync: bool) -> io::Result<()> {
    let temporary = dir.join(format!("{CURSOR}.tmp"));
    let text = format!("{seq} {offset}\n");
    // Unlinks a leftover (or a planted link) rather than following it.
    match std::fs::remove_file(&temporary) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    {
        let mut file = file_options()
            .write(true)
            .create_new(true)
            .open(&temporary)?;
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
    let mut text = String::new();
    let mut file = file_options().read(true).open(dir.join(CURSOR)).ok()?;
    io::Read::read_to_string(&mut file, &mut text).ok()?;
    let mut parts = text.split_whitespace();
    let seq = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    Some((seq, offset))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_symlink_at_the_temporary_name_is_replaced_not_written_through() {
        let dir = crate::spool::test_dir("symlink");
        let victim = dir.join("victim");
        std::fs::write(&victim, b"precious").expect("victim");
        std::os::unix::fs::symlink(&victim, dir.join(format!("{CURSOR}.tmp"))).expect("link");

        write_cursor(&dir, 3, 42, true).expect("written beside the link");
        assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");
        assert_eq!(read_cursor(&dir), Some((3, 42)));
        let cursor = std::fs::symlink_metadata(dir.join(CURSOR)).expect("cursor");
        assert!(cursor.file_type().is_file(), "a file of its own");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_symlinked_cursor_is_not_read() {
        let dir = crate::spool::test_dir("read-link");
        std::fs::write(dir.join("elsewhere"), b"7 99\n").expect("elsewhere");
        std::os::unix::fs::symlink(dir.join("elsewhere"), dir.join(CURSOR)).expect("link");
        assert_eq!(read_cursor(&dir), None);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn the_cursor_is_readable_by_its_owner_only() {
        let dir = crate::spool::test_dir("mode");
        write_cursor(&dir, 1, 8, false).expect("written");
        let mode = std::fs::metadata(dir.join(CURSOR))
            .expect("cursor")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        std::fs::remove_dir_all(dir).ok();
    }
}
