//! Writing checkpoint files off the batch's path: a bounded pool of writer
//! threads, shared by every state partition of an executor, takes encoded
//! files from each partition's short queue and writes a partition's files
//! one at a time, in order.
//!
//! Each partition has a lane ([`BackgroundWriter`]): its queue of files,
//! their outcomes, the paths to delete and spare buffers. A lane with work
//! waits in the pool's ready queue; a pool thread takes it, writes its
//! oldest file (and deletes its doomed files), and puts it back at the end
//! of the ready queue if more work came meanwhile. A lane is in the ready
//! queue or in a thread's hands, never both, and never in two threads'
//! hands: its `scheduled` flag stays set from the moment it is queued
//! until a thread finds it without work.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::format::CheckpointEncoder;
use super::{CheckpointFileName, StateBackend, StateError, Tenure};
use crate::metrics::CheckpointMetrics;
use crate::sinks::lock;

/// Files queued beyond the one being written before
/// [`BackgroundWriter::submit`] waits: a writer slower than the batches
/// holds the batches back instead of piling up encoded state in memory.
const QUEUE: usize = 2;

/// How far below the batches' the writer threads' scheduling priority is
/// (a nice increment, Linux only): checkpoint files are encoded and written
/// with the CPU the batches leave, like a database's background compaction,
/// and a batch waits for the writer only once its queue is full.
pub(super) const NICENESS: i32 = 10;

/// Buffers of written files kept for the next encoders: enough for a
/// partition's delta and snapshot.
const SPARE_BUFFERS: usize = 2;

/// The name of every writer thread.
const THREAD_NAME: &str = "weir-checkpoint";

/// Most writer threads a [`WriterPool`] may be given
/// (`state_writer_threads`).
pub const MAX_WRITER_THREADS: usize = 256;

/// Writer threads of an executor by default: as many as it has cores, at
/// least 4 and at most 16. Writes to a remote store wait on its latency
/// (tens of milliseconds a file on HDFS) more than they use a core, so a
/// small executor still keeps several partitions' files in flight; the
/// threads run below the batches' priority, so the extra ones only take
/// CPU the batches leave.
pub fn default_writer_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(4, NonZeroUsize::get)
        .clamp(4, 16)
}

/// Fills a checkpoint file's encoder on a writer thread, before its
/// checksum: a snapshot encoded from a copy of the state costs the batch
/// the copy, not the encoding.
pub type Fill = Box<dyn FnOnce(&mut CheckpointEncoder) -> Result<(), StateError> + Send>;

/// A file to write: its name, its path, its encoder (checksummed on the
/// writer thread), what fills the encoder first, if anything, and the
/// tenure it is written under.
struct Job {
    name: CheckpointFileName,
    path: String,
    file: CheckpointEncoder,
    fill: Option<Fill>,
    tenure: Tenure,
}

/// The outcome of one write, in submission order.
pub(super) type Done = (CheckpointFileName, Result<(), StateError>);

/// A bounded pool of threads writing the checkpoint files of every
/// partition that uses it (one per executor).
///
/// Threads start when files are queued and no thread is free, up to the
/// pool's size, and run until the pool is dropped. Dropping the pool writes
/// the files already queued, then stops its threads; a partition that
/// queues a file after that gets an error for it.
#[derive(Debug)]
pub struct WriterPool {
    shared: Arc<Pool>,
}

#[derive(Debug)]
struct Pool {
    /// Most threads.
    size: usize,
    /// Times and bytes of the files written.
    metrics: CheckpointMetrics,
    state: Mutex<PoolState>,
    /// Wakes an idle thread: a lane is ready, or the pool stops.
    ready: Condvar,
}

#[derive(Debug, Default)]
struct PoolState {
    /// Lanes with work that no thread holds, in the order they got it.
    ready: VecDeque<Arc<Lane>>,
    /// Threads waiting for a lane.
    idle: usize,
    /// The threads started, see [`WriterPool::threads_started`].
    threads: Vec<JoinHandle<()>>,
    /// Set when the pool is dropped: no lane is accepted any more.
    stopping: bool,
}

