//! Bilinear resize with half-pixel centres (PyTorch `align_corners=False`, ONNX `half_pixel`).
//! The two source taps and weights of every output row and column are computed once per call,
//! then planes run in parallel.
use super::Cpu;
use super::check_shape;
use crate::backend::Shape;
use crate::backend::ops::ResizeOps;
use crate::{Error, Result};
use rayon::prelude::*;

/// Source taps of one output coordinate: `v = (1 − l)·src[i0] + l·src[i1]`.
#[derive(Clone, Copy, Debug)]
struct Tap {
    i0: usize,
    i1: usize,
    l: f32,
}

/// Taps for every output index, PyTorch's `area_pixel_compute_source_index` with
/// `align_corners=False`: `src = (dst + ½)·in/out − ½`, clamped at 0; the upper tap stops at the
/// last input index.
fn taps(in_len: usize, out_len: usize) -> Vec<Tap> {
    let scale = in_len as f32 / out_len as f32;
    (0..out_len)
        .map(|d| {
            let src = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src as usize).min(in_len - 1);
            let i1 = (i0 + 1).min(in_len - 1);
            Tap {
                i0,
                i1,
                l: src - i0 as f32,
            }
        })
        .collect()
}

fn check(op: &str, xs: Shape, out_h: usize, out_w: usize) -> Result<()> {
    if (xs.h == 0 || xs.w == 0) && out_h * out_w > 0 {
        return Err(Error::Shape(format!(
            "{op}: cannot resize empty input {xs} to {out_h}×{out_w}"
        )));
    }
    Ok(())
}

fn forward(x: &[f32], xs: Shape, out_h: usize, out_w: usize) -> Result<Vec<f32>> {
    const OP: &str = "resize_bilinear_forward";
    check_shape(OP, "x", x.len(), xs)?;
    check(OP, xs, out_h, out_w)?;
    let mut y = vec![0.0; xs.n * xs.c * out_h * out_w];
    if y.is_empty() {
        return Ok(y);
    }
    let (ty, tx) = (taps(xs.h, out_h), taps(xs.w, out_w));
    y.par_chunks_mut(out_h * out_w)
        .zip(x.par_chunks(xs.hw()))
        .for_each(|(y, x)| {
            for (row, a) in y.chunks_mut(out_w).zip(&ty) {
                let (r0, r1) = (
                    &x[a.i0 * xs.w..(a.i0 + 1) * xs.w],
                    &x[a.i1 * xs.w..(a.i1 + 1) * xs.w],
                );
                for (v, b) in row.iter_mut().zip(&tx) {
                    let top = (1.0 - b.l) * r0[b.i0] + b.l * r0[b.i1];
                    let bottom = (1.0 - b.l) * r1[b.i0] + b.l * r1[b.i1];
                    *v = (1.0 - a.l) * top + a.l * bottom;
                }
            }
        });
    Ok(y)
}

/// The adjoint of [`forward`]: each output gradient goes back to its four taps.
fn backward(dy: &[f32], xs: Shape, out_h: usize, out_w: usize) -> Result<Vec<f32>> {
    const OP: &str = "resize_bilinear_backward";
    check_shape(OP, "dy", dy.len(), Shape::new(xs.n, xs.c, out_h, out_w))?;
    check(OP, xs, out_h, out_w)?;
    let mut dx = vec![0.0; xs.numel()];
    if dx.is_empty() || dy.is_empty() {
        return Ok(dx);
    }
    let (ty, tx) = (taps(xs.h, out_h), taps(xs.w, out_w));
    dx.par_chunks_mut(xs.hw())
        .zip(dy.par_chunks(out_h * out_w))
        .for_each(|(dx, dy)| {
            for (row, a) in dy.chunks(out_w).zip(&ty) {
                for (&g, b) in row.iter().zip(&tx) {
                    let (top, bottom) = ((1.0 - a.l) * g, a.l * g);
                    dx[a.i0 * xs.w + b.i0] += (1.0 - b.l) * top;
                    dx[a.i0 * xs.w + b.i1] += b.l * top;
                    dx[a.i1 * xs.w + b.i0] += (1.0 - b.l) * bottom;
                    dx[a.i1 * xs.w + b.i1] += b.l * bottom;
                }
            }
        });
    Ok(dx)
}

impl ResizeOps for Cpu {
    fn resize_bilinear_forward(
        &self,
        x: &Vec<f32>,
        xs: Shape,
        out_h: usize,
        out_w: usize,
    ) -> Result<Vec<f32>> {
        forward(x, xs, out_h, out_w)
    }
    fn resize_bilinear_backward(
        &self,
        dy: &Vec<f32>,
        xs: Shape,
        out_h: usize,
        out_w: usize,
    ) -> Result<Vec<f32>> {
        backward(dy, xs, out_h, out_w)
    }
}
