//! SGD with momentum and weight decay, PyTorch's rule (`dampening = 0`, no Nesterov). A zero
//! velocity makes the first step `v = g`, which is what PyTorch's lazily created buffer gives.
use super::Cpu;
use super::{PAR_MIN, check_len};
use crate::Result;
use crate::backend::ops::OptimOps;
use rayon::prelude::*;

/// `g = grad + wd·p; v = μ·v + g; p −= lr·v`, elementwise.
fn step(p: &mut [f32], g: &[f32], v: &mut [f32], lr: f32, momentum: f32, weight_decay: f32) {
    for ((p, &g), v) in p.iter_mut().zip(g).zip(v.iter_mut()) {
        *v = momentum * *v + (g + weight_decay * *p);
        *p -= lr * *v;
    }
}

fn sgd_step(
    param: &mut [f32],
    grad: &[f32],
    velocity: &mut [f32],
    lr: f32,
    momentum: f32,
    weight_decay: f32,
) -> Result<()> {
    check_len("sgd_step", "grad", grad.len(), param.len())?;
    check_len("sgd_step", "velocity", velocity.len(), param.len())?;
    if param.len() < PAR_MIN {
        step(param, grad, velocity, lr, momentum, weight_decay);
    } else {
        param
            .par_chunks_mut(PAR_MIN)
            .zip(grad.par_chunks(PAR_MIN))
            .zip(velocity.par_chunks_mut(PAR_MIN))
            .for_each(|((p, g), v)| step(p, g, v, lr, momentum, weight_decay));
    }
    Ok(())
}

impl OptimOps for Cpu {
    fn sgd_step(
        &self,
        param: &mut Vec<f32>,
        grad: &Vec<f32>,
        velocity: &mut Vec<f32>,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
    ) -> Result<()> {
        sgd_step(param, grad, velocity, lr, momentum, weight_decay)
    }
}
