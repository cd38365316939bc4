//! Per-pixel L2 normalisation over channels (the projection heads' output). Channel reductions
//! run as whole-plane passes (`acc[p] += v[c][p]` for each c), which vectorise, rather than a
//! strided walk per pixel; images run in parallel.
use super::Cpu;
use super::check_shape;
use crate::Result;
use crate::backend::Shape;
use crate::backend::ops::NormalizeOps;
use rayon::prelude::*;

/// Floor of the norm, as in PyTorch's `F.normalize`.
const MIN_NORM: f32 = 1e-12;

/// `max(‖v‖₂, 1e-12)` of every pixel of one image (`c × hw`).
fn norms(x: &[f32], hw: usize) -> Vec<f32> {
    let mut acc = vec![0.0f32; hw];
    for plane in x.chunks(hw) {
        acc.iter_mut().zip(plane).for_each(|(a, &v)| *a += v * v);
    }
    acc.iter_mut().for_each(|a| *a = a.sqrt().max(MIN_NORM));
    acc
}

fn l2_forward(x: &[f32], xs: Shape) -> Result<Vec<f32>> {
    check_shape("l2_normalize_forward", "x", x.len(), xs)?;
    let mut z = vec![0.0; x.len()];
    let (hw, chw) = (xs.hw(), xs.c * xs.hw());
    if z.is_empty() {
        return Ok(z);
    }
    z.par_chunks_mut(chw)
        .zip(x.par_chunks(chw))
        .for_each(|(z, x)| {
            let d = norms(x, hw);
            for (zp, xp) in z.chunks_mut(hw).zip(x.chunks(hw)) {
                zp.iter_mut()
                    .zip(xp)
                    .zip(&d)
                    .for_each(|((z, &v), &d)| *z = v / d);
            }
        });
    Ok(z)
}

/// With `d = max(‖v‖, ε)` and `z = v/d`: `dx = (dy − z·(z·dy))/d` where the norm exceeds ε
/// (the usual projection), and `dx = dy/ε` below it, where `d` is constant.
fn l2_backward(dy: &[f32], x: &[f32], xs: Shape) -> Result<Vec<f32>> {
    const OP: &str = "l2_normalize_backward";
    check_shape(OP, "dy", dy.len(), xs)?;
    check_shape(OP, "x", x.len(), xs)?;
    let mut dx = vec![0.0; x.len()];
    let (hw, chw) = (xs.hw(), xs.c * xs.hw());
    if dx.is_empty() {
        return Ok(dx);
    }
    dx.par_chunks_mut(chw)
        .zip(x.par_chunks(chw).zip(dy.par_chunks(chw)))
        .for_each(|(dx, (x, dy))| {
            let d = norms(x, hw);
            // dot[p] = z·dy, left at 0 where the norm is clamped.
            let mut dot = vec![0.0f32; hw];
            for (xp, gp) in x.chunks(hw).zip(dy.chunks(hw)) {
                dot.iter_mut()
                    .zip(xp)
                    .zip(gp)
                    .for_each(|((a, &v), &g)| *a += v * g);
            }
            for (a, &d) in dot.iter_mut().zip(&d) {
                *a = if d > MIN_NORM { *a / d } else { 0.0 };
            }
            for ((dxp, xp), gp) in dx.chunks_mut(hw).zip(x.chunks(hw)).zip(dy.chunks(hw)) {
                for (((o, &v), &g), (&d, &t)) in
                    dxp.iter_mut().zip(xp).zip(gp).zip(d.iter().zip(&dot))
                {
                    *o = (g - v / d * t) / d;
                }
            }
        });
    Ok(dx)
}

impl NormalizeOps for Cpu {
    fn l2_normalize_forward(&self, x: &Vec<f32>, xs: Shape) -> Result<Vec<f32>> {
        l2_forward(x, xs)
    }
    fn l2_normalize_backward(&self, dy: &Vec<f32>, x: &Vec<f32>, xs: Shape) -> Result<Vec<f32>> {
        l2_backward(dy, x, xs)
    }
}
