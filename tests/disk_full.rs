//! A full disk under a running line, as a user's would fill: `contextrast inspect` writes its
//! events and defect images to a small tmpfs, the tmpfs is filled to 100 % while the line runs,
//! then freed. The line must keep judging and rejecting, shed (and count) the images it cannot
//! write, keep every event in memory and write it once there is room, and damage nothing it had
//! already written.
//!
//! Mounting needs privileges: the test re-runs itself inside `unshare -Urm` (a new user and
//! mount namespace, which an unprivileged user may create on most Linux systems), so the tmpfs
//! exists only for that run and never touches the host's mounts.
// Test helpers may unwrap: a panic there is a failed test, not a crash on input.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
use common::{bin, event_images, read_json, shipped_model};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// Set in the namespace: this process is the one that mounts and runs the line.
const INNER: &str = "CONTEXTRAST_DISK_FULL_INNER";
const NAME: &str = "a_full_disk_sheds_images_keeps_judging_and_loses_no_event";
/// statfs(2) magic of tmpfs: the filler writes only where this is the file system.
const TMPFS_MAGIC: i64 = 0x0102_1994;

#[test]
fn a_full_disk_sheds_images_keeps_judging_and_loses_no_event() {
    if std::env::var_os(INNER).is_some() {
        return inner();
    }
    let probe = Command::new("unshare").args(["-Urm", "true"]).status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("`unshare -Urm` is not permitted here: skipping the full-disk line test");
        return;
    }
    let exe = std::env::current_exe().expect("test executable");
    let out = Command::new("unshare")
        .args(["-Urm", "--"])
        .arg(exe)
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .output()
        .expect("unshare runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the run in the namespace failed:\n{stdout}\n{stderr}"
    );
    print!("{stdout}");
    for line in stderr.lines().filter(|l| l.starts_with("full disk:")) {
        eprintln!("{line}");
    }
}

fn statfs(p: &Path) -> libc::statfs {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: `c` is a valid NUL-terminated path; `st` is written by the call.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        assert_eq!(
            libc::statfs(c.as_ptr(), &mut st),
            0,
            "statfs {}",
            p.display()
        );
        st
    }
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn event_file(disk: &Path) -> Option<std::path::PathBuf> {
    std::fs::read_dir(disk)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
}

fn log_since(log: &Path, from: usize, to: usize) -> String {
    let text = std::fs::read(log).expect("log");
    String::from_utf8_lossy(&text[from.min(text.len())..to.min(text.len())]).into_owned()
}

