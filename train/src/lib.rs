//! Contextrast training engine: a `Backend` trait with a CPU reference implementation,
//! ContextrastNet, cross-entropy and (later) the Contextrast loss, synthetic line data,
//! checkpoints, evaluation and ONNX export.
pub mod backend;
pub mod data;
pub mod error;
pub mod export;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod nn;
pub mod npy;

pub use error::{Error, Result};
pub mod checkpoint;
pub mod config;
pub mod evaluate;
pub mod trainer;
