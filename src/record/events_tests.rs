use super::*;
use crate::record::images::{
    ImageJob, ImageStats, ImageWriter, image_file_name, overlay_file_name,
};
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Captures log records so tests can check "once per distinct error".
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        lock(&self.0).push(format!("{} {}", r.level(), r.args()));
    }
    fn flush(&self) {}
}

/// Installs the capturing logger once; `None` if another logger got there first (then the
/// log assertions are skipped, the counters are still checked).
fn logs() -> Option<&'static Capture> {
    static CAP: OnceLock<Option<&'static Capture>> = OnceLock::new();
    *CAP.get_or_init(|| {
        let cap: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(cap).ok()?;
        log::set_max_level(log::LevelFilter::Trace);
        Some(cap)
    })
}

/// Log lines that mention `needle` (each test's own temp dir); `None` when not capturing.
fn logs_with(needle: &str) -> Option<Vec<String>> {
    let cap = logs()?;
    Some(
        lock(&cap.0)
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect(),
    )
}

fn wait_until(timeout_ms: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_millis(timeout_ms);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

fn cfg(dir: &Path) -> EventsConfig {
    EventsConfig {
        dir: dir.to_path_buf(),
        ..EventsConfig::default()
    }
}

/// Fast limits for tests: quick retries and syncs.
fn fast() -> Limits {
    Limits {
        retry: Duration::from_millis(20),
        sync_interval: Duration::from_millis(10),
        ..Limits::default()
    }
}

fn verdict(seq: u64) -> VerdictEvent {
    VerdictEvent {
        time: "2024-02-29T23:59:59.999Z".into(),
        seq,
        frame: format!("cam0/{seq:06}.png"),
        defects: vec![
            DefectRecord {
                class: "scratch".into(),
                area_px: 12.5 + seq as f64,
                bbox: [1, 2, 30, 40],
                score: 0.75,
            },
            DefectRecord {
                class: "dent".into(),
                area_px: 3.0,
                bbox: [5, 6, 7, 8],
                score: 0.5,
            },
        ],
        action: if seq.is_multiple_of(2) {
            "reject"
        } else {
            "late"
        }
        .into(),
        model: "m-v3".into(),
        image: Some(format!("{seq:012}-x.png")),
    }
}

const DATE: &str = "2024-02-29";

/// All lines of one event file, parsed as JSON values.
fn read_lines(dir: &Path, date: &str) -> Vec<serde_json::Value> {
    let path = dir.join(events_file_name(date));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).expect("every line is whole JSON"))
        .collect()
}

fn seqs(dir: &Path, date: &str) -> Vec<u64> {
    read_lines(dir, date)
        .iter()
        .map(|v| v["seq"].as_u64().expect("seq"))
        .collect()
}

fn is_root() -> bool {
    // Root bypasses file modes, so probe instead of asking the uid.
    let d = tempfile::tempdir().expect("tempdir");
    let f = d.path().join("probe");
    std::fs::write(&f, b"x").expect("write probe");
    let mut p = std::fs::metadata(&f).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o444);
    std::fs::set_permissions(&f, p).expect("chmod");
    OpenOptions::new().append(true).open(&f).is_ok()
}

// ---------------------------------------------------------------------------------------------
// Time

#[test]
fn civil_dates_known_values() {
    for (days, want) in [
        (0, (1970, 1, 1)),
        (-1, (1969, 12, 31)),
        (11016, (2000, 2, 29)),
        (11017, (2000, 3, 1)),
        (-25509, (1900, 2, 28)),
        (-25508, (1900, 3, 1)),
        (19782, (2024, 2, 29)),
        (19722, (2023, 12, 31)),
        (20088, (2024, 12, 31)),
        (47540, (2100, 2, 28)),
        (47541, (2100, 3, 1)),
        (-719162, (1, 1, 1)),
        (2932896, (9999, 12, 31)),
    ] {
        assert_eq!(civil_from_days(days), want, "day {days}");
    }
}

