//! The inspection's side of the pipeline ([`InspectSink`]): a verdict becomes a reject pulse, an
//! event line and a defect image; a fault drives the fault and stop-line outputs (the blind
//! policy) and becomes an event; each tick feeds systemd and toggles the heartbeat. Late reject
//! verdicts, reported by the reject thread, become `reject_late` fault events.
use crate::capture::Frame;
use crate::config::{BlindPolicy, FaultsConfig};
use crate::decide::Verdict;
use crate::decide::detection::DetectionTally;
use crate::infer::{ModelInfo, Segmentation};
use crate::line::gpio::OutPin;
use crate::line::reject::{
    Clock, MonotonicClock, OnLate, RejectRunner, RejectScheduler, RejectStats,
};
use crate::line::service::Service;
use crate::pipeline::{Fault, Sink, Tick};
use crate::record::events::{DefectRecord, EventSink, FaultEvent, VerdictEvent, rfc3339_ms};
use crate::record::images::{ImageJob, ImageStats, ImageWriter};
use crate::{Error, Result};
use embedded_hal::digital::OutputPin;
use std::fmt::Display;
use std::sync::mpsc::Receiver;
use std::time::SystemTime;

/// The `[faults]` outputs: fault line, heartbeat, stop line.
pub struct FaultPins<P = OutPin> {
    /// Active while the camera is down or a reload was refused.
    pub fault: P,
    /// Toggled each tick while frames are judged; `None` without a configured line (a log pin
    /// would print a line every second).
    pub heartbeat: Option<P>,
    /// Held active while blind under [`BlindPolicy::StopLine`].
    pub stop: P,
}

impl FaultPins<OutPin> {
    /// The configured lines; log pins where none is configured (but no heartbeat pin).
    pub fn open(f: &FaultsConfig) -> Result<FaultPins> {
        let fault = OutPin::open(f.fault_line.as_ref(), "fault", "contextrast-fault")?;
        let heartbeat = match &f.heartbeat_line {
            Some(spec) => Some(OutPin::open(
                Some(spec),
                "heartbeat",
                "contextrast-heartbeat",
            )?),
            None => None,
        };
        let stop = OutPin::open(f.stop_line.as_ref(), "stop-line", "contextrast-stop")?;
        Ok(FaultPins {
            fault,
            heartbeat,
            stop,
        })
    }
}

/// The reject thread and the channel on which it reports verdicts too late for their part.
pub struct RejectOutput {
    runner: RejectRunner,
    late: Receiver<(u64, u64)>,
}

impl RejectOutput {
    /// Starts the reject thread for `scheduler`.
    pub fn spawn<P, C>(scheduler: RejectScheduler<P, C>) -> Result<RejectOutput>
    where
        P: OutputPin + Send + 'static,
        C: Clock + 'static,
    {
        let (late_tx, late) = std::sync::mpsc::channel();
        let on_late: OnLate = Box::new(move |seq, by| {
            let _ = late_tx.send((seq, by));
        });
        let runner = RejectRunner::spawn_with(scheduler, Some(on_late))
            .map_err(|e| Error::thread("starting the reject thread", e))?;
        Ok(RejectOutput { runner, late })
    }
}

/// What the sink did, once finished.
#[derive(Debug, Default)]
pub struct SinkTotals {
    /// The reject thread's counters (default without one).
    pub reject: RejectStats,
    /// Verdicts against the source's ground truth (empty when it has none).
    pub tally: DetectionTally,
    /// The image writer's counters, when images were saved.
    pub images: Option<ImageStats>,
    /// Verdicts that arrived too late to reject their part.
    pub late: u64,
}

/// The inspect run's side of the pipeline: ground-truth tally, reject pulses, the event log and
/// defect images, the fault / heartbeat / stop outputs, systemd.
pub struct InspectSink<'a, P = OutPin> {
    tally: DetectionTally,
    events: Option<EventSink>,
    images: Option<ImageWriter>,
    reject: Option<RejectOutput>,
    /// Converts capture instants to the reject scheduler's time scale.
    clock: MonotonicClock,
    late_count: u64,
    service: &'a Service,
    pins: FaultPins<P>,
    heartbeat: bool,
    blind_policy: BlindPolicy,
}

