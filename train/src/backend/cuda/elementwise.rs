//! Elementwise ops, ReLU and the SGD step: one kernel launch each.
use super::{Cuda, check_len, dim, elems_cfg};
use crate::Result;
use cudarc::driver::CudaSlice;

type Buf = CudaSlice<f32>;

impl Cuda {
    pub(super) fn fill_impl(&self, buf: &mut Buf, value: f32) -> Result<()> {
        let n = dim("fill length", buf.len())?;
        if n == 0 {
            return Ok(());
        }
        launch!(self, "fill_f32", elems_cfg(buf.len()); buf, &value, &n)
    }

    pub(super) fn add_impl(&self, a: &Buf, b: &Buf) -> Result<Buf> {
        check_len("add b", b.len(), a.len())?;
        let n = dim("add length", a.len())?;
        let mut y = self.alloc(a.len())?;
        if n > 0 {
            launch!(self, "add_f32", elems_cfg(a.len()); a, b, &mut y, &n)?;
        }
        Ok(y)
    }

    pub(super) fn add_assign_impl(&self, acc: &mut Buf, x: &Buf) -> Result<()> {
        check_len("add_assign x", x.len(), acc.len())?;
        let n = dim("add_assign length", acc.len())?;
        if n == 0 {
            return Ok(());
        }
        launch!(self, "add_assign_f32", elems_cfg(x.len()); acc, x, &n)
    }

    pub(super) fn scale_impl(&self, buf: &mut Buf, s: f32) -> Result<()> {
        let n = dim("scale length", buf.len())?;
        if n == 0 {
            return Ok(());
        }
        launch!(self, "scale_f32", elems_cfg(buf.len()); buf, &s, &n)
    }

    pub(super) fn relu_forward_impl(&self, x: &Buf) -> Result<Buf> {
        let n = dim("relu length", x.len())?;
        let mut y = self.alloc(x.len())?;
        if n > 0 {
            launch!(self, "relu_forward", elems_cfg(x.len()); x, &mut y, &n)?;
        }
        Ok(y)
    }

    pub(super) fn relu_backward_impl(&self, dy: &Buf, y: &Buf) -> Result<Buf> {
        check_len("relu_backward y", y.len(), dy.len())?;
        let n = dim("relu length", dy.len())?;
        let mut dx = self.alloc(dy.len())?;
        if n > 0 {
            launch!(self, "relu_backward", elems_cfg(dy.len()); dy, y, &mut dx, &n)?;
        }
        Ok(dx)
    }

    pub(super) fn sgd_impl(
        &self,
        param: &mut Buf,
        grad: &Buf,
        velocity: &mut Buf,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
    ) -> Result<()> {
        check_len("sgd grad", grad.len(), param.len())?;
        check_len("sgd velocity", velocity.len(), param.len())?;
        let n = dim("sgd length", param.len())?;
        if n == 0 {
            return Ok(());
        }
        let cfg = elems_cfg(param.len());
        launch!(self, "sgd_step", cfg; param, grad, velocity, &lr, &momentum, &weight_decay, &n)
    }
}
