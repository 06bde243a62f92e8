//! How the process's allocator treats the buffers of freed tensors.
//!
//! Every op of the CPU backend allocates its output, and most outputs of a ViT step are a few
//! MB to a few tens of MB. glibc serves blocks above its mmap threshold (128 KiB at first,
//! adjusted upwards as large blocks are freed) with fresh `mmap`s and gives them back to the
//! kernel on `free`, so each new tensor is faulted in and zeroed by the kernel page by page:
//! `clear_page_erms` was 18 % of a vit_t training step's samples under `perf`. Raising the
//! threshold to glibc's maximum (32 MiB on 64-bit) and the trim threshold out of reach keeps
//! freed memory in the heap for the next tensor. Measured in docs/performance.md; the resident
//! size stays at its peak instead of falling between steps.

/// glibc's largest mmap threshold on 64-bit (`DEFAULT_MMAP_THRESHOLD_MAX`).
const MMAP_THRESHOLD: i32 = 32 << 20;

/// Keeps freed tensor memory in the heap, unless `GLIBC_TUNABLES` already sets malloc's
/// thresholds (the user's choice stands). Does nothing where the C library is not glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let chosen = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc."));
        if !chosen {
            // `mallopt` only changes two of malloc's parameters; it is called before any other
            // thread exists. It returns 0 on a value it refuses, leaving the default in place.
            #[allow(unsafe_code)]
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
                libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            }
        }
    }
}
