//! `contextrast bench infer`: the model alone, on the native engine and on tract against
//! onnxruntime, on the same ONNX file, input size and thread count, all measured in this one
//! run (onnxruntime through scripts/bench_ort.py in the project's venv), reported as ratios.
use anyhow::{Context, Result};
use clap::Args;
use contextrast::infer::native::{Plan, Unsupported, Workers, load_net};
use contextrast_model::onnx_model::OnnxModel;
use contextrast_model::rng::SplitMix64;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
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
    /// Engines to measure, comma separated: native, tract, onnxruntime.
    #[arg(
        long,
        default_value = "native,tract,onnxruntime",
        value_delimiter = ','
    )]
    engines: Vec<String>,
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
    tract_median_ms: Option<f64>,
    tract_min_ms: Option<f64>,
    /// The project's own engine; absent when the model uses ops it does not run.
    native_median_ms: Option<f64>,
    native_min_ms: Option<f64>,
    onnxruntime_median_ms: Option<f64>,
    /// tract / onnxruntime (median): above 1 means tract is slower.
    ratio: Option<f64>,
    /// native / onnxruntime (median).
    native_ratio: Option<f64>,
}

/// Median and minimum in ms of `reps` calls of `f` after `warmup` unmeasured ones.
fn time(warmup: usize, reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<(f64, f64)> {
    let mut times = Vec::new();
    for i in 0..warmup + reps {
        let t0 = Instant::now();
        f()?;
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(median_min(times))
}

fn median_min(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0])
}

pub fn run(b: InferBench) -> Result<()> {
    if b.reps == 0 {
        anyhow::bail!("--reps must be at least 1");
    }
    let want = |e: &str| b.engines.iter().any(|x| x == e);
    if let Some(bad) = b
        .engines
        .iter()
        .find(|e| !["native", "tract", "onnxruntime"].contains(&e.as_str()))
    {
        anyhow::bail!("--engines: unknown engine `{bad}` (native, tract, onnxruntime)");
    }
    let model = if want("tract") {
        Some(OnnxModel::load(&b.model)?)
    } else {
        None
    };
    let native = if want("native") {
        match load_net(&b.model) {
            Ok(net) => Some(Arc::new(net)),
            Err(Unsupported::Ops(m)) => {
                log::warn!("native engine not measured: {m}");
                None
            }
            Err(Unsupported::Broken(e)) => return Err(e.into()),
        }
    } else {
        None
    };
    let python = b.python.clone().unwrap_or_else(|| {
        std::env::var_os("CONTEXTRAST_PYTHON")
            .map_or_else(|| PathBuf::from(".venv/bin/python"), PathBuf::from)
    });
    let have_ort = want("onnxruntime") && python.exists();
    if want("onnxruntime") && !have_ort {
        log::warn!(
            "{} missing: onnxruntime not measured (run scripts/setup-python)",
            python.display()
        );
    }
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = Vec::new();
    for size in &b.size {
        let (h, w) = super::export::parse_size(size)?;
        let mut rng = SplitMix64::seeded(1);
        let x: Vec<f32> = (0..3 * h * w).map(|_| rng.gaussian() as f32).collect();
        for &t in &b.threads {
            let threads = if t == 0 { all } else { t };
            let tract = match &model {
                Some(model) => {
                    let (plan, _) = model.plan(1, h, w)?;
                    let input = Tensor::from_shape(&[1, 3, h, w], &x)?;
                    let exec = if threads > 1 {
                        Executor::multithread_with_name(threads, "bench")
                    } else {
                        Executor::SingleThread
                    };
                    Some(time(b.warmup, b.reps, || {
                        multithread_tract_scope(exec.clone(), || {
                            plan.run(tvec!(input.clone().into()))
                        })?;
                        Ok(())
                    })?)
                }
                None => None,
            };
            let nat = match &native {
                Some(net) => {
                    let mut p =
                        Plan::new(net.clone(), h, w, threads).map_err(anyhow::Error::msg)?;
                    let mut workers = Workers::new(threads).map_err(anyhow::Error::msg)?;
                    workers.reserve(p.scratch_len());
                    p.input_mut().copy_from_slice(&x);
                    Some(time(b.warmup, b.reps, || {
                        p.run(&workers);
                        Ok(())
                    })?)
                }
                None => None,
            };
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
                tract_median_ms: tract.map(|n| n.0),
                tract_min_ms: tract.map(|n| n.1),
                native_median_ms: nat.map(|n| n.0),
                native_min_ms: nat.map(|n| n.1),
                onnxruntime_median_ms: ort,
                ratio: ort.zip(tract).map(|(o, n)| n.0 / o),
                native_ratio: ort.zip(nat).map(|(o, n)| n.0 / o),
            };
            let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1} ms"));
            let x = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}x"));
            println!(
                "{h}x{w} {threads} thread(s): native {} ({} onnxruntime), tract {} ({}), \
                 onnxruntime {}",
                ms(row.native_median_ms),
                x(row.native_ratio),
                ms(row.tract_median_ms),
                x(row.ratio),
                ms(ort),
            );
            rows.push(row);
        }
    }
    if let Some(p) = &b.json {
        contextrast_model::atomic::write_atomic(p, &serde_json::to_vec_pretty(&rows)?)?;
    }
    Ok(())
}