impl<'a, P: OutputPin> InspectSink<'a, P>
where
    P::Error: Display,
{
    /// A sink that only drives `pins` and `service`; `clock` must be the reject scheduler's.
    pub fn new(
        service: &'a Service,
        clock: MonotonicClock,
        pins: FaultPins<P>,
        blind_policy: BlindPolicy,
    ) -> Self {
        InspectSink {
            tally: DetectionTally::default(),
            events: None,
            images: None,
            reject: None,
            clock,
            late_count: 0,
            service,
            pins,
            heartbeat: false,
            blind_policy,
        }
    }

    /// Reject verdicts go to this reject thread.
    pub fn with_reject(mut self, reject: RejectOutput) -> Self {
        self.reject = Some(reject);
        self
    }

    /// Defective verdicts and faults become events; with `images`, defect images are saved.
    pub fn with_events(mut self, events: EventSink, images: Option<ImageWriter>) -> Self {
        self.events = Some(events);
        self.images = images;
        self
    }

    /// Ends the reject thread (pulses already due still fire; then the line is inactive) and
    /// the image writer, and reports what they did.
    pub fn finish(mut self) -> SinkTotals {
        let reject = match self.reject.take() {
            Some(r) => {
                let stats = r.runner.shutdown();
                drain_late(&r.late, self.events.as_ref(), &mut self.late_count);
                stats
            }
            None => RejectStats::default(),
        };
        if self.late_count > 0 {
            log::error!(
                "{} verdict(s) arrived too late to reject their part",
                self.late_count
            );
        }
        SinkTotals {
            reject,
            tally: std::mem::take(&mut self.tally),
            images: self.images.take().map(ImageWriter::close),
            late: self.late_count,
        }
    }

    fn drain_late(&mut self) {
        if let Some(r) = &self.reject {
            drain_late(&r.late, self.events.as_ref(), &mut self.late_count);
        }
    }
}

/// Late verdicts reported so far: the reject thread has logged each one; counted here and
/// recorded as an event.
fn drain_late(late: &Receiver<(u64, u64)>, events: Option<&EventSink>, count: &mut u64) {
    while let Ok((seq, by_us)) = late.try_recv() {
        *count += 1;
        if let Some(ev) = events {
            ev.fault(FaultEvent::now(
                "reject_late",
                format!(
                    "frame {seq}: verdict {:.1} ms too late for its reject window; not fired",
                    by_us as f64 / 1e3
                ),
            ));
        }
    }
}

fn set<P: OutputPin>(pin: &mut P, on: bool)
where
    P::Error: Display,
{
    let r = if on { pin.set_high() } else { pin.set_low() };
    if let Err(e) = r {
        log::error!("{e}");
    }
}

