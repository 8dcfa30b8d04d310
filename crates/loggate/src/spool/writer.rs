//! The spool's one writer: a thread that appends queued entries to the head
//! segment and fsyncs them, answering every append in the group at once.

use std::{
    fs::File,
    io::{self, Write},
    sync::Arc,
};

use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::{segment, SegmentState, Shared};

/// Appends queued for the writer before callers wait to queue more.
pub(super) const QUEUE: usize = 1024;
/// Most bytes one group writes before its fsync.
const GROUP_BYTES: usize = 8 << 20;

/// Some records' entries, and who to tell once they are durable.
pub(super) struct Job {
    pub bytes: Vec<u8>,
    pub records: u64,
    pub done: oneshot::Sender<io::Result<()>>,
}

/// The segment being appended to.
struct Head {
    seq: u64,
    file: File,
    len: u64,
}

pub(super) fn spawn(
    shared: Arc<Shared>,
    jobs: mpsc::Receiver<Job>,
    next_seq: u64,
    segment_bytes: u64,
) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("loggate-spool".into())
        .spawn(move || {
            Writer {
                shared,
                head: None,
                next_seq,
                segment_bytes,
            }
            .run(jobs)
        })
}

struct Writer {
    shared: Arc<Shared>,
    head: Option<Head>,
    next_seq: u64,
    segment_bytes: u64,
}

impl Writer {
    /// Runs until every sender is gone and the queue is empty.
    fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        while let Some(first) = jobs.blocking_recv() {
            let mut group = vec![first];
            let mut bytes = group[0].bytes.len();
            while bytes < GROUP_BYTES {
                match jobs.try_recv() {
                    Ok(job) => {
                        bytes += job.bytes.len();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            let written = self.write(&group);
            if written.is_err() {
                for job in &group {
                    self.shared.release(job.records, job.bytes.len() as u64);
                }
            }
            for job in group {
                let answer = match &written {
                    Ok(()) => Ok(()),
                    Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
                };
                let _ = job.done.send(answer);
            }
        }
        if let Some(head) = self.head.take() {
            let _ = head.file.sync_all();
        }
    }

    /// Appends the group's entries and makes them durable.
    fn write(&mut self, group: &[Job]) -> io::Result<()> {
        self.roll_if_due();
        let shared = Arc::clone(&self.shared);
        let head = match &mut self.head {
            Some(head) => head,
            None => self.start_segment()?,
        };
        let appended = (|| {
            for job in group {
                head.file.write_all(&job.bytes)?;
            }
            head.file.sync_data()
        })();
        if let Err(error) = appended {
            // Cut back what may have been half-written, and start a new
            // segment next time so nothing follows a damaged stretch.
            warn!(%error, "writing the spool failed; the records were refused");
            let _ = head.file.set_len(head.len);
            self.seal();
            return Err(error);
        }
        head.len += group.iter().map(|job| job.bytes.len() as u64).sum::<u64>();
        {
            let mut state = shared.state();
            if let Some(last) = state.segments.back_mut() {
                debug_assert_eq!(last.seq, head.seq);
                last.end = head.len;
            }
        }
        shared.appended.notify_one();
        Ok(())
    }

    /// Seals the head when it is big enough, or when everything in it has
    /// been drained (so the drainer can delete it and free the disk).
    fn roll_if_due(&mut self) {
        let Some(head) = &self.head else { return };
        let full = head.len >= self.segment_bytes;
        let drained = {
            let state = self.shared.state();
            state.segments.len() == 1
                && state.segments[0].seq == head.seq
                && state.read >= head.len
                && head.len > segment::HEADER_BYTES
        };
        if full || drained {
            self.seal();
        }
    }

    fn seal(&mut self) {
        if let Some(head) = self.head.take() {
            let mut state = self.shared.state();
            if let Some(last) = state.segments.iter_mut().rev().find(|s| s.seq == head.seq) {
                last.sealed = true;
            }
            drop(state);
            // The drainer may be waiting to delete it.
            self.shared.appended.notify_one();
        }
    }

    fn start_segment(&mut self) -> io::Result<&mut Head> {
        // Taken even if creating fails, so a half-made file (a full disk
        // while writing its header) does not block every later attempt.
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        let file = segment::create(&self.shared.dir, seq).inspect_err(|_| {
            let _ = std::fs::remove_file(segment::path(&self.shared.dir, seq));
        })?;
        {
            let mut state = self.shared.state();
            if state.segments.is_empty() {
                state.read = segment::HEADER_BYTES;
            }
            state.segments.push_back(SegmentState {
                seq,
                end: segment::HEADER_BYTES,
                sealed: false,
            });
        }
        Ok(self.head.insert(Head {
            seq,
            file,
            len: segment::HEADER_BYTES,
        }))
    }
}
