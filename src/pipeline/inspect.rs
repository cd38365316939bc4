//! An inspection run assembled from the line config: the frame source, the engine, the reject
//! output (and the belt encoder), the event log and defect images, the fault outputs, the model
//! watcher and systemd, wired around [`pipeline::run`](super::run) with an [`InspectSink`].
//!
//! Two steps, so the caller can install its signal handlers in between (as the binary does:
//! a signal while the model loads still ends the process): [`Inspection::open`] loads everything
//! that can fail on a bad config, [`Inspection::run`] runs the line until the source ends,
//! `max_frames` is reached or `stop` is set, and returns the [`InspectSummary`].
use crate::capture::FrameSource;
use crate::capture::replay::ReplaySource;
use crate::capture::synthetic::SyntheticSource;
use crate::capture::v4l::V4lSource;
use crate::config::{LineConfig, SourceKind};
use crate::decide::detection::DetectionSummary;
use crate::line::gpio::{OutPin, spawn_edge_counter};
use crate::line::reject::{EncoderCount, MonotonicClock, RejectScheduler, RejectStats, Trigger};
use crate::line::service::Service;
use crate::pipeline::reload::{Watch, build_judge, spawn_watcher};
use crate::pipeline::sink::{FaultPins, InspectSink, RejectOutput, SinkTotals};
use crate::pipeline::{self, Hooks, Judge, PipelineOptions, Reopen, RunStats};
use crate::record::events::{EventLog, EventStats};
use crate::record::images::{ImageStats, ImageWriter};
use crate::{Error, Result};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Opens the configured frame source.
pub fn open_source(cfg: &LineConfig) -> Result<Box<dyn FrameSource>> {
    Ok(match cfg.source.kind {
        SourceKind::Synthetic => Box::new(
            SyntheticSource::new(&cfg.source.synthetic)
                .map_err(|m| Error::config(&cfg.path, "source.synthetic", m))?,
        ),
        SourceKind::Replay => Box::new(ReplaySource::open(&cfg.source.replay)?),
        SourceKind::V4l2 => Box::new(V4lSource::open(&cfg.source.v4l2)?),
    })
}

/// What an inspection run did: the run's counters and latencies, and detection figures when
/// the source knew the truth. Serialised as the `--summary-json` file.
#[derive(Debug, Serialize)]
pub struct InspectSummary {
    /// The pipeline's counters and per-stage latencies.
    pub run: RunStats,
    /// Recall and precision against ground truth; `None` when no frame carried truth.
    pub detection: Option<DetectionSummary>,
    /// What became of the reject verdicts (fired, late, dropped, ...).
    pub reject: RejectStats,
    /// The event log's counters; `None` without `[events]`.
    pub events: Option<EventStats>,
    /// The defect image writer's counters; `None` when images are off (no `[events]`, or
    /// `images = false`).
    pub images: Option<ImageStats>,
}

/// An inspection ready to run: source open, model loaded and planned, reject thread started.
pub struct Inspection {
    cfg: LineConfig,
    source: Box<dyn FrameSource>,
    frame_size: Option<(u32, u32)>,
    engine: Judge,
    /// The clock of capture times and pulses, made before the first frame.
    clock: MonotonicClock,
    reject: RejectOutput,
    encoder: Option<EncoderCount>,
    progress: Option<Arc<AtomicU64>>,
}

impl Inspection {
    /// Opens the source, loads the model for its frame size, requests the reject output (and
    /// the encoder input, whose counting thread ends when `stop` is set) and starts the reject
    /// thread. Logs what it opened.
    pub fn open(cfg: LineConfig, stop: &Arc<AtomicBool>) -> Result<Inspection> {
        // One clock for capture times and pulses, made before the first frame.
        let clock = MonotonicClock::new();
        let source = open_source(&cfg)?;
        let frame_size = source.frame_size();
        let engine = build_judge(&cfg, frame_size)?;
        let info = engine.segmenter.info();
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
        let (encoder, trigger) = match &cfg.reject.encoder {
            Some(e) => {
                let count = EncoderCount::new(0);
                spawn_edge_counter(
                    &e.line,
                    "contextrast-encoder",
                    count.counter(),
                    Arc::clone(stop),
                )?;
                log::info!(
                    "reject timing: {} encoder counts after the frame ({})",
                    e.delay_counts,
                    e.line.label()
                );
                let trigger = Trigger::Encoder {
                    source: Box::new(count.clone()),
                    delay_counts: e.delay_counts,
                    min_lead_counts: e.min_lead_counts,
                    poll_us: 1000,
                };
                (Some(count), trigger)
            }
            None => (None, Trigger::Time),
        };
        let scheduler = RejectScheduler::new(pin, clock, cfg.reject.timing(), trigger)?;
        let reject = RejectOutput::spawn(scheduler)?;
        Ok(Inspection {
            cfg,
            source,
            frame_size,
            engine,
            clock,
            reject,
            encoder,
            progress: None,
        })
    }

