//! `contextrast inspect`: the line runtime. Frames → model → verdicts, a status line each
//! second, and a summary (also JSON) when the source ends, `--max-frames` is reached, or
//! SIGINT/SIGTERM arrives (frames already captured are still judged).
use anyhow::{Context, Result};
use clap::Args;
use contextrast::capture::replay::ReplaySource;
use contextrast::capture::synthetic::SyntheticSource;
use contextrast::capture::v4l::V4lSource;
use contextrast::capture::{Frame, FrameSource};
use contextrast::config::{BlindPolicy, LineConfig, SourceKind};
use contextrast::decide::Verdict;
use contextrast::decide::detection::{DetectionSummary, DetectionTally};
use contextrast::infer::{ModelInfo, Segmentation};
use contextrast::line::gpio::{OutPin, spawn_edge_counter};
use contextrast::line::reject::{
    EncoderCount, MonotonicClock, OnLate, RejectRunner, RejectScheduler, RejectStats, Trigger,
};
use contextrast::line::service::Service;
use contextrast::pipeline::reload::{Watch, build_engine, spawn_watcher};
use contextrast::pipeline::{self, Fault, Hooks, PipelineOptions, Reopen, RunStats, Sink, Tick};
use contextrast::record::events::{
    DefectRecord, EventLog, EventSink, EventStats, FaultEvent, VerdictEvent, rfc3339_ms,
};
use contextrast::record::images::{ImageJob, ImageStats, ImageWriter};
use embedded_hal::digital::OutputPin;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, SystemTime};

#[derive(Args)]
pub struct InspectArgs {
    /// Line config (TOML); see firmware-config/example-line.toml.
    #[arg(long)]
    config: PathBuf,
    /// Stop after this many frames.
    #[arg(long)]
    max_frames: Option<u64>,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    summary_json: Option<PathBuf>,
}

/// The summary file: the run's counters and latencies, and detection figures when the source
/// knew the truth.
#[derive(Serialize)]
struct Summary<'a> {
    run: &'a RunStats,
    detection: Option<DetectionSummary>,
    reject: RejectStats,
    events: Option<EventStats>,
    images: Option<ImageStats>,
}

pub fn open_source(cfg: &LineConfig) -> contextrast::Result<Box<dyn FrameSource>> {
    Ok(match cfg.source.kind {
        SourceKind::Synthetic => Box::new(
            SyntheticSource::new(&cfg.source.synthetic)
                .map_err(|m| contextrast::Error::config(&cfg.path, "source.synthetic", m))?,
        ),
        SourceKind::Replay => Box::new(ReplaySource::open(&cfg.source.replay)?),
        SourceKind::V4l2 => Box::new(V4lSource::open(&cfg.source.v4l2)?),
    })
}

/// The inspect run's side of the pipeline: ground-truth tally, reject pulses, the log, systemd.
struct InspectSink<'a> {
    tally: DetectionTally,
    events: Option<EventSink>,
    images: Option<ImageWriter>,
    runner: Option<RejectRunner>,
    clock: MonotonicClock,
    late: Receiver<(u64, u64)>,
    late_count: u64,
    service: &'a Service,
    /// Fault line, heartbeat and stop line (log pins where no GPIO line is configured).
    fault_pin: OutPin,
    /// Only with a configured line: a log pin would print a line every second.
    heartbeat_pin: Option<OutPin>,
    stop_pin: OutPin,
    heartbeat: bool,
    blind_policy: BlindPolicy,
}

