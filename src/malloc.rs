//! glibc's allocator tuned for tensor work: freed buffers are kept and reused instead of being
//! handed back to the kernel and faulted in again.
//!
//! Why: every op of a forward pass allocates its output (a 16 x 200 encoder layer writes buffers
//! of 10-30 MB; full fine-tuning of flan-t5-base at batch 8 x 512 also 100-200 MB ones: logits,
//! attention scores, the embedding's gradient), and glibc serves large sizes with `mmap` and
//! returns them with `munmap` on free. Each new buffer then page-faults and is zeroed by the
//! kernel page by page: `perf` on `detox bench --what t5-encoder` showed 13 % of all CPU time in
//! page faults and 4 s of system time in 18 s; on `--what sft-full`, 18 % in the kernel's page
//! clearing. So: no `mmap` for single allocations at all (glibc's threshold cannot go above
//! 32 MB, so only `M_MMAP_MAX = 0` keeps the 100-200 MB buffers in the heap), and the heap never
//! trimmed. The encoder pass runs 16 % faster and a full fine-tuning step ~25 % faster
//! (38.8-41.4 s -> 29.9-30.6 s), peak RSS unchanged (BENCHMARKS.md). Memory stays with the
//! process until it exits, as PyTorch's CPU allocator keeps it too.
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
            "MALLOC_MMAP_MAX_",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
        if user_set {
            return;
        }
        // SAFETY: mallopt only changes allocator parameters; called before other threads exist.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            // 0: no allocation is served by its own mmap (glibc's own memory pools still are)
            libc::mallopt(libc::M_MMAP_MAX, 0);
            // -1: never trim (a freed autodiff graph can leave more than i32::MAX bytes on top)
            libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
            libc::mallopt(libc::M_TOP_PAD, 256 << 20);
        }
    }
}
