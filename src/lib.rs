//! Contextrast Edge runtime library: frames in, verdicts out. The training engine is
//! re-exported for the binary and for tests.
pub use contextrast_train as train;

pub mod alloc_count;
pub mod capture;
pub mod config;
pub mod decide;
pub mod detection;
mod error;
pub mod events;
pub mod gpio;
pub mod images;
pub mod infer;
pub mod latency;
pub mod malloc_tune;
pub mod pipeline;
pub mod plots;
pub mod reject;
pub mod reload;
pub mod retrain;
pub mod service;

pub use error::{Error, Result};
