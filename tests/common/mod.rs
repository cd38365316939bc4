//! Helpers the runtime's integration tests share: the binary as a user runs it, and the files
//! shipped with the repository. Each helper asserts that the binary never panicked, so every test
//! checks that for free.
#![allow(dead_code)] // each test file uses a different subset

pub mod live_model;
pub mod onnx_file;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (where `models/` and `firmware-config/` live).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The model the repository ships.
pub fn shipped_model() -> PathBuf {
    root().join("models/default.onnx")
}

/// The `contextrast` binary with `RUST_LOG` set, so tests that read the log see the same lines.
pub fn bin(rust_log: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_contextrast"));
    c.env("RUST_LOG", rust_log);
    c
}

/// Runs `c` and checks it did not panic, whatever its exit status.
pub fn output(c: &mut Command) -> Output {
    let out = c.output().expect("the binary runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{c:?} panicked:\n{err}");
    out
}

/// Runs `c`: (success, stdout, stderr), never a panic.
pub fn run(c: &mut Command) -> (bool, String, String) {
    let out = output(c);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `c`, which must succeed: (stdout, stderr).
pub fn ok(c: &mut Command) -> (String, String) {
    let (success, stdout, stderr) = run(c);
    assert!(success, "{c:?} failed:\n{stderr}");
    (stdout, stderr)
}

/// Runs `c`, which must succeed: its stdout.
pub fn stdout_ok(c: &mut Command) -> String {
    ok(c).0
}

/// Runs `c`, which must succeed: stdout followed by stderr (for tests that read the log too).
pub fn ok_all(c: &mut Command) -> String {
    let (stdout, stderr) = ok(c);
    stdout + &stderr
}

/// `contextrast synth --out OUT ARGS…` (`args` split at white space), which must succeed.
pub fn synth(rust_log: &str, out: &Path, args: &str) {
    ok(bin(rust_log)
        .args(["synth", "--out"])
        .arg(out)
        .args(args.split_whitespace()));
}

/// Runs `c`, which must fail cleanly: its stderr.
pub fn fails(c: &mut Command) -> String {
    let (success, _, stderr) = run(c);
    assert!(!success, "{c:?} should have failed");
    stderr
}

/// Every file the line's image writer left under `EVENTS/images/DATE/`, sorted (temporary
/// files of an interrupted write included: callers decide what those mean).
pub fn event_images(events: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(events.join("images"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|day| {
            std::fs::read_dir(day.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|f| f.path())
        .collect();
    out.sort();
    out
}

/// A JSON file the binary wrote.
pub fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).expect("the file exists")).expect("the file is JSON")
}
