use super::*;
use crate::decide::Defect;
use crate::infer::MapGeom;
use crate::line::reject::RejectTiming;
use crate::line::reject::Trigger;
use crate::record::events::{EventLog, EventsConfig};
use contextrast_train::data::synth::FrameTruth;
use embedded_hal::digital::ErrorType;
use embedded_hal_mock::eh1::digital::{Mock, State, Transaction as T};
use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HI: State = State::High;
const LO: State = State::Low;

/// A mock pin expecting exactly these writes.
fn pin(states: &[State]) -> Mock {
    Mock::new(&states.iter().map(|&s| T::set(s)).collect::<Vec<_>>())
}

/// An output that records every level written to it (the reject thread's pin).
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<bool>>>);

impl Recorder {
    fn levels(&self) -> Vec<bool> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ErrorType for Recorder {
    type Error = Infallible;
}

impl OutputPin for Recorder {
    fn set_low(&mut self) -> std::result::Result<(), Infallible> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(false);
        Ok(())
    }
    fn set_high(&mut self) -> std::result::Result<(), Infallible> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(true);
        Ok(())
    }
}

pub(crate) fn model() -> ModelInfo {
    ModelInfo {
        path: "fake.onnx".into(),
        class_names: vec!["ok".into(), "bad".into()],
        defect: vec![false, true],
        colors: vec![[0, 0, 0], [255, 0, 0]],
        version: "fake-1234".into(),
        engine: "fake",
    }
}

/// A 4×4 frame `seq`, captured at `captured`.
fn frame(seq: u64, captured: Instant) -> Frame {
    let mut f = Frame::with_capacity(4, 4);
    f.reset(4, 4);
    f.seq = seq;
    f.captured = captured;
    f.name = format!("f{seq}.png");
    f
}

/// Probabilities on a 4×4 map: class `bad` most probable in the top-left 2×2, `ok` elsewhere.
fn seg() -> Segmentation {
    let mut s = Segmentation {
        classes: 2,
        geom: MapGeom::unscaled(4, 4),
        ..Segmentation::default()
    };
    let probs = s.scores.probs_mut();
    probs.clear();
    probs.resize(32, 0.0);
    for i in 0..16 {
        let bad = i % 4 < 2 && i / 4 < 2;
        probs[16 + i] = if bad { 0.9 } else { 0.1 };
        probs[i] = 1.0 - probs[16 + i];
    }
    s
}

/// A verdict with one `bad` defect in the top-left corner.
fn defective(seq: u64, reject: bool) -> Verdict {
    Verdict {
        seq,
        defects: vec![Defect {
            class_id: 1,
            area_px: 4.0,
            bbox: [0, 0, 2, 2],
            score: 0.9,
            mean_score: 0.9,
        }],
        defective: true,
        reject,
    }
}

/// Fault and stop outputs that record what is written to them (`Quiet::check`: nothing), no
/// heartbeat.
struct Quiet([Recorder; 2]);

impl Quiet {
    fn pins() -> (FaultPins<Recorder>, Quiet) {
        let (fault, stop) = (Recorder::default(), Recorder::default());
        let pins = FaultPins {
            fault: fault.clone(),
            heartbeat: None,
            stop: stop.clone(),
        };
        (pins, Quiet([fault, stop]))
    }

    fn check(self) {
        for p in self.0 {
            assert_eq!(p.levels(), Vec::<bool>::new(), "no fault output is touched");
        }
    }
}

/// A reject thread on a recording pin, timed by `clock`.
fn reject_output(clock: MonotonicClock, delay_ms: u64) -> (RejectOutput, Recorder) {
    let rec = Recorder::default();
    let timing = RejectTiming {
        delay_us: delay_ms * 1000,
        pulse_us: 5_000,
        min_lead_us: 1_000,
        active_high: true,
        capacity: 16,
    };
    let scheduler =
        RejectScheduler::new(rec.clone(), clock, timing, Trigger::Time).expect("scheduler");
    (RejectOutput::spawn(scheduler).expect("reject thread"), rec)
}

fn events_config(dir: &Path, images: bool) -> EventsConfig {
    EventsConfig {
        dir: dir.to_path_buf(),
        images,
        ..EventsConfig::default()
    }
}

/// The JSON lines of the event file under `dir`.
fn event_lines(dir: &Path) -> Vec<serde_json::Value> {
    let Some(file) = std::fs::read_dir(dir)
        .expect("events dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
    else {
        return Vec::new();
    };
    std::fs::read_to_string(file)
        .expect("read events")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.filter_map(|e| e.ok().map(|e| e.path()))
            .map(|p| if p.is_dir() { files_under(&p) } else { 1 })
            .sum()
    })
}

