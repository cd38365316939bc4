//! Contextrast Edge runtime library. The inspection pipeline lands here; the training engine is
//! re-exported for the binary and for tests.
pub use contextrast_train as train;
