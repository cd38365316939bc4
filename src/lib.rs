//! Contextrast Edge runtime library: frames in, verdicts out (`capture` → `pipeline` →
//! `infer` → `decide` → `line`, `record`). The model format comes from `contextrast-model`; the
//! training engine is re-exported for the synthetic line, retraining, the binary and tests.
#![warn(missing_docs)]

pub use contextrast_train as train;

pub mod capture;
pub mod config;
pub mod decide;
mod error;
pub mod infer;
pub mod line;
pub mod pipeline;
pub mod record;
pub mod retrain;
pub mod sys;

pub use error::{Error, Result};
