//! The `device` setting (`auto`, `cpu`, `cuda`) turned into a backend, in one place for the
//! `train` command and on-device retraining.

use super::{Cuda, CudaOptions, cuda_unavailable};
use crate::Result;

/// Where training runs, as `--device` and the retrain config's `device` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The GPU when one can be used, else the CPU with one log line saying why.
    Auto,
    /// Always the CPU reference backend.
    Cpu,
    /// The GPU, or an error saying why it cannot be used.
    Cuda,
}

impl DeviceChoice {
    /// Parses `auto`, `cpu` or `cuda`; `None` for anything else, so the caller names the source.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "auto" => Some(Self::Auto),
            "cpu" => Some(Self::Cpu),
            "cuda" => Some(Self::Cuda),
            _ => None,
        }
    }

    /// Opens the chosen backend: `Some(cuda)` for the GPU, `None` for the CPU. Only `Cuda`
    /// can fail; `Auto` logs why it fell back instead.
    pub fn open(self) -> Result<Option<Cuda>> {
        match self {
            Self::Cpu => Ok(None),
            Self::Cuda => Cuda::new(0, CudaOptions::from_env()).map(Some),
            Self::Auto => {
                if let Some(why) = cuda_unavailable() {
                    log::info!("no CUDA ({why}): training on the CPU");
                    return Ok(None);
                }
                match Cuda::new(0, CudaOptions::from_env()) {
                    Ok(c) => Ok(Some(c)),
                    Err(e) => {
                        log::warn!("CUDA present but unusable ({e}): training on the CPU");
                        Ok(None)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_names_and_nothing_else() {
        assert_eq!(DeviceChoice::parse("auto"), Some(DeviceChoice::Auto));
        assert_eq!(DeviceChoice::parse("cpu"), Some(DeviceChoice::Cpu));
        assert_eq!(DeviceChoice::parse("cuda"), Some(DeviceChoice::Cuda));
        assert_eq!(DeviceChoice::parse("gpu"), None);
        assert_eq!(DeviceChoice::parse("CUDA"), None);
    }

    #[test]
    fn cpu_never_opens_a_gpu() {
        assert!(matches!(DeviceChoice::Cpu.open(), Ok(None)));
    }
}
