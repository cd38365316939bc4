//! End to end on both backends: 20 SGD steps of ContextrastNet (forward, cross-entropy,
//! backward, SGD) from one seed must end at matching losses. Skips without CUDA.
use contextrast_model::rng::SplitMix64;
use contextrast_train::Result;
use contextrast_train::backend::{Backend, Cpu, IGNORE, Shape};
use contextrast_train::model::{NetConfig, contextrast_net};
use contextrast_train::nn::exec::{Grads, Mode, backward, forward};
use contextrast_train::nn::graph::Graph;
use contextrast_train::nn::params::{HostParams, Params};

mod common;

const STEPS: usize = 20;

/// The small ContextrastNet (4 classes) every test here trains, on `[2, 3, 64, 96]` batches.
fn small_net() -> Graph {
    contextrast_net(
        &NetConfig {
            width: 8,
            decoder: 8,
            proj_dim: 8,
            refine: 0,
        },
        4,
    )
}

fn batch(step: usize, shape: Shape, classes: u8) -> (Vec<f32>, Vec<u8>) {
    let mut rng = SplitMix64::seeded(1000 + step as u64);
    let x = (0..shape.numel()).map(|_| rng.gaussian() as f32).collect();
    // Blocky labels so the task is learnable, with some ignored pixels.
    let mut y = Vec::with_capacity(shape.n * shape.hw());
    for n in 0..shape.n {
        for r in 0..shape.h {
            for c in 0..shape.w {
                let v = ((r / 8 + c / 8 + n) % classes as usize) as u8;
                y.push(if (r * 7 + c * 3) % 23 == 0 { IGNORE } else { v });
            }
        }
    }
    (x, y)
}

fn train<B: Backend>(be: &B, init: &HostParams) -> Result<(Vec<f32>, HostParams)> {
    let graph = small_net();
    let mut params = Params::from_host(be, &graph, init)?;
    let mut grads = Grads::zeros(be, &params)?;
    let mut vel: Vec<Option<B::Buf>> = Grads::zeros(be, &params)?.values;
    let shape = Shape::new(2, 3, 64, 96);
    let mut losses = Vec::new();
    for step in 0..STEPS {
        let (x, y) = batch(step, shape, 4);
        let acts = forward(
            be,
            &graph,
            &mut params,
            be.upload(&x)?,
            shape,
            Mode::Train,
            false,
        )?;
        let labels = be.upload_labels(&y)?;
        let ls = acts.shapes[graph.logits];
        let (loss, dl) = be.softmax_cross_entropy(acts.get(graph.logits)?, ls, &labels, None)?;
        grads.clear(be)?;
        backward(
            be,
            &graph,
            &params,
            &acts,
            vec![(graph.logits, dl)],
            &mut grads,
        )?;
        for ((p, g), v) in params.values.iter_mut().zip(&grads.values).zip(&mut vel) {
            if let (Some(g), Some(v)) = (g, v) {
                be.sgd_step(p, g, v, 0.02, 0.9, 5e-4)?;
            }
        }
        losses.push(be.download(&loss)?[0]);
    }
    Ok((losses, params.to_host(be)?))
}

#[test]
fn twenty_training_steps_match_between_cpu_and_cuda() -> Result<()> {
    let Some(cuda) = common::gpu("20 training steps CPU vs CUDA") else {
        return Ok(());
    };
    let graph = small_net();
    let init = Params::init(&Cpu, &graph, 3)?.to_host(&Cpu)?;
    let (cpu_losses, cpu_params) = train(&Cpu, &init)?;
    let (gpu_losses, gpu_params) = train(&cuda, &init)?;
    println!("step  cpu loss   cuda loss");
    for (i, (a, b)) in cpu_losses.iter().zip(&gpu_losses).enumerate() {
        println!("{:>4}  {a:.6}  {b:.6}", i + 1);
    }
    assert!(
        cpu_losses[STEPS - 1] < cpu_losses[0],
        "the loss did not go down: {cpu_losses:?}"
    );
    for (i, (a, b)) in cpu_losses.iter().zip(&gpu_losses).enumerate() {
        assert!(
            (a - b).abs() <= 1e-3 * a.abs().max(1.0),
            "step {}: cpu {a} vs cuda {b}",
            i + 1
        );
    }
    let mut worst = 0f32;
    for (name, a) in &cpu_params {
        let b = &gpu_params[name];
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
        let d = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale;
        worst = worst.max(d);
    }
    println!(
        "worst parameter difference after {STEPS} steps, relative to the tensor's max: {worst:.2e}"
    );
    assert!(worst < 1e-2, "parameters diverged: {worst}");
    Ok(())
}

