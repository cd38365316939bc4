//! Process-wide memory settings: the binary's counting allocator (allocations per frame are
//! measured, not assumed) and the glibc malloc tuning the training commands apply at start.
pub mod alloc_count;
pub mod malloc_tune;
