//! Elementwise arithmetic and ReLU.
use super::Memory;
use crate::Result;

/// Elementwise family; binary ops need equal lengths.
pub trait ElementwiseOps: Memory {
    /// `a + b`.
    fn add(&self, a: &Self::Buf, b: &Self::Buf) -> Result<Self::Buf>;
    /// `acc += x`: gradient accumulation.
    fn add_assign(&self, acc: &mut Self::Buf, x: &Self::Buf) -> Result<()>;
    /// `buf *= s`.
    fn scale(&self, buf: &mut Self::Buf, s: f32) -> Result<()>;
    /// `max(x, 0)`.
    fn relu_forward(&self, x: &Self::Buf) -> Result<Self::Buf>;
    /// `dx = dy · [y > 0]`, from the forward output `y`.
    fn relu_backward(&self, dy: &Self::Buf, y: &Self::Buf) -> Result<Self::Buf>;
}