/// `steps` of `trainer::train_step` with the contrastive loss (BANE on, from step 0): CE loss and
/// L_PA per step.
fn train_contrast<B: Backend>(be: &B, init: &HostParams, steps: usize) -> Result<Vec<(f32, f64)>> {
    use contextrast_train::loss::contrast::ContrastConfig;
    use contextrast_train::trainer::{ContrastStep, Sgd, train_step};
    let graph = small_net();
    let mut params = Params::from_host(be, &graph, init)?;
    let mut grads = Grads::zeros(be, &params)?;
    let mut vel: Vec<Option<B::Buf>> = Grads::zeros(be, &params)?.values;
    let shape = Shape::new(2, 3, 64, 96);
    let mut cfg = ContrastConfig::default();
    cfg.sampling.max_pos = 64;
    cfg.sampling.max_neg = 128;
    let sgd = Sgd {
        lr: 0.02,
        momentum: 0.9,
        weight_decay: 5e-4,
    };
    let mut out = Vec::new();
    for step in 0..steps {
        let (x, y) = batch(step, shape, 4);
        let contrast = Some(ContrastStep {
            cfg: &cfg,
            seed: 5,
            step: step as u64,
        });
        let (loss, c) = train_step(
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
            contrast,
        )?;
        let l_pa = c.map_or(f64::NAN, |c| c.l_pa);
        out.push((be.download(&loss)?[0], l_pa));
    }
    Ok(out)
}

/// The contrastive training step on both backends. On CUDA it takes the path
/// `CONTEXTRAST_CUDA_LOSS` selects (by default the kernels, checked against the host reference
/// on the first step, which must then have kept them; `device`; `host`).
#[test]
fn contrastive_training_steps_match_between_cpu_and_cuda() -> Result<()> {
    let Some(cuda) = common::gpu("10 contrastive training steps CPU vs CUDA") else {
        return Ok(());
    };
    println!("CUDA contrastive loss path: {:?}", cuda.loss_path());
    let graph = small_net();
    let init = Params::init(&Cpu, &graph, 4)?.to_host(&Cpu)?;
    let cpu = train_contrast(&Cpu, &init, 10)?;
    let gpu = train_contrast(&cuda, &init, 10)?;
    println!("L_PA on CUDA: {}", cuda.loss_label());
    common::assert_check_kept_the_kernels(&cuda, "10 contrastive training steps");
    println!("step  cpu CE     cuda CE    cpu L_PA   cuda L_PA");
    for (i, ((a, la), (b, lb))) in cpu.iter().zip(&gpu).enumerate() {
        println!("{:>4}  {a:.6}  {b:.6}  {la:.6}  {lb:.6}", i + 1);
    }
    for (i, ((a, la), (b, lb))) in cpu.iter().zip(&gpu).enumerate() {
        assert!(
            (a - b).abs() <= 1e-3 * a.abs().max(1.0),
            "step {}: CE cpu {a} vs cuda {b}",
            i + 1
        );
        assert!(
            la.is_finite() && (la - lb).abs() <= 1e-3 * la.abs().max(1.0),
            "step {}: L_PA cpu {la} vs cuda {lb}",
            i + 1
        );
    }
    Ok(())
}
