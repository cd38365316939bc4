//! Our CUDA C kernels: compiled by NVRTC for the device's architecture at first use, cached as
//! PTX on disk (keyed by source hash, architecture and NVRTC version) so later starts skip the
//! compile, then loaded into the context as one module per source file.
use super::{backend_err, driver_err};
use crate::{Error, Result};
use contextrast_model::atomic::write_atomic_unsynced;
use cudarc::driver::sys::CUresult;
use cudarc::driver::{CudaContext, CudaFunction, DriverError};
use cudarc::nvrtc::{CompileError, CompileOptions, Ptx};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Pasted in front of every source: NVRTC gets no include path, so no `#include`.
const COMMON: &str = include_str!("kernels/common.cuh");

/// One `.cu` file and the `extern "C"` kernels it defines.
pub(crate) struct KernelSource {
    pub name: &'static str,
    pub src: &'static str,
    pub functions: &'static [&'static str],
}

/// Every kernel the backend launches, by file.
pub(crate) const SOURCES: &[KernelSource] = &[
    KernelSource {
        name: "elementwise",
        src: include_str!("kernels/elementwise.cu"),
        functions: &[
            "fill_f32",
            "add_f32",
            "add_assign_f32",
            "scale_f32",
            "relu_forward",
            "relu_backward",
            "sgd_step",
        ],
    },
    KernelSource {
        name: "conv",
        src: include_str!("kernels/conv.cu"),
        functions: &["im2col", "col2im", "bias_add", "bias_grad"],
    },
    KernelSource {
        name: "batchnorm",
        src: include_str!("kernels/batchnorm.cu"),
        functions: &["bn_forward_train", "bn_forward_eval", "bn_backward"],
    },
    KernelSource {
        name: "resize",
        src: include_str!("kernels/resize.cu"),
        functions: &["resize_forward", "resize_backward"],
    },
    KernelSource {
        name: "layout",
        src: include_str!("kernels/layout.cu"),
        functions: &["concat_part", "split_part"],
    },
    KernelSource {
        name: "normalize",
        src: include_str!("kernels/normalize.cu"),
        functions: &["l2n_forward", "l2n_backward"],
    },
    KernelSource {
        name: "loss",
        src: include_str!("kernels/loss.cu"),
        functions: &[
            "ce_pixel",
            "ce_reduce",
            "scale_by_scalar",
            "argmax_channels",
        ],
    },
    KernelSource {
        name: "contrast",
        src: include_str!("kernels/contrast.cu"),
        functions: &[
            "ctr_downsample",
            "ctr_class_stats",
            "ctr_anchor_vectors",
            "ctr_edt_cols",
            "ctr_edt_rows",
            "ctr_bane_candidates",
            "ctr_sample",
            "ctr_dots",
            "ctr_anchor_loss",
            "ctr_scatter_samples",
            "ctr_anchor_dhat",
            "ctr_anchor_grad",
            "ctr_means_backward",
            "ctr_to_f32",
        ],
    },
];

/// The loaded kernels, by function name.
pub(crate) struct Kernels {
    functions: HashMap<&'static str, CudaFunction>,
}

impl Kernels {
    /// Compiles (or reads from the disk cache) and loads every source for `arch`.
    pub(crate) fn load(ctx: &Arc<CudaContext>, arch: &str) -> Result<Kernels> {
        let mut functions = HashMap::new();
        for source in SOURCES {
            let ptx = cached_ptx(source, arch)?;
            let module = ctx
                .load_module(Ptx::from_src(ptx))
                .map_err(|e| load_err(source.name, e))?;
            for &name in source.functions {
                let f = module
                    .load_function(name)
                    .map_err(|e| driver_err(&format!("loading kernel {name}"), e))?;
                functions.insert(name, f);
            }
        }
        Ok(Kernels { functions })
    }

    pub(crate) fn get(&self, name: &str) -> Result<&CudaFunction> {
        self.functions
            .get(name)
            .ok_or_else(|| backend_err("kernel lookup", format!("no kernel named {name}")))
    }
}

/// Why the driver refused module `name`. PTX carries its NVRTC's ISA version and a driver
/// loads none newer than its own CUDA version, so an NVRTC newer than the driver (CUDA 12.8's on
/// a JetPack 6 driver, 12.6) fails here: that case names both versions and the fix.
fn load_err(name: &str, e: DriverError) -> Error {
    let what = format!("loading module {name}");
    if e.0 != CUresult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION {
        return driver_err(&what, e);
    }
    let nvrtc = nvrtc_version().map_or("?".into(), |(a, b)| format!("{a}.{b}"));
    let driver = super::driver_version().map_or("?".into(), |(a, b)| format!("{a}.{b}"));
    backend_err(
        &what,
        format!(
            "the driver (CUDA {driver}) cannot load PTX from NVRTC {nvrtc}: put an NVRTC no newer \
             than the driver first on LD_LIBRARY_PATH (scripts/setup-python installs 12.6, which \
             JetPack 6 loads)"
        ),
    )
}

