//! The SGD step: one kernel launch.
use super::{Cuda, check_len, dim, elems_cfg};
use crate::Result;
use crate::backend::ops::OptimOps;
use cudarc::driver::CudaSlice;

type Buf = CudaSlice<f32>;

impl OptimOps for Cuda {
    fn sgd_step(
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
