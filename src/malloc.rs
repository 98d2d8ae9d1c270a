//! glibc's allocator tuned for tensor work: freed buffers are kept and reused instead of being
//! handed back to the kernel and faulted in again.
//!
//! Why: every op of a forward pass allocates its output (a 16 x 200 encoder layer writes buffers
//! of 10-30 MB), and glibc serves such sizes with `mmap` and returns them with `munmap` on free,
//! its threshold growing only up to what it has seen freed. Each new buffer then page-faults
//! and is zeroed by the kernel page by page: `perf` on `detox bench --what t5-encoder` showed
//! 13 % of all CPU time in page faults and 4 s of system time in 18 s. With the heap serving
//! buffers up to 32 MB (glibc's maximum mmap threshold) and never trimmed, the encoder pass
//! runs 16 % faster with the same peak RSS (BENCHMARKS.md). Memory stays with the process until
//! it exits, as PyTorch's CPU allocator keeps it too.
//!
//! Environment variables (`MALLOC_MMAP_THRESHOLD_`, ...) set by the user still win: the
//! settings are only applied when none of them is set.

/// Applies the settings (Linux with glibc; elsewhere nothing).
pub fn tune_for_tensors() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_set = [
            "MALLOC_MMAP_THRESHOLD_",
            "MALLOC_TRIM_THRESHOLD_",
            "MALLOC_TOP_PAD_",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
        if user_set {
            return;
        }
        // SAFETY: mallopt only changes allocator parameters; called before other threads exist.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            libc::mallopt(libc::M_TOP_PAD, 256 << 20);
        }
    }
}
