//! Batch norm over (N, H, W) per channel. Statistics are reduced per channel in parallel (in
//! f64: a 512×512 batch has millions of values per channel), then the affine map runs in
//! parallel over the `n·c` planes.
use super::{Cpu, check_len, check_shape};
use crate::backend::Shape;
use crate::backend::ops::{BatchNormEval, BatchNormOps, BatchNormSaved, BatchNormTrain};
use crate::{Error, Result};
use rayon::prelude::*;

/// The `hw` values of channel `ch` in each image.
fn planes(x: &[f32], xs: Shape, ch: usize) -> impl Iterator<Item = &[f32]> {
    let hw = xs.hw();
    (0..xs.n).map(move |i| &x[(i * xs.c + ch) * hw..(i * xs.c + ch + 1) * hw])
}

/// `y = x·scale[ch] + shift[ch]` over all planes.
fn affine(x: &[f32], xs: Shape, scale: &[f32], shift: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    if y.is_empty() {
        return y;
    }
    y.par_chunks_mut(xs.hw())
        .zip(x.par_chunks(xs.hw()))
        .enumerate()
        .for_each(|(i, (y, x))| {
            let (a, b) = (scale[i % xs.c], shift[i % xs.c]);
            y.iter_mut().zip(x).for_each(|(y, &x)| *y = x * a + b);
        });
    y
}

/// Checks the per-channel parameter buffers.
fn check_params(op: &str, xs: Shape, params: &[(&str, usize)]) -> Result<()> {
    params
        .iter()
        .try_for_each(|&(what, len)| check_len(op, what, len, xs.c))
}

