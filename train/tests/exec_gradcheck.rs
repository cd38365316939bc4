//! The whole-network backward pass (executor + CPU ops) against central finite differences.
use contextrast_train::backend::{Backend, Cpu, Shape};
use contextrast_train::model::{ModelConfig, contextrast_net};
use contextrast_train::nn::exec::{Grads, Mode, backward, forward};
use contextrast_train::nn::graph::Graph;
use contextrast_train::nn::params::Params;
use contextrast_train::rng::Rng;

fn rand_vec(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.normal() as f32).collect()
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
        .map(|(id, r)| acts.get(id).unwrap().iter().zip(r).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>())
        .sum()
}

#[test]
fn network_gradients_match_finite_differences() {
    let cfg = ModelConfig { width: 4, decoder: 4, proj_dim: 3 };
    let graph = contextrast_net(&cfg, 3);
    let shape = Shape::new(2, 3, 64, 32);
    let mut rng = Rng::new(7);
    let mut params = Params::init(&Cpu, &graph, 1).unwrap();
    // Non-trivial BN affine parameters, so their gradients are exercised too.
    for (spec, v) in params.specs.iter().zip(params.values.iter_mut()) {
        if spec.name.ends_with(".gamma") || spec.name.ends_with(".beta") || spec.name.ends_with(".bias") {
            for x in v.iter_mut() {
                *x += 0.3 * rng.normal() as f32;
            }
        }
    }
    let x = rand_vec(&mut rng, shape.numel());
    let acts = forward(&Cpu, &graph, &mut params, x.clone(), shape, Mode::Train, true).unwrap();
    let outs: Vec<usize> = std::iter::once(graph.logits).chain(graph.projections).collect();
    let r: Vec<Vec<f32>> = outs.iter().map(|&id| rand_vec(&mut rng, acts.shapes[id].numel())).collect();
    let seeds = outs.iter().zip(&r).map(|(&id, r)| (id, r.clone())).collect();
    let mut grads = Grads::zeros(&Cpu, &params).unwrap();
    backward(&Cpu, &graph, &params, &acts, seeds, &mut grads).unwrap();
    drop(acts);

    let mut checked = 0;
    let mut worst: f64 = 0.0;
    for pi in 0..params.specs.len() {
        if !params.specs[pi].trainable() {
            continue;
        }
        let n = params.specs[pi].numel();
        for t in 0..2 {
            let j = (rng.next_u64() as usize + t) % n;
            let orig = params.values[pi][j];
            let h = 1e-2f32;
            params.values[pi][j] = orig + h;
            let lp = objective(&graph, &mut params, &x, shape, &r);
            params.values[pi][j] = orig - h;
            let lm = objective(&graph, &mut params, &x, shape, &r);
            params.values[pi][j] = orig;
            let fd = (lp - lm) / (2.0 * h as f64);
            let an = grads.values[pi].as_ref().unwrap()[j] as f64;
            let err = (fd - an).abs() / (1.0 + fd.abs().max(an.abs()));
            worst = worst.max(err);
            assert!(
                err < 2e-2,
                "{}[{j}]: analytic {an:.6} vs finite difference {fd:.6} (rel err {err:.2e})",
                params.specs[pi].name
            );
            checked += 1;
        }
    }
    assert!(checked > 80, "only {checked} entries checked");
    eprintln!("checked {checked} parameter entries, worst relative error {worst:.2e}");
}
