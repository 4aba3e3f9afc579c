//! Writing a partition's checkpoint files off the batch's path: a thread of
//! the partition's own takes encoded files from a short queue and writes
//! them in order.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::format::CheckpointEncoder;
use super::{CheckpointFileName, StateBackend, StateError, Tenure};
use crate::sinks::lock;

/// Files queued beyond the one being written before
/// [`BackgroundWriter::submit`] waits: a writer slower than the batches
/// holds the batches back instead of piling up encoded state in memory.
const QUEUE: usize = 2;

/// How far below the batches' the writer thread's scheduling priority is
/// (a nice increment, Linux only): checkpoint files are encoded and written
/// with the CPU the batches leave, like a database's background compaction,
/// and a batch waits for the writer only once its queue is full.
pub(super) const NICENESS: i32 = 10;

/// Buffers of written files kept for the next encoders: enough for a
/// partition's delta and snapshot.
const SPARE_BUFFERS: usize = 2;

/// Fills a checkpoint file's encoder on the writer's thread, before its
/// checksum: a snapshot encoded from a copy of the state costs the batch
/// the copy, not the encoding.
pub type Fill = Box<dyn FnOnce(&mut CheckpointEncoder) -> Result<(), StateError> + Send>;

/// What the writer's thread is asked to do.
enum Job {
    /// Write a file: its name, its path, its encoder (checksummed on the
    /// writer's thread), what fills the encoder first, if anything, and the
    /// tenure it is written under.
    Write(
        CheckpointFileName,
        String,
        CheckpointEncoder,
        Option<Fill>,
        Tenure,
    ),
    /// Delete the doomed files now (the thread was idle).
    Sweep,
}

/// The outcome of one write, in submission order.
pub(super) type Done = (CheckpointFileName, Result<(), StateError>);

/// Writes checkpoint files of one partition on a thread of its own, one at
/// a time, in the order they were submitted. The thread starts with the
/// first file and ends when the writer is dropped, after the queued files
/// are written.
#[derive(Debug)]
pub(super) struct BackgroundWriter {
    backend: Arc<dyn StateBackend>,
    thread: Option<Running>,
    /// Submitted files whose outcome was not collected yet, oldest first.
    queued: VecDeque<CheckpointFileName>,
    /// Buffers of written files, for [`spare_buffer`](Self::spare_buffer).
    spare: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Paths to delete after the write in progress, each under the tenure
    /// that doomed it, see [`delete_in_background`](Self::delete_in_background).
    doomed: Arc<Mutex<Vec<Doomed>>>,
}

#[derive(Debug)]
struct Running {
    jobs: SyncSender<Job>,
    done: Receiver<Done>,
    handle: JoinHandle<()>,
}

impl BackgroundWriter {
    /// A writer to `backend`; no thread runs until the first file.
    pub(super) fn new(backend: Arc<dyn StateBackend>) -> Self {
        BackgroundWriter {
            backend,
            thread: None,
            queued: VecDeque::new(),
            spare: Arc::default(),
            doomed: Arc::default(),
        }
    }

    /// Deletes files off the batch's path, under `tenure`: after the write
    /// in progress and before the next one (at once if no write ever
    /// started). A failed delete leaves the file for a later prune to find
    /// again.
    pub(super) fn delete_in_background(&mut self, paths: Vec<String>, tenure: &Tenure) {
        let doomed: Vec<Doomed> = paths.into_iter().map(|p| (p, tenure.clone())).collect();
        let Some(running) = &self.thread else {
            delete_all(self.backend.as_ref(), &doomed);
            return;
        };
        lock(&self.doomed).extend(doomed);
        // A full queue means a busy thread, which sweeps after its write.
        let _ = running.jobs.try_send(Job::Sweep);
    }