#[test]
fn civil_dates_match_day_by_day_count() {
    // Walk 1600-03-01 .. ~2400 one day at a time with the plain leap rule.
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let len = |y: i64, m: u32| match m {
        2 if leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    let start = -135080; // 1600-03-01
    assert_eq!(civil_from_days(start), (1600, 3, 1));
    let (mut y, mut m, mut d) = (1600i64, 3u32, 1u32);
    for days in start..start + 2 * 146_097 {
        assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
        d += 1;
        if d > len(y, m) {
            d = 1;
            m += 1;
            if m > 12 {
                m = 1;
                y += 1;
            }
        }
    }
    assert_eq!((y, m, d), (2400, 3, 1));
}

#[test]
fn rfc3339_formatting() {
    let at = |ms: i64| {
        if ms >= 0 {
            UNIX_EPOCH + Duration::from_millis(ms as u64)
        } else {
            UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
        }
    };
    assert_eq!(rfc3339_ms(at(0)), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339_ms(at(951_868_799_999)), "2000-02-29T23:59:59.999Z");
    assert_eq!(rfc3339_ms(at(951_868_800_000)), "2000-03-01T00:00:00.000Z");
    assert_eq!(
        rfc3339_ms(at(1_735_648_496_007)),
        "2024-12-31T12:34:56.007Z"
    );
    assert_eq!(rfc3339_ms(at(-1)), "1969-12-31T23:59:59.999Z");
    // Sub-millisecond parts are truncated, not rounded.
    let t = UNIX_EPOCH + Duration::from_micros(1_999_999);
    assert_eq!(rfc3339_ms(t), "1970-01-01T00:00:01.999Z");
    assert_eq!(utc_date(at(951_868_799_999)), "2000-02-29");
    let now = rfc3339_ms(SystemTime::now());
    assert_eq!(now.len(), 24);
    assert_eq!(&now[..10], utc_date(SystemTime::now()));
}

#[test]
fn event_date_comes_from_its_time() {
    assert_eq!(date_of("2024-02-29T23:59:59.999Z"), "2024-02-29");
    assert_eq!(date_of("2024-02-29"), "2024-02-29");
    let today = utc_date(SystemTime::now());
    for bad in ["", "yesterday", "2024/02/29T00:00", "2024-2-29T00:00:00Z"] {
        assert_eq!(date_of(bad), today, "{bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Config

#[test]
fn config_defaults_and_keys() {
    let c: EventsConfig = serde_json::from_str("{}").expect("empty is all defaults");
    assert_eq!(c, EventsConfig::default());
    assert_eq!(c.dir, PathBuf::from("/var/lib/contextrast/events"));
    assert_eq!((c.all_verdicts, c.images), (false, true));
    assert_eq!(
        (c.max_images, c.max_bytes, c.image_queue),
        (2000, 1 << 30, 8)
    );
    assert_eq!(c.image_format, "png");
    c.validate(Path::new("line.toml"))
        .expect("defaults are valid");

    let err = serde_json::from_str::<EventsConfig>(r#"{"max_image": 3}"#)
        .expect_err("unknown key")
        .to_string();
    assert!(err.contains("max_image"), "{err}");

    let check = |json: &str, key: &str| {
        let c: EventsConfig = serde_json::from_str(json).expect("parses");
        let e = c
            .validate(Path::new("line.toml"))
            .expect_err(json)
            .to_string();
        assert!(e.starts_with(&format!("line.toml: `events.{key}`")), "{e}");
    };
    check(r#"{"image_format": "gif"}"#, "image_format");
    check(r#"{"max_images": 1}"#, "max_images");
    check(r#"{"max_bytes": 0}"#, "max_bytes");
    check(r#"{"image_queue": 0}"#, "image_queue");
    check(r#"{"dir": ""}"#, "dir");
    // Image limits do not matter with images off.
    let c: EventsConfig =
        serde_json::from_str(r#"{"images": false, "max_images": 0}"#).expect("parses");
    c.validate(Path::new("line.toml")).expect("valid");
}

#[test]
fn open_names_a_dir_it_cannot_create() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let blocker = tmp.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").expect("write");
    let dir = blocker.join("events");
    let Err(e) = EventLog::open(&cfg(&dir)) else {
        panic!("opened under a file");
    };
    let msg = e.to_string();
    assert!(msg.contains(&dir.display().to_string()), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// Events

#[test]
fn round_trip_exact_fields_and_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = EventLog::open_with(&cfg(tmp.path()), fast()).expect("open");
    let n = 500;
    for seq in 0..n {
        log.verdict(verdict(seq));
        if seq % 100 == 0 {
            log.fault(FaultEvent {
                time: "2024-02-29T10:00:00.000Z".into(),
                kind: "camera".into(),
                message: format!("lost frame {seq}: \"quoted\"\nnewline"),
            });
        }
    }
    let st = log.close();
    assert_eq!(
        st,
        EventStats {
            written: 505,
            ..EventStats::default()
        }
    );
    let text = std::fs::read_to_string(tmp.path().join("events-2024-02-29.jsonl")).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 505);
    let mut i = 0;
    for seq in 0..n {
        let v: VerdictEvent = serde_json::from_str(lines[i]).expect("verdict line");
        assert_eq!(v, verdict(seq));
        i += 1;
        if seq % 100 == 0 {
            let f: FaultEvent = serde_json::from_str(lines[i]).expect("fault line");
            assert_eq!(f.time, "2024-02-29T10:00:00.000Z");
            assert_eq!(f.kind, "camera");
            assert_eq!(f.message, format!("lost frame {seq}: \"quoted\"\nnewline"));
            i += 1;
        }
    }
    // Exact key names a downstream tool relies on.
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("json");
    let keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(|k| k.as_str())
        .collect();
    let mut want = [
        "time", "seq", "frame", "defects", "action", "model", "image",
    ];
    let mut got = keys.clone();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(v["defects"][0]["bbox"], serde_json::json!([1, 2, 30, 40]));
}

#[test]
fn clean_passes_are_logged_only_with_all_verdicts() {
    for all in [false, true] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut c = cfg(tmp.path());
        c.all_verdicts = all;
        let log = EventLog::open_with(&c, fast()).expect("open");
        for seq in 0..10 {
            let mut v = verdict(seq);
            if seq < 6 {
                v.defects.clear();
                v.action = "pass".into();
                v.image = None;
            }
            log.verdict(v);
        }
        let st = log.close();
        let want: Vec<u64> = if all {
            (0..10).collect()
        } else {
            (6..10).collect()
        };
        assert_eq!(st.written, want.len() as u64);
        assert_eq!(seqs(tmp.path(), DATE), want);
    }
}

#[test]
fn events_go_to_the_file_of_their_date() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = EventLog::open_with(&cfg(tmp.path()), fast()).expect("open");
    let dates = [
        "2023-12-31",
        "2024-01-01",
        "2024-01-01",
        "2023-12-31",
        "garbage",
    ];
    for (seq, d) in dates.iter().enumerate() {
        let mut v = verdict(seq as u64);
        v.time = format!("{d}T23:59:59.000Z");
        log.verdict(v);
    }
    assert_eq!(log.close().written, 5);
    assert_eq!(seqs(tmp.path(), "2023-12-31"), [0, 3]);
    assert_eq!(seqs(tmp.path(), "2024-01-01"), [1, 2]);
    assert_eq!(seqs(tmp.path(), &utc_date(SystemTime::now())), [4]);
}

#[test]
fn torn_last_line_is_not_glued_to_the_next() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("events-2024-02-29.jsonl");
    std::fs::write(&path, b"{\"seq\":1,\"tr").expect("write");
    let log = EventLog::open_with(&cfg(tmp.path()), fast()).expect("open");
    log.verdict(verdict(7));
    assert_eq!(log.close().written, 1);
    let text = std::fs::read_to_string(&path).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], "{\"seq\":1,\"tr");
    let v: VerdictEvent = serde_json::from_str(lines[1]).expect("whole line");
    assert_eq!(v.seq, 7);
}

#[test]
fn full_channel_overflows_to_memory_then_drops_oldest_counted() {
    logs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let limits = Limits {
        channel: 4,
        send_wait: Duration::from_millis(20),
        max_buffered: 10,
        start_held: true,
        ..fast()
    };
    let log = EventLog::open_with(&cfg(tmp.path()), limits).expect("open");
    let t0 = Instant::now();
    for seq in 0..20 {
        log.verdict(verdict(seq));
    }
    // Only the first overflowing event waited; the rest went straight to memory.
    let blocked = t0.elapsed();
    assert!(blocked >= Duration::from_millis(20), "{blocked:?}");
    assert!(blocked < Duration::from_millis(500), "{blocked:?}");
    let st = log.stats();
    assert_eq!(
        (st.written, st.pending, st.overflowed, st.dropped),
        (0, 14, 16, 6)
    );
    if let Some(l) = logs_with("events lost so far") {
        assert!(!l.is_empty());
    }
    log.hold(false);
    let st = log.close();
    assert_eq!(
        (st.written, st.pending, st.overflowed, st.dropped),
        (14, 0, 16, 6)
    );
    let want: Vec<u64> = (0..4).chain(10..20).collect();
    assert_eq!(seqs(tmp.path(), DATE), want);
}

#[test]
fn many_threads_keep_their_order_through_overflow() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let limits = Limits {
        channel: 8,
        send_wait: Duration::from_millis(1),
        ..fast()
    };
    let log = EventLog::open_with(&cfg(tmp.path()), limits).expect("open");
    let per = 3000u64;
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let sink = log.sink();
            s.spawn(move || {
                for i in 0..per {
                    sink.verdict(verdict(t * 1_000_000 + i));
                }
            });
        }
    });
    let st = log.close();
    assert_eq!((st.written, st.pending, st.dropped), (4 * per, 0, 0));
    let got = seqs(tmp.path(), DATE);
    assert_eq!(got.len() as u64, 4 * per);
    for t in 0..4u64 {
        let mine: Vec<u64> = got.iter().copied().filter(|s| s / 1_000_000 == t).collect();
        let want: Vec<u64> = (0..per).map(|i| t * 1_000_000 + i).collect();
        assert_eq!(mine, want, "thread {t}");
    }
}

/// The events dir vanishes mid-run and a file takes its place (what root sees of a dead or
/// read-only disk): events stay in memory, errors are counted and logged once per kind, and
/// once the file is gone every event lands in order.
#[test]
fn dir_replaced_by_file_keeps_events_and_recovers_in_order() {
    logs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ev");
    let log = EventLog::open_with(&cfg(&dir), fast()).expect("open");
    for seq in 0..5 {
        log.verdict(verdict(seq));
    }
    assert!(wait_until(5000, || log.stats().written == 5));
    let old = tmp.path().join("ev.old");
    std::fs::rename(&dir, &old).expect("rename");
    std::fs::write(&dir, b"in the way").expect("block");
    for seq in 5..15 {
        log.verdict(verdict(seq));
    }
    log.fault(FaultEvent::now("disk", "test"));
    assert!(wait_until(5000, || log.stats().write_errors >= 5));
    let st = log.stats();
    assert_eq!((st.written, st.pending, st.dropped), (5, 11, 0));
    // Logged once per distinct error, not per retry.
    if let Some(errs) = logs_with(&dir.display().to_string()) {
        assert!(!errs.is_empty() && errs.len() <= 3, "{errs:#?}");
        assert!((errs.len() as u64) < st.write_errors, "{errs:#?} vs {st:?}");
    }

    std::fs::remove_file(&dir).expect("unblock");
    assert!(wait_until(5000, || log.stats().pending == 0));
    let st = log.close();
    assert_eq!((st.written, st.pending, st.dropped), (16, 0, 0));
    assert_eq!(seqs(&dir, DATE), (5..15).collect::<Vec<_>>());
    let faults = read_lines(&dir, &utc_date(SystemTime::now()));
    assert_eq!(faults.len(), 1);
    assert_eq!(faults[0]["kind"], "disk");
    // The first five were confirmed before the move; lines written into the moved file but
    // never confirmed may appear there again (a duplicate, never a loss).
    let before = seqs(&old, DATE);
    assert_eq!(before[..5], [0, 1, 2, 3, 4]);
    if let Some(l) = logs_with(&dir.display().to_string()) {
        assert!(l.iter().any(|l| l.contains("again")), "{l:#?}");
    }
}

#[test]
fn backlog_bounded_while_failing_keeps_newest() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ev");
    let limits = Limits {
        max_buffered: 10,
        ..fast()
    };
    let log = EventLog::open_with(&cfg(&dir), limits).expect("open");
    std::fs::remove_dir_all(&dir).expect("rm");
    std::fs::write(&dir, b"x").expect("block");
    log.verdict(verdict(0));
    assert!(wait_until(5000, || log.stats().write_errors >= 1));
    for seq in 1..25 {
        log.verdict(verdict(seq));
    }
    assert!(wait_until(5000, || log.stats().dropped == 15));
    assert_eq!(log.stats().pending, 10);
    std::fs::remove_file(&dir).expect("unblock");
    let st = log.close();
    assert_eq!((st.written, st.pending, st.dropped), (10, 0, 15));
    assert_eq!(seqs(&dir, DATE), (15..25).collect::<Vec<_>>());
}

