//! Bilinear resize and its adjoint.
use super::Memory;
use crate::Result;
use crate::backend::Shape;

/// Resize family over `[n, c, h, w]` tensors.
pub trait ResizeOps: Memory {
    /// Bilinear resize, half-pixel centres (PyTorch `align_corners=False`, ONNX `half_pixel`;
    /// source coordinates below 0 clamp to 0). Output `[n, c, out_h, out_w]`.
    fn resize_bilinear_forward(
        &self,
        x: &Self::Buf,
        xs: Shape,
        out_h: usize,
        out_w: usize,
    ) -> Result<Self::Buf>;
    /// `dx` of shape `xs` from `dy` of shape `[n, c, out_h, out_w]`.
    fn resize_bilinear_backward(
        &self,
        dy: &Self::Buf,
        xs: Shape,
        out_h: usize,
        out_w: usize,
    ) -> Result<Self::Buf>;
}