    /// The buffer of a written file to encode the next one into, the
    /// smallest holding `capacity` bytes if any does (else the largest), or
    /// a new one. Reusing memory that is already mapped saves encoding a
    /// large snapshot a page fault every 4 KiB.
    pub(super) fn spare_buffer(&self, capacity: usize) -> Vec<u8> {
        let mut spare = lock(&self.spare);
        let pick = spare
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= capacity)
            .min_by_key(|(_, b)| b.capacity())
            .or_else(|| spare.iter().enumerate().max_by_key(|(_, b)| b.capacity()))
            .map(|(i, _)| i);
        pick.map_or_else(Vec::new, |i| spare.swap_remove(i))
    }

    /// Queues `file` to be written at `path` under `tenure`; waits while the
    /// queue is full.
    pub(super) fn submit(
        &mut self,
        name: CheckpointFileName,
        path: String,
        file: CheckpointEncoder,
        fill: Option<Fill>,
        tenure: Tenure,
    ) -> Result<(), StateError> {
        if self.thread.is_none() {
            self.thread = Some(self.start(&path)?);
        }
        let running = self.thread.as_ref().expect("started above");
        if let Err(mpsc::SendError(job)) = running
            .jobs
            .send(Job::Write(name, path, file, fill, tenure))
        {
            let path = match job {
                Job::Write(_, path, ..) => path,
                Job::Sweep => name.to_string(),
            };
            return Err(gone(&path));
        }
        self.queued.push_back(name);
        Ok(())
    }

    fn start(&self, path: &str) -> Result<Running, StateError> {
        let (jobs, queue) = mpsc::sync_channel::<Job>(QUEUE);
        let (report, done) = mpsc::channel();
        let backend = self.backend.clone();
        let spare = self.spare.clone();
        let doomed = self.doomed.clone();
        let handle = std::thread::Builder::new()
            .name("weir-checkpoint".into())
            .spawn(move || {
                lower_priority();
                let sweep = || sweep(backend.as_ref(), &doomed);
                // Every queued file is written, also once nobody waits
                // for the outcome (the writer is being dropped).
                for job in queue {
                    if let Job::Write(name, path, mut file, fill, tenure) = job {
                        let filled = fill.map_or(Ok(()), |fill| fill(&mut file));
                        let written = filled.and_then(|()| {
                            let bytes = file.finish();
                            let written = tenure
                                .check("write", &path)
                                .and_then(|()| backend.put_atomic(&path, &bytes));
                            keep_spare(&spare, bytes);
                            written
                        });
                        let _ = report.send((name, written));
                    }
                    sweep();
                }
                sweep();
            })
            .map_err(|source| StateError::Io {
                op: "start the checkpoint writer for",
                path: path.to_owned(),
                source,
            })?;
        Ok(Running { jobs, done, handle })
    }

    /// The files submitted and not yet collected, oldest first.
    pub(super) fn queued(&self) -> impl Iterator<Item = CheckpointFileName> + '_ {
        self.queued.iter().copied()
    }

    /// The outcomes of the writes that ended, without waiting.
    pub(super) fn finished(&mut self) -> Vec<Done> {
        self.collect(false)
    }

    /// Whether `path` is to be deleted and may still exist.
    pub(super) fn doomed(&self, path: &str) -> bool {
        lock(&self.doomed).iter().any(|(p, _)| p == path)
    }

    /// Waits for every submitted write, deletes the doomed files not yet
    /// deleted; the writes' outcomes.
    pub(super) fn wait_all(&mut self) -> Vec<Done> {
        let done = self.collect(true);
        sweep(self.backend.as_ref(), &self.doomed);
        done
    }

    fn collect(&mut self, wait: bool) -> Vec<Done> {
        let mut out = Vec::new();
        let Some(running) = &self.thread else {
            return out;
        };
        while let Some(&name) = self.queued.front() {
            let next = if wait {
                running.done.recv().ok()
            } else {
                match running.done.try_recv() {
                    Ok(done) => Some(done),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => None,
                }
            };
            self.queued.pop_front();
            // A writer thread that died (it panicked) wrote nothing more.
            out.push(next.unwrap_or_else(|| (name, Err(gone(&name.to_string())))));
        }
        out
    }
}

impl Drop for BackgroundWriter {
    /// Waits for the queued files to be written.
    fn drop(&mut self) {
        if let Some(Running { jobs, done, handle }) = self.thread.take() {
            drop(jobs);
            let _ = handle.join();
            drop(done);
        }
    }
}

/// Lowers the calling thread's scheduling priority by [`NICENESS`]; on
/// failure the thread keeps its priority (the writes are the same).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread (on Linux a nice value
    // is per thread, and PRIO_PROCESS with id 0 names the calling thread).
    unsafe {
        let current = libc::getpriority(libc::PRIO_PROCESS, 0);
        if libc::setpriority(libc::PRIO_PROCESS, 0, (current + NICENESS).min(19)) != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "the checkpoint writer keeps the batches' priority"
            );
        }
    }
}

/// Keeps `buf` for a next encoder, in place of the smallest spare when
/// there are enough.
fn keep_spare(spare: &Mutex<Vec<Vec<u8>>>, buf: Vec<u8>) {
    let mut spare = lock(spare);
    if spare.len() < SPARE_BUFFERS {
        spare.push(buf);
    } else if let Some(smallest) = spare.iter_mut().min_by_key(|b| b.capacity()) {
        if smallest.capacity() < buf.capacity() {
            *smallest = buf;
        }
    }
}

/// A path to delete and the tenure it is deleted under.
type Doomed = (String, Tenure);

/// Deletes the doomed files, then forgets them (so that, until then, a
/// listing that still shows them knows they are going).
fn sweep(backend: &dyn StateBackend, doomed: &Mutex<Vec<Doomed>>) {
    let paths = lock(doomed).clone();
    if paths.is_empty() {
        return;
    }
    delete_all(backend, &paths);
    lock(doomed).retain(|(p, _)| !paths.iter().any(|(gone, _)| gone == p));
}

/// Deletes `paths`, logging failures (the files stay for a later prune;
/// those refused by a lost tenure belong to another owner now).
fn delete_all(backend: &dyn StateBackend, paths: &[Doomed]) {
    for (path, tenure) in paths {
        let deleted = tenure
            .check("delete", path)
            .and_then(|()| backend.delete(path));
        match deleted {
            Ok(()) => {}
            Err(e @ StateError::Fenced { .. }) => {
                tracing::warn!(%path, error = %e, "left a pruned checkpoint to the partition's new owner");
            }
            Err(e) => {
                tracing::warn!(%path, error = %e, "could not delete a pruned checkpoint; a later prune retries");
            }
        }
    }
}

fn gone(path: &str) -> StateError {
    StateError::Io {
        op: "write in the background",
        path: path.to_owned(),
        source: std::io::Error::other("the checkpoint writer thread stopped"),
    }
}
