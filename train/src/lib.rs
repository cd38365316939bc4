//! Contextrast training engine: a `Backend` trait with a CPU reference implementation,
//! ContextrastNet, cross-entropy and (later) the Contextrast loss, synthetic line data,
//! checkpoints, evaluation and ONNX export.
pub mod atomic;
pub mod backend;
pub mod error;
pub mod export;
pub mod meta;
pub mod metrics;
pub mod model;
pub mod nn;
pub mod npy;
pub mod onnx_model;

pub use error::{Error, Result};