/// Compiles every kernel source for `arch` (e.g. `"compute_87"`) without touching the cache or a
/// device, and checks each declared kernel is in the PTX. For tests and CI: catches a broken
/// kernel on machines with NVRTC but no GPU.
pub fn compile_all(arch: &str) -> Result<()> {
    require_nvrtc()?;
    for source in SOURCES {
        let ptx = compile(source, arch)?;
        for &name in source.functions {
            if !ptx.contains(&format!(".entry {name}(")) {
                return Err(backend_err(
                    &format!("kernels/{}.cu for {arch}", source.name),
                    format!("compiled, but declares no kernel {name}"),
                ));
            }
        }
    }
    Ok(())
}

/// Whether libnvrtc can be loaded (cudarc panics on first use when it cannot).
pub(crate) fn nvrtc_present() -> bool {
    // SAFETY: only tries to open the library by its candidate names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// An error naming the fix unless libnvrtc loads: the public NVRTC entry points check first,
/// since cudarc panics on first use without it.
fn require_nvrtc() -> Result<()> {
    if nvrtc_present() {
        return Ok(());
    }
    Err(backend_err(
        "NVRTC",
        "libnvrtc not found: install nvidia-cuda-nvrtc-cu12 (scripts/setup-python) and put its lib folder on LD_LIBRARY_PATH",
    ))
}

/// NVRTC's `(major, minor)` version: part of the cache key, since PTX differs by version.
pub fn nvrtc_version() -> Result<(i32, i32)> {
    require_nvrtc()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present (checked just above) and both pointers are valid.
    unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| backend_err("nvrtcVersion", format!("{e:?}")))?;
    Ok((major, minor))
}

/// The `compute_XY` numbers (`XY`) this NVRTC can target. CUDA 13's dropped
/// everything below 75 (Xavier's 72 among them), so callers ask instead of assuming.
pub fn nvrtc_archs() -> Result<Vec<i32>> {
    require_nvrtc()?;
    let mut count = 0;
    // SAFETY: the library is present and `count` is a valid pointer.
    unsafe { cudarc::nvrtc::sys::nvrtcGetNumSupportedArchs(&mut count) }
        .result()
        .map_err(|e| backend_err("nvrtcGetNumSupportedArchs", format!("{e:?}")))?;
    let mut archs = vec![0; usize::try_from(count).unwrap_or(0)];
    if !archs.is_empty() {
        // SAFETY: `archs` holds exactly `count` elements, as NVRTC asked for.
        unsafe { cudarc::nvrtc::sys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) }
            .result()
            .map_err(|e| backend_err("nvrtcGetSupportedArchs", format!("{e:?}")))?;
    }
    Ok(archs)
}

/// The newest `compute_XY` NVRTC supports that the device (capability `major.minor`) can run:
/// PTX for an older architecture is JIT-compiled forward by the driver, a newer one is refused.
pub(crate) fn pick_arch(major: i32, minor: i32) -> Result<String> {
    let archs = nvrtc_archs()?;
    let device = major * 10 + minor;
    if device < MIN_ARCH {
        return Err(backend_err(
            "CUDA",
            format!(
                "compute capability {major}.{minor} is older than {}.{}, the oldest our kernels \
                 run on (they add doubles atomically)",
                MIN_ARCH / 10,
                MIN_ARCH % 10
            ),
        ));
    }
    choose_arch(device, &archs)
        .map(|a| format!("compute_{a}"))
        .ok_or_else(|| {
            backend_err(
                "NVRTC",
                format!("no supported architecture for compute capability {major}.{minor} (NVRTC offers {archs:?})"),
            )
        })
}

/// The oldest compute capability the kernels build for: `atomicAdd` on doubles needs 6.0 (every
/// JetPack 5/6 device, Xavier sm_72 and Orin sm_87, is above it).
const MIN_ARCH: i32 = 60;

/// The largest of `supported` not above `device` and not below [`MIN_ARCH`].
pub(crate) fn choose_arch(device: i32, supported: &[i32]) -> Option<i32> {
    supported
        .iter()
        .copied()
        .filter(|&a| (MIN_ARCH..=device).contains(&a))
        .max()
}

