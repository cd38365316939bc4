//! Bilinear resize (half-pixel centres): forward gathers four taps per output, backward
//! scatters them with atomicAdd (float sums in any order: parity within tolerance).
use super::{Cuda, check_len, dim, elems_cfg};
use crate::backend::Shape;
use crate::backend::ops::ResizeOps;
use crate::{Error, Result};
use cudarc::driver::CudaSlice;

type Buf = CudaSlice<f32>;

/// Kernel ints `(n·c, h, w, out_h, out_w)`; an empty side with a non-empty other is an error.
fn sizes(what: &str, xs: Shape, out_h: usize, out_w: usize) -> Result<[i32; 5]> {
    let ys = xs.with_hw(out_h, out_w);
    if ys.numel() > 0 && xs.numel() == 0 {
        return Err(Error::Shape(format!(
            "{what}: cannot resize the empty {xs} to {out_h}×{out_w}"
        )));
    }
    dim(&format!("{what} input"), xs.numel())?;
    dim(&format!("{what} output"), ys.numel())?;
    Ok([
        dim("n·c", xs.n * xs.c)?,
        dim("h", xs.h)?,
        dim("w", xs.w)?,
        dim("out_h", out_h)?,
        dim("out_w", out_w)?,
    ])
}

impl ResizeOps for Cuda {
    fn resize_bilinear_forward(
        &self,
        x: &Buf,
        xs: Shape,
        out_h: usize,
        out_w: usize,
    ) -> Result<Buf> {
        check_len("resize_bilinear_forward x", x.len(), xs.numel())?;
        let [nc, h, w, oh, ow] = sizes("resize_bilinear_forward", xs, out_h, out_w)?;
        let total = xs.with_hw(out_h, out_w).numel();
        let mut y = self.alloc(total)?;
        if total > 0 {
            launch!(self, "resize_forward", elems_cfg(total); x, &mut y, &nc, &h, &w, &oh, &ow)?;
        }
        Ok(y)
    }

    fn resize_bilinear_backward(
        &self,
        dy: &Buf,
        xs: Shape,
        out_h: usize,
        out_w: usize,
    ) -> Result<Buf> {
        let total = xs.with_hw(out_h, out_w).numel();
        check_len("resize_bilinear_backward dy", dy.len(), total)?;
        let [nc, h, w, oh, ow] = sizes("resize_bilinear_backward", xs, out_h, out_w)?;
        let mut dx = self.alloc(xs.numel())?;
        if total > 0 {
            launch!(self, "resize_backward", elems_cfg(total); dy, &mut dx, &nc, &h, &w, &oh, &ow)?;
        }
        Ok(dx)
    }
}