/// A read-only directory (only meaningful when not root: root ignores modes).
#[test]
fn read_only_dir_when_not_root() {
    if is_root() {
        eprintln!("running as root: chmod does not stop writes; covered by the dir-replaced test");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ev");
    let log = EventLog::open_with(&cfg(&dir), fast()).expect("open");
    let set = |mode| {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).expect("chmod")
    };
    set(0o555);
    for seq in 0..10 {
        log.verdict(verdict(seq));
    }
    assert!(wait_until(5000, || log.stats().write_errors >= 2));
    assert_eq!(log.stats().pending, 10);
    set(0o755);
    assert!(wait_until(5000, || log.stats().pending == 0));
    let st = log.close();
    assert_eq!((st.written, st.dropped), (10, 0));
    assert_eq!(seqs(&dir, DATE), (0..10).collect::<Vec<_>>());
}

/// A real full disk: a 64 KiB tmpfs, filled up. Skipped where mounting is not permitted.
#[test]
fn full_disk_on_tiny_tmpfs() {
    logs();
    struct Mount(PathBuf);
    impl Drop for Mount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mnt)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("cannot mount a tmpfs here; skipping the full-disk test");
        return;
    }
    let _guard = Mount(mnt.clone());
    let dir = mnt.join("ev");
    let log = EventLog::open_with(&cfg(&dir), fast()).expect("open");
    // Fill the disk.
    let filler = mnt.join("filler");
    let mut f = File::create(&filler).expect("filler");
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    drop(f);
    for seq in 0..50 {
        log.verdict(verdict(seq));
    }
    assert!(wait_until(5000, || log.stats().write_errors >= 2));
    let st = log.stats();
    assert_eq!((st.written, st.pending), (0, 50));
    if let Some(errs) = logs_with(&dir.display().to_string()) {
        assert!(
            errs.iter().any(|l| l.contains("No space left")),
            "{errs:#?}"
        );
    }
    std::fs::remove_file(&filler).expect("free space");
    assert!(wait_until(5000, || log.stats().pending == 0));
    let st = log.close();
    assert_eq!((st.written, st.dropped), (50, 0));
    // No torn line from the failed attempts: every line parses, in order.
    assert_eq!(seqs(&dir, DATE), (0..50).collect::<Vec<_>>());
}

