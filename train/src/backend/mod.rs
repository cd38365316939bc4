//! The backend layer: every op the engine needs, forward and backward, on buffers that live on
//! the backend, grouped in op families ([`ops`]); [`Backend`] is all of them. Nothing above this
//! layer touches raw host data except through `upload`/`download`, so the CUDA backend slots in
//! without changing the model, the losses or the trainer.
use serde::{Deserialize, Serialize};

pub mod contrast;
pub mod cpu;
pub mod cuda;
pub mod ops;
pub use contrast::{BackendContrast, ContrastInputs, ContrastReport, PendingReport, ScaleBuf};
pub use cpu::Cpu;
pub use ops::{
    BatchNormOps, ContrastOps, ConvOps, ElementwiseOps, LayoutOps, LossOps, Memory, NormalizeOps,
    OptimOps, ResizeOps,
};

/// An NCHW tensor shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub const fn new(n: usize, c: usize, h: usize, w: usize) -> Self {
        Shape { n, c, h, w }
    }
    pub const fn numel(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    pub const fn hw(&self) -> usize {
        self.h * self.w
    }
    /// The same shape with another channel count.
    pub const fn with_c(&self, c: usize) -> Self {
        Shape { c, ..*self }
    }
    /// The same shape with another spatial size.
    pub const fn with_hw(&self, h: usize, w: usize) -> Self {
        Shape { h, w, ..*self }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {}, {}, {}]", self.n, self.c, self.h, self.w)
    }
}

/// A square 2-D convolution: weights `[c_out, c_in, k, k]`, optional bias `[c_out]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConvSpec {
    pub c_in: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvSpec {
    /// Output spatial size for an input of `h`×`w` (PyTorch/ONNX floor rule).
    pub const fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        (
            (h + 2 * self.pad - self.k) / self.stride + 1,
            (w + 2 * self.pad - self.k) / self.stride + 1,
        )
    }
    /// Output shape for input shape `x`.
    pub const fn out_shape(&self, x: Shape) -> Shape {
        let (h, w) = self.out_hw(x.h, x.w);
        Shape::new(x.n, self.c_out, h, w)
    }
    pub const fn weight_len(&self) -> usize {
        self.c_out * self.c_in * self.k * self.k
    }
    /// Multiply-accumulates of one forward pass for input `x`, times two (FLOPs).
    pub const fn flops(&self, x: Shape) -> u64 {
        let o = self.out_shape(x);
        2 * (o.numel() * self.c_in * self.k * self.k) as u64
    }
}

/// Label value that every loss and metric skips.
pub const IGNORE: u8 = 255;

/// Every op family at once, for generic code (`B: Backend`): the model, the losses, the
/// trainer. Shapes travel beside the buffers; each op checks the lengths it is given and
/// returns `Error::Shape` rather than panicking. Ops named `*_backward_*` that take `&mut`
/// gradient buffers accumulate into them (`+=`), so shared parameters and fan-out just work.
/// Implemented for whatever implements all the families ([`ops`]).
pub trait Backend:
    Memory
    + ElementwiseOps
    + ConvOps
    + BatchNormOps
    + NormalizeOps
    + ResizeOps
    + LayoutOps
    + LossOps
    + ContrastOps
    + OptimOps
{
}

impl<T> Backend for T where
    T: Memory
        + ElementwiseOps
        + ConvOps
        + BatchNormOps
        + NormalizeOps
        + ResizeOps
        + LayoutOps
        + LossOps
        + ContrastOps
        + OptimOps
{
}

/// A buffer with its shape.
pub struct Tensor<B: Backend> {
    pub buf: B::Buf,
    pub shape: Shape,
}

impl<B: Backend> Tensor<B> {
    pub fn new(buf: B::Buf, shape: Shape) -> Self {
        Tensor { buf, shape }
    }
}

/// Poly learning-rate schedule of the paper: `lr · (1 − step/total)^power`.
pub fn poly_lr(base: f32, step: u64, total: u64, power: f32) -> f32 {
    if total == 0 {
        return base;
    }
    let frac = (step.min(total) as f32) / (total as f32);
    base * (1.0 - frac).max(0.0).powf(power)
}