fn inner() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let disk = tmp.path().join("disk");
    std::fs::create_dir(&disk).expect("mkdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&disk)
        .status()
        .expect("mount runs");
    assert!(mounted.success(), "mounting a tmpfs in the namespace");
    assert_eq!(
        statfs(&disk).f_type as i64,
        TMPFS_MAGIC,
        "{} is a tmpfs",
        disk.display()
    );

    let config = tmp.path().join("line.toml");
    std::fs::write(
        &config,
        format!(
            r#"[source]
kind = "synthetic"
[source.synthetic]
seed = 9001
width = 160
height = 128
fps = 10
[model]
path = "{model}"
threads = 1
[pipeline]
status_every_s = 0.5
[decision]
threshold = 0.5
min_area_px = 4
[reject]
output = "log"
delay_ms = 300
pulse_ms = 20
[events]
dir = "{disk}"
images = true
max_images = 100000
max_bytes = 1_000_000_000
"#,
            model = shipped_model().display(),
            disk = disk.display()
        ),
    )
    .expect("config");
    let log = tmp.path().join("log.txt");
    let summary = tmp.path().join("summary.json");
    let mut child = bin("info")
        .args(["inspect", "--config"])
        .arg(&config)
        .arg("--summary-json")
        .arg(&summary)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("inspect starts");

    // 1. Running normally: events and images on disk. What is there now must survive.
    wait_for(
        "the first events and images",
        Duration::from_secs(90),
        || {
            event_file(&disk)
                .is_some_and(|p| std::fs::read_to_string(p).is_ok_and(|t| t.lines().count() >= 3))
                && event_images(&disk).len() >= 4
        },
    );
    let events_path = event_file(&disk).expect("event file");
    let before_events = std::fs::read(&events_path).expect("events");
    let before_images: Vec<(std::path::PathBuf, Vec<u8>)> = event_images(&disk)
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with(".tmp"))
        .map(|p| {
            let b = std::fs::read(&p).expect("image");
            (p, b)
        })
        .collect();

    // 2. Fill the tmpfs to the last block (bounded by 32 MiB, so it can never fill another
    //    disk), keep it full for a few seconds.
    let log_at_full = std::fs::metadata(&log).expect("log").len() as usize;
    let full_from = SystemTime::now();
    let fill = disk.join("fill");
    let mut filler = std::fs::File::create(&fill).expect("filler");
    let mut filled = 0usize;
    // The line's writers free what a failed write had taken (a removed temporary image, a cut
    // event line), so the filler takes it back every 50 ms: the disk stays full throughout.
    let mut top_up = |f: &mut std::fs::File| {
        let chunk = [0xA5u8; 4096];
        while filled < 32 << 20 {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling: {e}"),
            }
        }
    };
    // Right after a top-up at most what a writer freed since can be free (a few pages).
    let nearly_full = |what: &str| {
        let st = statfs(&disk);
        assert!(st.f_bavail <= 16, "{what}: {} blocks free", st.f_bavail);
    };
    top_up(&mut filler);
    nearly_full("the tmpfs is full");
    let full_for = Instant::now();
    while full_for.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
        top_up(&mut filler);
    }
    top_up(&mut filler);
    nearly_full("still full");
    drop(filler);
    let log_at_free = std::fs::metadata(&log).expect("log").len() as usize;
    let full_until = SystemTime::now();
    let events_len_full = std::fs::metadata(&events_path).expect("events").len();

    // 3. Free it: events and images must come back by themselves.
    std::fs::remove_file(&fill).expect("free");
    let images_at_free = event_images(&disk).len();
    wait_for(
        "events and images after freeing",
        Duration::from_secs(30),
        || {
            std::fs::metadata(&events_path).is_ok_and(|m| m.len() > events_len_full)
                && event_images(&disk).len() > images_at_free
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    // SAFETY: a plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "inspect did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert!(status.success(), "inspect failed:\n{log_text}");
    assert!(!log_text.contains("panicked"), "{log_text}");

    // The line kept judging and rejecting while the disk was full.
    let while_full = log_since(&log, log_at_full, log_at_free);
    assert!(
        while_full.matches("reject: active").count() >= 3,
        "rejects while full:\n{while_full}"
    );
    let s = read_json(&summary);
    let (run, events, imgs) = (&s["run"], &s["events"], &s["images"]);
    assert!(
        imgs["shed_errors"].as_u64().unwrap() > 0,
        "images shed: {s:#}"
    );
    assert!(events["write_errors"].as_u64().unwrap() > 0, "{s:#}");
    assert_eq!(events["dropped"], 0, "{s:#}");
    assert_eq!(events["pending"], 0, "{s:#}");
    assert_eq!(run["frames_failed"], 0, "{s:#}");

    // Every event is on disk: one verdict line per defective frame, in order, parseable; what
    // was there before the disk filled is untouched; verdicts from the full period are there.
    let after = std::fs::read(&events_path).expect("events");
    assert!(after.starts_with(&before_events), "earlier events changed");
    let text = String::from_utf8(after).expect("UTF-8 events");
    let mut verdicts = 0u64;
    let mut last_seq = None;
    let (mut during, mut disk_faults) = (0, 0);
    let stamp = |t: SystemTime| contextrast::record::events::rfc3339_ms(t);
    let (from, until) = (stamp(full_from), stamp(full_until));
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("event line {line:?}: {e}"));
        if let Some(seq) = v["seq"].as_u64() {
            assert!(
                last_seq.is_none_or(|l| seq > l),
                "order: {seq} after {last_seq:?}"
            );
            last_seq = Some(seq);
            verdicts += 1;
            let time = v["time"].as_str().unwrap();
            if time > from.as_str() && time < until.as_str() {
                during += 1;
            }
        } else if v["kind"] == "disk" {
            disk_faults += 1;
        }
    }
    assert_eq!(verdicts, run["defective_frames"].as_u64().unwrap(), "{s:#}");
    assert!(during >= 3, "verdicts judged while full: {during}");
    eprintln!(
        "full disk: {} frames judged, {verdicts} verdict events ({during} while full), {} disk faults, {} image writes shed, {} event write errors",
        run["frames_processed"], disk_faults, imgs["shed_errors"], events["write_errors"]
    );

    // Images written before are intact; every image left is whole (no partial file).
    for (p, b) in &before_images {
        assert_eq!(
            &std::fs::read(p).expect("image kept"),
            b,
            "{} changed",
            p.display()
        );
    }
    for p in event_images(&disk) {
        assert!(
            !p.to_string_lossy().ends_with(".tmp"),
            "temporary left: {}",
            p.display()
        );
        image::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
}
