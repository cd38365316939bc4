//! CUDA backend: cudarc's driver API on one stream, our NVRTC-compiled kernels
//! (`kernels/*.cu`) and cuBLAS for the convolution GEMMs (or cuDNN's convolutions, opt-in:
//! `cudnn.rs`). Every op only enqueues work; the host waits only in `download*`, so a training
//! step runs without round trips.
//!
//! cudarc loads libcuda, libnvrtc and libcublas at run time and panics when one is missing,
//! so [`Cuda::new`] and [`cuda_unavailable`] check for them first and report an error instead.
use crate::backend::ops::Memory as _;
use crate::{Error, Result};
use cudarc::cublas::CudaBlas;
use cudarc::driver::result::mem_pool;
use cudarc::driver::sys::{CUmemPool_attribute, CUmemoryPool};
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, LaunchConfig};
use std::sync::{Arc, OnceLock};

/// Launches a kernel by name with the given arguments (references to buffers and to scalars
/// bound to locals), mapping a driver error to `Error::Backend`.
macro_rules! launch {
    ($cuda:expr, $name:literal, $cfg:expr; $($arg:expr),+ $(,)?) => {{
        use cudarc::driver::PushKernelArg as _;
        let cfg: cudarc::driver::LaunchConfig = $cfg;
        let func = $cuda.kernels.get($name)?;
        let mut builder = $cuda.stream.launch_builder(func);
        $(builder.arg($arg);)+
        // SAFETY: the arguments follow the kernel's signature in kernels/*.cu in order and
        // type, and the caller checked every buffer against the sizes it passes.
        unsafe { builder.launch(cfg) }
            .map(|_| ())
            .map_err(|e| $crate::backend::cuda::driver_err($name, e))
    }};
}

mod batchnorm;
mod choice;
pub mod contrast;
mod contrast_check;
mod conv;
pub mod cudnn;
mod elementwise;
mod kernels;
mod layout;
mod loss;
mod memory;
mod normalize;
mod optim;
mod options;
mod resize;

pub use choice::DeviceChoice;
pub use kernels::{compile_all, nvrtc_archs, nvrtc_version};
pub use options::{CudaOptions, PoolPolicy};

/// Threads per block for every kernel; reductions need a multiple of 32.
const BLOCK: u32 = 256;

/// The CUDA backend on one device. Buffers are `CudaSlice`s on the context's default stream.
pub struct Cuda {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    kernels: kernels::Kernels,
    arch: String,
    name: String,
    /// cuDNN, where the options asked for it (`CONTEXTRAST_CUDA_CONV=cudnn`) and it opened.
    dnn: Option<cudnn::Dnn>,
    /// What it was asked for at [`Cuda::new`].
    options: CudaOptions,
    /// Where L_PA runs after the first step's check ([`contrast::LossPath::Checked`]).
    loss_verdict: OnceLock<contrast_check::Verdict>,
}

/// Device memory for benchmarks ([`Cuda::memory_stats`]), in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryStats {
    /// Peak bytes allocated from the stream-ordered pool since the last reset (buffers only);
    /// `None` when the device allocates without a pool.
    pub pool_used_peak_bytes: Option<u64>,
    /// Peak bytes the pool held from the device since the last reset (allocated plus cached).
    pub pool_reserved_peak_bytes: Option<u64>,
    /// Total minus free now: every allocation on the device, the CUDA context included.
    pub device_used_bytes: u64,
    /// The device's total memory.
    pub device_total_bytes: u64,
}

/// Which of the libraries cudarc needs cannot be loaded, if any.
fn missing_library() -> Option<&'static str> {
    // SAFETY: these only try to open the libraries by their candidate names.
    let (driver, nvrtc, cublas) = unsafe {
        (
            cudarc::driver::sys::is_culib_present(),
            cudarc::nvrtc::sys::is_culib_present(),
            cudarc::cublas::sys::is_culib_present(),
        )
    };
    if !driver {
        Some("libcuda (the NVIDIA driver) is not installed or not on the library path")
    } else if !nvrtc {
        Some("libnvrtc is not on the library path (CUDA toolkit or nvidia-cuda-nvrtc-cu12)")
    } else if !cublas {
        Some("libcublas is not on the library path (CUDA toolkit or nvidia-cublas-cu12)")
    } else {
        None
    }
}

