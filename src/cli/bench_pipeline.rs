//! `contextrast bench pipeline`: the whole runtime on in-memory frames (no decode, no render),
//! unpaced: sustained frames/s, per-stage latency, heap allocations per frame in steady state
//! (the binary's counting allocator) and resident memory at the end.
use anyhow::Result;
use clap::Args;
use contextrast::capture::Frame;
use contextrast::capture::memory::MemorySource;
use contextrast::config::DecisionToml;
use contextrast::decide::Decider;
use contextrast::decide::Verdict;
use contextrast::infer::Segmentation;
use contextrast::infer::native::load_segmenter;
use contextrast::infer::{EngineKind, ModelConfig};
use contextrast::pipeline::latency::LatencySummary;
use contextrast::pipeline::{self, Hooks, Judge, Overflow, PipelineOptions};
use contextrast::sys::alloc_count::{allocations, resident_mib};
use contextrast_train::data::synth::{Variant, render};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

#[derive(Args)]
pub struct PipelineBench {
    #[arg(long, default_value = "models/default.onnx")]
    model: PathBuf,
    /// Frame size HxW (as every size flag).
    #[arg(long, default_value = "480x640")]
    size: String,
    #[arg(long, default_value_t = 200)]
    frames: u64,
    /// Frames before allocations are counted (plans, pools and caches fill up first).
    #[arg(long, default_value_t = 20)]
    warmup: u64,
    /// Inference threads; 0 = all cores.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Inference engine: auto (native for our models), native or tract.
    #[arg(long, default_value = "auto")]
    engine: String,
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Serialize)]
struct PipelineReport {
    frames: u64,
    engine: String,
    width: u32,
    height: u32,
    threads: usize,
    fps: f64,
    latency_ms: BTreeMap<String, LatencySummary>,
    /// Per-frame work outside the model: preprocess + postprocess + decide (p50 sum).
    outside_model_p50_ms: f64,
    allocations_per_frame: f64,
    allocated_kib_per_frame: f64,
    resident_mib: Option<f64>,
    peak_resident_mib: Option<f64>,
}

pub fn run(b: PipelineBench) -> Result<()> {
    let (h, w) = super::export::parse_size(&b.size)?;
    if b.frames <= b.warmup {
        anyhow::bail!("--frames must exceed --warmup");
    }
    let (w, h) = (w as u32, h as u32);
    let frames: Vec<Vec<u8>> = (0..8)
        .map(|i| render(9001, i, Variant::Standard, w, h).0.into_raw())
        .collect();
    let source = MemorySource::new(w, h, frames, b.frames).map_err(anyhow::Error::msg)?;
    let engine = match b.engine.as_str() {
        "auto" => EngineKind::Auto,
        "native" => EngineKind::Native,
        "tract" => EngineKind::Tract,
        other => anyhow::bail!("--engine: unknown engine `{other}` (auto, native, tract)"),
    };
    let seg = load_segmenter(&ModelConfig {
        path: b.model.clone(),
        threads: b.threads,
        engine,
        ..ModelConfig::default()
    })?;
    let info = seg.info().clone();
    let decision = contextrast::config::LineConfig {
        decision: DecisionToml::default(),
        ..Default::default()
    }
    .decision(&info)?;
    let decider = Decider::new(decision).map_err(anyhow::Error::msg)?;
    let mut engine = Judge {
        segmenter: seg,
        decider,
    };
    let opts = PipelineOptions {
        queue: 4,
        overflow: Overflow::Wait,
        max_frames: None,
        status_every: None,
        encoder: None,
    };
    let stop = AtomicBool::new(false);
    // Counted from the end of the last warm-up frame to the end of the last frame, both in
    // the sink, so the pipeline's start-up and shutdown (threads, the summary) stay out.
    let (mut mark, mut end) = (None, None);
    let (warmup, last) = (b.warmup, b.frames);
    let stats = pipeline::run(
        Box::new(source),
        &mut engine,
        &opts,
        &stop,
        Hooks::default(),
        &mut |f: &Frame, _: &Segmentation, _: &Verdict| {
            if f.seq + 1 == warmup {
                mark = Some(allocations());
            }
            if f.seq + 1 == last {
                end = Some(allocations());
            }
        },
    )?;
    let end = end.unwrap_or_else(allocations);
    let (a0, b0) = mark.unwrap_or_default();
    let counted = (b.frames - b.warmup) as f64;
    let rss = resident_mib();
    let l = &stats.latency_ms;
    let p50 = |k: &str| l.get(k).map_or(0.0, |s| s.p50_ms);
    let report = PipelineReport {
        frames: stats.frames_processed,
        engine: info.engine.to_string(),
        width: w,
        height: h,
        threads: if b.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            b.threads
        },
        fps: stats.fps_out,
        latency_ms: stats.latency_ms.clone(),
        outside_model_p50_ms: p50("preprocess") + p50("postprocess") + p50("decide"),
        allocations_per_frame: (end.0 - a0) as f64 / counted,
        allocated_kib_per_frame: (end.1 - b0) as f64 / counted / 1024.0,
        resident_mib: rss.map(|r| r.0),
        peak_resident_mib: rss.map(|r| r.1),
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(p) = &b.json {
        contextrast_model::atomic::write_atomic(p, &serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}
