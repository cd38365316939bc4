//! CPU reference backend: plain `Vec`s, rayon for threads, `gemm` for the matrix products.
//! Every op checks its buffer lengths first and returns `Error::Shape` instead of panicking;
//! each op family ([`crate::backend::ops`]) is implemented in its own file.
use super::Shape;
use crate::{Error, Result};

mod batchnorm;
mod conv;
mod elementwise;
mod layout;
mod loss;
mod matmul;
mod memory;
mod normalize;
mod optim;
mod peak;
mod resize;

#[cfg(test)]
mod tests;

pub use peak::gemm_peak_gflops;

/// The CPU backend. Threads come from rayon's global pool (size it with `RAYON_NUM_THREADS` or
/// `rayon::ThreadPoolBuilder::build_global`).
#[derive(Clone, Debug, Default)]
pub struct Cpu;

/// Fails with `Error::Shape` unless `buf` has exactly `want` elements; `op` and `what` name the
/// call and the argument so the message says which tensor was wrong.
pub(super) fn check_len(op: &str, what: &str, have: usize, want: usize) -> Result<()> {
    if have == want {
        Ok(())
    } else {
        Err(Error::Shape(format!(
            "{op}: `{what}` has {have} elements, expected {want}"
        )))
    }
}

/// Like [`check_len`] for an NCHW tensor, naming the shape in the message.
pub(super) fn check_shape(op: &str, what: &str, have: usize, shape: Shape) -> Result<()> {
    if have == shape.numel() {
        Ok(())
    } else {
        Err(Error::Shape(format!(
            "{op}: `{what}` has {have} elements, expected {} for shape {shape}",
            shape.numel()
        )))
    }
}

/// Elementwise ops below this length run on the calling thread: spawning costs more.
pub(super) const PAR_MIN: usize = 1 << 14;
