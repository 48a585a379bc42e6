//! Process-wide memory settings for training and benchmarking, and the memory check before a
//! run starts.

use resnetc_compiler::Network;

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

/// Memory this machine can give a new process now, in bytes: `MemAvailable` of
/// `/proc/meminfo`, lowered to the cgroup's limit when there is one (`memory.max`). `None`
/// where neither can be read.
pub fn available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let mut bytes = kib * 1024;
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok();
    let current = std::fs::read_to_string("/sys/fs/cgroup/memory.current").ok();
    if let (Some(max), Some(current)) = (cgroup, current)
        && let (Ok(max), Ok(current)) = (max.trim().parse::<u64>(), current.trim().parse::<u64>())
    {
        bytes = bytes.min(max.saturating_sub(current));
    }
    Some(bytes)
}

/// `1536 << 20` → `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    if bytes >= 1 << 30 { format!("{:.1} GiB", bytes as f64 / GIB) } else { format!("{} MiB", bytes >> 20) }
}

/// Refuse a CPU training run whose estimated peak ([`Network::training_memory`]) exceeds the
/// memory available, before anything is allocated, naming the largest batch that would fit.
/// GPU runs are not checked (device memory is not known before the device opens).
pub fn check_training(network: &Network, batch: usize, cpu: bool) -> Result<(), String> {
    let Some(available) = available().filter(|_| cpu) else { return Ok(()) };
    let (per_image, fixed) = network.training_memory_terms();
    let need = per_image.saturating_mul(batch as u64).saturating_add(fixed);
    if need <= available {
        return Ok(());
    }
    let fits = available.checked_sub(fixed).map(|room| room / per_image.max(1)).filter(|&b| b >= 1);
    Err(format!(
        "training {} at batch {batch} needs about {} of memory, and this machine has {} available: {} (or pass --no-memory-check to try anyway)",
        network.name,
        human(need),
        human(available),
        match fits {
            Some(b) => format!("use --batch-size {b} or smaller"),
            None => "even a batch of 1 does not fit".to_string(),
        }
    ))
}
