//! Elementwise ops and ReLU: one kernel launch each.
use super::{Cuda, check_len, dim, elems_cfg};
use crate::Result;
use crate::backend::ops::ElementwiseOps;
use cudarc::driver::CudaSlice;

type Buf = CudaSlice<f32>;

impl ElementwiseOps for Cuda {
    fn add(&self, a: &Buf, b: &Buf) -> Result<Buf> {
        check_len("add b", b.len(), a.len())?;
        let n = dim("add length", a.len())?;
        let mut y = self.alloc(a.len())?;
        if n > 0 {
            launch!(self, "add_f32", elems_cfg(a.len()); a, b, &mut y, &n)?;
        }
        Ok(y)
    }

    fn add_assign(&self, acc: &mut Buf, x: &Buf) -> Result<()> {
        check_len("add_assign x", x.len(), acc.len())?;
        let n = dim("add_assign length", acc.len())?;
        if n == 0 {
            return Ok(());
        }
        launch!(self, "add_assign_f32", elems_cfg(x.len()); acc, x, &n)
    }

    fn scale(&self, buf: &mut Buf, s: f32) -> Result<()> {
        let n = dim("scale length", buf.len())?;
        if n == 0 {
            return Ok(());
        }
        launch!(self, "scale_f32", elems_cfg(buf.len()); buf, &s, &n)
    }

    fn relu_forward(&self, x: &Buf) -> Result<Buf> {
        let n = dim("relu length", x.len())?;
        let mut y = self.alloc(x.len())?;
        if n > 0 {
            launch!(self, "relu_forward", elems_cfg(x.len()); x, &mut y, &n)?;
        }
        Ok(y)
    }

    fn relu_backward(&self, dy: &Buf, y: &Buf) -> Result<Buf> {
        check_len("relu_backward y", y.len(), dy.len())?;
        let n = dim("relu length", dy.len())?;
        let mut dx = self.alloc(dy.len())?;
        if n > 0 {
            launch!(self, "relu_backward", elems_cfg(dy.len()); dy, y, &mut dx, &n)?;
        }
        Ok(dx)
    }
}
