//! `contextrast bench`: `infer` and `pipeline` live in their own files. `train`: training step time and achieved GFLOP/s, next to the GEMM peak of
//! the same machine measured in the same run.
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use contextrast_train::backend::cpu::gemm_peak_gflops;
use contextrast_train::backend::cuda::Cuda;
use contextrast_train::backend::{Backend, Cpu, Shape};
use contextrast_train::loss::contrast::ContrastConfig;
use contextrast_train::model::{ModelConfig, contextrast_net, inference_flops};
use contextrast_train::nn::exec::Grads;
use contextrast_train::nn::params::Params;
use contextrast_train::rng::Rng;
use contextrast_train::trainer::{ContrastStep, Sgd, train_step};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Training step of the default model on synthetic tensors.
    Train(TrainBench),
    /// The model alone: tract vs onnxruntime, same file, size and threads.
    Infer(super::bench_infer::InferBench),
    /// The whole runtime on in-memory frames: fps, stage latency, allocations, memory.
    Pipeline(super::bench_pipeline::PipelineBench),
}

#[derive(Args)]
pub struct TrainBench {
    /// cpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Square input side (multiple of 32).
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Timed steps (after 2 warm-up steps).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Loss: ce, ccl (CE + contextual contrastive, random negatives) or contextrast (+ BANE),
    /// with the method's default constants; the difference is the contrastive loss's cost.
    #[arg(long, default_value = "ce")]
    loss: String,
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Serialize)]
struct TrainReport {
    device: String,
    loss: String,
    batch: usize,
    size: usize,
    steps: usize,
    step_ms_median: f64,
    step_ms_min: f64,
    images_per_s: f64,
    /// 3 × forward convolution FLOPs (forward, input gradient, weight gradient).
    gflop_per_step: f64,
    achieved_gflops: f64,
    gemm_peak_gflops_1_thread: Option<f64>,
    gemm_peak_gflops_all_threads: Option<f64>,
    threads: usize,
}

pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Infer(b) => super::bench_infer::run(b),
        BenchCmd::Pipeline(b) => super::bench_pipeline::run(b),
        BenchCmd::Train(b) => {
            if b.size == 0 || b.size % 32 != 0 || b.batch == 0 || b.steps == 0 {
                anyhow::bail!("need --size a multiple of 32, --batch ≥ 1, --steps ≥ 1");
            }
            let report = match b.device.as_str() {
                "cpu" => bench_train(&Cpu, &b)?,
                "cuda" => bench_train(&Cuda::new(0).context("--device cuda")?, &b)?,
                other => anyhow::bail!("--device {other}: expected cpu or cuda"),
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
            if let Some(p) = &b.json {
                contextrast_train::atomic::write_atomic(p, &serde_json::to_vec_pretty(&report)?)?;
            }
            Ok(())
        }
    }
}

fn bench_train<B: Backend>(be: &B, b: &TrainBench) -> Result<TrainReport> {
    let mut contrast = ContrastConfig::default();
    let contrastive = match b.loss.as_str() {
        "ce" => false,
        "ccl" => true,
        "contextrast" => {
            contrast.sampling.bane = true;
            true
        }
        other => anyhow::bail!("--loss {other}: expected ce, ccl or contextrast"),
    };
    if b.loss == "ccl" {
        contrast.sampling.bane = false;
    }
    let classes = 5;
    let graph = contextrast_net(&ModelConfig::default(), classes);
    let mut params = Params::init(be, &graph, 0)?;
    let mut grads = Grads::zeros(be, &params)?;
    let mut vel: Vec<Option<B::Buf>> = Grads::zeros(be, &params)?.values;
    let shape = Shape::new(b.batch, 3, b.size, b.size);
    let mut rng = Rng::new(1);
    let x: Vec<f32> = (0..shape.numel()).map(|_| rng.normal() as f32).collect();
    let y: Vec<u8> = (0..b.batch * b.size * b.size)
        .map(|i| ((i / 37) % classes) as u8)
        .collect();
    let sgd = Sgd {
        lr: 1e-3,
        momentum: 0.9,
        weight_decay: 5e-4,
    };
    let mut times = Vec::new();
    for i in 0..b.steps + 2 {
        let t = Instant::now();
        let (loss, _) = train_step(
            be,
            &graph,
            &mut params,
            &mut grads,
            &mut vel,
            &x,
            &y,
            shape,
            None,
            &sgd,
            contrastive.then_some(ContrastStep {
                cfg: &contrast,
                seed: 1,
                step: i as u64,
            }),
        )?;
        // Downloading the loss synchronises a GPU, as the trainer does every step.
        be.download(&loss)?;
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let gflop = 3.0 * inference_flops(&graph, b.size, b.size)? as f64 * b.batch as f64 / 1e9;
    let threads = rayon::current_num_threads();
    let cpu = b.device == "cpu";
    Ok(TrainReport {
        device: be.name(),
        loss: b.loss.clone(),
        batch: b.batch,
        size: b.size,
        steps: b.steps,
        step_ms_median: median,
        step_ms_min: times[0],
        images_per_s: b.batch as f64 / (median / 1e3),
        gflop_per_step: gflop,
        achieved_gflops: gflop / (median / 1e3),
        gemm_peak_gflops_1_thread: cpu.then(|| gemm_peak_gflops(1024, 1024, 1024, 1)),
        gemm_peak_gflops_all_threads: cpu.then(|| gemm_peak_gflops(1024, 1024, 1024, threads)),
        threads,
    })
}
