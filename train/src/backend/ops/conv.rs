//! Square 2-D convolution, forward and both backward passes.
use super::Memory;
use crate::Result;
use crate::backend::{ConvSpec, Shape};

/// Convolution family (`[n, c, h, w]` tensors, `[c_out, c_in, k, k]` weights).
pub trait ConvOps: Memory {
    /// Returns `y` of shape `spec.out_shape(xs)`.
    fn conv2d_forward(
        &self,
        x: &Self::Buf,
        xs: Shape,
        w: &Self::Buf,
        b: Option<&Self::Buf>,
        spec: &ConvSpec,
    ) -> Result<Self::Buf>;
    /// `dx` of shape `xs` from `dy` of shape `spec.out_shape(xs)`.
    fn conv2d_backward_input(
        &self,
        dy: &Self::Buf,
        w: &Self::Buf,
        xs: Shape,
        spec: &ConvSpec,
    ) -> Result<Self::Buf>;
    /// `dw += ∂L/∂w`, `db += ∂L/∂b`.
    fn conv2d_backward_weight(
        &self,
        x: &Self::Buf,
        xs: Shape,
        dy: &Self::Buf,
        spec: &ConvSpec,
        dw: &mut Self::Buf,
        db: Option<&mut Self::Buf>,
    ) -> Result<()>;
}
