//! The CUDA backend's runtime switches, read from the environment once, by the caller, in
//! [`CudaOptions::from_env`], and handed to [`Cuda::new`](super::Cuda::new): nothing inside
//! the backend reads the environment.
use super::contrast::{DEFAULT_LOSS_PATH, LossPath, parse_loss_path};
use super::cudnn::{ConvPath, parse_conv_path};
use std::sync::OnceLock;

/// What the CUDA backend can be asked to do differently; [`Default`] is what an unset
/// environment gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CudaOptions {
    /// How convolutions run (`CONTEXTRAST_CUDA_CONV`).
    pub conv: ConvPath,
    /// Where L_PA runs (`CONTEXTRAST_CUDA_LOSS`).
    pub loss: LossPath,
    /// What the allocation pool does with freed memory (`CONTEXTRAST_CUDA_POOL`).
    pub pool: PoolPolicy,
}

/// What the stream-ordered allocation pool does with freed memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PoolPolicy {
    /// Keeps it for the next allocation (release threshold raised to the maximum): a training
    /// step frees and re-allocates the same buffers each time.
    #[default]
    Keep,
    /// The driver's default: freed memory goes back to the device at each sync (`trim`).
    Trim,
}

impl Default for CudaOptions {
    fn default() -> Self {
        CudaOptions {
            conv: ConvPath::Gemm,
            loss: DEFAULT_LOSS_PATH,
            pool: PoolPolicy::Keep,
        }
    }
}

impl CudaOptions {
    /// The options `CONTEXTRAST_CUDA_CONV`, `CONTEXTRAST_CUDA_LOSS` and `CONTEXTRAST_CUDA_POOL`
    /// ask for, the defaults where unset; an unreadable value is warned about and gives the
    /// default. `CONTEXTRAST_CUDA_LOSS` is read, and warned about, once per process.
    pub fn from_env() -> Self {
        CudaOptions {
            conv: conv_from_env(),
            loss: loss_from_env(),
            pool: pool_from_env(),
        }
    }
}

/// `CONTEXTRAST_CUDA_CONV`: im2col + cuBLAS when unset or unreadable.
fn conv_from_env() -> ConvPath {
    match std::env::var("CONTEXTRAST_CUDA_CONV") {
        Err(_) => ConvPath::Gemm,
        Ok(v) => parse_conv_path(&v).unwrap_or_else(|| {
            log::warn!("CONTEXTRAST_CUDA_CONV={v:?} is neither \"cudnn\" nor \"gemm\"; using gemm");
            ConvPath::Gemm
        }),
    }
}

/// `CONTEXTRAST_CUDA_LOSS`, else [`DEFAULT_LOSS_PATH`].
fn loss_from_env() -> LossPath {
    static PATH: OnceLock<LossPath> = OnceLock::new();
    *PATH.get_or_init(|| {
        let env = std::env::var("CONTEXTRAST_CUDA_LOSS").ok();
        match env.as_deref().map(|v| (v, parse_loss_path(v))) {
            None => DEFAULT_LOSS_PATH,
            Some((_, Some(p))) => p,
            Some((v, None)) => {
                log::warn!(
                    "CONTEXTRAST_CUDA_LOSS={v:?} is not \"checked\", \"device\" or \"host\"; using the default"
                );
                DEFAULT_LOSS_PATH
            }
        }
    })
}

/// `CONTEXTRAST_CUDA_POOL=trim` (any case) trims; anything else keeps.
fn pool_from_env() -> PoolPolicy {
    if std::env::var("CONTEXTRAST_CUDA_POOL").is_ok_and(|v| v.eq_ignore_ascii_case("trim")) {
        PoolPolicy::Trim
    } else {
        PoolPolicy::Keep
    }
}