#[test]
fn close_with_dead_disk_reports_pending_and_drop_flushes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ev");
    let log = EventLog::open_with(&cfg(&dir), fast()).expect("open");
    std::fs::remove_dir_all(&dir).expect("rm");
    std::fs::write(&dir, b"x").expect("block");
    for seq in 0..3 {
        log.verdict(verdict(seq));
    }
    let sink = log.sink();
    let st = log.close();
    assert_eq!((st.written, st.pending), (0, 3));
    assert!(st.write_errors >= 1);
    // After close the writer is gone: an event is counted as dropped, not hidden.
    sink.verdict(verdict(9));
    assert_eq!(sink.stats().dropped, 1);

    // Dropping without close still writes everything.
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let log = EventLog::open_with(&cfg(tmp.path()), Limits::default()).expect("open");
        for seq in 0..100 {
            log.verdict(verdict(seq));
        }
    }
    assert_eq!(seqs(tmp.path(), DATE), (0..100).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------------------------
// Images

/// A 16x12 grey frame with a class-1 blob at (2..6, 3..7) and a class-2 pixel at (10, 8).
fn job(seq: u64) -> ImageJob {
    let (w, h) = (16u32, 12u32);
    let mut mask = vec![0u8; (w * h) as usize];
    for y in 3..7 {
        for x in 2..6 {
            mask[y * w as usize + x] = 1;
        }
    }
    mask[8 * w as usize + 10] = 2;
    ImageJob {
        seq,
        name: "cam0/frame 001.png".into(),
        width: w,
        height: h,
        rgb: (0..w * h * 3).map(|i| (i % 200) as u8).collect(),
        mask,
        colors: vec![[0, 0, 0], [255, 0, 0]],
        boxes: vec![[2, 3, 6, 7], [10, 8, 11, 9]],
    }
}

fn img_cfg(dir: &Path) -> EventsConfig {
    EventsConfig {
        dir: dir.to_path_buf(),
        ..EventsConfig::default()
    }
}

/// Files under `images/`, as `date/name`, sorted.
fn image_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir.join("images")) else {
        return out;
    };
    for d in rd.flatten() {
        for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
            out.push(format!(
                "{}/{}",
                d.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn handles_can_be_shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<EventLog>();
    send_sync::<EventSink>();
    send_sync::<ImageWriter>();
}

#[test]
fn image_names_are_sanitised_and_ordered() {
    assert_eq!(
        image_file_name(42, "cam0/frame 001.png", "png"),
        "000000000042-frame_001.png"
    );
    assert_eq!(
        overlay_file_name(42, "../../x"),
        "000000000042-x-overlay.png"
    );
    assert_eq!(image_file_name(1, "", "jpg"), "000000000001-frame.jpg");
    assert!(image_file_name(9, "a", "png") < image_file_name(10, "a", "png"));
}

#[test]
fn image_original_and_overlay_pixels() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let w = ImageWriter::open(&img_cfg(tmp.path()))
        .expect("open")
        .expect("images on");
    assert_eq!(
        w.file_name(42, "cam0/frame 001.png"),
        "000000000042-frame_001.png"
    );
    assert!(w.submit(job(42)));
    let st = w.close();
    assert_eq!((st.written, st.shed_errors, st.deleted), (1, 0, 0));
    let today = utc_date(SystemTime::now());
    let folder = tmp.path().join("images").join(&today);
    let orig = image::open(folder.join("000000000042-frame_001.png"))
        .expect("original")
        .to_rgb8();
    let j = job(42);
    assert_eq!(orig.as_raw(), &j.rgb);
    let ov = image::open(folder.join("000000000042-frame_001-overlay.png"))
        .expect("overlay")
        .to_rgb8();
    let src = |x: u32, y: u32| orig.get_pixel(x, y).0;
    // Outside everything: unchanged.
    assert_eq!(ov.get_pixel(0, 0).0, src(0, 0));
    assert_eq!(ov.get_pixel(15, 11).0, src(15, 11));
    // Box edges (4x4 box, 2 px wide: every pixel of it is edge) are yellow.
    for (x, y) in [(2, 3), (5, 6), (3, 4), (10, 8)] {
        assert_eq!(ov.get_pixel(x, y).0, [255, 255, 0], "({x},{y})");
    }
    // A tinted pixel outside any box: red blended 50/50.
    let mut j2 = job(1);
    j2.boxes.clear();
    let tinted = crate::record::images::overlay(&j2);
    let at = |x: usize, y: usize| {
        let i = (y * 16 + x) * 3;
        [tinted[i], tinted[i + 1], tinted[i + 2]]
    };
    let p = src(3, 4);
    assert_eq!(
        at(3, 4),
        [((p[0] as u16 + 255) / 2) as u8, (p[1] / 2), (p[2] / 2)]
    );
    // Class 2 has no colour: white blend.
    let q = src(10, 8);
    assert_eq!(at(10, 8), q.map(|c| ((c as u16 + 255) / 2) as u8));
    assert_eq!(image_files(tmp.path()).len(), 2);
    // Events and images share a dir: images off means no writer.
    let mut off = img_cfg(tmp.path());
    off.images = false;
    assert!(ImageWriter::open(&off).expect("open").is_none());
}

#[test]
fn image_jpeg_original() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut c = img_cfg(tmp.path());
    c.image_format = "jpeg".into();
    let w = ImageWriter::open(&c).expect("open").expect("on");
    assert_eq!(w.file_name(3, "f.png"), "000000000003-f.jpg");
    assert!(w.submit(job(3)));
    assert_eq!(w.close().written, 1);
    let today = utc_date(SystemTime::now());
    let files = image_files(tmp.path());
    assert_eq!(
        files,
        [
            format!("{today}/000000000003-frame_001-overlay.png"),
            format!("{today}/000000000003-frame_001.jpg"),
        ]
    );
    let img = image::open(tmp.path().join("images").join(&files[1])).expect("jpeg");
    assert_eq!((img.width(), img.height()), (16, 12));
}

