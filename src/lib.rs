//! Contextrast Edge runtime library: frames in, verdicts out. The training engine is
//! re-exported for the binary and for tests.
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