/// The full source NVRTC sees: the shared helpers, then the file.
fn full_source(source: &KernelSource) -> String {
    format!("{COMMON}\n{}", source.src)
}

/// Compiles one source to PTX text; a failure carries NVRTC's log.
fn compile(source: &KernelSource, arch: &str) -> Result<String> {
    let opts = CompileOptions {
        // Exact IEEE mul/add (no FMA contraction) so elementwise results match the CPU bit for bit.
        fmad: Some(false),
        options: vec![format!("--gpu-architecture={arch}")],
        name: Some(format!("{}.cu", source.name)),
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(full_source(source), opts).map_err(|e| {
        let what = format!("compiling kernels/{}.cu for {arch}", source.name);
        match e {
            CompileError::CompileError { log, .. } => {
                backend_err(&what, format!("NVRTC log:\n{}", log.to_string_lossy()))
            }
            other => backend_err(&what, format!("{other:?}")),
        }
    })?;
    let bytes = ptx
        .as_bytes()
        .ok_or_else(|| backend_err("NVRTC", "compiler returned no PTX image"))?;
    let text = bytes.split(|&b| b == 0).next().unwrap_or_default();
    String::from_utf8(text.to_vec())
        .map_err(|e| backend_err(&format!("PTX of kernels/{}.cu", source.name), e))
}

/// 64-bit FNV-1a: a stable hash (std's hasher may change between Rust releases).
pub(crate) fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `$XDG_CACHE_HOME/contextrast/ptx`, else `~/.cache/contextrast/ptx`; `None` without either.
pub(crate) fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("contextrast").join("ptx"))
}

/// The cache file name: source name, source hash, architecture and NVRTC version.
pub(crate) fn cache_file_name(name: &str, source: &str, arch: &str, nvrtc: (i32, i32)) -> String {
    let hash = fnv1a(source.as_bytes());
    format!("{name}-{hash:016x}-{arch}-nvrtc{}.{}.ptx", nvrtc.0, nvrtc.1)
}

/// PTX for `source` from the disk cache, or compiled and then cached. The cache is a speed-up
/// only: an unreadable or unwritable cache falls back to compiling, with a warning.
fn cached_ptx(source: &KernelSource, arch: &str) -> Result<String> {
    let full = full_source(source);
    let path = match cache_dir() {
        Some(dir) => dir.join(cache_file_name(source.name, &full, arch, nvrtc_version()?)),
        None => return compile(source, arch),
    };
    if let Ok(ptx) = std::fs::read_to_string(&path)
        && ptx.contains(".entry")
    {
        return Ok(ptx);
    }
    let ptx = compile(source, arch)?;
    if let Err(e) = write_atomic_unsynced(&path, ptx.as_bytes()) {
        log::warn!("cannot cache PTX: {e}");
    }
    Ok(ptx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choose_arch_takes_newest_not_above_device() {
        let supported = [50, 52, 60, 70, 72, 75, 80, 86, 87, 89, 90];
        assert_eq!(choose_arch(87, &supported), Some(87));
        assert_eq!(choose_arch(88, &supported), Some(87));
        assert_eq!(choose_arch(120, &supported), Some(90));
        assert_eq!(choose_arch(35, &supported), None);
        // 6.1 runs PTX for 6.0; older archs NVRTC offers are never picked.
        assert_eq!(choose_arch(61, &supported), Some(60));
        assert_eq!(choose_arch(53, &supported), None);
    }

    #[test]
    fn cache_key_changes_with_source_arch_and_version() {
        let a = cache_file_name("conv", "src", "compute_87", (12, 6));
        assert!(
            a.starts_with("conv-") && a.ends_with("-compute_87-nvrtc12.6.ptx"),
            "{a}"
        );
        assert_ne!(a, cache_file_name("conv", "src2", "compute_87", (12, 6)));
        assert_ne!(a, cache_file_name("conv", "src", "compute_90", (12, 6)));
        assert_ne!(a, cache_file_name("conv", "src", "compute_87", (12, 9)));
    }

    #[test]
    fn fnv1a_matches_reference_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn every_declared_kernel_is_defined_in_its_source() {
        for s in SOURCES {
            for f in s.functions {
                let decl = format!("__global__ void {f}(");
                assert!(s.src.contains(&decl), "{}.cu lacks {f}", s.name);
            }
            let defined = s.src.matches("__global__ void").count();
            assert_eq!(
                defined,
                s.functions.len(),
                "{}.cu: undeclared kernels",
                s.name
            );
        }
    }
}