#[test]
fn image_queue_full_sheds_images_but_keeps_every_event() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = EventLog::open_with(&cfg(tmp.path()), fast()).expect("events");
    let imgs = ImageWriter::open_with(&img_cfg(tmp.path()), true).expect("images");
    let t0 = Instant::now();
    let mut accepted = 0;
    for seq in 0..20 {
        let ok = imgs.submit(job(seq));
        accepted += u64::from(ok);
        let mut v = verdict(seq);
        v.image = ok.then(|| imgs.file_name(seq, "cam0/frame 001.png"));
        log.verdict(v);
    }
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "submit never blocks"
    );
    assert_eq!(accepted, 8);
    assert_eq!(imgs.stats().shed_queue_full, 12);
    imgs.hold(false);
    let ist = imgs.close();
    assert_eq!(
        ist,
        ImageStats {
            written: 8,
            shed_queue_full: 12,
            bytes: ist.bytes,
            ..ImageStats::default()
        }
    );
    assert_eq!(image_files(tmp.path()).len(), 16);
    let est = log.close();
    assert_eq!((est.written, est.dropped), (20, 0));
    let lines = read_lines(tmp.path(), DATE);
    assert_eq!(lines.len(), 20);
    let with_image = lines.iter().filter(|l| !l["image"].is_null()).count();
    assert_eq!(with_image, 8);
}