#[test]
fn a_reject_verdict_fires_a_pulse_on_the_reject_output() {
    let service = Service::disabled();
    let clock = MonotonicClock::new();
    // 200 ms of travel: the verdict is far ahead of its window, and `finish` waits for it.
    let (reject, rec) = reject_output(clock, 200);
    let (pins, quiet) = Quiet::pins();
    let mut sink =
        InspectSink::new(&service, clock, pins, BlindPolicy::StopLine).with_reject(reject);
    let m = model();
    sink.verdict(&frame(0, Instant::now()), &seg(), &defective(0, true), &m);
    // Defective but not confirmed: no pulse.
    sink.verdict(&frame(1, Instant::now()), &seg(), &defective(1, false), &m);
    let t = sink.finish();
    assert_eq!(t.reject.scheduled, 1, "{:?}", t.reject);
    assert_eq!(t.reject.fired, 1, "{:?}", t.reject);
    assert_eq!(t.late, 0);
    let levels = rec.levels();
    let high = levels.iter().position(|&l| l).expect("the pin went active");
    assert!(
        !levels[high..].iter().all(|&l| l),
        "then inactive: {levels:?}"
    );
    assert_eq!(levels.last(), Some(&false), "{levels:?}");
    quiet.check();
}

#[test]
fn a_late_verdict_is_not_fired_and_becomes_a_reject_late_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::disabled();
    let clock = MonotonicClock::new();
    let captured = Instant::now();
    let (reject, rec) = reject_output(clock, 10);
    let log = EventLog::open(&events_config(dir.path(), false)).expect("event log");
    let (pins, quiet) = Quiet::pins();
    let mut sink = InspectSink::new(&service, clock, pins, BlindPolicy::StopLine)
        .with_reject(reject)
        .with_events(log.sink(), None);
    // The part passed the ejector (10 ms after capture) before its verdict came.
    std::thread::sleep(Duration::from_millis(40));
    sink.verdict(&frame(7, captured), &seg(), &defective(7, true), &model());
    let t = sink.finish();
    assert_eq!((t.reject.late, t.reject.fired), (1, 0), "{:?}", t.reject);
    assert_eq!(t.late, 1);
    assert!(!rec.levels().contains(&true), "a late pulse must not fire");
    quiet.check();
    log.close();
    let lines = event_lines(dir.path());
    let late: Vec<_> = lines
        .iter()
        .filter(|l| l["kind"] == "reject_late")
        .collect();
    assert_eq!(late.len(), 1, "{lines:#?}");
    let msg = late[0]["message"].as_str().unwrap_or("");
    assert!(
        msg.starts_with("frame 7: verdict ")
            && msg.ends_with("too late for its reject window; not fired"),
        "{msg}"
    );
}

#[test]
fn a_defective_verdict_writes_an_event_and_its_images() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::disabled();
    let cfg = events_config(dir.path(), true);
    let log = EventLog::open(&cfg).expect("event log");
    let images = ImageWriter::open(&cfg).expect("image writer");
    assert!(images.is_some());
    let (pins, quiet) = Quiet::pins();
    let mut sink = InspectSink::new(&service, MonotonicClock::new(), pins, BlindPolicy::StopLine)
        .with_events(log.sink(), images);
    let m = model();
    sink.verdict(&frame(3, Instant::now()), &seg(), &defective(3, false), &m);
    // A clean pass is not logged (without `all_verdicts`).
    let clean = Verdict {
        seq: 4,
        ..Verdict::default()
    };
    sink.verdict(&frame(4, Instant::now()), &seg(), &clean, &m);
    let t = sink.finish();
    let images = t.images.expect("image stats");
    assert_eq!(images.written, 1, "{images:?}");
    log.close();
    let lines = event_lines(dir.path());
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let v = &lines[0];
    assert_eq!(v["seq"], 3);
    assert_eq!(v["frame"], "f3.png");
    assert_eq!(v["action"], "pass");
    assert_eq!(v["model"], "fake-1234");
    assert_eq!(v["defects"][0]["class"], "bad");
    assert_eq!(v["defects"][0]["bbox"], serde_json::json!([0, 0, 2, 2]));
    assert!(
        v["image"].as_str().is_some_and(|n| n.contains("f3")),
        "{v:#}"
    );
    assert_eq!(
        files_under(&dir.path().join("images")),
        2,
        "original + overlay"
    );
    quiet.check();
}