/// Why no CUDA device can be used (a library missing, no device, the driver failing), or
/// `None` when one can. Never panics, so callers can say why and pick the CPU backend instead.
pub fn cuda_unavailable() -> Option<String> {
    if let Some(missing) = missing_library() {
        return Some(missing.to_string());
    }
    match std::panic::catch_unwind(CudaContext::device_count) {
        Ok(Ok(n)) if n > 0 => None,
        Ok(Ok(_)) => Some("the CUDA driver loads but reports no device".into()),
        Ok(Err(e)) if e.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_NO_DEVICE => {
            Some("the CUDA driver loads but reports no device".into())
        }
        Ok(Err(e)) => Some(format!("the CUDA driver loads but fails to start ({e})")),
        Err(_) => Some("the CUDA driver panicked while counting devices".into()),
    }
}

/// Whether a CUDA device is usable: the libraries load and at least one device exists.
pub fn cuda_available() -> bool {
    cuda_unavailable().is_none()
}

/// What `contextrast doctor` reports of the device the backend opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `cuda:N (device name)`.
    pub name: String,
    /// `(major, minor)`, e.g. `(9, 0)` for an H100.
    pub compute_capability: (i32, i32),
    /// The `compute_XY` the kernels were compiled for.
    pub arch: String,
    /// The driver's CUDA version, e.g. `(12, 6)`.
    pub driver_version: (i32, i32),
    /// The device's total memory, in bytes.
    pub total_bytes: u64,
    /// Its free memory when [`Cuda::info`] was called, in bytes.
    pub free_bytes: u64,
    /// How convolutions run: `im2col + cuBLAS` or `cuDNN 9.x.y`.
    pub conv: String,
}

impl Cuda {
    /// Opens device `ordinal`, compiles (or loads cached) kernels for its architecture and
    /// creates the cuBLAS handle; the rest as `options` ask ([`CudaOptions::from_env`] reads
    /// them from the environment). cuDNN that cannot be used is logged, once, with the reason,
    /// and convolutions stay on im2col + cuBLAS. Errors name what is missing rather than
    /// panicking.
    pub fn new(ordinal: usize, options: CudaOptions) -> Result<Cuda> {
        if let Some(missing) = missing_library() {
            return Err(backend_err(&format!("cuda:{ordinal}"), missing));
        }
        let ctx = std::panic::catch_unwind(|| CudaContext::new(ordinal))
            .map_err(|_| backend_err(&format!("cuda:{ordinal}"), "the CUDA driver panicked"))?
            .map_err(|e| driver_err(&format!("opening device {ordinal}"), e))?;
        // SAFETY: everything runs on the one default stream, so the per-buffer events that
        // synchronise several streams are not needed; no buffer exists yet.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| driver_err("reading the compute capability", e))?;
        let arch = kernels::pick_arch(major, minor)?;
        let kernels = kernels::Kernels::load(&ctx, &arch)?;
        let blas = CudaBlas::new(stream.clone()).map_err(|e| backend_err("cuBLAS init", e))?;
        let device = ctx
            .name()
            .map_err(|e| driver_err("reading the device name", e))?;
        let name = format!("cuda:{ordinal} ({device})");
        let dnn = match options.conv {
            cudnn::ConvPath::Gemm => None,
            cudnn::ConvPath::Cudnn => match cudnn::Dnn::open(&stream) {
                Ok(d) => {
                    log::info!("CUDA convolutions: cuDNN {}", d.version());
                    Some(d)
                }
                Err(why) => {
                    log::warn!(
                        "cuDNN was asked for (CONTEXTRAST_CUDA_CONV=cudnn) but {why}: \
                         convolutions stay on im2col + cuBLAS"
                    );
                    None
                }
            },
        };
        let cuda = Cuda {
            ctx,
            stream,
            blas,
            kernels,
            arch,
            name,
            dnn,
            options,
            loss_verdict: OnceLock::new(),
        };
        // Only a speed matter: a driver that refuses it still trains, with a warning.
        if let Err(e) = cuda.keep_freed_memory() {
            log::warn!("CUDA memory pool left at the driver's default: {e}");
        }
        Ok(cuda)
    }

