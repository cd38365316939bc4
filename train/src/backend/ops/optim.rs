//! The optimiser step.
use super::Memory;
use crate::Result;

/// Optimiser family.
pub trait OptimOps: Memory {
    /// SGD with momentum and decoupled-from-nothing weight decay, PyTorch rule:
    /// `g = grad + wd·p; v = μ·v + g; p −= lr·v`.
    fn sgd_step(
        &self,
        param: &mut Self::Buf,
        grad: &Self::Buf,
        velocity: &mut Self::Buf,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
    ) -> Result<()>;
}
