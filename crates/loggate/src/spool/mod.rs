//! The local spool (`--spool-dir`): when RabbitMQ is unreachable or blocked,
//! accepted records are appended to checksummed segment files and fsynced
//! before the call answers OK (`spooled = true`); a drainer publishes them to
//! RabbitMQ in order, with confirms, and deletes a segment only once every
//! record in it is confirmed.
//!
//! One writer thread appends and fsyncs (group commit: every append queued
//! while one fsync runs shares the next). The drainer's position lives in a
//! small `cursor` file, rewritten after each confirmed chunk and fsynced at
//! shutdown; after a crash it may be a little behind, so a few records can be
//! published twice, with their ids. Nothing acknowledged is lost.
//!
//! Memory stays small however much is spooled: records live on disk and the
//! drainer reads a chunk at a time.
//!
//! The spool does not trust its own files: they may sit in a directory others
//! can reach, and a disk or a person can change them. The directory is 0700
//! and every file 0600, opened never through a symlink; each entry read back
//! is checked like a record arriving over gRPC, and one that fails goes to the
//! `rejected` file instead of RabbitMQ; the drainer runs under a supervisor
//! that logs, counts and restarts it if it ever fails.
//!
//! Over 400 lines because a quarter of it is tests; the rest is the spool's
//! public face, with the format, writer, recovery, cursor and drainer in
//! their own modules.

mod cursor;
mod drain;
mod recover;
mod rejected;
mod segment;
mod writer;

use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io,
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::broker::Publisher;
use crate::record::{BodyTimes, Record};
use crate::sync::lock;
use cursor::{write_cursor, CURSOR};

/// The spool layer's error. Mapped to gRPC status in `api::status`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Taking the records would pass `--spool-max-bytes`.
    #[error("the gateway's spool is full ({used} of {max} bytes, --spool-max-bytes) and RabbitMQ is not taking records")]
    Full { used: u64, max: u64 },
    /// The disk refused a write or an fsync: the records were not accepted.
    #[error("writing the spool: {0}")]
    Io(#[from] io::Error),
    /// The spool is closing (the gateway is shutting down).
    #[error("the spool is closed: the gateway is shutting down")]
    Closed,
}

/// How the spool is set up.
#[derive(Debug, Clone)]
pub struct SpoolSettings {
    pub dir: PathBuf,
    /// Most bytes of undrained records (`--spool-max-bytes`).
    pub max_bytes: u64,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
}

impl SpoolSettings {
    /// A spool in `dir` holding at most `max_bytes`, with segments a quarter
    /// of that (so drained space is given back promptly) within
    /// [`MIN_SEGMENT_BYTES`, `MAX_SEGMENT_BYTES`].
    pub fn new(dir: PathBuf, max_bytes: u64) -> SpoolSettings {
        SpoolSettings {
            dir,
            max_bytes,
            segment_bytes: (max_bytes / 4).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES),
        }
    }
}

/// Smallest segment file [`SpoolSettings::new`] chooses.
const MIN_SEGMENT_BYTES: u64 = 64 << 10;
/// Largest segment file [`SpoolSettings::new`] chooses.
const MAX_SEGMENT_BYTES: u64 = 64 << 20;

/// Name of the lock file that keeps two gateways out of one spool.
const LOCK: &str = "lock";

/// The spool of one gateway.
pub struct Spool {
    shared: Arc<Shared>,
    /// Appends for the writer thread; `None` once closed.
    writes: Mutex<Option<mpsc::Sender<writer::Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    drainer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    stop_draining: CancellationToken,
    /// Held for the spool's life: an exclusive lock on `dir/lock`.
    _lock: File,
}

/// What the writer, the drainer and callers share.
struct Shared {
    dir: PathBuf,
    max_bytes: u64,
    /// Segments on disk and the drainer's position.
    state: Mutex<State>,
    /// Records accepted (queued or on disk) and not yet confirmed by RabbitMQ.
    pending_records: AtomicU64,
    /// Their bytes on disk (entry framing included): what `max_bytes` bounds.
    pending_bytes: AtomicU64,
    /// Woken when the writer has made more records durable.
    appended: Notify,
    /// Entries that failed their checks when read back and went to the
    /// `rejected` file instead of RabbitMQ, since the spool opened.
    rejected: AtomicU64,
    /// Times the drainer failed (panicked) and was restarted, since the spool opened.
    drainer_failures: AtomicU64,
    /// `false` from a drainer's failure until it is restarted: health says
    /// NOT_SERVING meanwhile, since spooled records are not moving.
    drainer_up: tokio::sync::watch::Sender<bool>,
}