impl WriterPool {
    /// A pool of at most `threads` writer threads (at least 1; see
    /// [`default_writer_threads`]). No thread starts before the first file.
    pub fn new(threads: usize) -> Self {
        Self::with_metrics(threads, CheckpointMetrics::default())
    }

    /// [`new`](Self::new), recording each file written in `metrics`.
    pub fn with_metrics(threads: usize, metrics: CheckpointMetrics) -> Self {
        WriterPool {
            shared: Arc::new(Pool {
                size: threads.max(1),
                metrics,
                state: Mutex::new(PoolState::default()),
                ready: Condvar::new(),
            }),
        }
    }

    /// How many threads this pool started (never more than it was given;
    /// they run until the pool is dropped).
    pub fn threads_started(&self) -> usize {
        lock(&self.shared.state).threads.len()
    }
}

impl Drop for WriterPool {
    /// Lets the threads write the files queued, then stops them.
    fn drop(&mut self) {
        let threads = {
            let mut state = lock(&self.shared.state);
            state.stopping = true;
            std::mem::take(&mut state.threads)
        };
        self.shared.ready.notify_all();
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Pool {
    /// Queues `lane`, whose `scheduled` flag its caller has just set, for
    /// the next free thread, starting one if none is free and the pool is
    /// not full. Fails when the pool is stopping or has no thread and
    /// cannot start one: the lane is then not queued.
    fn schedule(self: &Arc<Self>, lane: Arc<Lane>) -> Result<(), std::io::Error> {
        let mut state = lock(&self.state);
        if state.stopping {
            return Err(std::io::Error::other("the checkpoint writers stopped"));
        }
        state.ready.push_back(lane);
        // Each idle thread takes one ready lane when it wakes: a lane left
        // over needs a new thread, if the pool may grow.
        if state.ready.len() > state.idle && state.threads.len() < self.size {
            let pool = Arc::clone(self);
            let started = std::thread::Builder::new()
                .name(THREAD_NAME.into())
                .spawn(move || pool.run());
            match started {
                Ok(handle) => state.threads.push(handle),
                // The threads already running will get to the lane.
                Err(e) if !state.threads.is_empty() => {
                    tracing::warn!(error = %e, threads = state.threads.len(), "cannot start another checkpoint writer thread");
                }
                Err(e) => {
                    state.ready.pop_back();
                    return Err(e);
                }
            }
        }
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    /// A writer thread: takes the ready lanes one at a time until the pool
    /// stops and no lane is left.
    fn run(self: Arc<Self>) {
        lower_priority();
        while let Some(lane) = self.next() {
            if lane.step() {
                // More work came: behind the lanes that waited meanwhile,
                // so that every partition gets its turn.
                let mut state = lock(&self.state);
                state.ready.push_back(lane);
                drop(state);
                self.ready.notify_one();
            }
        }
    }

    /// The next ready lane; `None` once the pool stops and none is left.
    fn next(&self) -> Option<Arc<Lane>> {
        let mut state = lock(&self.state);
        loop {
            if let Some(lane) = state.ready.pop_front() {
                return Some(lane);
            }
            if state.stopping {
                return None;
            }
            state.idle += 1;
            state = self.ready.wait(state).unwrap_or_else(|p| p.into_inner());
            state.idle -= 1;
        }
    }
}

/// One partition's share of the pool.
#[derive(Debug)]
struct Lane {
    backend: Arc<dyn StateBackend>,
    metrics: CheckpointMetrics,
    state: Mutex<LaneState>,
    /// Signals room in the queue, an outcome, and the lane going idle.
    changed: Condvar,
    /// Buffers of written files, for [`BackgroundWriter::spare_buffer`].
    spare: Mutex<Vec<Vec<u8>>>,
    /// Paths to delete after the write in progress, each under the tenure
    /// that doomed it, see [`BackgroundWriter::delete_in_background`].
    doomed: Mutex<Vec<Doomed>>,
}

#[derive(Default)]
struct LaneState {
    /// Files queued, not yet taken by a thread, oldest first.
    queue: VecDeque<Job>,
    /// Outcomes not yet collected, oldest first.
    done: VecDeque<Done>,
    /// The doomed files are to be deleted (even without a file to write).
    sweep: bool,
    /// The lane is in the pool's ready queue or in a thread's hands.
    scheduled: bool,
}

impl std::fmt::Debug for LaneState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneState")
            .field("queued", &self.queue.len())
            .field("done", &self.done.len())
            .field("sweep", &self.sweep)
            .field("scheduled", &self.scheduled)
            .finish()
    }
}

impl Lane {
    /// Writes the oldest queued file, if any, then deletes the doomed
    /// files; whether the lane has more work (it stays scheduled then, and
    /// the caller queues it again).
    fn step(&self) -> bool {
        let job = {
            let mut state = lock(&self.state);
            // Swept below whether or not a file is written.
            state.sweep = false;
            state.queue.pop_front()
        };
        // Room in the queue for a waiting submit.
        self.changed.notify_all();
        if let Some(job) = job {
            let (name, path) = (job.name, job.path.clone());
            // A bug in a fill fails its file, not the thread the other
            // partitions' files wait for.
            let written = catch_unwind(AssertUnwindSafe(|| self.write(job)))
                .unwrap_or_else(|_| Err(panicked(path)));
            lock(&self.state).done.push_back((name, written));
            self.changed.notify_all();
        }
        sweep(self.backend.as_ref(), &self.doomed);
        let mut state = lock(&self.state);
        if state.queue.is_empty() && !state.sweep {
            state.scheduled = false;
            drop(state);
            self.changed.notify_all();
            return false;
        }
        true
    }

