//! Process-wide memory settings for training and benchmarking.

/// Keep freed memory in the process instead of handing it back to the OS after every step.
///
/// A training step allocates and frees a few hundred megabytes of activations and gradients in
/// buffers of a few megabytes each. With glibc's defaults, such buffers cross its adaptive mmap
/// threshold and are mapped and unmapped every time, and the top of the heap is trimmed, so every
/// step pays page faults, page zeroing and TLB shootdowns between the worker threads: a quarter
/// of a ResNet-20 training step on 2 cores (`perf record`: `clear_page`, `ptep_clear_flush`,
/// `smp_call_function_many_cond`, `exc_page_fault`). Fixing the mmap threshold at its maximum
/// (32 MiB) and never trimming keeps the pages for the next step; peak RSS stays the same, as
/// the next step reuses what the last one freed. A no-op off glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; it is called before any thread of ours
    // allocates, and glibc serialises it against concurrent allocation anyway.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
