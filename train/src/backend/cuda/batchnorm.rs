//! Batch norm: one block per channel reduces over N·H·W (training forward and backward);
//! evaluation is elementwise with the running statistics.
use super::{Cuda, check_len, dim, elems_cfg, per_channel_cfg};
use crate::backend::Shape;
use crate::backend::ops::{BatchNormEval, BatchNormOps, BatchNormSaved, BatchNormTrain};
use crate::{Error, Result};
use cudarc::driver::CudaSlice;

type Buf = CudaSlice<f32>;

/// `(n, c, h·w)` as kernel ints, after checking `x` and each per-channel buffer.
fn sizes(what: &str, x: &Buf, xs: Shape, per_channel: &[(&str, usize)]) -> Result<(i32, i32, i32)> {
    check_len(&format!("{what} x"), x.len(), xs.numel())?;
    for (name, len) in per_channel {
        check_len(&format!("{what} {name}"), *len, xs.c)?;
    }
    dim(&format!("{what} input"), xs.numel())?;
    Ok((dim("n", xs.n)?, dim("c", xs.c)?, dim("h·w", xs.hw())?))
}

impl BatchNormOps for Cuda {
    fn batchnorm_forward_train(
        &self,
        x: &Buf,
        xs: Shape,
        p: BatchNormTrain<'_, Buf>,
    ) -> Result<(Buf, Buf, Buf)> {
        let BatchNormTrain {
            gamma,
            beta,
            running_mean: rm,
            running_var: rv,
            momentum,
            eps,
        } = p;
        let lens = [
            ("gamma", gamma.len()),
            ("beta", beta.len()),
            ("running_mean", rm.len()),
            ("running_var", rv.len()),
        ];
        let (n, c, hw) = sizes("batchnorm_forward_train", x, xs, &lens)?;
        if xs.c > 0 && xs.n * xs.hw() < 2 {
            // PyTorch refuses this too: the unbiased variance of one value is undefined.
            return Err(Error::Shape(format!(
                "batchnorm_forward_train: {xs} has fewer than 2 values per channel"
            )));
        }
        let mut y = self.alloc(xs.numel())?;
        let mut mean = self.alloc(xs.c)?;
        let mut invstd = self.alloc(xs.c)?;
        if xs.c > 0 {
            launch!(self, "bn_forward_train", per_channel_cfg(c);
                x, &mut y, gamma, beta, rm, rv, &mut mean, &mut invstd, &n, &c, &hw, &momentum, &eps)?;
        }
        Ok((y, mean, invstd))
    }

    fn batchnorm_forward_eval(&self, x: &Buf, xs: Shape, p: BatchNormEval<'_, Buf>) -> Result<Buf> {
        let BatchNormEval {
            gamma,
            beta,
            running_mean,
            running_var,
            eps,
        } = p;
        let lens = [
            ("gamma", gamma.len()),
            ("beta", beta.len()),
            ("running_mean", running_mean.len()),
            ("running_var", running_var.len()),
        ];
        let (n, c, hw) = sizes("batchnorm_forward_eval", x, xs, &lens)?;
        let mut y = self.alloc(xs.numel())?;
        if xs.numel() > 0 {
            launch!(self, "bn_forward_eval", elems_cfg(xs.numel());
                x, &mut y, gamma, beta, running_mean, running_var, &n, &c, &hw, &eps)?;
        }
        Ok(y)
    }

    fn batchnorm_backward(
        &self,
        dy: &Buf,
        x: &Buf,
        xs: Shape,
        saved: BatchNormSaved<'_, Buf>,
        dgamma: &mut Buf,
        dbeta: &mut Buf,
    ) -> Result<Buf> {
        let lens = [
            ("gamma", saved.gamma.len()),
            ("mean", saved.mean.len()),
            ("invstd", saved.invstd.len()),
            ("dgamma", dgamma.len()),
            ("dbeta", dbeta.len()),
        ];
        let (n, c, hw) = sizes("batchnorm_backward", x, xs, &lens)?;
        check_len("batchnorm_backward dy", dy.len(), xs.numel())?;
        let mut dx = self.alloc(xs.numel())?;
        if xs.numel() > 0 {
            let BatchNormSaved {
                gamma,
                mean,
                invstd,
            } = saved;
            launch!(self, "bn_backward", per_channel_cfg(c);
                dy, x, gamma, mean, invstd, &mut dx, dgamma, dbeta, &n, &c, &hw)?;
        }
        Ok(dx)
    }
}
