//! Channel concatenation and its inverse.
use super::Memory;
use crate::Result;
use crate::backend::Shape;

/// Channel layout family over `[n, c, h, w]` tensors.
pub trait LayoutOps: Memory {
    /// Concatenates along channels; all parts share n, h, w.
    fn concat_channels(&self, parts: &[(&Self::Buf, Shape)]) -> Result<Self::Buf>;
    /// The inverse of `concat_channels`: splits `dy` into parts with the given shapes.
    fn split_channels(&self, dy: &Self::Buf, shapes: &[Shape]) -> Result<Vec<Self::Buf>>;
}