#[test]
fn image_retention_by_count_oldest_first() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Left by an earlier run: an old folder (deleted first) and a crashed temp file.
    let old = tmp.path().join("images/2000-01-01");
    std::fs::create_dir_all(&old).expect("mkdir");
    std::fs::write(old.join("000000000001-a.png"), [0u8; 10]).expect("w");
    std::fs::write(old.join("000000000002-a.png"), [0u8; 10]).expect("w");
    std::fs::write(old.join("000000000003-a.png.tmp"), [0u8; 10]).expect("w");
    let mut c = img_cfg(tmp.path());
    c.max_images = 6;
    let w = ImageWriter::open(&c).expect("open").expect("on");
    assert_eq!(
        w.stats().bytes,
        20,
        "scan counts the old files, not the temp file"
    );
    for seq in 100..105 {
        assert!(w.submit(job(seq)));
        // One at a time, so the deletion order is observable.
        assert!(wait_until(5000, || w.stats().written == seq - 99));
    }
    let st = w.close();
    assert_eq!((st.written, st.deleted), (5, 6));
    let today = utc_date(SystemTime::now());
    let want: Vec<String> = (102..105)
        .flat_map(|s| {
            [
                format!("{today}/{}", overlay_file_name(s, "frame 001")),
                format!("{today}/{}", image_file_name(s, "frame 001", "png")),
            ]
        })
        .collect();
    assert_eq!(image_files(tmp.path()), want);
    assert!(!old.exists(), "emptied old folder removed");
    let on_disk: u64 = want
        .iter()
        .map(|f| std::fs::metadata(tmp.path().join("images").join(f)).map_or(0, |m| m.len()))
        .sum();
    assert_eq!(st.bytes, on_disk);
}

