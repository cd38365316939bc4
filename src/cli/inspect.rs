//! `contextrast inspect`: the line runtime. Frames → model → verdicts, a status line each
//! second, and a summary (also JSON) when the source ends, `--max-frames` is reached, or
//! SIGINT/SIGTERM arrives (frames already captured are still judged).
use anyhow::{Context, Result};
use clap::Args;
use contextrast::capture::Frame;
use contextrast::capture::FrameSource;
use contextrast::capture::replay::ReplaySource;
use contextrast::capture::synthetic::SyntheticSource;
use contextrast::capture::v4l::V4lSource;
use contextrast::config::{LineConfig, SourceKind};
use contextrast::decide::Decider;
use contextrast::decide::Verdict;
use contextrast::detection::{DetectionSummary, DetectionTally};
use contextrast::infer::Segmentation;
use contextrast::infer::Segmenter;
use contextrast::infer::tract::TractSegmenter;
use contextrast::pipeline::{self, Engine, Hooks, PipelineOptions, RunStats};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
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

pub fn run(a: InspectArgs) -> Result<()> {
    let cfg = LineConfig::load(&a.config)?;
    let segmenter = TractSegmenter::load(&cfg.model)?;
    let info = segmenter.info().clone();
    let decider = Decider::new(cfg.decision(&info)?)
        .map_err(|m| anyhow::anyhow!("{}: [decision]: {m}", cfg.path.display()))?;
    let mut engine = Engine {
        segmenter: Box::new(segmenter),
        decider,
    };
    let source = open_source(&cfg)?;
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
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing signal handler")?;
    }
    let opts = PipelineOptions {
        queue: cfg.pipeline.queue,
        overflow: cfg.overflow(),
        max_frames: a.max_frames,
        status_every: (cfg.pipeline.status_every_s > 0.0)
            .then(|| Duration::from_secs_f64(cfg.pipeline.status_every_s)),
    };
    let mut tally = DetectionTally::default();
    let names = info.class_names.clone();
    let delay = cfg.reject.delay_ms;
    let stats = pipeline::run(
        source,
        &mut engine,
        &opts,
        &stop,
        Hooks::default(),
        &mut |frame: &Frame, _: &Segmentation, verdict: &Verdict| {
            if let Some(t) = &frame.truth {
                tally.add(t, verdict);
            }
            if verdict.reject {
                let what: Vec<String> = verdict
                    .defects
                    .iter()
                    .map(|d| {
                        format!(
                            "{} {:.0} px at ({}, {}) p={:.2}",
                            names
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
                    "REJECT frame {} ({}) in {delay} ms: {}",
                    frame.seq,
                    frame.name,
                    what.join("; ")
                );
            }
        },
    )?;
    let detection = (tally.frames() > 0).then(|| tally.summary(&names));
    print_summary(&stats, detection.as_ref());
    if let Some(path) = &a.summary_json {
        let json = serde_json::to_vec_pretty(&Summary {
            run: &stats,
            detection,
        })?;
        contextrast::train::atomic::write_atomic(path, &json)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(e) = &stats.source_error {
        anyhow::bail!("the source failed: {e}");
    }
    Ok(())
}

fn print_summary(s: &RunStats, d: Option<&DetectionSummary>) {
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
