//! Per-pixel L2 normalisation over channels: one thread per pixel walks the channels.
use super::{Cuda, check_len, dim, elems_cfg};
use crate::Result;
use crate::backend::Shape;
use crate::backend::ops::NormalizeOps;
use cudarc::driver::CudaSlice;

type Buf = CudaSlice<f32>;

fn sizes(what: &str, xs: Shape) -> Result<(i32, i32, i32)> {
    dim(&format!("{what} input"), xs.numel())?;
    Ok((dim("n", xs.n)?, dim("c", xs.c)?, dim("h·w", xs.hw())?))
}

impl NormalizeOps for Cuda {
    fn l2_normalize_forward(&self, x: &Buf, xs: Shape) -> Result<Buf> {
        check_len("l2_normalize_forward x", x.len(), xs.numel())?;
        let (n, c, hw) = sizes("l2_normalize_forward", xs)?;
        let mut z = self.alloc(xs.numel())?;
        if xs.numel() > 0 {
            launch!(self, "l2n_forward", elems_cfg(xs.n * xs.hw()); x, &mut z, &n, &c, &hw)?;
        }
        Ok(z)
    }

    fn l2_normalize_backward(&self, dy: &Buf, x: &Buf, xs: Shape) -> Result<Buf> {
        check_len("l2_normalize_backward x", x.len(), xs.numel())?;
        check_len("l2_normalize_backward dy", dy.len(), xs.numel())?;
        let (n, c, hw) = sizes("l2_normalize_backward", xs)?;
        let mut dx = self.alloc(xs.numel())?;
        if xs.numel() > 0 {
            launch!(self, "l2n_backward", elems_cfg(xs.n * xs.hw()); dy, x, &mut dx, &n, &c, &hw)?;
        }
        Ok(dx)
    }
}
