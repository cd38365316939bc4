//! Per-pixel L2 normalisation over channels (the projection heads' output).
use super::Memory;
use crate::Result;
use crate::backend::Shape;

/// L2-normalisation family over `[n, c, h, w]` tensors.
pub trait NormalizeOps: Memory {
    /// `z = v / max(‖v‖₂, 1e-12)` for each pixel's channel vector `v`.
    fn l2_normalize_forward(&self, x: &Self::Buf, xs: Shape) -> Result<Self::Buf>;
    /// `dx` from `dy` and the forward input `x`.
    fn l2_normalize_backward(&self, dy: &Self::Buf, x: &Self::Buf, xs: Shape) -> Result<Self::Buf>;
}
