//! Softmax cross-entropy and argmax. The loss stays on the device: per-pixel terms, a one-block
//! reduction to `Σ w·ℓ / Σ w` and `1 / Σ w`, then the gradient is scaled by that device
//! scalar, so no value crosses to the host inside the op.
use super::{Cuda, check_len, dim, driver_err, elems_cfg};
use crate::backend::Shape;
use crate::backend::ops::LossOps;
use crate::{Error, Result};
use cudarc::driver::{CudaSlice, LaunchConfig};

type Buf = CudaSlice<f32>;

/// Threads of the single reduction block.
const REDUCE_THREADS: u32 = 1024;

impl LossOps for Cuda {
    fn softmax_cross_entropy(
        &self,
        logits: &Buf,
        shape: Shape,
        labels: &CudaSlice<u8>,
        class_weights: Option<&Buf>,
    ) -> Result<(Buf, Buf)> {
        if shape.c == 0 {
            return Err(Error::Shape(format!(
                "softmax_cross_entropy: {shape} has no classes"
            )));
        }
        check_len("softmax_cross_entropy logits", logits.len(), shape.numel())?;
        let pixels = shape.n * shape.hw();
        check_len("softmax_cross_entropy labels", labels.len(), pixels)?;
        if let Some(w) = class_weights {
            check_len("softmax_cross_entropy class_weights", w.len(), shape.c)?;
        }
        dim("softmax_cross_entropy logits", shape.numel())?;
        let (n, c, hw, p) = (
            dim("n", shape.n)?,
            dim("c", shape.c)?,
            dim("h·w", shape.hw())?,
            dim("pixels", pixels)?,
        );
        let mut grad = self.alloc(shape.numel())?;
        let mut pix_loss = self.alloc(pixels)?;
        let mut pix_w = self.alloc(pixels)?;
        let mut loss = self.alloc(1)?;
        let mut inv_w = self.alloc(1)?;
        if pixels > 0 {
            // Without weights the kernel never reads the pointer; logits stand in for it.
            let (weights, has_weights) = match class_weights {
                Some(w) => (w, 1i32),
                None => (logits, 0i32),
            };
            launch!(self, "ce_pixel", elems_cfg(pixels);
                logits, labels, weights, &has_weights, &mut grad, &mut pix_loss, &mut pix_w, &n, &c, &hw)?;
        }
        let one_block = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (REDUCE_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(self, "ce_reduce", one_block; &pix_loss, &pix_w, &p, &mut loss, &mut inv_w)?;
        let total = dim("softmax_cross_entropy logits", shape.numel())?;
        if total > 0 {
            launch!(self, "scale_by_scalar", elems_cfg(shape.numel()); &mut grad, &inv_w, &total)?;
        }
        Ok((loss, grad))
    }

    fn argmax_channels(&self, logits: &Buf, shape: Shape) -> Result<CudaSlice<u8>> {
        if shape.c == 0 || shape.c > 256 {
            return Err(Error::Shape(format!(
                "argmax_channels: {shape} needs 1..=256 channels for u8 class ids"
            )));
        }
        check_len("argmax_channels logits", logits.len(), shape.numel())?;
        dim("argmax_channels logits", shape.numel())?;
        let pixels = shape.n * shape.hw();
        let (n, c, hw) = (
            dim("n", shape.n)?,
            dim("c", shape.c)?,
            dim("h·w", shape.hw())?,
        );
        let mut out = self
            .stream
            .alloc_zeros::<u8>(pixels)
            .map_err(|e| driver_err(&format!("allocating {pixels} labels"), e))?;
        if pixels > 0 {
            launch!(self, "argmax_channels", elems_cfg(pixels); logits, &mut out, &n, &c, &hw)?;
        }
        Ok(out)
    }
}
