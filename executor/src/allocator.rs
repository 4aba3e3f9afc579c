//! Settings of the C allocator for the memory pattern of micro-batches.
//!
//! Every batch allocates and frees the same tens of megabytes: the records
//! read, the shuffle's blocks, the changes a checkpoint copies, the files it
//! encodes. glibc's `malloc` gives such memory back to the kernel when it is
//! freed (blocks above its mmap threshold, and a heap's free top above its
//! trim threshold), so the next batch takes a page fault for every 4 KiB it
//! touches again. With the running-count job of `docs/benchmarks.md` that is
//! up to ~2 700 faults a batch without checkpoints and ~3 800 with them, and
//! on a busy virtual machine up to a sixth of the process's CPU time.
//! [`keep_freed_memory`] makes `malloc` keep freed memory for the next
//! batch instead, as jemalloc and mimalloc do.

/// Blocks up to this size come from the heap, not from a mapping of their
/// own (glibc's largest mmap threshold on 64-bit targets).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;

/// Free memory at a heap's top kept for reuse before `malloc` returns it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 32 << 20;

/// What [`keep_freed_memory`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocatorTuning {
    /// glibc's thresholds were raised.
    Applied,
    /// `GLIBC_TUNABLES` sets `glibc.malloc.*` keys: the operator's own
    /// settings are left as they are.
    LeftToGlibcTunables,
    /// The process does not use glibc's `malloc`.
    NotGlibc,
}

/// Makes the process's `malloc` keep freed memory for reuse: blocks up to
/// 32 MiB come from the heap, and up to 32 MiB of free memory at the top of
/// each of its heaps stays mapped. The process's resident size stays near
/// its peak instead of falling between batches (for the benchmark's job,
/// 137 MB at most instead of 121 MB). Call it once, before the job's
/// threads start; it changes nothing when `GLIBC_TUNABLES` already sets
/// `glibc.malloc.*` keys, so operators can choose other values.
pub fn keep_freed_memory() -> AllocatorTuning {
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    keep_freed_memory_unless(&tunables)
}

fn keep_freed_memory_unless(tunables: &str) -> AllocatorTuning {
    if tunables.contains("glibc.malloc.") {
        return AllocatorTuning::LeftToGlibcTunables;
    }
    set_thresholds()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> AllocatorTuning {
    // SAFETY: mallopt only changes glibc's allocator parameters; both are
    // valid parameters with values in their documented ranges.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
    AllocatorTuning::Applied
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> AllocatorTuning {
    AllocatorTuning::NotGlibc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_tunables_for_malloc_are_left_alone() {
        assert_eq!(
            keep_freed_memory_unless("glibc.malloc.arena_max=2"),
            AllocatorTuning::LeftToGlibcTunables
        );
    }

    #[test]
    fn other_glibc_tunables_do_not_stop_the_tuning() {
        let expected = if cfg!(all(target_os = "linux", target_env = "gnu")) {
            AllocatorTuning::Applied
        } else {
            AllocatorTuning::NotGlibc
        };
        assert_eq!(keep_freed_memory_unless("glibc.pthread.rseq=0"), expected);
        assert_eq!(keep_freed_memory_unless(""), expected);
    }
}