/// The segments on disk, oldest first, and where draining stands.
#[derive(Debug, Default)]
struct State {
    segments: VecDeque<SegmentState>,
    /// Offset of the next undrained entry in the front segment.
    read: u64,
}

#[derive(Debug, Clone, Copy)]
struct SegmentState {
    seq: u64,
    /// Bytes written and fsynced: the drainer reads up to here.
    end: u64,
    /// No more appends: once drained to `end`, the file can go.
    sealed: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Updates under this lock are single assignments; a panic elsewhere
        // cannot leave it half-done.
        lock(&self.state)
    }

    /// `true` while records wait in the spool. (Bytes, not records, decide:
    /// they are exact even when damage on disk was skipped.)
    fn has_pending(&self) -> bool {
        self.pending_bytes.load(Ordering::Acquire) > 0
    }

    /// Returns records' bytes and counts to the budget.
    fn release(&self, records: u64, bytes: u64) {
        self.pending_records.fetch_sub(records, Ordering::AcqRel);
        self.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// How every file in the spool directory is opened: never through a symlink
/// (in a directory others can write, a planted link would send a write or a
/// read somewhere else), and created readable by the gateway's user only.
fn file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    options
}

/// Creates the spool directory 0700 (and any missing parents). An existing
/// one that others can reach is narrowed to 0700 when it is ours and not a
/// shared sticky directory like `/tmp`; otherwise it is left and warned about.
fn prepare_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let metadata = std::fs::metadata(dir)?;
    let mode = metadata.mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let ours = metadata.uid() == unsafe { libc::geteuid() };
    if ours && mode & 0o1000 == 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        info!(dir = %dir.display(), from = format_args!("{mode:o}"), "the spool directory is now 0700");
    } else {
        warn!(dir = %dir.display(), mode = format_args!("{mode:o}"), "the spool directory is open to other users; give the gateway a directory of its own");
    }
    Ok(())
}

