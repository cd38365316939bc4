//! The backend layer: every op the engine needs, forward and backward, on buffers that live on
//! the backend, grouped in op families ([`ops`]); [`Backend`] is all of them. Nothing above this
//! layer touches raw host data except through `upload`/`download`, so the CUDA backend slots in
//! without changing the model, the losses or the trainer.
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

pub use contextrast_model::{ConvSpec, IGNORE, Shape};

/// Declares [`Backend`] as the sum of the families listed once, and implements it for every
/// type that has them all.
macro_rules! backend_of_families {
    ($(#[$doc:meta])* $($family:ident),+ $(,)?) => {
        $(#[$doc])*
        pub trait Backend: $($family +)+ {}
        impl<T: $($family +)+> Backend for T {}
    };
}

backend_of_families!(
    /// Every op family at once, for generic code (`B: Backend`): the model, the losses, the
    /// trainer. Shapes travel beside the buffers; each op checks the lengths it is given and
    /// returns `Error::Shape` rather than panicking. Ops named `*_backward_*` that take `&mut`
    /// gradient buffers accumulate into them (`+=`), so shared parameters and fan-out just work.
    /// Implemented for whatever implements all the families ([`ops`]).
    Memory,
    ElementwiseOps,
    ConvOps,
    BatchNormOps,
    NormalizeOps,
    ResizeOps,
    LayoutOps,
    LossOps,
    ContrastOps,
    OptimOps,
);

/// A buffer with its shape.
pub struct Tensor<B: Backend> {
    /// The values, `shape.numel()` of them.
    pub buf: B::Buf,
    /// Its `[n, c, h, w]` shape.
    pub shape: Shape,
}

impl<B: Backend> Tensor<B> {
    /// Pairs `buf` with `shape` (no length check).
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