impl BatchNormOps for Cpu {
    /// Training-mode forward: batch statistics, running-stat update with the unbiased variance
    /// (PyTorch), returns `(y, mean, invstd)`.
    fn batchnorm_forward_train(
        &self,
        x: &Vec<f32>,
        xs: Shape,
        p: BatchNormTrain<'_, Vec<f32>>,
    ) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let BatchNormTrain {
            gamma,
            beta,
            running_mean,
            running_var,
            momentum,
            eps,
        } = p;
        const OP: &str = "batchnorm_forward_train";
        check_shape(OP, "x", x.len(), xs)?;
        let lens = [
            ("gamma", gamma.len()),
            ("beta", beta.len()),
            ("running_mean", running_mean.len()),
            ("running_var", running_var.len()),
        ];
        check_params(OP, xs, &lens)?;
        let m = xs.n * xs.hw();
        if m < 2 {
            return Err(Error::Shape(format!(
                "{OP}: training needs more than one value per channel, input is {xs}"
            )));
        }
        let stats: Vec<(f64, f64)> = (0..xs.c)
            .into_par_iter()
            .map(|ch| {
                let sum: f64 = planes(x, xs, ch).flatten().map(|&v| f64::from(v)).sum();
                let mean = sum / m as f64;
                let sq: f64 = planes(x, xs, ch)
                    .flatten()
                    .map(|&v| (f64::from(v) - mean).powi(2))
                    .sum();
                (mean, sq / m as f64)
            })
            .collect();
        let mean: Vec<f32> = stats.iter().map(|&(mu, _)| mu as f32).collect();
        let invstd: Vec<f32> = stats
            .iter()
            .map(|&(_, var)| (1.0 / (var + f64::from(eps)).sqrt()) as f32)
            .collect();
        let unbias = m as f64 / (m - 1) as f64;
        for (ch, &(mu, var)) in stats.iter().enumerate() {
            let mom = f64::from(momentum);
            running_mean[ch] = ((1.0 - mom) * f64::from(running_mean[ch]) + mom * mu) as f32;
            running_var[ch] =
                ((1.0 - mom) * f64::from(running_var[ch]) + mom * var * unbias) as f32;
        }
        let scale: Vec<f32> = gamma.iter().zip(&invstd).map(|(g, s)| g * s).collect();
        let shift: Vec<f32> = (0..xs.c)
            .map(|ch| beta[ch] - mean[ch] * scale[ch])
            .collect();
        Ok((affine(x, xs, &scale, &shift), mean, invstd))
    }

    /// Eval-mode forward with the running statistics.
    fn batchnorm_forward_eval(
        &self,
        x: &Vec<f32>,
        xs: Shape,
        p: BatchNormEval<'_, Vec<f32>>,
    ) -> Result<Vec<f32>> {
        let BatchNormEval {
            gamma,
            beta,
            running_mean,
            running_var,
            eps,
        } = p;
        const OP: &str = "batchnorm_forward_eval";
        check_shape(OP, "x", x.len(), xs)?;
        let lens = [
            ("gamma", gamma.len()),
            ("beta", beta.len()),
            ("running_mean", running_mean.len()),
            ("running_var", running_var.len()),
        ];
        check_params(OP, xs, &lens)?;
        let scale: Vec<f32> = (0..xs.c)
            .map(|ch| gamma[ch] / (running_var[ch] + eps).sqrt())
            .collect();
        let shift: Vec<f32> = (0..xs.c)
            .map(|ch| beta[ch] - running_mean[ch] * scale[ch])
            .collect();
        Ok(affine(x, xs, &scale, &shift))
    }

    /// Backward of the training forward, with `x̂ = (x − mean)·invstd` and `M = n·h·w`:
    /// `dx = γ·invstd·(dy − Σdy/M − x̂·Σ(dy·x̂)/M)`, `dγ += Σ dy·x̂`, `dβ += Σ dy`.
    fn batchnorm_backward(
        &self,
        dy: &Vec<f32>,
        x: &Vec<f32>,
        xs: Shape,
        saved: BatchNormSaved<'_, Vec<f32>>,
        dgamma: &mut Vec<f32>,
        dbeta: &mut Vec<f32>,
    ) -> Result<Vec<f32>> {
        let BatchNormSaved {
            gamma,
            mean,
            invstd,
        } = saved;
        const OP: &str = "batchnorm_backward";
        check_shape(OP, "dy", dy.len(), xs)?;
        check_shape(OP, "x", x.len(), xs)?;
        let lens = [
            ("gamma", gamma.len()),
            ("mean", mean.len()),
            ("invstd", invstd.len()),
            ("dgamma", dgamma.len()),
            ("dbeta", dbeta.len()),
        ];
        check_params(OP, xs, &lens)?;
        let m = (xs.n * xs.hw()) as f64;
        if m == 0.0 {
            return Ok(Vec::new());
        }
        let sums: Vec<(f64, f64)> = (0..xs.c)
            .into_par_iter()
            .map(|ch| {
                let (mu, is) = (mean[ch], invstd[ch]);
                planes(dy, xs, ch)
                    .zip(planes(x, xs, ch))
                    .fold((0.0, 0.0), |acc, (dy, x)| {
                        dy.iter().zip(x).fold(acc, |(s, sx), (&g, &v)| {
                            (
                                s + f64::from(g),
                                sx + f64::from(g) * f64::from((v - mu) * is),
                            )
                        })
                    })
            })
            .collect();
        for (ch, &(s, sx)) in sums.iter().enumerate() {
            dbeta[ch] += s as f32;
            dgamma[ch] += sx as f32;
        }
        let mut dx = vec![0.0; x.len()];
        let hw = xs.hw();
        dx.par_chunks_mut(hw)
            .zip(dy.par_chunks(hw).zip(x.par_chunks(hw)))
            .enumerate()
            .for_each(|(i, (dx, (dy, x)))| {
                let ch = i % xs.c;
                let (mu, is) = (mean[ch], invstd[ch]);
                let k = gamma[ch] * is;
                let (mean_dy, mean_dyx) = ((sums[ch].0 / m) as f32, (sums[ch].1 / m) as f32);
                for ((d, &g), &v) in dx.iter_mut().zip(dy).zip(x) {
                    *d = k * (g - mean_dy - (v - mu) * is * mean_dyx);
                }
            });
        Ok(dx)
    }
}
