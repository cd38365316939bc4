//! Batch norm: one block per channel reduces over N·H·W (training forward and backward);
//! evaluation is elementwise with the running statistics.
use super::{Cuda, check_len, dim, elems_cfg, per_channel_cfg};
use crate::backend::Shape;
use crate::{Error, Result};
use cudarc::driver::CudaSlice;

type Buf = CudaSlice<f32>;

/// The running statistics the training forward updates.
pub(super) struct Running<'a> {
    pub mean: &'a mut Buf,
    pub var: &'a mut Buf,
}

/// What the training forward kept for the backward pass.
pub(super) struct Saved<'a> {
    pub gamma: &'a Buf,
    pub mean: &'a Buf,
    pub invstd: &'a Buf,
}

/// `(n, c, h·w)` as kernel ints, after checking `x` and each per-channel buffer.
fn sizes(what: &str, x: &Buf, xs: Shape, per_channel: &[(&str, usize)]) -> Result<(i32, i32, i32)> {
    check_len(&format!("{what} x"), x.len(), xs.numel())?;
    for (name, len) in per_channel {
        check_len(&format!("{what} {name}"), *len, xs.c)?;
    }
    dim(&format!("{what} input"), xs.numel())?;
    Ok((dim("n", xs.n)?, dim("c", xs.c)?, dim("h·w", xs.hw())?))
}

impl Cuda {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn bn_forward_train_impl(
        &self,
        x: &Buf,
        xs: Shape,
        gamma: &Buf,
        beta: &Buf,
        running: Running<'_>,
        momentum: f32,
        eps: f32,
    ) -> Result<(Buf, Buf, Buf)> {
        let lens = [
            ("gamma", gamma.len()),
            ("beta", beta.len()),
            ("running_mean", running.mean.len()),
            ("running_var", running.var.len()),
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
            let (rm, rv) = (running.mean, running.var);
            launch!(self, "bn_forward_train", per_channel_cfg(c);
                x, &mut y, gamma, beta, rm, rv, &mut mean, &mut invstd, &n, &c, &hw, &momentum, &eps)?;
        }
        Ok((y, mean, invstd))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn bn_forward_eval_impl(
        &self,
        x: &Buf,
        xs: Shape,
        gamma: &Buf,
        beta: &Buf,
        running_mean: &Buf,
        running_var: &Buf,
        eps: f32,
    ) -> Result<Buf> {
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

    pub(super) fn bn_backward_impl(
        &self,
        dy: &Buf,
        x: &Buf,
        xs: Shape,
        saved: Saved<'_>,
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
            let Saved {
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