impl InspectSink<'_> {
    /// Ends the reject thread (pulses already due still fire) and reports what it did.
    /// Ends the reject thread (pulses already due still fire; then the line is inactive) and
    /// the image writer, and reports what they did.
    fn finish(mut self) -> (RejectStats, DetectionTally, Option<ImageStats>) {
        let stats = self
            .runner
            .take()
            .map(RejectRunner::shutdown)
            .unwrap_or_default();
        self.drain_late();
        if self.late_count > 0 {
            log::error!(
                "{} verdict(s) arrived too late to reject their part",
                self.late_count
            );
        }
        let images = self.images.take().map(ImageWriter::close);
        (stats, std::mem::take(&mut self.tally), images)
    }

    fn drain_late(&mut self) {
        // The reject thread has logged each one; counted here and recorded as an event.
        while let Ok((seq, by_us)) = self.late.try_recv() {
            self.late_count += 1;
            if let Some(ev) = &self.events {
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
}

impl Sink for InspectSink<'_> {
    fn verdict(&mut self, frame: &Frame, seg: &Segmentation, verdict: &Verdict, model: &ModelInfo) {
        if let Some(t) = &frame.truth {
            self.tally.add(t, verdict);
        }
        if verdict.reject
            && let Some(r) = &self.runner
        {
            // Encoder mode schedules by the belt count stamped on the frame.
            let at = frame
                .position
                .unwrap_or_else(|| self.clock.at(frame.captured));
            r.reject(frame.seq, at);
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
        for (pin, on) in [
            (&mut self.fault_pin, fault_on),
            (&mut self.stop_pin, stop_on),
        ] {
            if let Some(on) = on {
                let r = if on { pin.set_high() } else { pin.set_low() };
                if let Err(e) = r {
                    log::error!("{e}");
                }
            }
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
            && let Some(pin) = self.heartbeat_pin.as_mut()
        {
            self.heartbeat = !self.heartbeat;
            let r = if self.heartbeat {
                pin.set_high()
            } else {
                pin.set_low()
            };
            if let Err(e) = r {
                log::error!("{e}");
            }
        }
    }
}

/// A defect image job: the frame and, per frame pixel, the defect class the model found most
/// probable there (0 elsewhere), for the overlay.
fn image_job(frame: &Frame, seg: &Segmentation, verdict: &Verdict, model: &ModelInfo) -> ImageJob {
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

pub fn run(a: InspectArgs) -> Result<()> {
    let service = Service::from_env();
    let cfg = LineConfig::load(&a.config)?;
    // One clock for capture times and pulses, made before the first frame.
    let clock = MonotonicClock::new();
    let source = open_source(&cfg)?;
    let frame_size = source.frame_size();
    let mut engine = build_engine(&cfg, frame_size)?;
    let info = engine.segmenter.info().clone();
    log::info!("source: {}", source.describe());
    log::info!(
        "model: {} on the {} engine ({} classes: {}; defects: {})",
        info.version,
        info.engine,
        info.num_classes(),
        info.class_names.join(", "),
        info.class_names
            .iter()
            .zip(&info.defect)
            .filter(|(_, d)| **d)
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let pin = OutPin::open(
        cfg.reject
            .gpio
            .as_ref()
            .filter(|_| cfg.reject.output == "gpio"),
        "reject",
        "contextrast-reject",
    )?;
    log::info!(
        "reject: {:?}, pulse {} ms at capture + {} ms",
        pin,
        cfg.reject.pulse_ms,
        cfg.reject.delay_ms
    );
    // Encoder mode: a thread counts the belt encoder's edges; frames carry the count.
    let stop = Arc::new(AtomicBool::new(false));
    let encoder = match &cfg.reject.encoder {
        Some(e) => {
            let count = EncoderCount::new(0);
            spawn_edge_counter(
                &e.line,
                "contextrast-encoder",
                count.counter(),
                Arc::clone(&stop),
            )?;
            log::info!(
                "reject timing: {} encoder counts after the frame ({})",
                e.delay_counts,
                e.line.label()
            );
            Some((count, e.delay_counts, e.min_lead_counts))
        }
        None => None,
    };
    let trigger = match &encoder {
        Some((count, delay_counts, min_lead_counts)) => Trigger::Encoder {
            source: Box::new(count.clone()),
            delay_counts: *delay_counts,
            min_lead_counts: *min_lead_counts,
            poll_us: 1000,
        },
        None => Trigger::Time,
    };
    let scheduler = RejectScheduler::new(pin, clock, cfg.reject.timing(), trigger)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (late_tx, late_rx) = std::sync::mpsc::channel();
    let on_late: OnLate = Box::new(move |seq, by| {
        let _ = late_tx.send((seq, by));
    });
    let runner =
        RejectRunner::spawn_with(scheduler, Some(on_late)).context("starting the reject thread")?;

    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing signal handler")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))
        .context("installing signal handler")?;
    let (control_tx, control_rx) = std::sync::mpsc::channel();
    let watcher_stop = Arc::new(AtomicBool::new(false));
    let watcher = spawn_watcher(
        Watch {
            config_path: a.config.clone(),
            config: cfg.clone(),
            frame_size,
            poll: Duration::from_secs(1),
            stop: Arc::clone(&watcher_stop),
            hup,
        },
        control_tx,
    )
    .context("starting the model watcher")?;
    // A camera that fails is reopened with backoff; a replay or the synthetic line just ends.
    let reopen: Option<Reopen> = (cfg.source.kind == SourceKind::V4l2).then(|| {
        let c = cfg.source.v4l2.clone();
        Box::new(move || Ok(Box::new(V4lSource::open(&c)?) as Box<dyn FrameSource>)) as Reopen
    });
    let opts = PipelineOptions {
        queue: cfg.pipeline.queue,
        overflow: cfg.overflow(),
        max_frames: a.max_frames,
        status_every: (cfg.pipeline.status_every_s > 0.0)
            .then(|| Duration::from_secs_f64(cfg.pipeline.status_every_s)),
        encoder: encoder.as_ref().map(|e| e.0.clone()),
    };
    let (event_log, images) = match &cfg.events {
        Some(ec) => {
            let log = EventLog::open(ec)?;
            log::info!("events: {}", ec.dir.display());
            (Some(log), ImageWriter::open(ec)?)
        }
        None => {
            log::info!("events: off (no [events] in the config)");
            (None, None)
        }
    };
    let f = &cfg.faults;
    let fault_pin = OutPin::open(f.fault_line.as_ref(), "fault", "contextrast-fault")?;
    let heartbeat_pin = match &f.heartbeat_line {
        Some(spec) => Some(OutPin::open(
            Some(spec),
            "heartbeat",
            "contextrast-heartbeat",
        )?),
        None => None,
    };
    let stop_pin = OutPin::open(f.stop_line.as_ref(), "stop-line", "contextrast-stop")?;
    let mut sink = InspectSink {
        fault_pin,
        heartbeat_pin,
        stop_pin,
        heartbeat: false,
        blind_policy: f.on_blind,
        tally: DetectionTally::default(),
        events: event_log.as_ref().map(EventLog::sink),
        images,
        runner: Some(runner),
        clock,
        late: late_rx,
        late_count: 0,
        service: &service,
    };
    service.ready(&format!("inspecting with {}", info.version));
    let result = pipeline::run(
        source,
        &mut engine,
        &opts,
        &stop,
        Hooks {
            reopen,
            control: Some(&control_rx),
        },
        &mut sink,
    );
    service.stopping();
    watcher_stop.store(true, Ordering::Relaxed);
    // Pulses already due still fire; then the line is driven inactive.
    let (reject, tally, image_stats) = sink.finish();
    let _ = watcher.join();
    let event_stats = event_log.map(EventLog::close);
    if let Some(e) = &event_stats {
        log::info!(
            "events: {} written, {} pending, {} write errors, {} dropped",
            e.written,
            e.pending,
            e.write_errors,
            e.dropped
        );
    }
    if let Some(i) = &image_stats {
        log::info!(
            "defect images: {} written, {} shed (queue full), {} shed (write errors), {} deleted by retention",
            i.written,
            i.shed_queue_full,
            i.shed_errors,
            i.deleted
        );
    }
    let stats = result?;
    let names: Vec<String> = engine.segmenter.info().class_names.clone();
    let detection = (tally.frames() > 0).then(|| tally.summary(&names));
    print_summary(&stats, detection.as_ref(), &reject);
    if let Some(path) = &a.summary_json {
        let json = serde_json::to_vec_pretty(&Summary {
            run: &stats,
            detection,
            reject,
            events: event_stats,
            images: image_stats,
        })?;
        contextrast::train::atomic::write_atomic(path, &json)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(e) = &stats.source_error {
        anyhow::bail!("the source failed: {e}");
    }
    Ok(())
}

fn print_summary(s: &RunStats, d: Option<&DetectionSummary>, r: &RejectStats) {
    println!("== inspect summary");
    println!("source   {}", s.source);
    println!("model    {} ({} engine)", s.model, s.engine);
    println!(
        "frames   {} captured, {} judged, {} dropped, {} skipped, {} failed in {:.1} s ({:.1} fps in, {:.1} out)",
        s.frames_captured,
        s.frames_processed,
        s.frames_dropped,
        s.frames_skipped,
        s.frames_failed,
        s.wall_s,
        s.fps_in,
        s.fps_out
    );
    let by_class: Vec<String> = s
        .defects_by_class
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!(
        "verdicts {} defective, {} rejects; defects: {}",
        s.defective_frames,
        s.rejects,
        if by_class.is_empty() {
            "none".into()
        } else {
            by_class.join(", ")
        }
    );
    println!(
        "rejects  {} pulses fired ({} verdicts merged), {} late, {} missed, {} dropped, {} pin errors",
        r.fired, r.merged, r.late, r.missed, r.dropped, r.pin_errors
    );
    println!("latency  stage         p50 ms   p99 ms   max ms");
    for (k, l) in &s.latency_ms {
        println!(
            "         {k:<12} {:>7.2}  {:>7.2}  {:>7.2}",
            l.p50_ms, l.p99_ms, l.max_ms
        );
    }
    if let Some(d) = d {
        println!(
            "truth    frames: recall {:.3} precision {:.3} ({} rejected right, {} wrongly, {} missed of {})",
            d.frame_recall,
            d.frame_precision,
            d.frames_true_reject,
            d.frames_false_reject,
            d.frames_missed,
            d.frames
        );
        println!(
            "         defects: recall {:.3} precision {:.3}",
            d.instance_recall, d.instance_precision
        );
        for (k, c) in &d.by_class {
            println!(
                "         {k:<8} {}/{} found (recall {:.3})",
                c.detected, c.truth, c.recall
            );
        }
    }
}
