//! glibc malloc settings for the commands that run the training engine on the CPU.
//!
//! A training step frees and re-allocates the same multi-megabyte activations every step. With
//! glibc's defaults, blocks above its (dynamic, history-dependent) mmap threshold come from a
//! fresh `mmap` each time and go back with `munmap`, so every 4 KiB page of them costs a page
//! fault and a zeroing, every step: a CPU step with cross-entropy took 1.4× as long on the dev
//! machine (docs/BENCHMARKS.md). Serving every block from the heap and keeping freed memory lets
//! the next step reuse it.
//!
//! The inspection service allocates nothing per frame, but a hot model swap builds the new engine
//! on the reload thread while other threads free and allocate around it; with glibc's one arena
//! per thread the freed engines left holes in several arenas and each swap raised the resident
//! set until they filled (8 MiB over 20 swaps of the shipped model, `bench soak`). The service
//! runs with one arena: nothing on its hot path allocates, so nothing contends for it.

use std::sync::OnceLock;

/// What [`tune_for_training`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tuning {
    /// Blocks come from the heap, and freed heap memory is kept.
    Applied,
    /// One arena for all threads (the inspection service).
    OneArena,
    /// The user set malloc options through this environment variable, or asked for glibc's
    /// defaults with [`OPT_OUT`]; they win.
    LeftToUser(&'static str),
    /// Not glibc, or glibc refused a setting: the allocator's defaults stay.
    Unavailable,
}

impl std::fmt::Display for Tuning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tuning::Applied => f.write_str("glibc, heap only, freed memory kept"),
            Tuning::OneArena => f.write_str("glibc, one arena for all threads"),
            Tuning::LeftToUser(var) => write!(f, "left to the environment ({var})"),
            Tuning::Unavailable => f.write_str("the allocator's defaults"),
        }
    }
}

/// What the process's one call of [`tune_for_training`] did.
static DONE: OnceLock<Tuning> = OnceLock::new();

/// What [`tune_for_training`] did in this process, if it was called (reports quote it).
pub fn tuning() -> Option<Tuning> {
    DONE.get().copied()
}

/// `CONTEXTRAST_MALLOC=default` leaves glibc's defaults exactly as they are; `tuned` (or unset)
/// tunes, and any other value is warned about and tunes. Setting one of [`USER_SETTINGS`] is no
/// baseline: it also turns off glibc's dynamic mmap threshold.
pub const OPT_OUT: &str = "CONTEXTRAST_MALLOC";

/// Environment variables through which glibc takes malloc options; any of them set means the
/// user tunes malloc themselves.
pub const USER_SETTINGS: [&str; 6] = [
    "GLIBC_TUNABLES",
    "MALLOC_ARENA_MAX",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
];

/// Whether `var` carries malloc options: `GLIBC_TUNABLES` only when it names a `glibc.malloc.`
/// tunable, the others when set and not empty.
fn user_set(var: &str) -> bool {
    match std::env::var(var) {
        Ok(v) if var == "GLIBC_TUNABLES" => v.contains("glibc.malloc."),
        Ok(v) => !v.is_empty(),
        Err(std::env::VarError::NotUnicode(_)) => true,
        Err(std::env::VarError::NotPresent) => false,
    }
}

/// Makes glibc serve every block from its heaps (never from a fresh `mmap`) and keep freed
/// memory for reuse, unless the user set malloc options. The process keeps its peak footprint
/// until it exits, which a training run reaches every step anyway. Call early; later calls
/// (of this or [`tune_for_service`]) return the first one's answer.
pub fn tune_for_training() -> Tuning {
    tune(apply)
}

/// Gives every thread of the inspection service the one arena (see the module's doc), unless
/// the user set malloc options. Call before any thread starts; later calls (of this or
/// [`tune_for_training`]) return the first one's answer.
pub fn tune_for_service() -> Tuning {
    tune(apply_service)
}

fn tune(apply: fn() -> Tuning) -> Tuning {
    *DONE.get_or_init(|| {
        match std::env::var(OPT_OUT).as_deref() {
            Ok("default") => return Tuning::LeftToUser(OPT_OUT),
            Ok("tuned" | "") | Err(_) => {}
            Ok(other) => {
                log::warn!("{OPT_OUT}={other:?} is not \"default\" or \"tuned\"; tuning malloc")
            }
        }
        match USER_SETTINGS.iter().find(|v| user_set(v)) {
            Some(var) => Tuning::LeftToUser(var),
            None => apply(),
        }
    })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply_service() -> Tuning {
    // SAFETY: mallopt only changes allocator parameters; it returns 0 for a value it refuses.
    if unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) } == 1 {
        Tuning::OneArena
    } else {
        Tuning::Unavailable
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply_service() -> Tuning {
    Tuning::Unavailable
}

/// Hands the heap's free pages back to the system (glibc's `malloc_trim`). A hot-swapped
/// engine is built on the reload thread and freed on another, and glibc keeps what a thread
/// frees inside its arenas: without this every swap raised the service's resident set by a
/// model's worth until the arenas were full (`bench soak`, docs/BENCHMARKS.md).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system; no live block moves.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> Tuning {
    // SAFETY: mallopt only changes allocator parameters; it returns 0 for a value it refuses.
    let ok = unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1
    };
    if ok {
        Tuning::Applied
    } else {
        Tuning::Unavailable
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> Tuning {
    Tuning::Unavailable
}