impl Spool {
    /// Opens (or creates) the spool in `settings.dir`: takes its lock, drops
    /// torn entries left by a crash, and finds what is still to be drained.
    pub fn open(settings: SpoolSettings) -> Result<Spool, Error> {
        prepare_dir(&settings.dir)?;
        let lock = file_options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(settings.dir.join(LOCK))?;
        lock.try_lock().map_err(|_| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "{} is in use by another loggate; give each gateway its own --spool-dir",
                    settings.dir.display()
                ),
            )
        })?;
        let recovered = recover::recover(&settings.dir)?;
        if recovered.records > 0 {
            info!(records = recovered.records, bytes = recovered.bytes, dir = %settings.dir.display(), "the spool holds records from before; draining them once RabbitMQ takes them");
        }
        let shared = Arc::new(Shared {
            dir: settings.dir.clone(),
            max_bytes: settings.max_bytes,
            state: Mutex::new(recovered.state),
            pending_records: AtomicU64::new(recovered.records),
            pending_bytes: AtomicU64::new(recovered.bytes),
            appended: Notify::new(),
            rejected: AtomicU64::new(0),
            drainer_failures: AtomicU64::new(0),
            drainer_up: tokio::sync::watch::Sender::new(true),
        });
        let (writes, jobs) = mpsc::channel(writer::QUEUE);
        let writer = writer::spawn(
            Arc::clone(&shared),
            jobs,
            recovered.next_seq,
            settings.segment_bytes,
        )?;
        Ok(Spool {
            shared,
            writes: Mutex::new(Some(writes)),
            writer: Mutex::new(Some(writer)),
            drainer: Mutex::new(None),
            stop_draining: CancellationToken::new(),
            _lock: lock,
        })
    }

    /// Starts the task that publishes spooled records whenever `publisher`
    /// is connected and not blocked, restarted if it ever fails.
    pub fn start_draining(&self, publisher: Arc<Publisher>) {
        let shared = Arc::clone(&self.shared);
        let stop = self.stop_draining.clone();
        let task = tokio::spawn(drain::supervise(
            Arc::clone(&self.shared),
            self.stop_draining.clone(),
            drain::RESTART_FIRST,
            move || drain::run(Arc::clone(&shared), Arc::clone(&publisher), stop.clone()),
        ));
        *lock(&self.drainer) = Some(task);
    }

    /// Entries that failed their checks when read back, moved to the
    /// `rejected` file instead of being published, since the spool opened.
    pub fn rejected_records(&self) -> u64 {
        self.shared.rejected.load(Ordering::Acquire)
    }

    /// Times the drainer failed and was restarted since the spool opened.
    pub fn drainer_failures(&self) -> u64 {
        self.shared.drainer_failures.load(Ordering::Acquire)
    }

    /// `true` unless the drainer failed and waits to be restarted.
    pub fn drainer_up(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shared.drainer_up.subscribe()
    }

    /// `true` while records wait in the spool: new records then go to the
    /// spool too, behind them.
    pub fn has_pending(&self) -> bool {
        self.shared.has_pending()
    }

    /// Records in the spool not yet confirmed by RabbitMQ.
    pub fn pending_records(&self) -> u64 {
        self.shared.pending_records.load(Ordering::Acquire)
    }

    /// Their bytes on disk (entry framing included), under `--spool-max-bytes`.
    pub fn pending_bytes(&self) -> u64 {
        self.shared.pending_bytes.load(Ordering::Acquire)
    }

    /// Queues `records` for the writer, in call order, and returns what to
    /// await for their fsync. Refuses them all if they do not fit.
    pub async fn append(&self, records: &[Record]) -> Result<Appended, Error> {
        let mut bytes = Vec::with_capacity(records.len() * 320);
        let mut payload = Vec::with_capacity(512);
        let mut times = BodyTimes::default();
        for record in records {
            payload.clear();
            record.encode_with(&mut payload, &mut times);
            segment::encode_entry(&payload, &mut bytes);
        }
        let size = bytes.len() as u64;
        let count = records.len() as u64;

        // A place in the writer's queue first: this is the only wait, and a
        // call dropped during it has taken nothing from the budget.
        let sender = lock(&self.writes).clone().ok_or(Error::Closed)?;
        let place = sender.reserve().await.map_err(|_| Error::Closed)?;
        self.reserve(size)?;
        self.shared
            .pending_records
            .fetch_add(count, Ordering::AcqRel);
        let (done, durable) = oneshot::channel();
        place.send(writer::Job {
            bytes,
            records: count,
            done,
        });
        Ok(Appended(durable))
    }

    /// Takes `size` bytes from the `--spool-max-bytes` budget, or says it is full.
    fn reserve(&self, size: u64) -> Result<(), Error> {
        let max = self.shared.max_bytes;
        self.shared
            .pending_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(size).filter(|&total| total <= max)
            })
            .map(|_| ())
            .map_err(|used| Error::Full { used, max })
    }

    /// Stops draining (a chunk being published gets its confirms first),
    /// writes what is queued, and syncs the cursor so a restart resumes
    /// exactly where this one stopped.
    pub async fn close(&self) {
        self.stop_draining.cancel();
        let drainer = lock(&self.drainer).take();
        if let Some(task) = drainer {
            let _ = task.await;
        }
        drop(lock(&self.writes).take());
        let writer = lock(&self.writer).take();
        let shared = Arc::clone(&self.shared);
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(thread) = writer {
                let _ = thread.join();
            }
            let left = shared.pending_records.load(Ordering::Acquire);
            let mut state = shared.state();
            if shared.pending_bytes.load(Ordering::Acquire) == 0 {
                // Everything was drained: the last segment need not wait for
                // the next start to be deleted.
                for segment in state.segments.drain(..) {
                    let _ = std::fs::remove_file(segment::path(&shared.dir, segment.seq));
                }
                let _ = std::fs::remove_file(shared.dir.join(CURSOR));
                return;
            }
            if let Some(front) = state.segments.front() {
                if let Err(error) = write_cursor(&shared.dir, front.seq, state.read, true) {
                    tracing::warn!(%error, "could not sync the spool's cursor; a restart may publish some records twice");
                }
            }
            drop(state);
            info!(records = left, dir = %shared.dir.display(), "records left in the spool; the next start drains them");
        })
        .await;
    }
}

/// Records queued for the spool; await [`Appended::durable`] for the fsync.
pub struct Appended(oneshot::Receiver<io::Result<()>>);

impl Appended {
    /// Resolves once the records are on disk and fsynced.
    pub async fn durable(self) -> Result<(), Error> {
        match self.0.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(Error::Closed),
        }
    }
}

/// Recovers `dir` as [`Spool::open`] does (drops drained segments, cuts torn
/// tails, sets bad segments aside) without locking it or starting anything,
/// and returns the records and bytes left to drain. Only the spool fuzz
/// target (`crates/loggate/fuzz`) calls it.
#[doc(hidden)]
pub fn recover_for_fuzzing(dir: &Path) -> io::Result<(u64, u64)> {
    let recovered = recover::recover(dir)?;
    Ok((recovered.records, recovered.bytes))
}

