//! The whole-network backward pass (executor + CPU ops) against central finite differences.
// Test helpers may unwrap: a panic there is a failed test, not a crash on input.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use contextrast_model::rng::SplitMix64;
use contextrast_train::backend::{Cpu, Shape};
use contextrast_train::model::{NetConfig, contextrast_net};
use contextrast_train::nn::exec::{Grads, Mode, backward, forward};
use contextrast_train::nn::graph::Graph;
use contextrast_train::nn::params::Params;

fn rand_vec(rng: &mut SplitMix64, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.gaussian() as f32).collect()
}

/// L = Σ r_logits·logits + Σ r_k·projection_k, evaluated in f64.
fn objective(
    graph: &Graph,
    params: &mut Params<Cpu>,
    x: &[f32],
    shape: Shape,
    r: &[Vec<f32>],
) -> f64 {
    let acts = forward(&Cpu, graph, params, x.to_vec(), shape, Mode::Train, true).unwrap();
    let outs = std::iter::once(graph.logits).chain(graph.projections);
    outs.zip(r)
        .map(|(id, r)| {
            acts.get(id)
                .unwrap()
                .iter()
                .zip(r)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum::<f64>()
        })
        .sum()
}

#[test]
fn network_gradients_match_finite_differences() {
    check_network(0);
}

/// The high-resolution refinement path (stride-2 and full-resolution concats and convs).
#[test]
fn refine_network_gradients_match_finite_differences() {
    check_network(2);
}

fn check_network(refine: usize) {
    let cfg = NetConfig {
        width: 4,
        decoder: 4,
        proj_dim: 3,
        refine,
    };
    let graph = contextrast_net(&cfg, 3);
    let shape = Shape::new(2, 3, 128, 96);
    let mut rng = SplitMix64::seeded(7);
    let mut params = Params::init(&Cpu, &graph, 1).unwrap();
    // Non-trivial BN affine parameters, so their gradients are exercised too.
    for (spec, v) in params.specs.iter().zip(params.values.iter_mut()) {
        // The refinement path's correction starts at zero; give it weights, else no gradient
        // would reach the path behind it and the check would pass vacuously.
        let zero_init = graph
            .zero_init
            .iter()
            .any(|z| spec.name == format!("{z}.weight"));
        if spec.name.ends_with(".gamma")
            || spec.name.ends_with(".beta")
            || spec.name.ends_with(".bias")
            || zero_init
        {
            for x in v.iter_mut() {
                *x += 0.3 * rng.gaussian() as f32;
            }
        }
    }
    let x = rand_vec(&mut rng, shape.numel());
    let acts = forward(
        &Cpu,
        &graph,
        &mut params,
        x.clone(),
        shape,
        Mode::Train,
        true,
    )
    .unwrap();
    let outs: Vec<usize> = std::iter::once(graph.logits)
        .chain(graph.projections)
        .collect();
    let r: Vec<Vec<f32>> = outs
        .iter()
        .map(|&id| rand_vec(&mut rng, acts.shapes[id].numel()))
        .collect();
    let seeds = outs
        .iter()
        .zip(&r)
        .map(|(&id, r)| (id, r.clone()))
        .collect();
    let mut grads = Grads::zeros(&Cpu, &params).unwrap();
    backward(&Cpu, &graph, &params, &acts, seeds, &mut grads).unwrap();
    drop(acts);

    // Per parameter tensor, the derivative along a random unit direction: summing over the
    // whole tensor averages out f32 rounding and ReLU kinks, which make single-entry finite
    // differences through ten layers of batch norm too noisy to judge.
    let mut checked = 0;
    let mut worst: f64 = 0.0;
    let mut failures = Vec::new();
    for pi in 0..params.specs.len() {
        if !params.specs[pi].trainable() {
            continue;
        }
        let n = params.specs[pi].numel();
        let mut d = rand_vec(&mut rng, n);
        let norm = d.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt() as f32;
        d.iter_mut().for_each(|v| *v /= norm);
        let orig = params.values[pi].clone();
        let h = 1e-3f32;
        params.values[pi] = orig.iter().zip(&d).map(|(p, d)| p + h * d).collect();
        let lp = objective(&graph, &mut params, &x, shape, &r);
        params.values[pi] = orig.iter().zip(&d).map(|(p, d)| p - h * d).collect();
        let lm = objective(&graph, &mut params, &x, shape, &r);
        params.values[pi] = orig;
        let fd = (lp - lm) / (2.0 * h as f64);
        let g = grads.values[pi].as_ref().unwrap();
        let an: f64 = g.iter().zip(&d).map(|(g, d)| *g as f64 * *d as f64).sum();
        let err = (fd - an).abs() / an.abs().max(fd.abs()).max(1.0);
        worst = worst.max(err);
        if err >= 3e-2 {
            failures.push(format!(
                "{}: analytic {an:.5} vs finite difference {fd:.5} (rel err {err:.2e})",
                params.specs[pi].name
            ));
        }
        checked += 1;
    }
    // ReLU kinks crossed by the step leave a few tensors a few per cent off (the finite difference
    // moves around with h while the analytic value stays); a wrong backward is off by far more.
    assert!(
        worst < 0.25,
        "worst relative error {worst:.2e}:\n{}",
        failures.join("\n")
    );
    assert!(
        failures.len() * 5 <= checked,
        "{} of {checked} tensors beyond 3e-2:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 60, "only {checked} entries checked");
    eprintln!(
        "refine {refine}: checked {checked} parameter entries, worst relative error {worst:.2e}"
    );
}
