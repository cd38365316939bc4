//! `contextrast inspect`: the line runtime. Frames → model → verdicts, a status line each
//! second, and a summary (also JSON) when the source ends, `--max-frames` is reached, or
//! SIGINT/SIGTERM arrives (frames already captured are still judged).
use anyhow::{Context, Result};
use clap::Args;
use contextrast::capture::replay::ReplaySource;
use contextrast::capture::synthetic::SyntheticSource;
use contextrast::capture::v4l::V4lSource;
use contextrast::capture::{Frame, FrameSource};
use contextrast::config::{LineConfig, SourceKind};
use contextrast::decide::Verdict;
use contextrast::detection::{DetectionSummary, DetectionTally};
use contextrast::gpio::OutPin;
use contextrast::infer::{ModelInfo, Segmentation};
use contextrast::pipeline::{self, Fault, Hooks, PipelineOptions, Reopen, RunStats, Sink, Tick};
use contextrast::reject::{
    MonotonicClock, OnLate, RejectRunner, RejectScheduler, RejectStats, Trigger,
};
use contextrast::reload::{Watch, build_engine, spawn_watcher};
use contextrast::service::Service;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::Duration;

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
    runner: RejectRunner,
    clock: MonotonicClock,
    late: Receiver<(u64, u64)>,
    late_count: u64,
    service: &'a Service,
    status_every: bool,
}

impl InspectSink<'_> {
    /// Ends the reject thread (pulses already due still fire) and reports what it did.
    fn finish(self) -> (RejectStats, DetectionTally) {
        let InspectSink {
            tally,
            runner,
            late,
            mut late_count,
            ..
        } = self;
        let stats = runner.shutdown();
        for (seq, by_us) in late.try_iter() {
            late_count += 1;
            log::error!(
                "frame {seq}: verdict {:.1} ms too late for its reject window",
                by_us as f64 / 1e3
            );
        }
        if late_count > 0 {
            log::error!("{late_count} verdict(s) arrived too late to reject their part");
        }
        (stats, tally)
    }

    fn drain_late(&mut self) {
        // The reject thread has logged each one; counted here for the summary and events.
        while let Ok((_seq, _by_us)) = self.late.try_recv() {
            self.late_count += 1;
        }
    }
}

impl Sink for InspectSink<'_> {
    fn verdict(&mut self, frame: &Frame, _: &Segmentation, verdict: &Verdict, model: &ModelInfo) {
        if let Some(t) = &frame.truth {
            self.tally.add(t, verdict);
        }
        if verdict.reject {
            self.runner.reject(frame.seq, self.clock.at(frame.captured));
            if log::log_enabled!(log::Level::Debug) || !self.status_every {
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
        }
        self.drain_late();
    }

    fn fault(&mut self, fault: &Fault) {
        match fault {
            Fault::SourceDown(m) => log::error!("source down, reconnecting: {m}"),
            Fault::SourceUp { down_s } => log::warn!("source back after {down_s:.1} s blind"),
            Fault::EngineSwapped(m) => log::info!("{m}"),
            Fault::ReloadRefused(m) => log::error!("{m}"),
        }
    }

    fn tick(&mut self, tick: &Tick) {
        self.drain_late();
        self.service.tick(tick);
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
        "model: {} ({} classes: {}; defects: {})",
        info.version,
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
    let scheduler = RejectScheduler::new(pin, clock, cfg.reject.timing(), Trigger::Time)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (late_tx, late_rx) = std::sync::mpsc::channel();
    let on_late: OnLate = Box::new(move |seq, by| {
        let _ = late_tx.send((seq, by));
    });
    let runner =
        RejectRunner::spawn_with(scheduler, Some(on_late)).context("starting the reject thread")?;

    let stop = Arc::new(AtomicBool::new(false));
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
    };
    let mut sink = InspectSink {
        tally: DetectionTally::default(),
        runner,
        clock,
        late: late_rx,
        late_count: 0,
        service: &service,
        status_every: opts.status_every.is_some(),
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
    let (reject, tally) = sink.finish();
    let _ = watcher.join();
    let stats = result?;
    let names: Vec<String> = engine.segmenter.info().class_names.clone();
    let detection = (tally.frames() > 0).then(|| tally.summary(&names));
    print_summary(&stats, detection.as_ref(), &reject);
    if let Some(path) = &a.summary_json {
        let json = serde_json::to_vec_pretty(&Summary {
            run: &stats,
            detection,
            reject,
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
    println!("model    {}", s.model);
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
