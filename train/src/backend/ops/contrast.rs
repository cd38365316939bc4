//! The contrastive loss L_PA as one op.
use super::Memory;
use crate::Result;
use crate::backend::contrast::{self, BackendContrast, ContrastInputs};
use crate::loss::contrast::ContrastConfig;

/// The contrastive loss family; every method has a default.
pub trait ContrastOps: Memory {
    /// L_PA and ∂L_PA/∂z_i (method doc, sections 2–5) on backend buffers: what
    /// [`crate::loss::contrast::contrastive_loss`] computes for `inputs` (see
    /// [`ContrastInputs`]), sampling keyed by `seed` and `step`. The default runs that CPU
    /// reference on the host ([`contrast::contrastive_loss_on_host`]); a backend with its own
    /// kernels overrides it and may leave the report on the device until
    /// [`BackendContrast::report`] is resolved.
    fn contrastive_loss(
        &self,
        inputs: &ContrastInputs<'_, Self>,
        cfg: &ContrastConfig,
        seed: u64,
        step: u64,
    ) -> Result<BackendContrast<Self>> {
        contrast::contrastive_loss_on_host(self, inputs, cfg, seed, step)
    }

    /// Where [`ContrastOps::contrastive_loss`] runs, in words, when the backend has more than
    /// the one way; the trainer records it in each checkpoint's provenance.
    fn contrastive_loss_path(&self) -> Option<String> {
        None
    }
}
