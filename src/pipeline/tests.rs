use super::*;
use crate::decide::DecisionConfig;
use crate::infer::MapGeom;
use crate::infer::ModelInfo;
use std::sync::atomic::{AtomicBool, Ordering};

/// A source of `n` tiny frames; frame `fail_at` is unreadable, and after `error_at` it fails.
struct Counting {
    n: u64,
    seq: u64,
    skip_at: Option<u64>,
    error_at: Option<u64>,
}

impl FrameSource for Counting {
    fn describe(&self) -> String {
        "counting".into()
    }
    fn frame_size(&self) -> Option<(u32, u32)> {
        Some((4, 4))
    }
    fn next_frame(&mut self, frame: &mut Frame) -> Result<Next> {
        if self.seq >= self.n {
            return Ok(Next::End);
        }
        let seq = self.seq;
        self.seq += 1;
        if self.error_at == Some(seq) {
            return Err(Error::camera("counting", "unplugged"));
        }
        if self.skip_at == Some(seq) {
            return Ok(Next::Skipped("bad frame".into()));
        }
        frame.reset(4, 4);
        frame.seq = seq;
        frame.captured = Instant::now();
        frame.rgb.fill(seq as u8);
        Ok(Next::Frame)
    }
}

/// Two classes on a 4x4 map: even frames show a 2x2 defect; `fail_seq` errors; each frame
/// takes `delay`.
struct Fake {
    info: ModelInfo,
    delay: Duration,
    fail_seq: Option<u64>,
}

impl Fake {
    fn new(delay: Duration) -> Fake {
        Fake {
            info: ModelInfo {
                version: "fake".into(),
                ..super::sink::tests::model()
            },
            delay,
            fail_seq: None,
        }
    }
}

impl Segmenter for Fake {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn prepare(&mut self, _w: u32, _h: u32) -> Result<()> {
        Ok(())
    }
    fn segment(&mut self, frame: &Frame, out: &mut Segmentation) -> Result<()> {
        std::thread::sleep(self.delay);
        if self.fail_seq == Some(frame.seq) {
            return Err(Error::model("fake.onnx", "cannot run"));
        }
        let even = frame.rgb[0].is_multiple_of(2);
        out.classes = 2;
        out.geom = MapGeom::unscaled(4, 4);
        let probs = out.scores.probs_mut();
        probs.clear();
        probs.resize(32, 0.0);
        for i in 0..16 {
            let defect = even && (i % 4) < 2 && i / 4 < 2;
            probs[i] = if defect { 0.1 } else { 0.9 };
            probs[16 + i] = 1.0 - probs[i];
        }
        Ok(())
    }
}

fn decider() -> Decider {
    Decider::new(DecisionConfig {
        roi: Vec::new(),
        defect: vec![false, true],
        threshold: vec![0.5, 0.5],
        min_area_px: vec![0.0, 0.0],
        confirm_k: 1,
        confirm_n: 1,
    })
    .expect("valid decision config")
}

/// Gives a closure the sink signature (closures passed as `&mut dyn Sink` need their argument
/// types spelled out otherwise).
fn sink<F: FnMut(&Frame, &Segmentation, &Verdict)>(f: F) -> F {
    f
}

fn engine(fake: Fake) -> Judge {
    Judge {
        segmenter: Box::new(fake),
        decider: decider(),
    }
}

fn opts(queue: usize, overflow: Overflow) -> PipelineOptions {
    PipelineOptions {
        queue,
        overflow,
        max_frames: None,
        status_every: None,
        encoder: None,
    }
}

fn counting(n: u64) -> Box<Counting> {
    Box::new(Counting {
        n,
        seq: 0,
        skip_at: None,
        error_at: None,
    })
}

#[test]
fn waiting_overflow_loses_nothing_and_keeps_order() {
    let stop = AtomicBool::new(false);
    let mut seen = Vec::new();
    let stats = run(
        counting(40),
        &mut engine(Fake::new(Duration::from_millis(1))),
        &opts(2, Overflow::Wait),
        &stop,
        Hooks::default(),
        &mut sink(|f, _, v| seen.push((f.seq, v.defective, v.defects.len()))),
    )
    .expect("run");
    assert_eq!(stats.frames_captured, 40);
    assert_eq!(stats.frames_processed, 40);
    assert_eq!(stats.frames_dropped, 0);
    assert_eq!(stats.defective_frames, 20);
    assert_eq!(stats.defects_by_class.get("bad"), Some(&20));
    assert_eq!(stats.latency_ms["total"].count, 40);
    let want: Vec<_> = (0..40)
        .map(|s| (s, s % 2 == 0, usize::from(s % 2 == 0)))
        .collect();
    assert_eq!(seen, want);
}

#[test]
fn a_slow_model_drops_the_oldest_frames_and_counts_them() {
    let stop = AtomicBool::new(false);
    let mut seen = Vec::new();
    let stats = run(
        counting(60),
        &mut engine(Fake::new(Duration::from_millis(5))),
        &opts(2, Overflow::DropOldest),
        &stop,
        Hooks::default(),
        &mut sink(|f, _, _| seen.push(f.seq)),
    )
    .expect("run");
    assert_eq!(stats.frames_captured, 60);
    assert!(stats.frames_dropped > 0, "{stats:?}");
    // Every captured frame is either judged or counted as dropped.
    assert_eq!(stats.frames_processed + stats.frames_dropped, 60);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    // The newest frames survive: the last frame is always judged.
    assert_eq!(seen.last(), Some(&59));
}

