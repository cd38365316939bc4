//! Crash consistency: SIGKILL at random points of every write the product makes, then a restart.
//!
//! - **The line**: `contextrast inspect` writing an event per verdict and defect images, killed
//!   at a random time and started again. Every complete event line parses (a kill can tear at
//!   most the one line being written, and the next run starts on a new line); every image left
//!   decodes; the restarted line runs.
//! - **Promotion**: a process promoting models in a loop (`retrain::promote`, what `retrain`
//!   and `rollback` call), killed at a random time while the line watches the file. The model
//!   file is always one of the two whole models, and the line never refuses (never saw half a
//!   file); stale temporary files of killed writers are swept by the next write.
//! - **Training**: `contextrast train` killed at random steps and resumed with `--resume`
//!   until done; the final checkpoint is bit-identical to an uninterrupted run's.
//!
//! Trials: `CONTEXTRAST_CRASH_TRIALS` (default 220, split 60 line / 100 promotion / 60
//! training), kill times from `CONTEXTRAST_CRASH_SEED` (default 1).
// Test helpers may unwrap: a panic there is a failed test, not a crash on input.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
use common::{bin, event_images, ok, shipped_model};
use contextrast_model::rng::SplitMix64;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set in a child of this binary: it promotes `MODEL|A|B` in a loop until killed.
const PROMOTER: &str = "CONTEXTRAST_CRASH_PROMOTER";
const PROMOTER_TEST: &str = "promoter_child";