#[test]
fn blind_under_stop_line_raises_the_stop_output_and_recovery_lowers_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::disabled();
    let (mut fault, mut stop) = (pin(&[HI, LO, HI]), pin(&[HI, LO]));
    let log = EventLog::open(&events_config(dir.path(), false)).expect("event log");
    let pins = FaultPins {
        fault: fault.clone(),
        heartbeat: None,
        stop: stop.clone(),
    };
    let mut sink = InspectSink::new(&service, MonotonicClock::new(), pins, BlindPolicy::StopLine)
        .with_events(log.sink(), None);
    sink.fault(&Fault::SourceDown("unplugged".into()));
    sink.fault(&Fault::SourceUp { down_s: 2.5 });
    // A refused reload raises the fault line only.
    sink.fault(&Fault::ReloadRefused("corrupt".into()));
    sink.finish();
    fault.done();
    stop.done();
    log.close();
    let got: Vec<(String, String)> = event_lines(dir.path())
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap_or("").to_string(),
                l["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want = [
        ("camera", "source down, reconnecting: unplugged"),
        ("camera", "source back after 2.5 s blind"),
        ("model_reload", "refused: corrupt"),
    ];
    assert_eq!(
        got,
        want.map(|(k, m)| (k.to_string(), m.to_string())),
        "{got:#?}"
    );
}

#[test]
fn blind_without_a_stop_policy_keeps_the_line_running() {
    let service = Service::disabled();
    let (mut fault, mut stop) = (pin(&[HI, LO]), pin(&[LO, LO]));
    let pins = FaultPins {
        fault: fault.clone(),
        heartbeat: None,
        stop: stop.clone(),
    };
    let mut sink = InspectSink::new(&service, MonotonicClock::new(), pins, BlindPolicy::None);
    sink.fault(&Fault::SourceDown("unplugged".into()));
    sink.fault(&Fault::SourceUp { down_s: 0.5 });
    drop(sink);
    fault.done();
    stop.done();
}

#[test]
fn the_heartbeat_toggles_only_on_ticks_that_judged_frames() {
    let service = Service::disabled();
    let (mut heartbeat, mut fault, mut stop) = (pin(&[HI, LO, HI]), pin(&[]), pin(&[]));
    let pins = FaultPins {
        fault: fault.clone(),
        heartbeat: Some(heartbeat.clone()),
        stop: stop.clone(),
    };
    let mut sink = InspectSink::new(&service, MonotonicClock::new(), pins, BlindPolicy::StopLine);
    for judged in [0, 3, 0, 0, 2, 1, 0] {
        sink.tick(&Tick {
            judged,
            source_down: judged == 0,
            status: "",
        });
    }
    drop(sink);
    for p in [&mut heartbeat, &mut fault, &mut stop] {
        p.done();
    }
}

#[test]
fn verdicts_are_tallied_against_the_ground_truth() {
    let service = Service::disabled();
    let (pins, quiet) = Quiet::pins();
    let mut sink = InspectSink::new(&service, MonotonicClock::new(), pins, BlindPolicy::StopLine);
    let m = model();
    let mut f = frame(0, Instant::now());
    f.truth = Some(FrameTruth {
        defects: Vec::new(),
        parts: 1,
    });
    // A rejected frame the truth says is clean; a frame without truth is not counted.
    sink.verdict(&f, &seg(), &defective(0, true), &m);
    sink.verdict(&frame(1, Instant::now()), &seg(), &defective(1, true), &m);
    let t = sink.finish();
    assert_eq!(t.tally.frames(), 1);
    let s = t.tally.summary(&m.class_names);
    assert_eq!((s.frames_false_reject, s.frames_true_reject), (1, 0));
    assert_eq!(
        t.reject,
        RejectStats::default(),
        "no reject output: nothing scheduled"
    );
    quiet.check();
}

#[test]
fn the_image_mask_marks_the_most_probable_defect_class_per_frame_pixel() {
    // An 8×8 frame over the 4×4 map: each map cell covers 2×2 frame pixels.
    let mut f = Frame::with_capacity(8, 8);
    f.reset(8, 8);
    f.seq = 9;
    f.name = "cam0".into();
    let mut s = seg();
    s.geom.frame_w = 8;
    s.geom.frame_h = 8;
    let job = image_job(&f, &s, &defective(9, true), &model());
    assert_eq!((job.seq, job.width, job.height), (9, 8, 8));
    assert_eq!(job.rgb.len(), 8 * 8 * 3);
    assert_eq!(job.boxes, vec![[0, 0, 2, 2]]);
    for y in 0..8 {
        for x in 0..8 {
            let want = u8::from(x < 4 && y < 4);
            assert_eq!(job.mask[y * 8 + x], want, "({x}, {y})");
        }
    }
}