    /// Lets the allocation pool keep freed memory instead of returning it to the device at every
    /// synchronisation (the pool's default release threshold is 0): a training step frees and
    /// re-allocates the same buffers each time, and the trainer syncs every step, so without
    /// this each step would map its memory afresh (PyTorch's caching allocator keeps it too).
    /// [`PoolPolicy::Trim`] (`CONTEXTRAST_CUDA_POOL=trim`) keeps the driver's default, for
    /// comparison.
    fn keep_freed_memory(&self) -> Result<()> {
        if self.options.pool == PoolPolicy::Trim {
            log::info!("CUDA memory pool: freed memory goes back to the device at each sync");
            return Ok(());
        }
        let Some(pool) = self.alloc_pool()? else {
            return Ok(());
        };
        let mut keep_all: u64 = u64::MAX;
        let attr = CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD;
        // SAFETY: `pool` is the device's live pool; the release threshold is a cuuint64_t (u64)
        // and `keep_all` outlives the call.
        unsafe { mem_pool::set_attribute(pool, attr, (&raw mut keep_all).cast()) }
            .map_err(|e| driver_err("setting the memory pool's release threshold", e))
    }

    /// The `compute_XY` architecture the kernels were compiled for.
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// How convolutions run on this backend (cuDNN only where asked for and usable).
    pub fn conv_path(&self) -> cudnn::ConvPath {
        match self.dnn {
            Some(_) => cudnn::ConvPath::Cudnn,
            None => cudnn::ConvPath::Gemm,
        }
    }

    /// [`Cuda::conv_path`] in words: `im2col + cuBLAS` or `cuDNN 9.x.y`.
    pub fn conv_label(&self) -> String {
        match &self.dnn {
            Some(d) => format!("cuDNN {}", d.version()),
            None => "im2col + cuBLAS".into(),
        }
    }

    /// The device, its driver and its memory now.
    pub fn info(&self) -> Result<DeviceInfo> {
        let compute_capability = self
            .ctx
            .compute_capability()
            .map_err(|e| driver_err("reading the compute capability", e))?;
        let driver_version = driver_version()?;
        let (free, total) = self
            .ctx
            .mem_get_info()
            .map_err(|e| driver_err("reading the device's free memory", e))?;
        Ok(DeviceInfo {
            name: self.name.clone(),
            compute_capability,
            arch: self.arch.clone(),
            driver_version,
            total_bytes: total as u64,
            free_bytes: free as u64,
            conv: self.conv_label(),
        })
    }

    /// Starts a new peak for [`Cuda::memory_stats`]: the pool's high-water marks drop to what
    /// is in use now (after the queued work, so pending frees have landed). A no-op without
    /// stream-ordered allocation.
    pub fn reset_memory_peak(&self) -> Result<()> {
        self.synchronize()?;
        let Some(pool) = self.alloc_pool()? else {
            return Ok(());
        };
        for attr in [
            CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
            CUmemPool_attribute::CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH,
        ] {
            // The driver accepts only 0 for the high-water marks, and resets them to the current
            // values (CUDA programming guide, stream-ordered allocator, usage statistics).
            let mut zero: u64 = 0;
            // SAFETY: `pool` is the device's live pool; both attributes are cuuint64_t (u64) and
            // `zero` outlives the call.
            unsafe { mem_pool::set_attribute(pool, attr, (&raw mut zero).cast()) }
                .map_err(|e| driver_err(&format!("resetting the memory pool's {attr:?}"), e))?;
        }
        Ok(())
    }

    /// Peak pool memory since [`Cuda::reset_memory_peak`] (or since the pool was created), and
    /// the device's used and total memory now. The pool peaks count what cudarc allocated, like
    /// PyTorch's `max_memory_allocated`/`max_memory_reserved`; the device figure also holds the
    /// CUDA context, the kernels and cuBLAS's workspace, and any other process's memory.
    pub fn memory_stats(&self) -> Result<MemoryStats> {
        self.synchronize()?;
        let (pool_used_peak_bytes, pool_reserved_peak_bytes) = match self.alloc_pool()? {
            Some(pool) => {
                let get = |attr: CUmemPool_attribute| {
                    let mut v: u64 = 0;
                    // SAFETY: `pool` is the device's live pool; the attribute is a cuuint64_t
                    // (u64) and `v` outlives the call.
                    unsafe { mem_pool::get_attribute(pool, attr, (&raw mut v).cast()) }
                        .map(|()| v)
                        .map_err(|e| driver_err(&format!("reading the memory pool's {attr:?}"), e))
                };
                (
                    Some(get(CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH)?),
                    Some(get(CUmemPool_attribute::CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH)?),
                )
            }
            None => (None, None),
        };
        let (free, total) = self
            .ctx
            .mem_get_info()
            .map_err(|e| driver_err("reading the device's free memory", e))?;
        Ok(MemoryStats {
            pool_used_peak_bytes,
            pool_reserved_peak_bytes,
            device_used_bytes: total.saturating_sub(free) as u64,
            device_total_bytes: total as u64,
        })
    }

