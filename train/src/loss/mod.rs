//! The Contextrast loss's sampling side (method doc, sections 3–4): exact EDT, hash-keyed
//! selection and BANE hard negatives. CPU reference for the CUDA kernels.
pub mod bane;
pub mod contrast;
pub mod edt;
pub mod sampling;
pub mod tally;

#[cfg(test)]
mod bane_tests;
#[cfg(test)]
mod contrast_tests;
#[cfg(test)]
mod edt_scipy_tests;
#[cfg(test)]
mod edt_tests;
#[cfg(test)]
mod sampling_tests;
#[cfg(test)]
mod test_util;