    fn write(&self, job: Job) -> Result<(), StateError> {
        let Job {
            path,
            mut file,
            fill,
            tenure,
            ..
        } = job;
        let started = std::time::Instant::now();
        fill.map_or(Ok(()), |fill| fill(&mut file))?;
        let bytes = file.finish();
        let written = tenure
            .check("write", &path)
            .and_then(|()| self.backend.put_atomic(&path, &bytes));
        if written.is_ok() {
            self.metrics
                .seconds
                .observe(started.elapsed().as_secs_f64());
            self.metrics.bytes.inc_by(bytes.len() as u64);
        }
        keep_spare(&self.spare, bytes);
        written
    }
}

/// Writes checkpoint files of one partition on the threads of a
/// [`WriterPool`], one at a time, in the order they were submitted.
/// Dropping it waits for the queued files to be written.
#[derive(Debug)]
pub(super) struct BackgroundWriter {
    pool: Arc<Pool>,
    lane: Arc<Lane>,
    /// Whether a file was ever submitted (before that, doomed files are
    /// deleted at once).
    started: bool,
    /// Submitted files whose outcome was not collected yet, oldest first.
    queued: VecDeque<CheckpointFileName>,
}

impl BackgroundWriter {
    /// A writer to `backend` on the threads of `pool`.
    pub(super) fn new(backend: Arc<dyn StateBackend>, pool: &WriterPool) -> Self {
        BackgroundWriter {
            pool: Arc::clone(&pool.shared),
            lane: Arc::new(Lane {
                backend,
                metrics: pool.shared.metrics.clone(),
                state: Mutex::default(),
                changed: Condvar::new(),
                spare: Mutex::default(),
                doomed: Mutex::default(),
            }),
            started: false,
            queued: VecDeque::new(),
        }
    }

