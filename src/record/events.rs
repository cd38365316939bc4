//! The event log: one JSON line per defective verdict (optionally per verdict) and per fault,
//! appended to `DIR/events-YYYY-MM-DD.jsonl` (UTC). It is the audit trail of an unattended
//! line, so events are never silently lost: a slow disk never blocks the inference thread for
//! long (bounded channel, then an in-memory overflow), a failing disk keeps events in memory and
//! retries, and the only loss is an overflow of the bounded memory, which is counted and logged.
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;

/// `[events]` in the line config.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Event files go here; images under `DIR/images/`.
    pub dir: PathBuf,
    /// Log every verdict, not only those with defects (a full production record; more disk).
    pub all_verdicts: bool,
    /// Save the original and an overlay of each defective frame.
    pub images: bool,
    /// `png` (lossless) or `jpeg` (smaller) for the original; overlays are always PNG.
    pub image_format: String,
    /// Image files kept under `images/` (each defective frame writes two).
    pub max_images: usize,
    /// Bytes kept under `images/`; the oldest are deleted first.
    pub max_bytes: u64,
    /// Image jobs queued for the writer; when full, images are shed (never the caller blocked).
    pub image_queue: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            dir: PathBuf::from("/var/lib/contextrast/events"),
            all_verdicts: false,
            images: true,
            image_format: "png".into(),
            max_images: 2000,
            max_bytes: 1 << 30,
            image_queue: 8,
        }
    }
}

impl EventsConfig {
    /// Checks values; `path` is the config file, keys are named as `events.KEY`.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |key: &str, msg: String| Err(Error::config(path, format!("events.{key}"), msg));
        if self.dir.as_os_str().is_empty() {
            return bad("dir", "must not be empty".into());
        }
        if !matches!(self.image_format.as_str(), "png" | "jpeg") {
            return bad(
                "image_format",
                format!("`{}` is not png or jpeg", self.image_format),
            );
        }
        if self.images {
            if self.max_images < 2 {
                return bad(
                    "max_images",
                    "must be at least 2 (a frame writes an original and an overlay)".into(),
                );
            }
            if self.max_bytes == 0 {
                return bad("max_bytes", "must be at least 1".into());
            }
            if self.image_queue == 0 {
                return bad("image_queue", "must be at least 1".into());
            }
        }
        Ok(())
    }
}

/// One defect of a verdict, as logged.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DefectRecord {
    /// The class name.
    pub class: String,
    /// Area in frame pixels.
    pub area_px: f64,
    /// `[x0, y0, x1, y1]`, half-open, frame pixels.
    pub bbox: [u32; 4],
    /// Max probability of the class over the defect.
    pub score: f32,
}

/// One verdict line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VerdictEvent {
    /// RFC 3339 UTC with milliseconds (see [`rfc3339_ms`]); its date picks the file.
    pub time: String,
    /// The frame's capture sequence number.
    pub seq: u64,
    /// The frame's name (file name, camera buffer).
    pub frame: String,
    /// The defects found, largest first.
    pub defects: Vec<DefectRecord>,
    /// `reject` or `pass` (a reject that fires late is reported as a `reject_late` fault).
    pub action: String,
    /// The model's version (file stem and hash) that judged the frame.
    pub model: String,
    /// File name of the saved original under `images/DATE/`, if one was queued.
    pub image: Option<String>,
}

/// One fault line (camera lost, model reload failed, reject late, disk trouble, ...).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FaultEvent {
    /// RFC 3339 UTC with milliseconds, like [`VerdictEvent::time`].
    pub time: String,
    /// e.g. `camera`, `model_reload`, `reject_late`, `disk`.
    pub kind: String,
    /// What happened, for the operator.
    pub message: String,
}

impl FaultEvent {
    /// A fault stamped now.
    pub fn now(kind: impl Into<String>, message: impl Into<String>) -> FaultEvent {
        FaultEvent {
            time: rfc3339_ms(SystemTime::now()),
            kind: kind.into(),
            message: message.into(),
        }
    }
}

