//! NCHW shapes and the convolution geometry both the trainer and the runtime lay out the same way.
use serde::{Deserialize, Serialize};

/// An NCHW tensor shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape {
    /// Batch size.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl Shape {
    /// A shape from its four sizes.
    pub const fn new(n: usize, c: usize, h: usize, w: usize) -> Self {
        Shape { n, c, h, w }
    }
    /// Number of elements.
    pub const fn numel(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    /// Pixels per channel plane.
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
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel side.
    pub k: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on every side.
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
    /// Number of weights (`c_out·c_in·k·k`).
    pub const fn weight_len(&self) -> usize {
        self.c_out * self.c_in * self.k * self.k
    }
    /// Multiply-accumulates of one forward pass for input `x`, times two (FLOPs).
    pub const fn flops(&self, x: Shape) -> u64 {
        let o = self.out_shape(x);
        2 * (o.numel() * self.c_in * self.k * self.k) as u64
    }
}