#[test]
fn stop_drains_queued_frames() {
    let stop = AtomicBool::new(false);
    let mut n = 0;
    let stats = run(
        counting(u64::MAX),
        &mut engine(Fake::new(Duration::from_millis(2))),
        &opts(4, Overflow::Wait),
        &stop,
        Hooks::default(),
        &mut sink(|_, _, _| {
            n += 1;
            if n == 5 {
                stop.store(true, Ordering::Relaxed);
            }
        }),
    )
    .expect("run");
    assert!(stats.frames_processed >= 5);
    assert_eq!(stats.frames_processed, stats.frames_captured, "{stats:?}");
}

#[test]
fn bad_frames_and_failed_inference_are_counted_and_the_run_goes_on() {
    let stop = AtomicBool::new(false);
    let mut fake = Fake::new(Duration::ZERO);
    fake.fail_seq = Some(7);
    let source = Box::new(Counting {
        n: 20,
        seq: 0,
        skip_at: Some(3),
        error_at: None,
    });
    let stats = run(
        source,
        &mut engine(fake),
        &opts(4, Overflow::Wait),
        &stop,
        Hooks::default(),
        &mut sink(|_, _, _| {}),
    )
    .expect("run");
    assert_eq!(stats.frames_skipped, 1);
    assert_eq!(stats.frames_failed, 1);
    assert_eq!(stats.frames_captured, 19);
    assert_eq!(stats.frames_processed, 18);
}

#[test]
fn a_failing_source_ends_the_run_with_its_error_and_keeps_what_was_judged() {
    let stop = AtomicBool::new(false);
    let source = Box::new(Counting {
        n: 20,
        seq: 0,
        skip_at: None,
        error_at: Some(10),
    });
    let stats = run(
        source,
        &mut engine(Fake::new(Duration::ZERO)),
        &opts(4, Overflow::Wait),
        &stop,
        Hooks::default(),
        &mut sink(|_, _, _| {}),
    )
    .expect("run");
    assert_eq!(stats.frames_processed, 10);
    assert!(
        stats
            .source_error
            .as_deref()
            .is_some_and(|e| e.contains("unplugged")),
        "{stats:?}"
    );
}

#[test]
fn max_frames_stops_capture() {
    let stop = AtomicBool::new(false);
    let mut o = opts(4, Overflow::Wait);
    o.max_frames = Some(7);
    let stats = run(
        counting(100),
        &mut engine(Fake::new(Duration::ZERO)),
        &o,
        &stop,
        Hooks::default(),
        &mut sink(|_, _, _| {}),
    )
    .expect("run");
    assert_eq!(stats.frames_captured, 7);
    assert_eq!(stats.frames_processed, 7);
}

/// Records faults and verdict flags.
#[derive(Default)]
struct Recorder {
    faults: Vec<Fault>,
    verdicts: Vec<(u64, bool, String)>,
    ticks: u64,
}

impl Sink for Recorder {
    fn verdict(&mut self, frame: &Frame, _: &Segmentation, v: &Verdict, model: &ModelInfo) {
        self.verdicts
            .push((frame.seq, v.defective, model.version.clone()));
    }
    fn fault(&mut self, fault: &Fault) {
        self.faults.push(fault.clone());
    }
    fn tick(&mut self, _: &Tick) {
        self.ticks += 1;
    }
}

#[test]
fn a_failed_source_is_reopened_and_the_faults_are_reported() {
    let stop = AtomicBool::new(false);
    let source = Box::new(Counting {
        n: 20,
        seq: 0,
        skip_at: None,
        error_at: Some(5),
    });
    let mut reopened = 0;
    let reopen: Reopen = Box::new(move || {
        reopened += 1;
        // The first attempt fails too (camera still gone), the second works.
        if reopened == 1 {
            Err(Error::camera("counting", "still gone"))
        } else {
            Ok(counting(3) as Box<dyn FrameSource>)
        }
    });
    let mut rec = Recorder::default();
    let stats = run(
        source,
        &mut engine(Fake::new(Duration::ZERO)),
        &opts(4, Overflow::Wait),
        &stop,
        Hooks {
            reopen: Some(reopen),
            ..Hooks::default()
        },
        &mut rec,
    )
    .expect("run");
    assert_eq!(stats.source_failures, 1);
    assert_eq!(stats.source_error, None, "recovered, so no terminal error");
    // Five frames before the failure, three from the reopened source.
    assert_eq!(stats.frames_processed, 8);
    assert!(
        matches!(&rec.faults[0], Fault::SourceDown(m) if m.contains("unplugged")),
        "{:?}",
        rec.faults
    );
    // Two waits with backoff: 0.5 s, then 1 s.
    assert!(
        matches!(rec.faults[1], Fault::SourceUp { down_s } if down_s >= 1.5),
        "{:?}",
        rec.faults
    );
}

#[test]
fn an_engine_swap_applies_between_frames() {
    let stop = AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut replacement = Fake::new(Duration::ZERO);
    replacement.info.version = "v2".into();
    tx.send(Control::Swap {
        judge: Box::new(engine(replacement)),
        why: "model file changed".into(),
    })
    .expect("send");
    let mut rec = Recorder::default();
    let judged = std::sync::atomic::AtomicU64::new(0);
    let stats = run(
        counting(4),
        &mut engine(Fake::new(Duration::ZERO)),
        &opts(4, Overflow::Wait),
        &stop,
        Hooks {
            reopen: None,
            control: Some(&rx),
            progress: Some(&judged),
        },
        &mut rec,
    )
    .expect("run");
    assert_eq!(
        judged.load(Ordering::Relaxed),
        4,
        "the progress counter follows"
    );
    assert_eq!(stats.engine_swaps, 1);
    assert_eq!(stats.model, "v2");
    assert!(
        rec.verdicts.iter().all(|(_, _, v)| v == "v2"),
        "{:?}",
        rec.verdicts
    );
    assert_eq!(
        rec.faults,
        [Fault::EngineSwapped("model file changed".into())]
    );
}