/// Counters of the event log. `pending` = accepted but not yet confirmed on disk (synced).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EventStats {
    /// Lines written and fsynced.
    pub written: u64,
    /// In memory: channel, overflow, retry backlog, or written but not yet synced.
    pub pending: u64,
    /// Failed writes, opens or syncs (each failed attempt counts once).
    pub write_errors: u64,
    /// Events that went to the overflow buffer because the channel stayed full.
    pub overflowed: u64,
    /// Events lost: the in-memory buffer overflowed, or an event came after `close`.
    pub dropped: u64,
}

// ---------------------------------------------------------------------------------------------
// Time. The crate has no date library; civil dates are a few lines (H. Hinnant's algorithm).

/// A UTC instant broken into calendar fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UtcTime {
    /// Year (proleptic Gregorian).
    pub year: i64,
    /// Month, 1–12.
    pub month: u32,
    /// Day of the month, 1–31.
    pub day: u32,
    /// Hour, 0–23.
    pub hour: u32,
    /// Minute, 0–59.
    pub minute: u32,
    /// Second, 0–59.
    pub second: u32,
    /// Millisecond, 0–999.
    pub milli: u32,
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl UtcTime {
    /// Milliseconds since the Unix epoch (negative before 1970).
    pub fn from_unix_ms(ms: i64) -> UtcTime {
        let days = ms.div_euclid(86_400_000);
        let rem = ms.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        let secs = (rem / 1000) as u32;
        UtcTime {
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
            milli: (rem % 1000) as u32,
        }
    }

    /// A system time, to the millisecond (before 1970 too).
    pub fn from_system(t: SystemTime) -> UtcTime {
        let ms = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        };
        UtcTime::from_unix_ms(ms)
    }

    /// `YYYY-MM-DD`.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub fn rfc3339(&self) -> String {
        format!(
            "{}T{:02}:{:02}:{:02}.{:03}Z",
            self.date(),
            self.hour,
            self.minute,
            self.second,
            self.milli
        )
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2024-02-29T23:59:59.999Z`.
pub fn rfc3339_ms(t: SystemTime) -> String {
    UtcTime::from_system(t).rfc3339()
}

/// UTC `YYYY-MM-DD` of `t`; names event files and image folders.
pub fn utc_date(t: SystemTime) -> String {
    UtcTime::from_system(t).date()
}

/// The date prefix of an event's `time` if it has the `YYYY-MM-DD` shape, so a late-written
/// event lands in the file of the day it happened; anything else goes to today's file.
fn date_of(time: &str) -> String {
    let b = time.as_bytes();
    let ok = b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    if ok {
        time[..10].to_string()
    } else {
        utc_date(SystemTime::now())
    }
}

/// Name of the event file for a date.
pub fn events_file_name(date: &str) -> String {
    format!("events-{date}.jsonl")
}

// ---------------------------------------------------------------------------------------------
// The writer.

/// Tunables; the defaults are the production values, tests shrink them.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub channel: usize,
    /// How long a caller waits on a full channel before using the overflow buffer.
    pub send_wait: Duration,
    /// Bound of the overflow buffer and, separately, of the writer's backlog.
    pub max_buffered: usize,
    /// Time between retries after a write error.
    pub retry: Duration,
    /// Sync (and count as written) after this many lines ...
    pub sync_every: usize,
    /// ... or this long after the first unsynced line.
    pub sync_interval: Duration,
    /// Tests: start with the writer held (it takes nothing until released).
    pub start_held: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            channel: 4096,
            send_wait: Duration::from_millis(100),
            max_buffered: 100_000,
            retry: Duration::from_secs(1),
            sync_every: 64,
            sync_interval: Duration::from_secs(1),
            start_held: false,
        }
    }
}

enum Msg {
    Verdict(VerdictEvent),
    Fault(FaultEvent),
    /// Something was put in the overflow buffer.
    Wake,
    Close,
}

struct Shared {
    /// Events that found the channel full. While it is non-empty every new event goes here
    /// too, so the order per producing thread is kept.
    overflow: Mutex<VecDeque<Msg>>,
    accepted: AtomicU64,
    written: AtomicU64,
    write_errors: AtomicU64,
    overflowed: AtomicU64,
    dropped: AtomicU64,
    max_buffered: usize,
    send_wait: Duration,
    /// Tests: while true the writer takes nothing.
    held: Mutex<bool>,
    held_cv: std::sync::Condvar,
}

/// A poisoned lock only means another thread panicked mid-push; the queue is still sound.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn note_dropped(&self, n: u64, why: &str) {
        let before = self.dropped.fetch_add(n, Relaxed);
        // First loss, then every 10k: loud enough to be seen, not one line per event.
        if before == 0 || before / 10_000 != (before + n) / 10_000 {
            log::error!("events: {why}; {} events lost so far", before + n);
        }
    }

    fn stats(&self) -> EventStats {
        let written = self.written.load(Relaxed);
        let dropped = self.dropped.load(Relaxed);
        EventStats {
            written,
            pending: self
                .accepted
                .load(Relaxed)
                .saturating_sub(written + dropped),
            write_errors: self.write_errors.load(Relaxed),
            overflowed: self.overflowed.load(Relaxed),
            dropped,
        }
    }
}

/// A cloneable handle for other threads (camera, reject) to log through.
#[derive(Clone)]
pub struct EventSink {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    all_verdicts: bool,
}

impl EventSink {
    /// Logs a verdict if it has defects or is not a plain pass (or always, with
    /// `all_verdicts`). Waits at most ~100 ms on a full channel; never fails.
    pub fn verdict(&self, e: VerdictEvent) {
        if self.all_verdicts || !e.defects.is_empty() || e.action != "pass" {
            self.push(Msg::Verdict(e));
        }
    }

    /// Logs a fault. Waits at most ~100 ms on a full channel; never fails.
    pub fn fault(&self, e: FaultEvent) {
        self.push(Msg::Fault(e));
    }

    /// Counters so far.
    pub fn stats(&self) -> EventStats {
        self.shared.stats()
    }

    fn push(&self, m: Msg) {
        let sh = &self.shared;
        sh.accepted.fetch_add(1, Relaxed);
        {
            let ov = lock(&sh.overflow);
            if !ov.is_empty() {
                self.to_overflow(ov, m);
                return;
            }
        }
        let deadline = Instant::now() + sh.send_wait;
        let mut m = m;
        let mut nap = Duration::from_micros(50);
        loop {
            match self.tx.try_send(m) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) => {
                    m = back;
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    std::thread::sleep(nap.min(deadline - now));
                    nap = (nap * 2).min(Duration::from_millis(5));
                }
                Err(TrySendError::Disconnected(_)) => {
                    sh.note_dropped(1, "event after the log was closed");
                    return;
                }
            }
        }
        self.to_overflow(lock(&sh.overflow), m);
    }

    fn to_overflow(&self, mut ov: MutexGuard<'_, VecDeque<Msg>>, m: Msg) {
        let sh = &self.shared;
        if ov.len() >= sh.max_buffered {
            // Keep the newest: after a long outage the recent events matter most.
            ov.pop_front();
            sh.note_dropped(1, "event overflow buffer full (writer stuck?)");
        }
        ov.push_back(m);
        drop(ov);
        sh.overflowed.fetch_add(1, Relaxed);
        // Best effort: if the channel is full the writer has work and will look anyway.
        let _ = self.tx.try_send(Msg::Wake);
    }
}

/// The event log: owns the writer thread. Use [`EventLog::sink`] for other threads.
pub struct EventLog {
    sink: EventSink,
    thread: Option<JoinHandle<()>>,
}

impl EventLog {
    /// Creates `cfg.dir` and checks that today's file can be opened for append, so a wrong
    /// path or permission stops the service at start instead of filling memory later.
    pub fn open(cfg: &EventsConfig) -> Result<EventLog> {
        EventLog::open_with(cfg, Limits::default())
    }

    pub(crate) fn open_with(cfg: &EventsConfig, limits: Limits) -> Result<EventLog> {
        let dir = cfg.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let probe = dir.join(events_file_name(&utc_date(SystemTime::now())));
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&probe)
            .map_err(|e| Error::io(&probe, e))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(limits.channel.max(1));
        let shared = Arc::new(Shared {
            overflow: Mutex::new(VecDeque::new()),
            accepted: AtomicU64::new(0),
            written: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            max_buffered: limits.max_buffered.max(1),
            send_wait: limits.send_wait,
            held: Mutex::new(limits.start_held),
            held_cv: std::sync::Condvar::new(),
        });
        let writer = Writer {
            dir: dir.clone(),
            shared: shared.clone(),
            limits,
            backlog: VecDeque::new(),
            unsynced: VecDeque::new(),
            file: None,
            failing: false,
            next_try: Instant::now(),
            first_unsynced: None,
            last_err: None,
            errors_in_outage: 0,
        };
        let thread = std::thread::Builder::new()
            .name("events".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::io(&dir, e))?;
        Ok(EventLog {
            sink: EventSink {
                tx,
                shared,
                all_verdicts: cfg.all_verdicts,
            },
            thread: Some(thread),
        })
    }

    /// A handle for another thread.
    pub fn sink(&self) -> EventSink {
        self.sink.clone()
    }

    /// Logs a verdict (see [`EventSink::verdict`]).
    pub fn verdict(&self, e: VerdictEvent) {
        self.sink.verdict(e)
    }

    /// Logs a fault (see [`EventSink::fault`]).
    pub fn fault(&self, e: FaultEvent) {
        self.sink.fault(e)
    }

    /// Counters so far.
    pub fn stats(&self) -> EventStats {
        self.sink.stats()
    }

    /// Tests: hold or release the writer.
    #[cfg(test)]
    pub(crate) fn hold(&self, on: bool) {
        *lock(&self.sink.shared.held) = on;
        self.sink.shared.held_cv.notify_all();
    }

    /// Writes and syncs what it can (one more attempt if the disk is failing), joins the
    /// writer and returns the final counts; `pending > 0` means those events are lost.
    pub fn close(mut self) -> EventStats {
        self.shutdown();
        self.sink.stats()
    }

    fn shutdown(&mut self) {
        let Some(t) = self.thread.take() else { return };
        #[cfg(test)]
        self.hold(false);
        // The writer always drains the channel, so this blocking send ends.
        let _ = self.sink.tx.send(Msg::Close);
        if t.join().is_err() {
            log::error!("events: writer thread panicked");
        }
        let st = self.sink.stats();
        if st.pending > 0 {
            log::error!(
                "events: closed with {} events not on disk (see the write error above)",
                st.pending
            );
        }
    }
}

impl Drop for EventLog {
    /// Dropping without `close` still flushes: the audit trail must not depend on the caller.
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A serialized event waiting for its file.
struct Line {
    date: String,
    text: Vec<u8>,
}

struct OpenFile {
    date: String,
    path: PathBuf,
    file: File,
    /// Length after the last whole line we wrote; a failed write is cut back to it.
    len: u64,
    /// The file did not end in a newline when opened (a crash mid-line): start a fresh line.
    needs_newline: bool,
}

struct Writer {
    dir: PathBuf,
    shared: Arc<Shared>,
    limits: Limits,
    /// Serialized, not yet written, in order.
    backlog: VecDeque<Line>,
    /// Written to the current file but not yet synced and checked. They count as written only
    /// once the sync succeeds and the path still names the file; otherwise they go back to
    /// the backlog (a duplicate line is better than a lost one).
    unsynced: VecDeque<Line>,
    file: Option<OpenFile>,
    failing: bool,
    next_try: Instant,
    first_unsynced: Option<Instant>,
    last_err: Option<String>,
    errors_in_outage: u64,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut closing = false;
        loop {
            self.wait_released();
            let timeout = self.timeout(closing);
            match rx.recv_timeout(timeout) {
                Ok(m) => self.accept(m, &mut closing),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => closing = true,
            }
            self.drain(&rx, &mut closing);
            let now = Instant::now();
            if !self.backlog.is_empty() && (!self.failing || now >= self.next_try || closing) {
                self.write_backlog();
            }
            if !self.unsynced.is_empty()
                && (closing
                    || self.unsynced.len() >= self.limits.sync_every
                    || self
                        .first_unsynced
                        .is_some_and(|t| now >= t + self.limits.sync_interval))
                && let Err(e) = self.sync()
            {
                self.on_error(e);
            }
            if closing {
                break;
            }
        }
    }

    fn wait_released(&self) {
        let mut held = lock(&self.shared.held);
        while *held {
            held = self
                .shared
                .held_cv
                .wait(held)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// How long to sleep for the next message: not at all with work to do, until the next
    /// retry when failing, until the sync is due, else a while (nothing to do).
    fn timeout(&self, closing: bool) -> Duration {
        let now = Instant::now();
        if closing {
            return Duration::ZERO;
        }
        let mut t = Duration::from_secs(1);
        if !self.backlog.is_empty() {
            t = if self.failing {
                self.next_try.saturating_duration_since(now)
            } else {
                Duration::ZERO
            };
        }
        if let Some(first) = self.first_unsynced {
            t = t.min((first + self.limits.sync_interval).saturating_duration_since(now));
        }
        t
    }

    fn accept(&mut self, m: Msg, closing: &mut bool) {
        let (time, text) = match m {
            Msg::Verdict(e) => (date_of(&e.time), serde_json::to_vec(&e)),
            Msg::Fault(e) => (date_of(&e.time), serde_json::to_vec(&e)),
            Msg::Wake => return,
            Msg::Close => {
                *closing = true;
                return;
            }
        };
        match text {
            Ok(mut text) => {
                text.push(b'\n');
                // Bounded only while failing: with a working disk the backlog is written right
                // after this drain, and a burst from a full overflow must not be cut.
                while self.failing && self.backlog.len() >= self.shared.max_buffered {
                    self.backlog.pop_front();
                    self.shared
                        .note_dropped(1, "event backlog full while the disk is failing");
                }
                self.backlog.push_back(Line { date: time, text });
            }
            // Our types always serialize; if that ever changes, count it rather than panic.
            Err(e) => self
                .shared
                .note_dropped(1, &format!("event cannot be serialized: {e}")),
        }
    }

    /// Takes everything queued. The channel is emptied while holding the overflow lock, so
    /// everything a thread sent before it overflowed is taken before its overflowed events.
    fn drain(&mut self, rx: &Receiver<Msg>, closing: &mut bool) {
        let shared = self.shared.clone();
        let mut ov = lock(&shared.overflow);
        loop {
            match rx.try_recv() {
                Ok(m) => self.accept(m, closing),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    *closing = true;
                    break;
                }
            }
        }
        let taken = std::mem::take(&mut *ov);
        drop(ov);
        for m in taken {
            self.accept(m, closing);
        }
    }

    fn write_backlog(&mut self) {
        loop {
            let switch = match self.backlog.front() {
                None => break,
                Some(l) => (self.file.as_ref())
                    .is_none_or(|f| f.date != l.date)
                    .then(|| l.date.clone()),
            };
            if let Some(date) = switch {
                // Confirm the old file before leaving it (new day, or reopening after an error).
                if let Err(e) = self.sync() {
                    return self.on_error(e);
                }
                match self.open_file(&date) {
                    Ok(f) => self.file = Some(f),
                    Err(e) => return self.on_error(e),
                }
            }
            let Some(line) = self.backlog.pop_front() else {
                break;
            };
            if let Err(e) = self.write_line(&line) {
                self.backlog.push_front(line);
                // Lines already written to this file are probably fine: confirm them (if that
                // fails too they go back in front of this one).
                let _ = self.sync();
                self.file = None;
                return self.on_error(e);
            }
            self.unsynced.push_back(line);
            self.first_unsynced.get_or_insert_with(Instant::now);
            if self.unsynced.len() >= self.limits.sync_every
                && let Err(e) = self.sync()
            {
                return self.on_error(e);
            }
        }
    }

    fn write_line(&mut self, line: &Line) -> Result<()> {
        let Some(f) = self.file.as_mut() else {
            return Err(Error::io(&self.dir, std::io::Error::other("no open file")));
        };
        let mut buf;
        let bytes: &[u8] = if f.needs_newline {
            buf = Vec::with_capacity(line.text.len() + 1);
            buf.push(b'\n');
            buf.extend_from_slice(&line.text);
            &buf
        } else {
            &line.text
        };
        match f.file.write_all(bytes).and_then(|()| f.file.flush()) {
            Ok(()) => {
                f.len += bytes.len() as u64;
                f.needs_newline = false;
                Ok(())
            }
            Err(e) => {
                // A partial line (disk full) would corrupt the file for readers: cut it off.
                let _ = f.file.set_len(f.len);
                Err(Error::io(&f.path, e))
            }
        }
    }

    fn open_file(&self, date: &str) -> Result<OpenFile> {
        // Recreated here, so a removed directory comes back by itself.
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let path = self.dir.join(events_file_name(date));
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let mut needs_newline = false;
        if len > 0 {
            let mut last = [0u8];
            file.seek(SeekFrom::Start(len - 1))
                .and_then(|_| file.read_exact(&mut last))
                .map_err(|e| Error::io(&path, e))?;
            needs_newline = last[0] != b'\n';
        }
        Ok(OpenFile {
            date: date.to_string(),
            path,
            file,
            len,
            needs_newline,
        })
    }

    /// Syncs the current file and checks that its path still names it (a removed or replaced
    /// directory would otherwise swallow lines into an unlinked file). On success the unsynced
    /// lines count as written; on failure they go back to the front of the backlog.
    fn sync(&mut self) -> Result<()> {
        if self.unsynced.is_empty() {
            return Ok(());
        }
        let res = match self.file.as_ref() {
            Some(f) => Self::check_file(f),
            None => Err(Error::io(&self.dir, std::io::Error::other("no open file"))),
        };
        self.first_unsynced = None;
        match res {
            Ok(()) => {
                let n = self.unsynced.len() as u64;
                self.shared.written.fetch_add(n, Relaxed);
                self.unsynced.clear();
                if self.failing && self.backlog.is_empty() {
                    log::warn!(
                        "events: writing to {} again after {} failed attempts",
                        self.dir.display(),
                        self.errors_in_outage
                    );
                    self.failing = false;
                    self.last_err = None;
                    self.errors_in_outage = 0;
                }
                Ok(())
            }
            Err(e) => {
                while let Some(l) = self.unsynced.pop_back() {
                    self.backlog.push_front(l);
                }
                self.file = None;
                Err(e)
            }
        }
    }

    fn check_file(f: &OpenFile) -> Result<()> {
        f.file.sync_data().map_err(|e| Error::io(&f.path, e))?;
        let open = f.file.metadata().map_err(|e| Error::io(&f.path, e))?;
        let named = std::fs::metadata(&f.path).map_err(|e| Error::io(&f.path, e))?;
        if (open.dev(), open.ino()) != (named.dev(), named.ino()) {
            return Err(Error::io(
                &f.path,
                std::io::Error::other("file was replaced while open"),
            ));
        }
        Ok(())
    }

    fn on_error(&mut self, e: Error) {
        self.shared.write_errors.fetch_add(1, Relaxed);
        self.errors_in_outage += 1;
        self.failing = true;
        self.next_try = Instant::now() + self.limits.retry;
        let msg = e.to_string();
        // Once per distinct error, not once per event or per retry.
        if self.last_err.as_deref() != Some(msg.as_str()) {
            log::error!(
                "events: write failed: {msg}; keeping {} events in memory, retrying every {:?}",
                self.backlog.len() + self.unsynced.len(),
                self.limits.retry
            );
            self.last_err = Some(msg);
        }
    }
}
