//! The inspection pipeline: a capture thread fills a bounded ring of frames, the calling thread
//! segments and judges them in order. Frames come from a fixed pool and go back to the capture
//! thread through a lock-free SPSC ring (`ringbuf`), so the steady state allocates no frame.
//!
//! When inference falls behind a real-time source, the *oldest* queued frame is dropped (its
//! part has moved on the most) and counted; an unpaced source (a replay at full speed) waits
//! instead, since there nothing is lost by waiting. The frame queue is a `ringbuf` ring under a
//! mutex rather than a split SPSC pair because dropping the oldest means the producer evicts
//! from the consumer's end, which the split halves cannot do; the lock is held for a pointer swap.
pub mod inspect;
pub mod latency;
pub mod reload;
pub mod sink;

use crate::capture::{Frame, FrameSource, Next};
use crate::decide::{Decider, Verdict};
use crate::infer::{ModelInfo, Scores, Segmentation, Segmenter};
use crate::line::reject::{EncoderCount, Position};
use crate::pipeline::latency::{Histogram, LatencySummary};
use crate::{Error, Result};
use ringbuf::HeapRb;
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// What the capture thread does when the queue is full.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Overflow {
    /// Wait for a free slot when the source is not real-time (replay or synthetic at fps 0),
    /// drop the oldest otherwise.
    #[default]
    Auto,
    /// Evict the oldest queued frame to make room (real-time sources).
    DropOldest,
    /// Block capture until a slot frees (nothing is lost).
    Wait,
}

/// How [`run`] runs: queue, overflow policy, limits, status interval, encoder.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// Frames the queue holds between capture and inference.
    pub queue: usize,
    /// Resolved overflow policy (`Auto` is resolved by the caller, who knows the source).
    pub overflow: Overflow,
    /// Stop capturing after this many frames (processed or skipped).
    pub max_frames: Option<u64>,
    /// Interval of the status line; `None` = no status line.
    pub status_every: Option<Duration>,
    /// Belt encoder: its count is stamped on each frame as it is delivered, for rejects timed
    /// in encoder counts instead of milliseconds.
    pub encoder: Option<EncoderCount>,
}

/// Per-stage latency of processed frames.
#[derive(Clone, Debug, Default)]
pub struct Stages {
    /// Capture to the start of inference (time in the queue).
    pub queue: Histogram,
    /// Converting the frame into the model input.
    pub preprocess: Histogram,
    /// Running the model.
    pub model: Histogram,
    /// Turning the model output into scores.
    pub postprocess: Histogram,
    /// Turning the scores into a verdict.
    pub decide: Histogram,
    /// Capture to verdict.
    pub total: Histogram,
}

impl Stages {
    fn clear(&mut self) {
        for h in self.all_mut() {
            h.clear();
        }
    }
    fn all_mut(&mut self) -> [&mut Histogram; 6] {
        [
            &mut self.queue,
            &mut self.preprocess,
            &mut self.model,
            &mut self.postprocess,
            &mut self.decide,
            &mut self.total,
        ]
    }
    /// Summaries by stage name.
    pub fn summaries(&self) -> BTreeMap<String, LatencySummary> {
        [
            ("queue", &self.queue),
            ("preprocess", &self.preprocess),
            ("model", &self.model),
            ("postprocess", &self.postprocess),
            ("decide", &self.decide),
            ("total", &self.total),
        ]
        .into_iter()
        .map(|(k, h)| (k.to_string(), h.summary()))
        .collect()
    }
}

/// What one run did; printed and written as JSON at exit.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunStats {
    /// The source's description.
    pub source: String,
    /// The model's version (file stem and hash) at the start of the run.
    pub model: String,
    /// The engine running it ("native" or "tract").
    pub engine: &'static str,
    /// Frames the source delivered (skipped ones not included).
    pub frames_captured: u64,
    /// Frames judged (a verdict given).
    pub frames_processed: u64,
    /// Unreadable frames (corrupt file, bad buffer): skipped and counted.
    pub frames_skipped: u64,
    /// Frames evicted from a full queue because inference fell behind.
    pub frames_dropped: u64,
    /// Frames the model or the decision failed on (logged, no verdict).
    pub frames_failed: u64,
    /// Times the source failed (each followed by a reopen, when configured).
    pub source_failures: u64,
    /// Engines swapped in by hot reload, and reloads refused.
    pub engine_swaps: u64,
    /// Hot reloads refused (the running engine stayed).
    pub reloads_refused: u64,
    /// Frames with at least one defect.
    pub defective_frames: u64,
    /// Frames rejected (defective and confirmed by the k-of-n history).
    pub rejects: u64,
    /// Defects found, by class name.
    pub defects_by_class: BTreeMap<String, u64>,
    /// Wall time of the run, seconds.
    pub wall_s: f64,
    /// Frames captured per second of wall time.
    pub fps_in: f64,
    /// Frames judged per second of wall time.
    pub fps_out: f64,
    /// Per-stage latency, milliseconds.
    pub latency_ms: BTreeMap<String, LatencySummary>,
    /// Why the source stopped, when it failed (camera gone).
    pub source_error: Option<String>,
}