impl<P: OutputPin> Sink for InspectSink<'_, P>
where
    P::Error: Display,
{
    fn verdict(&mut self, frame: &Frame, seg: &Segmentation, verdict: &Verdict, model: &ModelInfo) {
        if let Some(t) = &frame.truth {
            self.tally.add(t, verdict);
        }
        if verdict.reject
            && let Some(r) = &self.reject
        {
            // Encoder mode schedules by the belt count stamped on the frame.
            let at = frame
                .position
                .unwrap_or_else(|| self.clock.at(frame.captured));
            r.runner.reject(frame.seq, at);
        }
        if let Some(ev) = &self.events
            && (verdict.reject || !verdict.defects.is_empty())
        {
            let image = self.images.as_ref().and_then(|w| {
                let job = image_job(frame, seg, verdict, model);
                w.submit(job).then(|| w.file_name(frame.seq, &frame.name))
            });
            ev.verdict(VerdictEvent {
                time: rfc3339_ms(SystemTime::now()),
                seq: frame.seq,
                frame: frame.name.clone(),
                defects: verdict
                    .defects
                    .iter()
                    .map(|d| DefectRecord {
                        class: model
                            .class_names
                            .get(usize::from(d.class_id))
                            .cloned()
                            .unwrap_or_default(),
                        area_px: d.area_px,
                        bbox: d.bbox,
                        score: d.score,
                    })
                    .collect(),
                action: if verdict.reject { "reject" } else { "pass" }.into(),
                model: model.version.clone(),
                image,
            });
        }
        if verdict.reject {
            let what: Vec<String> = verdict
                .defects
                .iter()
                .map(|d| {
                    format!(
                        "{} {:.0} px at ({}, {}) p={:.2}",
                        model
                            .class_names
                            .get(usize::from(d.class_id))
                            .map_or("?", String::as_str),
                        d.area_px,
                        d.bbox[0],
                        d.bbox[1],
                        d.score
                    )
                })
                .collect();
            log::info!(
                "REJECT frame {} ({}): {}",
                frame.seq,
                frame.name,
                what.join("; ")
            );
        }
        self.drain_late();
    }

    fn fault(&mut self, fault: &Fault) {
        // Outputs first: the line must know before anything is written.
        let (fault_on, stop_on) = match fault {
            Fault::SourceDown(_) => (Some(true), Some(self.blind_policy == BlindPolicy::StopLine)),
            Fault::SourceUp { .. } => (Some(false), Some(false)),
            Fault::ReloadRefused(_) => (Some(true), None),
            Fault::EngineSwapped(_) => (Some(false), None),
        };
        if let Some(on) = fault_on {
            set(&mut self.pins.fault, on);
        }
        if let Some(on) = stop_on {
            set(&mut self.pins.stop, on);
        }
        // The pipeline has logged it; here it becomes an event.
        let (kind, msg) = match fault {
            Fault::SourceDown(m) => ("camera", format!("source down, reconnecting: {m}")),
            Fault::SourceUp { down_s } => {
                ("camera", format!("source back after {down_s:.1} s blind"))
            }
            Fault::EngineSwapped(m) => ("model_reload", m.clone()),
            Fault::ReloadRefused(m) => ("model_reload", format!("refused: {m}")),
        };
        if let Some(ev) = &self.events {
            ev.fault(FaultEvent::now(kind, msg));
        }
    }

    fn tick(&mut self, tick: &Tick) {
        self.drain_late();
        self.service.tick(tick);
        // The heartbeat toggles only while frames are judged: a stalled pipeline holds it still.
        if tick.judged > 0
            && let Some(pin) = self.pins.heartbeat.as_mut()
        {
            self.heartbeat = !self.heartbeat;
            set(pin, self.heartbeat);
        }
    }
}

/// A defect image job: the frame and, per frame pixel, the defect class the model found most
/// probable there (0 elsewhere), for the overlay.
pub fn image_job(
    frame: &Frame,
    seg: &Segmentation,
    verdict: &Verdict,
    model: &ModelInfo,
) -> ImageJob {
    let g = seg.geom;
    let (fw, fh) = (frame.width as usize, frame.height as usize);
    let plane = g.map_w * g.map_h;
    let probs = seg.scores.probs();
    let mut mask = vec![0u8; fw * fh];
    for y in 0..fh {
        let my = (y * g.content_h / fh.max(1)).min(g.map_h.saturating_sub(1));
        for x in 0..fw {
            let mx = (x * g.content_w / fw.max(1)).min(g.map_w.saturating_sub(1));
            let p = my * g.map_w + mx;
            let best = (0..seg.classes)
                .max_by(|&a, &b| probs[a * plane + p].total_cmp(&probs[b * plane + p]));
            if let Some(c) = best.filter(|&c| model.defect.get(c).copied().unwrap_or(false)) {
                mask[y * fw + x] = c as u8;
            }
        }
    }
    ImageJob {
        seq: frame.seq,
        name: frame.name.clone(),
        width: frame.width,
        height: frame.height,
        rgb: frame.rgb.clone(),
        mask,
        colors: model.colors.clone(),
        boxes: verdict.defects.iter().map(|d| d.bbox).collect(),
    }
}

#[cfg(test)]
#[path = "sink_tests.rs"]
pub(super) mod tests;
