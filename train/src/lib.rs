//! Contextrast training engine: the `Backend` op families with a CPU reference and a CUDA
//! backend, ContextrastNet, cross-entropy plus the Contextrast loss with BANE sampling, the
//! synthetic line and CVAT data, checkpoints, evaluation and ONNX export. The model file format
//! itself lives below this crate, in `contextrast-model`, so the runtime can load models without it.
#![warn(missing_docs)]
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
