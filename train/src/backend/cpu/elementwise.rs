//! Elementwise ops: add, accumulate, scale, fill, ReLU. Memory-bound, so they split into large
//! chunks (`PAR_MIN`) and stay on one thread for small buffers.
use super::Cpu;
use super::{PAR_MIN, check_len};
use crate::Result;
use crate::backend::ops::ElementwiseOps;
use rayon::prelude::*;

/// `out[i] = f(out[i])` in parallel chunks.
fn map_in_place(buf: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    if buf.len() < PAR_MIN {
        buf.iter_mut().for_each(|v| *v = f(*v));
    } else {
        buf.par_chunks_mut(PAR_MIN)
            .for_each(|c| c.iter_mut().for_each(|v| *v = f(*v)));
    }
}

/// `out[i] = f(out[i], x[i])` in parallel chunks; lengths are checked by the caller.
fn zip_in_place(out: &mut [f32], x: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    if out.len() < PAR_MIN {
        out.iter_mut().zip(x).for_each(|(o, &v)| *o = f(*o, v));
    } else {
        out.par_chunks_mut(PAR_MIN)
            .zip(x.par_chunks(PAR_MIN))
            .for_each(|(o, x)| o.iter_mut().zip(x).for_each(|(o, &v)| *o = f(*o, v)));
    }
}

pub(super) fn fill(buf: &mut [f32], value: f32) {
    map_in_place(buf, |_| value);
}

fn add(a: &[f32], b: &[f32]) -> Result<Vec<f32>> {
    check_len("add", "b", b.len(), a.len())?;
    let mut out = a.to_vec();
    zip_in_place(&mut out, b, |o, v| o + v);
    Ok(out)
}

fn add_assign(acc: &mut [f32], x: &[f32]) -> Result<()> {
    check_len("add_assign", "x", x.len(), acc.len())?;
    zip_in_place(acc, x, |o, v| o + v);
    Ok(())
}

fn scale(buf: &mut [f32], s: f32) {
    map_in_place(buf, |v| v * s);
}

/// NaN passes through (unlike `f32::max`), so a diverging run is seen by the loss check.
fn relu_forward(x: &[f32]) -> Vec<f32> {
    let mut out = x.to_vec();
    map_in_place(&mut out, |v| if v < 0.0 { 0.0 } else { v });
    out
}

/// `dx = dy · [y > 0]`: the mask comes from the output, which is what the graph keeps.
fn relu_backward(dy: &[f32], y: &[f32]) -> Result<Vec<f32>> {
    check_len("relu_backward", "y", y.len(), dy.len())?;
    let mut out = dy.to_vec();
    zip_in_place(&mut out, y, |g, y| if y > 0.0 { g } else { 0.0 });
    Ok(out)
}

impl ElementwiseOps for Cpu {
    fn add(&self, a: &Vec<f32>, b: &Vec<f32>) -> Result<Vec<f32>> {
        add(a, b)
    }
    fn add_assign(&self, acc: &mut Vec<f32>, x: &Vec<f32>) -> Result<()> {
        add_assign(acc, x)
    }
    fn scale(&self, buf: &mut Vec<f32>, s: f32) -> Result<()> {
        scale(buf, s);
        Ok(())
    }
    fn relu_forward(&self, x: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(relu_forward(x))
    }
    fn relu_backward(&self, dy: &Vec<f32>, y: &Vec<f32>) -> Result<Vec<f32>> {
        relu_backward(dy, y)
    }
}
