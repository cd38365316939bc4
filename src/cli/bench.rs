//! `contextrast bench`: `infer` and `pipeline` live in their own files. `train`: training step
//! time and achieved GFLOP/s, next to the GEMM peak of the same machine measured in the same run.
//! With `--loss ccl|contextrast` it also times the contrastive loss (+ BANE) alone, on one train-
//! mode forward's projections, to say what share of the step it costs. Memory: on CUDA the
//! stream-ordered pool's peaks from just before the parameters exist (PyTorch's
//! `max_memory_allocated`/`max_memory_reserved` after `reset_peak_memory_stats`) and the device's
//! used memory at the end; on the CPU the process's peak resident set.
//!
//! Every timed op is followed by [`Backend::synchronize`]: a GPU only enqueues work, so without
//! it the clock would measure the launches.
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use contextrast::sys::alloc_count::resident_mib;
use contextrast_model::rng::SplitMix64;
use contextrast_train::backend::cpu::gemm_peak_gflops;
use contextrast_train::backend::cuda::{Cuda, CudaOptions};
use contextrast_train::backend::{Backend, ContrastInputs, Cpu, Shape};
use contextrast_train::loss::contrast::ContrastConfig;
use contextrast_train::model::{NetConfig, contextrast_net, inference_flops};
use contextrast_train::nn::exec::{Grads, Mode, forward};
use contextrast_train::nn::graph::Graph;
use contextrast_train::nn::params::Params;
use contextrast_train::trainer::{ContrastStep, Sgd, projection_scales, train_step};
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
    /// The whole line for a million frames with model swaps and SIGHUP reloads: memory,
    /// descriptors, threads and disk sampled, their slopes reported.
    Soak(super::bench_soak::SoakBench),
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
    /// How the host's allocator ran (`contextrast::sys::malloc_tune`): training commands tune glibc.
    malloc: String,
    /// CUDA: how convolutions ran (`im2col + cuBLAS`, or `cuDNN 9.x.y` with
    /// `CONTEXTRAST_CUDA_CONV=cudnn`).
    #[serde(skip_serializing_if = "Option::is_none")]
    conv: Option<String>,
    /// CUDA with `ccl` or `contextrast`: where L_PA ran (device or host reference) and, on the
    /// default checked path, what the first step's comparison found.
    #[serde(skip_serializing_if = "Option::is_none")]
    l_pa: Option<String>,
    /// `Backend::contrastive_loss` alone (L_PA and its gradients, BANE with `contextrast`), same
    /// inputs and sampling keys as the steps; `ccl` and `contextrast` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    loss_ms_median: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    loss_ms_min: Option<f64>,
    /// `loss_ms_median / step_ms_median`.
    #[serde(skip_serializing_if = "Option::is_none")]
    loss_share_of_step: Option<f64>,
    /// CUDA: peak of the memory pool's allocated bytes over the steps, counted from just before
    /// the parameters were created (parameters, gradients, velocities, activations, scratch).
    #[serde(skip_serializing_if = "Option::is_none")]
    gpu_peak_allocated_mib: Option<f64>,
    /// CUDA: peak of what the pool held from the device over the steps (allocated + cached).
    #[serde(skip_serializing_if = "Option::is_none")]
    gpu_peak_reserved_mib: Option<f64>,
    /// CUDA: device total − free at the end, so also the CUDA context, the kernels, cuBLAS's
    /// workspace (and any other process on the device).
    #[serde(skip_serializing_if = "Option::is_none")]
    gpu_device_used_mib: Option<f64>,
    /// CUDA: peak pool allocation while timing the loss alone, counted from its start: what was
    /// live then (parameters, gradients, velocities, the one forward's activations, labels and
    /// predictions) plus the loss's own buffers (its gradients, and its scratch on the device
    /// path).
    #[serde(skip_serializing_if = "Option::is_none")]
    gpu_loss_peak_allocated_mib: Option<f64>,
    /// CPU: the process's peak resident set (VmHWM) after the timed phases, in MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_resident_mib: Option<f64>,
}

/// The loss-alone phase's figures.
struct LossTiming {
    median_ms: f64,
    min_ms: f64,
    gpu_peak_mib: Option<f64>,
}

const MIB: f64 = 1024.0 * 1024.0;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

/// Median and minimum of timings (`times` not empty: `--steps` ≥ 1).
fn median_min(mut times: Vec<f64>) -> (f64, f64) {
    times.sort_by(f64::total_cmp);
    (
        times.get(times.len() / 2).copied().unwrap_or(f64::NAN),
        times.first().copied().unwrap_or(f64::NAN),
    )
}

pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Infer(b) => super::bench_infer::run(b),
        BenchCmd::Pipeline(b) => super::bench_pipeline::run(b),
        BenchCmd::Soak(b) => super::bench_soak::run(b),
        BenchCmd::Train(b) => {
            if b.size == 0 || b.size % 32 != 0 || b.batch == 0 || b.steps == 0 {
                anyhow::bail!("need --size a multiple of 32, --batch ≥ 1, --steps ≥ 1");
            }
            let report = match b.device.as_str() {
                "cpu" => bench_train(&Cpu, None, &b)?,
                "cuda" => {
                    let cuda = Cuda::new(0, CudaOptions::from_env()).context("--device cuda")?;
                    bench_train(&cuda, Some(&cuda), &b)?
                }
                other => anyhow::bail!("--device {other}: expected cpu or cuda"),
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
            if let Some(p) = &b.json {
                contextrast_model::atomic::write_atomic(p, &serde_json::to_vec_pretty(&report)?)?;
            }
            Ok(())
        }
    }
}

/// The benchmark on backend `be`; `gpu` is the same backend when it is CUDA, for its memory
/// statistics (the only backend-specific part).
fn bench_train<B: Backend>(be: &B, gpu: Option<&Cuda>, b: &TrainBench) -> Result<TrainReport> {
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
    let graph = contextrast_net(&NetConfig::default(), classes);
    if let Some(cuda) = gpu {
        cuda.reset_memory_peak()?;
    }
    let mut params = Params::init(be, &graph, 0)?;
    let mut grads = Grads::zeros(be, &params)?;
    let mut vel: Vec<Option<B::Buf>> = Grads::zeros(be, &params)?.values;
    let shape = Shape::new(b.batch, 3, b.size, b.size);
    let mut rng = SplitMix64::seeded(1);
    let x: Vec<f32> = (0..shape.numel()).map(|_| rng.gaussian() as f32).collect();
    let y: Vec<u8> = (0..b.batch * b.size * b.size)
        .map(|i| ((i / 37) % classes) as u8)
        .collect();
    let sgd = Sgd {
        lr: 1e-3,
        momentum: 0.9,
        weight_decay: 5e-4,
    };
    // The loss's sampling is keyed by (seed, step): the loss-alone phase reuses both.
    let seed = 1;
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
                seed,
                step: i as u64,
            }),
        )?;
        // Downloading the loss, as the trainer does every step, also syncs a GPU; the explicit
        // sync keeps the timing right whatever `download` does.
        be.download(&loss)?;
        be.synchronize()?;
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let (median, min) = median_min(times);
    let step_mem = gpu.map(Cuda::memory_stats).transpose()?;

    let loss = if contrastive {
        Some(time_loss(
            be,
            gpu,
            &graph,
            &mut params,
            &x,
            &y,
            shape,
            &contrast,
            seed,
            b.steps,
        )?)
    } else {
        None
    };
    let device_mem = gpu.map(Cuda::memory_stats).transpose()?;
    // Read before the GEMM peak below, whose matrices are not the training's.
    let peak_resident_mib = if gpu.is_none() {
        resident_mib().map(|(_, peak)| peak)
    } else {
        None
    };

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
        step_ms_min: min,
        images_per_s: b.batch as f64 / (median / 1e3),
        gflop_per_step: gflop,
        achieved_gflops: gflop / (median / 1e3),
        gemm_peak_gflops_1_thread: cpu.then(|| gemm_peak_gflops(1024, 1024, 1024, 1)),
        gemm_peak_gflops_all_threads: cpu.then(|| gemm_peak_gflops(1024, 1024, 1024, threads)),
        threads,
        malloc: contextrast::sys::malloc_tune::tuning()
            .map_or_else(|| "the allocator's defaults".into(), |t| t.to_string()),
        conv: gpu.map(Cuda::conv_label),
        l_pa: gpu.filter(|_| contrastive).map(Cuda::loss_label),
        loss_ms_median: loss.as_ref().map(|l| l.median_ms),
        loss_ms_min: loss.as_ref().map(|l| l.min_ms),
        loss_share_of_step: loss.as_ref().map(|l| l.median_ms / median),
        gpu_peak_allocated_mib: step_mem.and_then(|m| m.pool_used_peak_bytes).map(mib),
        gpu_peak_reserved_mib: step_mem.and_then(|m| m.pool_reserved_peak_bytes).map(mib),
        gpu_device_used_mib: device_mem.map(|m| mib(m.device_used_bytes)),
        gpu_loss_peak_allocated_mib: loss.and_then(|l| l.gpu_peak_mib),
        peak_resident_mib,
    })
}

