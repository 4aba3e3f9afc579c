//! The threads writing checkpoint files stay as many as the pool's size,
//! however many state partitions write at once. A test binary of its own:
//! it counts the process's threads by name, which no other test may start
//! meanwhile.
#![cfg(target_os = "linux")]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use weir_executor::state::{
    CheckpointFileName, LocalBackend, PartitionCheckpoints, PartitionOptions, StateBackend,
    WriterPool,
};

/// Threads of this process named `weir-checkpoint`, from `/proc`.
fn writer_threads() -> usize {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == "weir-checkpoint")
        .count()
}

#[test]
fn sixty_four_partitions_are_written_by_two_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let backend: Arc<dyn StateBackend> = Arc::new(LocalBackend::new(tmp.path().to_path_buf()));
    let pool = WriterPool::new(2);
    let partitions = 64;
    let versions = 5;
    let most = AtomicUsize::new(0);
    let writing = AtomicBool::new(true);
    std::thread::scope(|s| {
        s.spawn(|| {
            while writing.load(Ordering::SeqCst) {
                most.fetch_max(writer_threads(), Ordering::SeqCst);
                std::thread::yield_now();
            }
        });
        let mut parts: Vec<PartitionCheckpoints> = (0..partitions)
            .map(|p| {
                PartitionCheckpoints::new(
                    backend.clone(),
                    &pool,
                    "job",
                    "agg",
                    p,
                    PartitionOptions::default(),
                )
                .unwrap()
            })
            .collect();
        for v in 1..=versions {
            for part in &mut parts {
                // A snapshot of 10 000 keys: each file takes a while.
                let name = CheckpointFileName::snapshot(v);
                let mut file = part.encoder(name, 0, 0).unwrap();
                for k in 0..10_000u32 {
                    file.push(&k.to_be_bytes(), Some(&v.to_le_bytes())).unwrap();
                }
                part.write_in_background(file).unwrap();
            }
        }
        for part in &mut parts {
            // Dropping waits for the partition's files.
            assert!(part.take_failure().is_none());
        }
        drop(parts);
        writing.store(false, Ordering::SeqCst);
    });
    assert_eq!(pool.threads_started(), 2);
    let most = most.into_inner();
    assert!((1..=2).contains(&most), "{most} writer threads ran at once");
    for p in 0..partitions {
        let mut reopened = PartitionCheckpoints::new(
            backend.clone(),
            &pool,
            "job",
            "agg",
            p,
            PartitionOptions::default(),
        )
        .unwrap();
        let restored = reopened.restore(versions).unwrap();
        assert_eq!(restored.version, versions, "partition {p}");
        assert_eq!(restored.entries.len(), 10_000, "partition {p}");
    }
    drop(pool);
    assert_eq!(writer_threads(), 0, "the pool's threads ended with it");
}