    /// The pool `cuMemAllocAsync` draws from: the device's current pool (its default pool, as
    /// nothing here replaces it). `None` when cudarc allocates with `cuMemAlloc` instead.
    fn alloc_pool(&self) -> Result<Option<CUmemoryPool>> {
        if !self.ctx.has_async_alloc() {
            return Ok(None);
        }
        self.ctx
            .bind_to_thread()
            .map_err(|e| driver_err("binding the context", e))?;
        // SAFETY: `cu_device` is the device this context was opened on (by `cuDeviceGet`); the
        // pool handle is only read from, never destroyed.
        unsafe { cudarc::driver::result::device::get_mem_pool(self.ctx.cu_device()) }
            .map(Some)
            .map_err(|e| driver_err("getting the device's memory pool", e))
    }

    fn alloc(&self, len: usize) -> Result<CudaSlice<f32>> {
        self.stream
            .alloc_zeros::<f32>(len)
            .map_err(|e| driver_err(&format!("allocating {len} floats"), e))
    }
}

/// An `Error::Backend` for this backend.
pub(crate) fn backend_err(what: &str, msg: impl std::fmt::Display) -> Error {
    Error::Backend {
        backend: "cuda".into(),
        msg: format!("{what}: {msg}"),
    }
}

/// The CUDA version the driver supports, `(major, minor)`; needs the driver library loaded (a
/// context exists).
pub(crate) fn driver_version() -> Result<(i32, i32)> {
    let mut version = 0;
    // SAFETY: writes one int; callers hold a context, so the driver library is loaded.
    unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut version) }
        .result()
        .map_err(|e| driver_err("reading the driver version", e))?;
    Ok((version / 1000, version % 1000 / 10))
}

/// A driver error while doing `what`.
pub(crate) fn driver_err(what: &str, e: cudarc::driver::DriverError) -> Error {
    backend_err(what, e)
}

/// `Error::Shape` unless a buffer holds exactly the values its shape needs.
fn check_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::Shape(format!(
            "{what}: buffer holds {got} values, its shape needs {want}"
        )))
    }
}

/// A size as the kernels' `int`; larger tensors are refused rather than overflowing.
fn dim(what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| {
        Error::Shape(format!(
            "{what} = {v} exceeds the CUDA kernels' 32-bit range"
        ))
    })
}

/// A grid-stride launch over `n` items (`n` > 0).
fn elems_cfg(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, 1 << 16) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per channel, for the per-channel reductions.
fn per_channel_cfg(c: i32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (c.max(1) as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dim_refuses_sizes_beyond_i32() {
        assert_eq!(dim("n", 7).ok(), Some(7));
        assert!(matches!(dim("n", 1 << 31), Err(Error::Shape(m)) if m.contains("n = 2147483648")));
    }

    #[test]
    fn elems_cfg_covers_small_and_caps_large() {
        assert_eq!(elems_cfg(1).grid_dim.0, 1);
        assert_eq!(elems_cfg(257).grid_dim.0, 2);
        assert_eq!(elems_cfg(usize::MAX / 2).grid_dim.0, 1 << 16);
    }

    #[test]
    fn check_len_names_both_sizes() {
        assert!(check_len("x", 4, 4).is_ok());
        let e = check_len("conv x", 3, 4)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("conv x") && e.contains('3') && e.contains('4'),
            "{e}"
        );
    }

    #[test]
    fn available_never_panics_and_new_agrees() {
        // Without a GPU both say no, with a GPU both say yes; neither may panic.
        let available = cuda_available();
        match Cuda::new(0, CudaOptions::from_env()) {
            Ok(_) => assert!(available),
            Err(e) => {
                assert!(!available, "cuda_available but Cuda::new failed: {e}");
                assert!(matches!(e, Error::Backend { .. }), "{e}");
            }
        }
    }
}