/// Times `Backend::contrastive_loss` alone: one train-mode forward with the projection heads
/// (as `train_step` runs it), its argmax as the predictions, then `steps` timed calls after 2
/// warm-ups, each synchronised, with the step loop's sampling keys (step `i` for call `i`).
#[allow(clippy::too_many_arguments)]
fn time_loss<B: Backend>(
    be: &B,
    gpu: Option<&Cuda>,
    graph: &Graph,
    params: &mut Params<B>,
    x: &[f32],
    y: &[u8],
    shape: Shape,
    cfg: &ContrastConfig,
    seed: u64,
    steps: usize,
) -> Result<LossTiming> {
    let labels = be.upload_labels(y)?;
    let acts = forward(be, graph, params, be.upload(x)?, shape, Mode::Train, true)?;
    let logits = acts.shapes[graph.logits];
    let pred = be.argmax_channels(acts.get(graph.logits)?, logits)?;
    let scales = projection_scales(graph, &acts, shape)?;
    let inputs = ContrastInputs {
        scales: &scales,
        labels: &labels,
        pred: &pred,
        classes: logits.c,
        full_h: shape.h,
        full_w: shape.w,
    };
    if let Some(cuda) = gpu {
        cuda.reset_memory_peak()?;
    }
    let mut times = Vec::new();
    for i in 0..steps + 2 {
        let t = Instant::now();
        let out = be
            .contrastive_loss(&inputs, cfg, seed, i as u64)?
            .resolve(be)?;
        be.synchronize()?;
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        // Its gradients are freed here, outside the timing, as `train_step` frees them later.
        drop(out);
    }
    let (median_ms, min_ms) = median_min(times);
    let gpu_peak_mib = match gpu {
        Some(cuda) => cuda.memory_stats()?.pool_used_peak_bytes.map(mib),
        None => None,
    };
    Ok(LossTiming {
        median_ms,
        min_ms,
        gpu_peak_mib,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(loss: &str) -> TrainBench {
        TrainBench {
            device: "cpu".into(),
            batch: 1,
            size: 64,
            steps: 1,
            loss: loss.into(),
            json: None,
        }
    }

    fn positive(name: &str, v: Option<f64>) {
        match v {
            Some(v) => assert!(v.is_finite() && v > 0.0, "{name} = {v}"),
            None => panic!("{name} is missing"),
        }
    }

    /// The loss-alone figures come with a contrastive loss and only then; no timing is compared.
    #[test]
    fn cpu_bench_reports_the_loss_alone_only_with_a_contrastive_loss() {
        let r = bench_train(&Cpu, None, &tiny("contextrast")).unwrap();
        positive("step_ms_median", Some(r.step_ms_median));
        positive("loss_ms_median", r.loss_ms_median);
        positive("loss_ms_min", r.loss_ms_min);
        positive("loss_share_of_step", r.loss_share_of_step);
        if std::path::Path::new("/proc/self/status").exists() {
            positive("peak_resident_mib", r.peak_resident_mib);
        }
        assert!(r.gpu_peak_allocated_mib.is_none() && r.gpu_device_used_mib.is_none());
        let json = serde_json::to_value(&r).unwrap();
        assert!(json.get("loss_ms_median").is_some());
        assert!(json.get("gpu_peak_allocated_mib").is_none());

        let r = bench_train(&Cpu, None, &tiny("ce")).unwrap();
        positive("step_ms_median", Some(r.step_ms_median));
        assert!(r.loss_ms_median.is_none() && r.loss_ms_min.is_none());
        assert!(r.loss_share_of_step.is_none());
        let json = serde_json::to_value(&r).unwrap();
        for key in ["loss_ms_median", "loss_ms_min", "loss_share_of_step"] {
            assert!(json.get(key).is_none(), "{key} present with --loss ce");
        }
        // The fields other scripts read are all still there.
        for key in [
            "device",
            "loss",
            "step_ms_median",
            "step_ms_min",
            "images_per_s",
            "gflop_per_step",
            "achieved_gflops",
            "gemm_peak_gflops_1_thread",
            "gemm_peak_gflops_all_threads",
            "threads",
            "malloc",
        ] {
            assert!(json.get(key).is_some(), "{key} missing");
        }
    }
}