#[derive(Default)]
struct CaptureCounters {
    captured: AtomicU64,
    skipped: AtomicU64,
    dropped: AtomicU64,
}

/// The bounded frame queue between the two threads.
struct FrameQueue {
    ring: Mutex<HeapRb<Frame>>,
    ready: Condvar,
    space: Condvar,
    closed: AtomicBool,
}

enum Popped {
    Frame(Frame),
    Timeout,
    Closed,
}

impl FrameQueue {
    fn new(capacity: usize) -> FrameQueue {
        FrameQueue {
            ring: Mutex::new(HeapRb::new(capacity.max(1))),
            ready: Condvar::new(),
            space: Condvar::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// Queues `frame`; returns the frame evicted to make room (drop-oldest), if any.
    fn push(&self, frame: Frame, overflow: Overflow) -> Option<Frame> {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if overflow == Overflow::Wait {
            // Inference drains until the queue is closed, so this wait always ends.
            while ring.is_full() {
                ring = self
                    .space
                    .wait_timeout(ring, Duration::from_millis(100))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        let evicted = ring.push_overwrite(frame);
        drop(ring);
        self.ready.notify_one();
        evicted
    }

    fn pop(&self, timeout: Duration) -> Popped {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(f) = ring.try_pop() {
                drop(ring);
                self.space.notify_one();
                return Popped::Frame(f);
            }
            if self.closed.load(Ordering::Acquire) {
                return Popped::Closed;
            }
            let (r, t) = self
                .ready
                .wait_timeout(ring, timeout)
                .unwrap_or_else(|p| p.into_inner());
            ring = r;
            if t.timed_out() && ring.is_empty() {
                return if self.closed.load(Ordering::Acquire) {
                    Popped::Closed
                } else {
                    Popped::Timeout
                };
            }
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_all();
    }
}

/// The model and the decision that judge frames; swapped as one between frames on a hot reload,
/// so a new model never runs with a decision resolved for another model's classes.
pub struct Judge {
    /// The model.
    pub segmenter: Box<dyn Segmenter>,
    /// The decision, resolved for that model's classes.
    pub decider: Decider,
}

/// Messages to a running pipeline, applied between frames.
pub enum Control {
    /// Replace the judge (a reloaded model or config), already loaded and prepared off the hot
    /// path; `why` goes to the log and the sink.
    Swap {
        /// The new model and decision.
        judge: Box<Judge>,
        /// Why it was swapped in (what changed).
        why: String,
    },
    /// A reload was refused (corrupt or incompatible model, bad config); the engine stays.
    Refused {
        /// Why it was refused.
        why: String,
    },
}

/// Reopens the frame source after it failed (a camera unplugged): called with backoff.
pub type Reopen = Box<dyn FnMut() -> Result<Box<dyn FrameSource>> + Send>;

/// Something the operator must know about, beyond verdicts.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// The source failed; the pipeline is blind until it recovers (or ends, without `reopen`).
    SourceDown(String),
    /// The source delivers again after `down_s` seconds blind.
    SourceUp {
        /// How long the pipeline was blind, in seconds.
        down_s: f64,
    },
    /// The engine was replaced (not a fault, but an event worth recording).
    EngineSwapped(String),
    /// A reload was refused; the running engine stays.
    ReloadRefused(String),
}

/// Once per status interval, also when no frame arrives.
#[derive(Clone, Debug, Default)]
pub struct Tick<'a> {
    /// Frames judged since the previous tick.
    pub judged: u64,
    /// Whether the source is down and being reopened (a known fault, not a stall).
    pub source_down: bool,
    /// One-line status (fps, latency, counts) for logs and systemd's STATUS=; written into a
    /// buffer the pipeline keeps, so a tick allocates nothing.
    pub status: &'a str,
}

/// Receives the pipeline's output on the inference thread, in capture order.
pub trait Sink {
    /// One judged frame, in capture order: its segmentation, its verdict, the model that judged it.
    fn verdict(&mut self, frame: &Frame, seg: &Segmentation, verdict: &Verdict, model: &ModelInfo);
    /// A fault or notable event (source down/up, engine swapped, reload refused); default: ignore.
    fn fault(&mut self, _fault: &Fault) {}
    /// Once per status interval, also when no frame arrives; ignored by default.
    fn tick(&mut self, _tick: &Tick) {}
}

impl<F: FnMut(&Frame, &Segmentation, &Verdict)> Sink for F {
    fn verdict(&mut self, frame: &Frame, seg: &Segmentation, verdict: &Verdict, _: &ModelInfo) {
        self(frame, seg, verdict)
    }
}

/// Optional connections of a run.
#[derive(Default)]
pub struct Hooks<'a> {
    /// How to reopen the source after it fails; `None` = the run ends on a source failure.
    pub reopen: Option<Reopen>,
    /// Messages applied between frames (hot reload); `None` = none.
    pub control: Option<&'a Receiver<Control>>,
    /// Set to the count of judged frames after each one, for a watcher on another thread
    /// (`bench soak` samples the process by it).
    pub progress: Option<&'a AtomicU64>,
}

/// Frees a swapped-out engine off the hot path, then gives the freed memory back to the system
/// (see [`release_free_memory`](crate::sys::malloc_tune::release_free_memory)).
fn retire(old: Judge) {
    let spawned = std::thread::Builder::new()
        .name("retire".into())
        .spawn(move || {
            drop(old);
            crate::sys::malloc_tune::release_free_memory();
        });
    // On failure the closure, and with it the old engine, was dropped here instead.
    if let Err(e) = spawned {
        log::warn!("could not start a thread to free the old engine ({e}); freed in line");
    }
}

/// From the capture thread to the inference thread.
enum CaptureNote {
    Down(String),
    Up(f64),
}

/// Runs `source` through the engine until the source ends (or fails without `reopen`),
/// `max_frames` is reached or `stop` is set; frames already queued are still judged (drained)
/// before it returns.
pub fn run(
    source: Box<dyn FrameSource>,
    engine: &mut Judge,
    opts: &PipelineOptions,
    stop: &AtomicBool,
    hooks: Hooks<'_>,
    sink: &mut dyn Sink,
) -> Result<RunStats> {
    let mut stats = RunStats {
        source: source.describe(),
        model: engine.segmenter.info().version.clone(),
        engine: engine.segmenter.info().engine,
        ..RunStats::default()
    };
    let (fw, fh) = source.frame_size().unwrap_or((640, 480));
    if let Some((w, h)) = source.frame_size() {
        engine.segmenter.prepare(w, h)?;
    }
    let queue = FrameQueue::new(opts.queue);
    // Capture holds one, inference one, the queue the rest.
    let pool = opts.queue.max(1) + 2;
    let (mut free_tx, mut free_rx) = HeapRb::<Frame>::new(pool).split();
    let counters = CaptureCounters::default();
    let source_error: Mutex<Option<String>> = Mutex::new(None);
    let (note_tx, note_rx) = std::sync::mpsc::channel::<CaptureNote>();
    let started = Instant::now();
    let Hooks {
        reopen,
        control,
        progress,
    } = hooks;

    let mut stages = Stages::default();
    let mut window = Stages::default();
    let mut seg = Segmentation::default();
    let mut verdict = Verdict::new();
    let mut by_class: BTreeMap<String, u64> = BTreeMap::new();
    let mut source_down = false;

    std::thread::scope(|scope| -> Result<()> {
        let capture = std::thread::Builder::new()
            .name("capture".into())
            .spawn_scoped(scope, || {
                let mut cap = Capture {
                    queue: &queue,
                    free: &mut free_rx,
                    counters: &counters,
                    source_error: &source_error,
                    notes: note_tx,
                    opts,
                    stop,
                };
                cap.run(source, reopen, (fw, fh, pool));
                queue.close();
            })
            .map_err(|e| Error::io("capture thread", e))?;

        let tick = opts.status_every.unwrap_or(Duration::from_secs(1));
        let mut next_tick = Instant::now() + tick;
        let mut status = String::with_capacity(512);
        let mut last = (Instant::now(), 0u64, 0u64, 0u64);
        loop {
            // Between frames: swaps and notes from the capture thread.
            while let Some(Ok(Control::Swap { judge: new, why })) = control.map(Receiver::try_recv)
            {
                log::info!("engine swapped: {why}");
                retire(std::mem::replace(engine, *new));
                stats.model = engine.segmenter.info().version.clone();
                stats.engine = engine.segmenter.info().engine;
                stats.engine_swaps += 1;
                sink.fault(&Fault::EngineSwapped(why));
            }
            while let Ok(note) = note_rx.try_recv() {
                let fault = match note {
                    CaptureNote::Down(msg) => {
                        source_down = true;
                        stats.source_failures += 1;
                        Fault::SourceDown(msg)
                    }
                    CaptureNote::Up(down_s) => {
                        source_down = false;
                        Fault::SourceUp { down_s }
                    }
                };
                sink.fault(&fault);
            }
            let popped = queue.pop(next_tick.saturating_duration_since(Instant::now()));
            let frame = match popped {
                Popped::Frame(f) => Some(f),
                Popped::Timeout => None,
                Popped::Closed => break,
            };
            if let Some(frame) = frame {
                let ok = judge(
                    &frame,
                    engine,
                    &mut seg,
                    &mut verdict,
                    &mut [&mut stages, &mut window],
                );
                match ok {
                    Ok(()) => {
                        stats.frames_processed += 1;
                        if let Some(p) = progress {
                            p.store(stats.frames_processed, Ordering::Relaxed);
                        }
                        if verdict.defective {
                            stats.defective_frames += 1;
                        }
                        if verdict.reject {
                            stats.rejects += 1;
                        }
                        let info = engine.segmenter.info();
                        for d in &verdict.defects {
                            if let Some(name) = info.class_names.get(usize::from(d.class_id)) {
                                // Allocates only the first time a class is seen.
                                if let Some(c) = by_class.get_mut(name) {
                                    *c += 1;
                                } else {
                                    by_class.insert(name.clone(), 1);
                                }
                            }
                        }
                        sink.verdict(&frame, &seg, &verdict, info);
                    }
                    Err(e) => {
                        stats.frames_failed += 1;
                        log::error!("frame {} ({}): {e}", frame.seq, frame.name);
                    }
                }
                // The pool is sized so this never fails; if it did, the frame is simply freed.
                let _ = free_tx.try_push(frame);
            }
            let now = Instant::now();
            if now >= next_tick {
                let dt = (now - last.0).as_secs_f64().max(1e-9);
                let captured = counters.captured.load(Ordering::Relaxed);
                let dropped = counters.dropped.load(Ordering::Relaxed);
                status.clear();
                // Writing to a String cannot fail.
                let _ = write!(
                    status,
                    "in {:.1} fps, out {:.1} fps | model p50 {:.1} ms p99 {:.1} ms | total p50 {:.1} ms p99 {:.1} ms | dropped {} (+{}) skipped {} | defective {} rejects {}{}",
                    (captured - last.1) as f64 / dt,
                    (stats.frames_processed - last.2) as f64 / dt,
                    window.model.quantile_ms(0.5),
                    window.model.quantile_ms(0.99),
                    window.total.quantile_ms(0.5),
                    window.total.quantile_ms(0.99),
                    dropped,
                    dropped - last.3,
                    counters.skipped.load(Ordering::Relaxed),
                    stats.defective_frames,
                    stats.rejects,
                    if source_down { " | SOURCE DOWN" } else { "" },
                );
                if opts.status_every.is_some() {
                    log::info!("{status}");
                }
                sink.tick(&Tick {
                    judged: stats.frames_processed - last.2,
                    source_down,
                    status: &status,
                });
                window.clear();
                last = (now, captured, stats.frames_processed, dropped);
                next_tick = now + tick;
            }
        }
        capture
            .join()
            .map_err(|_| Error::camera(stats.source.clone(), "capture thread panicked"))?;
        Ok(())
    })?;

    stats.wall_s = started.elapsed().as_secs_f64();
    stats.frames_captured = counters.captured.load(Ordering::Relaxed);
    stats.frames_skipped = counters.skipped.load(Ordering::Relaxed);
    stats.frames_dropped = counters.dropped.load(Ordering::Relaxed);
    stats.fps_in = stats.frames_captured as f64 / stats.wall_s.max(1e-9);
    stats.fps_out = stats.frames_processed as f64 / stats.wall_s.max(1e-9);
    stats.latency_ms = stages.summaries();
    stats.defects_by_class = by_class;
    stats.source_error = source_error.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok(stats)
}

/// Segments and judges one frame, recording each stage into every histogram set given.
fn judge(
    frame: &Frame,
    engine: &mut Judge,
    seg: &mut Segmentation,
    verdict: &mut Verdict,
    hists: &mut [&mut Stages; 2],
) -> Result<()> {
    let start = Instant::now();
    engine.segmenter.segment(frame, seg)?;
    let t_decide = Instant::now();
    let decider = &mut engine.decider;
    match &seg.scores {
        Scores::Probs(p) => decider.decide(frame.seq, p, &seg.geom, verdict),
        Scores::Logits(l) => decider.decide_logits(frame.seq, l, &seg.geom, verdict),
    }
    .map_err(|msg| Error::frame(frame.name.clone(), msg))?;
    let end = Instant::now();
    for h in hists.iter_mut() {
        h.queue
            .record(start.saturating_duration_since(frame.captured));
        h.preprocess.record(seg.preprocess);
        h.model.record(seg.model);
        h.postprocess.record(seg.postprocess);
        h.decide.record(end - t_decide);
        h.total
            .record(end.saturating_duration_since(frame.captured));
    }
    Ok(())
}

/// The capture thread's side.
struct Capture<'a> {
    queue: &'a FrameQueue,
    free: &'a mut ringbuf::HeapCons<Frame>,
    counters: &'a CaptureCounters,
    source_error: &'a Mutex<Option<String>>,
    notes: std::sync::mpsc::Sender<CaptureNote>,
    opts: &'a PipelineOptions,
    stop: &'a AtomicBool,
}