fn trials() -> (usize, usize, usize) {
    let total: usize = std::env::var("CONTEXTRAST_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(220);
    let line = total * 6 / 22;
    let train = total * 6 / 22;
    (line, total - line - train, train)
}

fn rng() -> SplitMix64 {
    SplitMix64::seeded(
        std::env::var("CONTEXTRAST_CRASH_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1),
    )
}

fn kill9(child: &mut Child) {
    // SAFETY: kill(2) of our own child, then reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

/// Not a test of its own: the promoting process that `the_line_and_promotion_survive_kill_9`
/// starts and kills.
#[test]
fn promoter_child() {
    let Ok(spec) = std::env::var(PROMOTER) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let (model, a, b) = (
        Path::new(parts[0]),
        Path::new(parts[1]),
        Path::new(parts[2]),
    );
    loop {
        contextrast::retrain::promote(model, a).unwrap();
        contextrast::retrain::promote(model, b).unwrap();
    }
}

/// The two models the promoter alternates: the shipped one and a copy with one weight changed,
/// so the line sees a new model each time.
fn two_models(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>, Vec<u8>) {
    let a_bytes = std::fs::read(shipped_model()).unwrap();
    let mut b_bytes = a_bytes.clone();
    // Mid-file is inside the weights (the metadata comes last): one bit of one float.
    let at = b_bytes.len() / 2;
    b_bytes[at] ^= 1;
    let (a, b) = (dir.join("a.onnx"), dir.join("b.onnx"));
    std::fs::write(&a, &a_bytes).unwrap();
    std::fs::write(&b, &b_bytes).unwrap();
    let config = |path: &Path| contextrast::infer::ModelConfig {
        path: path.to_path_buf(),
        ..Default::default()
    };
    for m in [&a, &b] {
        contextrast::infer::native::load_segmenter(&config(m))
            .unwrap_or_else(|e| panic!("{}: {e}", m.display()));
    }
    (a, b, a_bytes, b_bytes)
}

fn start_line(config: &Path, log: &Path) -> Child {
    bin("info")
        .args(["inspect", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        )
        .spawn()
        .expect("inspect starts")
}

/// Checks every event file and image under `events`: (lines, torn lines, images).
fn check_records(events: &Path) -> (usize, usize, usize) {
    let (mut lines, mut torn, mut images) = (0, 0, 0);
    for e in std::fs::read_dir(events).into_iter().flatten().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            let text = std::fs::read(&p).unwrap();
            for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                lines += 1;
                if serde_json::from_slice::<serde_json::Value>(line).is_err() {
                    torn += 1;
                }
            }
        }
    }
    for p in event_images(events) {
        if p.to_string_lossy().ends_with(".tmp") {
            continue; // a killed writer's; never read, removed at the next start
        }
        image::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        images += 1;
    }
    (lines, torn, images)
}

#[test]
fn the_line_and_promotion_survive_kill_9() {
    if std::env::var_os(PROMOTER).is_some() {
        return;
    }
    let (line_trials, promote_trials, _) = trials();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (a, b, a_bytes, b_bytes) = two_models(dir);
    let model = dir.join("model.onnx");
    std::fs::write(&model, &a_bytes).unwrap();
    let events = dir.join("events");
    let config = dir.join("line.toml");
    std::fs::write(
        &config,
        format!(
            r#"[source]
kind = "synthetic"
[source.synthetic]
width = 96
height = 64
fps = 40
[model]
path = "{}"
threads = 1
[pipeline]
status_every_s = 0
[decision]
threshold = 0.5
min_area_px = 4
[reject]
output = "log"
delay_ms = 100
pulse_ms = 10
[events]
dir = "{}"
all_verdicts = true
images = true
max_images = 60
"#,
            model.display(),
            events.display()
        ),
    )
    .unwrap();
    let log = dir.join("inspect.log");
    let mut r = rng();
    let exe = std::env::current_exe().unwrap();
    let mut line = start_line(&config, &log);
    let (mut torn_total, mut kills_line, mut kills_promote) = (0, 0, 0);
    let per_line_kill = promote_trials.div_ceil(line_trials.max(1));
    let started = Instant::now();
    while kills_line < line_trials || kills_promote < promote_trials {
        // A few promotions killed mid-write while the line runs.
        for _ in 0..per_line_kill {
            if kills_promote >= promote_trials {
                break;
            }
            let mut p = Command::new(&exe)
                .args(["--exact", PROMOTER_TEST, "--nocapture", "--test-threads=1"])
                .env(
                    PROMOTER,
                    format!("{}|{}|{}", model.display(), a.display(), b.display()),
                )
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_micros(2_000 + r.next_u64() % 60_000));
            kill9(&mut p);
            kills_promote += 1;
            let now = std::fs::read(&model).unwrap();
            assert!(
                now == a_bytes || now == b_bytes,
                "promotion killed: model file is neither model ({} bytes)",
                now.len()
            );
        }
        // The line killed at a random moment, its records checked, started again. Its watcher
        // notices a promoted file within about 2 s, so later kills land before, in and after
        // the hot swap.
        std::thread::sleep(Duration::from_millis(300 + r.next_u64() % 3200));
        kill9(&mut line);
        kills_line += 1;
        let (_, torn, _) = check_records(&events);
        assert!(
            torn <= kills_line,
            "{torn} unparseable event lines after {kills_line} kills"
        );
        torn_total = torn;
        line = start_line(&config, &log);
    }
    // The last run ends cleanly and has judged frames.
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(line.id() as i32, libc::SIGTERM) };
    let status = line.wait().unwrap();
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "the last run failed:\n{log_text}");
    assert!(!log_text.contains("panicked"), "{log_text}");
    assert!(
        !log_text.contains("refused"),
        "the line refused a model, so it saw a partial file:\n{log_text}"
    );
    let (lines, torn, images) = check_records(&events);
    assert!(lines > 0 && images > 0, "{lines} lines, {images} images");
    assert_eq!(torn, torn_total, "the clean run tore nothing");
    let swaps = log_text.matches("engine swapped").count();
    assert!(swaps > 0, "no hot swap happened, so none was killed");
    let strays: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(
        strays.len() <= 2,
        "temporary files of killed promoters are swept: {strays:?}"
    );
    eprintln!(
        "kill -9: {kills_line} line kills, {kills_promote} promotion kills in {:.0} s; {lines} event lines ({torn} torn), {images} images, {swaps} hot swaps, 0 refused",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn training_resumes_bit_identically_after_kill_9() {
    if std::env::var_os(PROMOTER).is_some() {
        return;
    }
    let (_, _, train_trials) = trials();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    ok(bin("warn").args(["synth", "--out"]).arg(&data).args([
        "--count", "8", "--seed", "5", "--width", "96", "--height", "64",
    ]));
    let config = dir.join("train.toml");
    std::fs::write(
        &config,
        r#"steps = 12
batch = 2
crop = [64, 64]
val_every = 0
checkpoint_every = 1
workers = 1
seed = 3
[model]
width = 4
decoder = 8
proj_dim = 4
refine = 0
"#,
    )
    .unwrap();
    let train = |out: &Path, resume: bool| {
        let mut c = bin("warn");
        c.args(["train", "--device", "cpu", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(out)
            .arg("--config")
            .arg(&config);
        if resume {
            c.arg("--resume");
        }
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        c
    };
    let reference = dir.join("reference");
    let t0 = Instant::now();
    ok(&mut train(&reference, false));
    let one_run = t0.elapsed();
    let want = std::fs::read(reference.join("last.safetensors")).unwrap();

    let mut r = rng();
    let (mut kills, mut runs) = (0, 0);
    let mut out_n = 0;
    while kills < train_trials {
        // One training run, killed one or more times, resumed to the end.
        let out = dir.join(format!("run{out_n}"));
        out_n += 1;
        let mut resume = false;
        let mut killed_here = 0;
        loop {
            let mut child = train(&out, resume).spawn().unwrap();
            runs += 1;
            if killed_here < 3 && kills < train_trials {
                let at = r.next_u64() % (one_run.as_millis() as u64).max(1);
                std::thread::sleep(Duration::from_millis(at));
                if child.try_wait().unwrap().is_none() {
                    kill9(&mut child);
                    kills += 1;
                    killed_here += 1;
                    resume = true;
                    continue;
                }
            }
            let out_put = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out_put.stderr);
            assert!(
                out_put.status.success(),
                "resume failed after a kill:\n{err}"
            );
            assert!(!err.contains("panicked"), "{err}");
            break;
        }
        let got = std::fs::read(out.join("last.safetensors")).unwrap();
        assert!(
            got == want,
            "run {} (killed {killed_here} times) ends with different weights",
            out.display()
        );
        let _ = std::fs::remove_dir_all(&out);
    }
    eprintln!("kill -9: {kills} training kills over {runs} runs, every resumed run bit-identical");
}
