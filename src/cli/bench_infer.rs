//! `contextrast bench infer`: the model alone, tract against onnxruntime on the same ONNX file,
//! input size and thread count, both measured in this one run (onnxruntime through
//! scripts/bench_ort.py in the project's venv), reported as a ratio.
use anyhow::{Context, Result};
use clap::Args;
use contextrast_train::onnx_model::OnnxModel;
use contextrast_train::rng::Rng;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;
use tract_linalg::multithread::{Executor, multithread_tract_scope};
use tract_onnx::prelude::*;

#[derive(Args)]
pub struct InferBench {
    #[arg(long, default_value = "models/default.onnx")]
    model: PathBuf,
    /// Input sizes HxW, comma separated.
    #[arg(long, default_value = "512x512,256x256", value_delimiter = ',')]
    size: Vec<String>,
    /// Thread counts, comma separated; 0 = all cores.
    #[arg(long, default_value = "1,0", value_delimiter = ',')]
    threads: Vec<usize>,
    #[arg(long, default_value_t = 15)]
    reps: usize,
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Python with onnxruntime (default: $CONTEXTRAST_PYTHON, else .venv/bin/python).
    #[arg(long)]
    python: Option<PathBuf>,
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Serialize)]
struct InferRow {
    h: usize,
    w: usize,
    threads: usize,
    tract_median_ms: f64,
    tract_min_ms: f64,
    onnxruntime_median_ms: Option<f64>,
    /// tract / onnxruntime (median): above 1 means tract is slower.
    ratio: Option<f64>,
}

fn median_min(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0])
}

pub fn run(b: InferBench) -> Result<()> {
    if b.reps == 0 {
        anyhow::bail!("--reps must be at least 1");
    }
    let model = OnnxModel::load(&b.model)?;
    let python = b.python.clone().unwrap_or_else(|| {
        std::env::var_os("CONTEXTRAST_PYTHON")
            .map_or_else(|| PathBuf::from(".venv/bin/python"), PathBuf::from)
    });
    let have_ort = python.exists();
    if !have_ort {
        log::warn!(
            "{} missing: onnxruntime not measured (run scripts/setup-python)",
            python.display()
        );
    }
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = Vec::new();
    for size in &b.size {
        let (h, w) = super::export::parse_size(size)?;
        let (plan, _) = model.plan(1, h, w)?;
        let mut rng = Rng::new(1);
        let x: Vec<f32> = (0..3 * h * w).map(|_| rng.normal() as f32).collect();
        let input = Tensor::from_shape(&[1, 3, h, w], &x)?;
        for &t in &b.threads {
            let threads = if t == 0 { all } else { t };
            let exec = if threads > 1 {
                Executor::multithread_with_name(threads, "bench")
            } else {
                Executor::SingleThread
            };
            let mut times = Vec::new();
            for i in 0..b.warmup + b.reps {
                let t0 = Instant::now();
                multithread_tract_scope(exec.clone(), || plan.run(tvec!(input.clone().into())))?;
                if i >= b.warmup {
                    times.push(t0.elapsed().as_secs_f64() * 1e3);
                }
            }
            let (med, min) = median_min(times);
            let ort = if have_ort {
                let out = std::process::Command::new(&python)
                    .arg("scripts/bench_ort.py")
                    .arg(&b.model)
                    .args([h, w, threads, b.reps, b.warmup].map(|v| v.to_string()))
                    .output()
                    .context("running scripts/bench_ort.py")?;
                if !out.status.success() {
                    anyhow::bail!(
                        "bench_ort.py failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
                v["median_ms"].as_f64()
            } else {
                None
            };
            let row = InferRow {
                h,
                w,
                threads,
                tract_median_ms: med,
                tract_min_ms: min,
                onnxruntime_median_ms: ort,
                ratio: ort.map(|o| med / o),
            };
            println!(
                "{h}x{w} {threads} thread(s): tract {med:.1} ms, onnxruntime {}, ratio {}",
                ort.map_or("-".into(), |o| format!("{o:.1} ms")),
                row.ratio.map_or("-".into(), |r| format!("{r:.2}"))
            );
            rows.push(row);
        }
    }
    if let Some(p) = &b.json {
        contextrast_train::atomic::write_atomic(p, &serde_json::to_vec_pretty(&rows)?)?;
    }
    Ok(())
}