/// A fresh directory for one unit test of the spool (the test removes it).
#[cfg(test)]
pub(crate) fn test_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "loggate-spool-test-{what}-{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).expect("a test directory");
    dir
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::fixture;

    fn settings(name: &str, max_bytes: u64) -> SpoolSettings {
        SpoolSettings {
            dir: std::env::temp_dir().join(format!(
                "loggate-spool-{name}-{}-{}",
                std::process::id(),
                uuid::Uuid::now_v7().simple()
            )),
            max_bytes,
            segment_bytes: 4096,
        }
    }

    fn records(count: usize) -> Vec<Record> {
        (0..count)
            .map(|i| Record {
                id: format!("id-{i}"),
                service: "spool".into(),
                message: format!("message {i}"),
                ..fixture::record()
            })
            .collect()
    }

    #[tokio::test]
    async fn appended_records_survive_a_reopen_across_segments() {
        let settings = settings("reopen", 1 << 20);
        let spool = Spool::open(settings.clone()).expect("open");
        for chunk in records(100).chunks(10) {
            spool
                .append(chunk)
                .await
                .expect("queued")
                .durable()
                .await
                .expect("fsynced");
        }
        assert_eq!(spool.pending_records(), 100);
        spool.close().await;
        drop(spool);

        let again = Spool::open(settings.clone()).expect("reopen");
        assert_eq!(again.pending_records(), 100);
        let segments = segment::list(&settings.dir).expect("list");
        assert!(segments.len() > 1, "4 KiB segments roll over: {segments:?}");
        again.close().await;
        std::fs::remove_dir_all(&settings.dir).ok();
    }

    #[tokio::test]
    async fn a_full_spool_refuses_the_whole_call() {
        let settings = settings("full", 2048);
        let spool = Spool::open(settings.clone()).expect("open");
        let mut taken = 0;
        let refused = loop {
            match spool.append(&records(1)).await {
                Ok(appended) => {
                    appended.durable().await.expect("fsynced");
                    taken += 1;
                }
                Err(error) => break error,
            }
        };
        assert!(
            matches!(refused, Error::Full { max: 2048, .. }),
            "{refused}"
        );
        assert!(taken > 3, "{taken}");
        assert_eq!(spool.pending_records(), taken);
        // A call that only partly fits is refused whole, and takes nothing.
        let bytes = spool.shared.pending_bytes.load(Ordering::Acquire);
        assert!(matches!(
            spool.append(&records(3)).await,
            Err(Error::Full { .. })
        ));
        assert_eq!(spool.shared.pending_bytes.load(Ordering::Acquire), bytes);
        assert_eq!(spool.pending_records(), taken);
        spool.close().await;
        std::fs::remove_dir_all(&settings.dir).ok();
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("exists")
            .permissions()
            .mode()
            & 0o7777
    }

    #[tokio::test]
    async fn the_directory_and_its_files_are_the_gateways_alone() {
        let settings = settings("modes", 1 << 20);
        let spool = Spool::open(settings.clone()).expect("open");
        spool
            .append(&records(3))
            .await
            .expect("queued")
            .durable()
            .await
            .expect("fsynced");
        // Records left behind: closing writes the cursor.
        spool.close().await;
        let dir = &settings.dir;
        assert_eq!(mode(dir), 0o700, "the directory");
        let segment = segment::path(dir, segment::list(dir).expect("list")[0]);
        for file in [dir.join(LOCK), dir.join(CURSOR), segment] {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn an_existing_directory_of_ours_is_narrowed_to_0700() {
        let settings = settings("narrowed", 1 << 20);
        std::fs::create_dir_all(&settings.dir).expect("dir");
        std::fs::set_permissions(&settings.dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let spool = Spool::open(settings.clone()).expect("open");
        assert_eq!(mode(&settings.dir), 0o700);
        spool.close().await;
        std::fs::remove_dir_all(&settings.dir).ok();
    }

    #[tokio::test]
    async fn one_directory_serves_one_spool_at_a_time() {
        let settings = settings("lock", 1 << 20);
        let first = Spool::open(settings.clone()).expect("open");
        let second = Spool::open(settings.clone());
        let error = second.err().expect("the directory is locked");
        assert!(
            error.to_string().contains("in use by another loggate"),
            "{error}"
        );
        first.close().await;
        std::fs::remove_dir_all(&settings.dir).ok();
    }
}