    /// Deletes files off the batch's path, under `tenure`: after the write
    /// in progress and before the next one (at once if no write ever
    /// started). A failed delete leaves the file for a later prune to find
    /// again.
    pub(super) fn delete_in_background(&mut self, paths: Vec<String>, tenure: &Tenure) {
        let doomed: Vec<Doomed> = paths.into_iter().map(|p| (p, tenure.clone())).collect();
        if !self.started {
            delete_all(self.lane.backend.as_ref(), &doomed);
            return;
        }
        lock(&self.lane.doomed).extend(doomed);
        let schedule = {
            let mut state = lock(&self.lane.state);
            state.sweep = true;
            !std::mem::replace(&mut state.scheduled, true)
        };
        if schedule && self.pool.schedule(Arc::clone(&self.lane)).is_err() {
            // No thread will sweep: the next wait or the drop does.
            lock(&self.lane.state).scheduled = false;
        }
    }

    /// The buffer of a written file to encode the next one into, the
    /// smallest holding `capacity` bytes if any does (else the largest), or
    /// a new one. Reusing memory that is already mapped saves encoding a
    /// large snapshot a page fault every 4 KiB.
    pub(super) fn spare_buffer(&self, capacity: usize) -> Vec<u8> {
        let mut spare = lock(&self.lane.spare);
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
        let mut state = lock(&self.lane.state);
        while state.queue.len() >= QUEUE {
            state = self
                .lane
                .changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        let schedule = !std::mem::replace(&mut state.scheduled, true);
        state.queue.push_back(Job {
            name,
            path,
            file,
            fill,
            tenure,
        });
        drop(state);
        if schedule {
            if let Err(source) = self.pool.schedule(Arc::clone(&self.lane)) {
                let mut state = lock(&self.lane.state);
                state.scheduled = false;
                let path = state.queue.pop_back().map(|job| job.path);
                return Err(StateError::Io {
                    op: "start the checkpoint writer for",
                    path: path.unwrap_or_else(|| name.to_string()),
                    source,
                });
            }
        }
        self.started = true;
        self.queued.push_back(name);
        Ok(())
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
        lock(&self.lane.doomed).iter().any(|(p, _)| p == path)
    }

    /// Waits for every submitted write, deletes the doomed files not yet
    /// deleted; the writes' outcomes.
    pub(super) fn wait_all(&mut self) -> Vec<Done> {
        let done = self.collect(true);
        sweep(self.lane.backend.as_ref(), &self.lane.doomed);
        done
    }

    fn collect(&mut self, wait: bool) -> Vec<Done> {
        let mut out = Vec::new();
        let mut state = lock(&self.lane.state);
        while !self.queued.is_empty() {
            match state.done.pop_front() {
                Some(done) => {
                    self.queued.pop_front();
                    out.push(done);
                }
                None if wait => {
                    state = self
                        .lane
                        .changed
                        .wait(state)
                        .unwrap_or_else(|p| p.into_inner());
                }
                None => break,
            }
        }
        out
    }
}

impl Drop for BackgroundWriter {
    /// Waits for the queued files to be written (and the doomed files
    /// deleted).
    fn drop(&mut self) {
        let mut state = lock(&self.lane.state);
        while state.scheduled {
            state = self
                .lane
                .changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        drop(state);
        sweep(self.lane.backend.as_ref(), &self.lane.doomed);
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

fn panicked(path: String) -> StateError {
    StateError::Io {
        op: "write in the background",
        path,
        source: std::io::Error::other("the checkpoint writer panicked"),
    }
}

/// One pool for the tests of the crate, shared as an executor's is.
#[cfg(test)]
pub(crate) fn test_writers() -> &'static WriterPool {
    static POOL: std::sync::OnceLock<WriterPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| WriterPool::new(default_writer_threads()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashSet};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    /// An in-memory store that records the order of writes, counts the
    /// writes in progress, notices two writes of one directory at once,
    /// fails the paths it is told to and can hold writes back.
    #[derive(Debug, Default)]
    struct Recording {
        files: Mutex<BTreeMap<String, Vec<u8>>>,
        /// Paths in the order their writes ended.
        written: Mutex<Vec<String>>,
        /// Directories with a write in progress.
        writing: Mutex<HashSet<String>>,
        /// Writes of a directory that started while another was going on.
        overlaps: AtomicUsize,
        /// Writes in progress, and the most seen at once.
        busy: AtomicUsize,
        most_busy: AtomicUsize,
        /// Writes of paths ending so fail.
        failing: Option<String>,
        /// How long each write takes.
        delay: Duration,
        /// While set, writes wait for it to be cleared.
        gate: Mutex<bool>,
        opened: Condvar,
        /// Told the path of every write that starts.
        started: Mutex<Option<mpsc::Sender<String>>>,
    }

    fn dir_of(path: &str) -> String {
        path.rsplit_once('/').map_or("", |(d, _)| d).to_owned()
    }

    impl StateBackend for Recording {
        fn put_atomic(&self, path: &str, bytes: &[u8]) -> Result<(), StateError> {
            if let Some(started) = &*lock(&self.started) {
                let _ = started.send(path.to_owned());
            }
            let mut gate = lock(&self.gate);
            while *gate {
                gate = self.opened.wait(gate).unwrap();
            }
            drop(gate);
            if !lock(&self.writing).insert(dir_of(path)) {
                self.overlaps.fetch_add(1, Ordering::SeqCst);
            }
            let busy = self.busy.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_busy.fetch_max(busy, Ordering::SeqCst);
            std::thread::sleep(self.delay);
            self.busy.fetch_sub(1, Ordering::SeqCst);
            lock(&self.writing).remove(&dir_of(path));
            if self.failing.as_ref().is_some_and(|f| path.ends_with(f)) {
                return Err(StateError::Io {
                    op: "put",
                    path: path.to_owned(),
                    source: std::io::Error::other("injected"),
                });
            }
            lock(&self.files).insert(path.to_owned(), bytes.to_vec());
            lock(&self.written).push(path.to_owned());
            Ok(())
        }
        fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StateError> {
            Ok(lock(&self.files).get(path).cloned())
        }
        fn list(&self, dir: &str) -> Result<Vec<String>, StateError> {
            let files = lock(&self.files);
            Ok(files
                .keys()
                .filter(|p| dir_of(p) == dir)
                .map(|p| p[dir.len() + 1..].to_owned())
                .collect())
        }
        fn delete(&self, path: &str) -> Result<(), StateError> {
            lock(&self.files).remove(path);
            Ok(())
        }
        fn sweep_temp(&self, _dir: &str) -> Result<usize, StateError> {
            Ok(0)
        }
        fn describe(&self) -> String {
            "recording".into()
        }
    }

    impl Recording {
        fn set_gate(&self, closed: bool) {
            *lock(&self.gate) = closed;
            self.opened.notify_all();
        }

        /// The paths written in `dir`, in the order written.
        fn written_in(&self, dir: &str) -> Vec<String> {
            let written = lock(&self.written);
            written
                .iter()
                .filter(|p| dir_of(p) == dir)
                .cloned()
                .collect()
        }
    }

    fn dir(partition: u32) -> String {
        format!("job/agg/part-{partition:05}")
    }

    fn path(partition: u32, name: CheckpointFileName) -> String {
        name.path_in(&dir(partition))
    }

    /// Queues the delta at `version` of `partition`.
    fn submit(w: &mut BackgroundWriter, partition: u32, version: u64) -> Result<(), StateError> {
        let name = CheckpointFileName::delta(version);
        let path = path(partition, name);
        let mut file = CheckpointEncoder::delta_into(Vec::new(), &path, version, version - 1, 16)?;
        file.push(b"k", Some(&version.to_le_bytes()))?;
        w.submit(name, path, file, None, Tenure::unfenced())
    }

    /// `partitions` partitions each queue `files` deltas from a thread of
    /// their own on a pool of `threads`; every partition's files are
    /// written one at a time, in order, and reported in order.
    fn check_order(threads: usize, partitions: u32, files: u64) {
        let backend = Arc::new(Recording {
            delay: Duration::from_micros(200),
            ..Recording::default()
        });
        let pool = WriterPool::new(threads);
        std::thread::scope(|s| {
            for p in 0..partitions {
                let (backend, pool) = (backend.clone(), &pool);
                s.spawn(move || {
                    let mut w = BackgroundWriter::new(backend, pool);
                    let mut reported = Vec::new();
                    for v in 1..=files {
                        submit(&mut w, p, v).unwrap();
                        reported.extend(w.finished());
                    }
                    reported.extend(w.wait_all());
                    let names: Vec<u64> = reported
                        .into_iter()
                        .map(|(name, outcome)| {
                            outcome.unwrap();
                            name.version
                        })
                        .collect();
                    assert_eq!(names, (1..=files).collect::<Vec<_>>(), "partition {p}");
                });
            }
        });
        for p in 0..partitions {
            let expected: Vec<String> = (1..=files)
                .map(|v| path(p, CheckpointFileName::delta(v)))
                .collect();
            assert_eq!(backend.written_in(&dir(p)), expected, "partition {p}");
        }
        assert_eq!(
            backend.overlaps.load(Ordering::SeqCst),
            0,
            "a partition was written by two threads at once"
        );
        assert!(pool.threads_started() <= threads);
        assert!(backend.most_busy.load(Ordering::SeqCst) <= threads);
    }

    #[test]
    fn one_thread_keeps_every_partitions_order() {
        check_order(1, 16, 20);
    }

    #[test]
    fn several_threads_keep_every_partitions_order() {
        check_order(4, 32, 20);
    }

    #[test]
    fn more_partitions_than_threads_never_start_more_threads() {
        let backend = Arc::new(Recording {
            delay: Duration::from_millis(1),
            ..Recording::default()
        });
        let pool = WriterPool::new(2);
        let mut writers: Vec<BackgroundWriter> = (0..64)
            .map(|_| BackgroundWriter::new(backend.clone(), &pool))
            .collect();
        for v in 1..=3 {
            for (p, w) in writers.iter_mut().enumerate() {
                submit(w, p as u32, v).unwrap();
            }
        }
        for w in &mut writers {
            assert!(w.wait_all().into_iter().all(|(_, outcome)| outcome.is_ok()));
        }
        assert_eq!(lock(&backend.written).len(), 64 * 3);
        assert_eq!(pool.threads_started(), 2);
        assert_eq!(backend.most_busy.load(Ordering::SeqCst), 2);
        assert_eq!(backend.overlaps.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_full_queue_holds_the_submitter_back() {
        let (started, writes) = mpsc::channel();
        let backend = Arc::new(Recording {
            started: Mutex::new(Some(started)),
            ..Recording::default()
        });
        backend.set_gate(true);
        let pool = WriterPool::new(2);
        let mut w = BackgroundWriter::new(backend.clone(), &pool);
        submit(&mut w, 0, 1).unwrap();
        // The first file is being written (held at the gate) ...
        assert_eq!(
            writes.recv_timeout(Duration::from_secs(10)).unwrap(),
            path(0, CheckpointFileName::delta(1))
        );
        // ... and two more fit in the queue behind it.
        submit(&mut w, 0, 2).unwrap();
        submit(&mut w, 0, 3).unwrap();
        let (returned, submitted) = mpsc::channel();
        let blocked = std::thread::spawn(move || {
            submit(&mut w, 0, 4).unwrap();
            returned.send(()).unwrap();
            w
        });
        assert!(
            submitted.recv_timeout(Duration::from_millis(300)).is_err(),
            "a fourth file was queued while three were waiting"
        );
        // Another partition on the same pool is not held back by it.
        let mut other = BackgroundWriter::new(backend.clone(), &pool);
        submit(&mut other, 1, 1).unwrap();
        backend.set_gate(false);
        submitted.recv_timeout(Duration::from_secs(10)).unwrap();
        let mut w = blocked.join().unwrap();
        let versions: Vec<u64> = w.wait_all().iter().map(|(n, _)| n.version).collect();
        assert_eq!(versions, [1, 2, 3, 4]);
        assert_eq!(other.wait_all().len(), 1);
    }

    #[test]
    fn a_failed_write_is_reported_for_its_own_file() {
        let failing = path(3, CheckpointFileName::delta(2));
        let backend = Arc::new(Recording {
            failing: Some(failing.clone()),
            ..Recording::default()
        });
        let pool = WriterPool::new(2);
        let mut writers: Vec<BackgroundWriter> = (0..8)
            .map(|_| BackgroundWriter::new(backend.clone(), &pool))
            .collect();
        for v in 1..=4 {
            for (p, w) in writers.iter_mut().enumerate() {
                submit(w, p as u32, v).unwrap();
            }
        }
        // A fill that panics fails its own file only.
        let name = CheckpointFileName::snapshot(4);
        let panicking = path(5, name);
        let file = CheckpointEncoder::snapshot_into(Vec::new(), &panicking, 4, 0);
        let fill: Fill = Box::new(|_| panic!("a bug in a fill"));
        writers[5]
            .submit(
                name,
                panicking.clone(),
                file,
                Some(fill),
                Tenure::unfenced(),
            )
            .unwrap();
        submit(&mut writers[5], 5, 5).unwrap();
        let mut failed = Vec::new();
        for (p, w) in writers.iter_mut().enumerate() {
            for (name, outcome) in w.wait_all() {
                if let Err(e) = outcome {
                    failed.push((p, name, e.path().to_owned()));
                }
            }
        }
        assert_eq!(
            failed,
            [
                (3, CheckpointFileName::delta(2), failing),
                (5, CheckpointFileName::snapshot(4), panicking)
            ]
        );
        assert_eq!(lock(&backend.written).len(), 8 * 4 - 1 + 1);
    }

    #[test]
    fn doomed_files_are_deleted_when_the_writer_is_idle() {
        let backend = Arc::new(Recording::default());
        let pool = WriterPool::new(1);
        let mut w = BackgroundWriter::new(backend.clone(), &pool);
        submit(&mut w, 0, 1).unwrap();
        submit(&mut w, 0, 2).unwrap();
        assert_eq!(w.wait_all().len(), 2);
        let doomed = path(0, CheckpointFileName::delta(1));
        w.delete_in_background(vec![doomed.clone()], &Tenure::unfenced());
        // No wait, no write: a pool thread deletes it.
        for _ in 0..1000 {
            if !w.doomed(&doomed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!w.doomed(&doomed));
        assert_eq!(backend.get(&doomed).unwrap(), None);
        assert!(backend
            .get(&path(0, CheckpointFileName::delta(2)))
            .unwrap()
            .is_some());
    }

    #[test]
    fn dropping_a_writer_writes_its_queued_files_first() {
        let backend = Arc::new(Recording {
            delay: Duration::from_millis(5),
            ..Recording::default()
        });
        let pool = WriterPool::new(1);
        let mut w = BackgroundWriter::new(backend.clone(), &pool);
        for v in 1..=3 {
            submit(&mut w, 0, v).unwrap();
        }
        drop(w);
        assert_eq!(backend.written_in(&dir(0)).len(), 3);
        // A writer outliving its pool gets an error, not a lost file.
        let mut late = BackgroundWriter::new(backend.clone(), &pool);
        submit(&mut late, 1, 1).unwrap();
        drop(pool);
        assert_eq!(late.wait_all().len(), 1);
        let err = submit(&mut late, 1, 2).unwrap_err();
        assert!(err.to_string().contains("stopped"), "{err}");
        assert!(err.path().ends_with("00000000000000000002.delta"), "{err}");
    }
}