#[test]
fn image_retention_by_bytes_oldest_first() {
    // Size of one job's two files.
    let probe = tempfile::tempdir().expect("tempdir");
    let w = ImageWriter::open(&img_cfg(probe.path()))
        .expect("open")
        .expect("on");
    w.submit(job(1));
    let per_job = w.close().bytes;
    assert!(per_job > 100);

    let tmp = tempfile::tempdir().expect("tempdir");
    let mut c = img_cfg(tmp.path());
    c.max_bytes = 2 * per_job + 100; // less than either file of a job
    let w = ImageWriter::open(&c).expect("open").expect("on");
    for seq in 0..5 {
        assert!(w.submit(job(seq)));
        assert!(wait_until(5000, || w.stats().written == seq + 1));
    }
    let st = w.close();
    assert_eq!((st.written, st.deleted, st.bytes), (5, 6, 2 * per_job));
    let names: Vec<String> = image_files(tmp.path())
        .iter()
        .map(|f| f.split('/').nth(1).unwrap_or_default()[..12].to_string())
        .collect();
    assert_eq!(
        names,
        [
            "000000000003",
            "000000000003",
            "000000000004",
            "000000000004"
        ]
    );
}

#[test]
fn image_write_failure_is_shed_and_counted() {
    logs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = EventLog::open_with(&cfg(tmp.path()), fast()).expect("events");
    let w = ImageWriter::open(&img_cfg(tmp.path()))
        .expect("open")
        .expect("on");
    let images = tmp.path().join("images");
    std::fs::remove_dir_all(&images).expect("rm");
    std::fs::write(&images, b"in the way").expect("block");
    for seq in 0..3 {
        assert!(w.submit(job(seq)), "queued; the failure comes later");
        log.verdict(verdict(seq));
    }
    // A malformed job is shed too.
    let mut bad = job(9);
    bad.rgb.pop();
    assert!(w.submit(bad));
    let st = w.close();
    assert_eq!((st.written, st.shed_errors, st.bytes), (0, 4, 0));
    if let Some(warns) = logs_with(&images.display().to_string()) {
        assert_eq!(warns.len(), 1, "one line per distinct error: {warns:#?}");
    }
    assert_eq!(log.close().written, 3, "events unaffected");
}