/// First and longest wait between attempts to reopen a failed source.
const REOPEN_FIRST: Duration = Duration::from_millis(500);
const REOPEN_MAX: Duration = Duration::from_secs(30);

impl Capture<'_> {
    fn run(
        &mut self,
        mut source: Box<dyn FrameSource>,
        mut reopen: Option<Reopen>,
        (fw, fh, pool): (u32, u32, usize),
    ) {
        let mut spare: Vec<Frame> = (0..pool).map(|_| Frame::with_capacity(fw, fh)).collect();
        let mut seen = 0u64;
        let overflow = match self.opts.overflow {
            Overflow::Auto => Overflow::DropOldest,
            o => o,
        };
        while !self.stop.load(Ordering::Relaxed) && self.opts.max_frames.is_none_or(|m| seen < m) {
            let mut frame = match spare.pop().or_else(|| self.free.try_pop()) {
                Some(f) => f,
                None => {
                    log::debug!("frame pool empty; allocating one more frame");
                    Frame::with_capacity(fw, fh)
                }
            };
            match source.next_frame(&mut frame) {
                Ok(Next::Frame) => {
                    seen += 1;
                    frame.position = self.opts.encoder.as_ref().map(Position::position);
                    self.counters.captured.fetch_add(1, Ordering::Relaxed);
                    if let Some(old) = self.queue.push(frame, overflow) {
                        let n = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                        if n.is_power_of_two() {
                            log::warn!(
                                "inference is behind: dropped frame {} ({n} so far)",
                                old.seq
                            );
                        }
                        spare.push(old);
                    }
                }
                Ok(Next::Skipped(why)) => {
                    seen += 1;
                    let n = self.counters.skipped.fetch_add(1, Ordering::Relaxed) + 1;
                    // Every one of the first ten, then at powers of two: visible, not flooding.
                    if n <= 10 || n.is_power_of_two() {
                        log::warn!("skipped frame ({n} so far): {why}");
                    }
                    spare.push(frame);
                }
                Ok(Next::End) => {
                    spare.push(frame);
                    break;
                }
                Err(e) => {
                    spare.push(frame);
                    log::error!("{e}");
                    let _ = self.notes.send(CaptureNote::Down(e.to_string()));
                    let Some(r) = reopen.as_mut() else {
                        *self.source_error.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(e.to_string());
                        break;
                    };
                    let down = Instant::now();
                    match self.reopen(r) {
                        Some(s) => {
                            log::info!(
                                "source back after {:.1} s: {}",
                                down.elapsed().as_secs_f64(),
                                s.describe()
                            );
                            source = s;
                            let _ = self
                                .notes
                                .send(CaptureNote::Up(down.elapsed().as_secs_f64()));
                        }
                        None => break,
                    }
                }
            }
        }
    }

    /// Retries `reopen` with exponential backoff until it succeeds or `stop` is set.
    fn reopen(&self, reopen: &mut Reopen) -> Option<Box<dyn FrameSource>> {
        let mut wait = REOPEN_FIRST;
        loop {
            let until = Instant::now() + wait;
            while Instant::now() < until {
                if self.stop.load(Ordering::Relaxed) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
            }
            match reopen() {
                Ok(s) => return Some(s),
                Err(e) => log::warn!(
                    "reopening the source failed (next try in {:.1} s): {e}",
                    (wait * 2).min(REOPEN_MAX).as_secs_f64()
                ),
            }
            wait = (wait * 2).min(REOPEN_MAX);
        }
    }
}

#[cfg(test)]
mod tests;
