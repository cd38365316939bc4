//! `malloc_tune::tune_for_training` on the real glibc: a training-like allocation pattern stops
//! page-faulting, and malloc options the user set are left alone. Tuning is process-wide, so each
//! case runs in a child process (this binary again); `harness = false` keeps the pattern on the
//! main thread, where the trainer allocates its activations.
// Test helpers may unwrap: a panic there is a failed test, not a crash on input.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use contextrast::sys::malloc_tune::{
    OPT_OUT, Tuning, USER_SETTINGS, tune_for_service, tune_for_training,
};
use std::process::Command;

/// The environment variable that makes this binary a child, naming the case it runs.
const CASE: &str = "MALLOC_TUNE_TEST_CASE";

fn main() {
    match std::env::var(CASE).ok().as_deref() {
        Some("pattern-default") => pattern(false),
        Some("pattern-tuned") => pattern(true),
        Some("report") => println!("tuning={:?}", tune_for_training()),
        Some("report-service") => println!("tuning={:?}", tune_for_service()),
        Some("arenas-default") => println!("arenas={}", arenas_after_threads(false)),
        Some("arenas-service") => println!("arenas={}", arenas_after_threads(true)),
        Some(other) => panic!("unknown case {other}"),
        None => {
            training_pattern_stops_faulting();
            user_settings_win();
            service_threads_share_one_arena();
            println!("malloc_tune: 3 passed");
        }
    }
}

/// Minor page faults of this process so far.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn minor_faults() -> i64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    usage.ru_minflt
}

/// Activations of 8, 20 and 40 MiB held together, written, freed, again and again (a step's
/// forward and backward); prints the page faults of the last five rounds.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn pattern(tuned: bool) {
    if tuned {
        assert_eq!(tune_for_training(), Tuning::Applied);
    }
    let round = || {
        let blocks: Vec<Vec<u8>> = [8usize, 20, 40, 8, 20, 40]
            .iter()
            .map(|mib| vec![1u8; mib << 20])
            .collect();
        std::hint::black_box(&blocks);
    };
    round();
    round();
    let before = minor_faults();
    for _ in 0..5 {
        round();
    }
    println!("faults={}", minor_faults() - before);
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn pattern(_tuned: bool) {
    println!("faults=0");
}

/// Runs this binary as a child on `case` with `env` set (and no malloc options of the caller's),
/// returning what it printed.
fn child(case: &str, env: &[(&str, &str)]) -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    for var in USER_SETTINGS.iter().chain([&OPT_OUT]) {
        cmd.env_remove(var);
    }
    cmd.env(CASE, case).envs(env.iter().copied());
    let out = cmd.output().expect("running the child");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child {case} failed: {text}{err}");
    text
}

/// The `KEY=N` a child printed for `case`.
fn child_count(case: &str, key: &str) -> u64 {
    let text = child(case, &[]);
    text.trim()
        .strip_prefix(key)
        .and_then(|t| t.strip_prefix('='))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{case} printed {text:?}"))
}

/// With glibc's defaults the 40 MiB blocks (and, as the heap is trimmed, some of the others) are
/// mapped afresh every round and fault on each 4 KiB page: about 35,000 faults a round here.
/// Tuned, the heap keeps them and later rounds do not fault.
fn training_pattern_stops_faulting() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        println!("skipped training_pattern_stops_faulting: not glibc");
        return;
    }
    let faults = |case| child_count(case, "faults") as i64;
    let (default, tuned) = (faults("pattern-default"), faults("pattern-tuned"));
    println!("page faults in five rounds: {default} with glibc's defaults, {tuned} tuned");
    assert!(
        default > 5 * 15_000,
        "defaults faulted only {default} times"
    );
    assert!(
        tuned < default / 20,
        "tuned: {tuned} faults, defaults {default}"
    );
}

/// Malloc options the user set win, and the answer names the variable.
fn user_settings_win() {
    let text = child("report", &[]);
    let expect = if cfg!(all(target_os = "linux", target_env = "gnu")) {
        "tuning=Applied"
    } else {
        "tuning=Unavailable"
    };
    assert_eq!(text.trim(), expect);
    // Empty, or tunables of other parts of glibc: not malloc options.
    for (var, value) in [
        ("GLIBC_TUNABLES", "glibc.pthread.rseq=0"),
        ("MALLOC_TOP_PAD_", ""),
        ("CONTEXTRAST_MALLOC", "tuned"),
    ] {
        assert_eq!(
            child("report", &[(var, value)]).trim(),
            expect,
            "{var}={value:?}"
        );
    }
    for (var, value) in [
        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0"),
        ("MALLOC_TOP_PAD_", "131072"),
        ("MALLOC_MMAP_MAX_", "65536"),
        ("CONTEXTRAST_MALLOC", "default"),
    ] {
        let text = child("report", &[(var, value)]);
        assert_eq!(text.trim(), format!("tuning=LeftToUser({var:?})"));
    }
}

/// Four threads allocate and free, at once; then glibc's own report (`malloc_info`) says how many
/// arenas the process has.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn arenas_after_threads(service: bool) -> usize {
    if service {
        assert_eq!(tune_for_service(), Tuning::OneArena);
    }
    let barrier = std::sync::Barrier::new(4);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..200 {
                    std::hint::black_box(vec![1u8; 4096]);
                }
                barrier.wait();
            });
        }
    });
    let path = std::env::temp_dir().join(format!("malloc-info-{}.xml", std::process::id()));
    let c = std::ffi::CString::new(path.to_str().expect("utf-8 temp path")).expect("path");
    // SAFETY: fopen/malloc_info/fclose on a file of our own; the stream is closed before reading.
    unsafe {
        let f = libc::fopen(c.as_ptr(), c"w".as_ptr());
        assert!(!f.is_null(), "fopen {}", path.display());
        assert_eq!(libc::malloc_info(0, f), 0);
        libc::fclose(f);
    }
    let xml = std::fs::read_to_string(&path).expect("malloc_info output");
    let _ = std::fs::remove_file(&path);
    xml.matches("<heap nr=").count()
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn arenas_after_threads(_service: bool) -> usize {
    1
}

/// The service's tuning leaves one arena where glibc's default gives threads their own, and a
/// user's `MALLOC_ARENA_MAX` wins.
fn service_threads_share_one_arena() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        println!("skipped service_threads_share_one_arena: not glibc");
        return;
    }
    let arenas = |case| child_count(case, "arenas");
    let (default, service) = (arenas("arenas-default"), arenas("arenas-service"));
    println!("arenas after four threads allocated at once: {default} by default, {service} tuned");
    assert!(default > 1, "glibc's default gave only {default} arena");
    assert_eq!(service, 1);
    assert_eq!(
        child("report-service", &[("MALLOC_ARENA_MAX", "4")]).trim(),
        "tuning=LeftToUser(\"MALLOC_ARENA_MAX\")"
    );
}