    /// Keeps `judged` at the count of frames judged so far, for a watcher on another thread.
    pub fn with_progress(mut self, judged: Arc<AtomicU64>) -> Inspection {
        self.progress = Some(judged);
        self
    }

    /// Runs the line until the source ends (or fails: a camera is reopened with backoff, a
    /// replay or the synthetic line just ends), `max_frames` is reached or `stop` is set; frames
    /// already captured are still judged. `hup` (SIGHUP) reloads the config and model; a
    /// changed model file is reloaded too. Then the reject thread, the event log and the image
    /// writer are closed and their counts logged. `Err` when the pipeline itself failed; a
    /// source that failed ends the run with `run.source_error` set.
    pub fn run(
        self,
        service: &Service,
        stop: &AtomicBool,
        hup: &Arc<AtomicBool>,
        max_frames: Option<u64>,
    ) -> Result<InspectSummary> {
        let Inspection {
            cfg,
            source,
            frame_size,
            mut engine,
            clock,
            reject,
            encoder,
            progress,
        } = self;
        let (control_tx, control_rx) = std::sync::mpsc::channel();
        let watcher_stop = Arc::new(AtomicBool::new(false));
        let watcher = spawn_watcher(
            Watch {
                config_path: cfg.path.clone(),
                config: cfg.clone(),
                frame_size,
                poll: Duration::from_secs(1),
                stop: Arc::clone(&watcher_stop),
                hup: Arc::clone(hup),
            },
            control_tx,
        )
        .map_err(|e| Error::thread("starting the model watcher", e))?;
        // A camera that fails is reopened with backoff; a replay or the synthetic line just ends.
        let reopen: Option<Reopen> = (cfg.source.kind == SourceKind::V4l2).then(|| {
            let c = cfg.source.v4l2.clone();
            Box::new(move || Ok(Box::new(V4lSource::open(&c)?) as Box<dyn FrameSource>)) as Reopen
        });
        let opts = PipelineOptions {
            queue: cfg.pipeline.queue,
            overflow: cfg.overflow(),
            max_frames,
            status_every: (cfg.pipeline.status_every_s > 0.0)
                .then(|| Duration::from_secs_f64(cfg.pipeline.status_every_s)),
            encoder,
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
        let mut sink =
            InspectSink::new(service, clock, FaultPins::open(f)?, f.on_blind).with_reject(reject);
        if let Some(log) = &event_log {
            sink = sink.with_events(log.sink(), images);
        }
        service.ready(&format!(
            "inspecting with {}",
            engine.segmenter.info().version
        ));
        let result = pipeline::run(
            source,
            &mut engine,
            &opts,
            stop,
            Hooks {
                reopen,
                control: Some(&control_rx),
                progress: progress.as_deref(),
            },
            &mut sink,
        );
        service.stopping();
        watcher_stop.store(true, Ordering::Relaxed);
        // Pulses already due still fire; then the line is driven inactive.
        let SinkTotals {
            reject,
            tally,
            images,
            ..
        } = sink.finish();
        let _ = watcher.join();
        let events = event_log.map(EventLog::close);
        if let Some(e) = &events {
            log::info!(
                "events: {} written, {} pending, {} write errors, {} dropped",
                e.written,
                e.pending,
                e.write_errors,
                e.dropped
            );
        }
        if let Some(i) = &images {
            log::info!(
                "defect images: {} written, {} shed (queue full), {} shed (write errors), {} deleted by retention",
                i.written,
                i.shed_queue_full,
                i.shed_errors,
                i.deleted
            );
        }
        let run = result?;
        let names = &engine.segmenter.info().class_names;
        let detection = (tally.frames() > 0).then(|| tally.summary(names));
        Ok(InspectSummary {
            run,
            detection,
            reject,
            events,
            images,
        })
    }
}

#[cfg(test)]
#[path = "inspect_tests.rs"]
mod tests;
