//! `contextrast inspect`: the line runtime. Frames → model → verdicts, a status line each
//! second, and a summary (also JSON) when the source ends, `--max-frames` is reached, or
//! SIGINT/SIGTERM arrives (frames already captured are still judged). The run itself is
//! `contextrast::pipeline::inspect::Inspection`.
use anyhow::{Context, Result};
use clap::Args;
use contextrast::config::LineConfig;
use contextrast::decide::detection::DetectionSummary;
use contextrast::line::reject::RejectStats;
use contextrast::line::service::Service;
use contextrast::pipeline::RunStats;
use contextrast::pipeline::inspect::Inspection;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

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

pub fn run(a: InspectArgs) -> Result<()> {
    let service = Service::from_env();
    let cfg = LineConfig::load(&a.config)?;
    let stop = Arc::new(AtomicBool::new(false));
    let inspection = Inspection::open(cfg, &stop)?;
    // Installed once the model is loaded: a signal before that still ends the process at once.
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing signal handler")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))
        .context("installing signal handler")?;
    let summary = inspection.run(&service, &stop, &hup, a.max_frames)?;
    print_summary(&summary.run, summary.detection.as_ref(), &summary.reject);
    if let Some(path) = &a.summary_json {
        let json = serde_json::to_vec_pretty(&summary)?;
        contextrast_model::atomic::write_atomic(path, &json)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(e) = &summary.run.source_error {
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
