//! The model format shared by the trainer and the inspection runtime: what a model file holds
//! besides its weights ([`meta`]), reading and checking ONNX files ([`onnx_model`]), tensor
//! shapes and convolution geometry ([`shape`], [`im2col`]), the constants both sides must agree
//! on, one atomic file write and one RNG. It depends on no training code, so the runtime can
//! load, check and run a model without linking the trainer.
// The crate is the contract between trainer and runtime: every public item says what it means.
#![warn(missing_docs)]
pub mod argmax;
pub mod atomic;
pub mod error;
pub mod im2col;
pub mod meta;
pub mod onnx_model;
pub mod rng;
pub mod shape;
pub mod testing;

pub use error::{Error, Result};
pub use shape::{ConvSpec, Shape};

/// Label value that every loss and metric skips: unlabelled pixels, never a positive or a
/// negative.
pub const IGNORE: u8 = 255;

/// Batch-norm epsilon used in training (PyTorch's default); folding batch norm into the
/// exported convolutions must use the same one.
pub const BN_EPS: f32 = 1e-5;
