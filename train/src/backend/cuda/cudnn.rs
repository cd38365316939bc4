//! Convolutions through cuDNN, asked for with [`ConvPath::Cudnn`] (`CONTEXTRAST_CUDA_CONV=cudnn`).
//! im2col + cuBLAS (conv.rs) stays the default until a GPU measurement (scripts/gpu-run) shows
//! cuDNN winning. Where libcudnn is absent, older than 9 or fails to start, the backend says why
//! once and keeps im2col + cuBLAS, so asking for cuDNN never stops a training run.
//!
//! cudarc panics on a missing library or symbol and maps cuDNN 9's status codes onto a Rust
//! enum (cuDNN 8's codes are not in it), so [`Dnn::open`] checks the library, its version and
//! every symbol used here before the first call.
//!
//! FP32 throughout (`CUDNN_FMA_MATH`: no TF32, like our cuBLAS calls), and deterministic
//! algorithms preferred, so that a seed still gives one run.
use super::{Cuda, backend_err, dim};
use crate::backend::{ConvSpec, Shape};
use crate::{Error, Result};
use cudarc::cudnn::result as dnn;
use cudarc::cudnn::sys;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

/// How the CUDA backend runs convolutions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvPath {
    /// im2col + cuBLAS SGEMM (conv.rs): always available.
    Gemm,
    /// cuDNN's forward, backward-data and backward-filter convolutions.
    Cudnn,
}

/// Parses `CONTEXTRAST_CUDA_CONV`: `cudnn` or `gemm` (any case), else `None`.
pub fn parse_conv_path(v: &str) -> Option<ConvPath> {
    match v.trim().to_ascii_lowercase().as_str() {
        "cudnn" => Some(ConvPath::Cudnn),
        "gemm" | "cublas" | "im2col" => Some(ConvPath::Gemm),
        _ => None,
    }
}

/// Most workspace bytes one cuDNN call may take: im2col's own scratch budget (conv.rs).
const WORKSPACE_BUDGET: usize = 128 << 20;

/// The cuDNN entry points this module calls, checked at [`Dnn::open`] (cudarc panics on the
/// first call of a missing one).
const SYMBOLS: &[&str] = &[
    "cudnnGetVersion",
    "cudnnCreate",
    "cudnnDestroy",
    "cudnnSetStream",
    "cudnnCreateTensorDescriptor",
    "cudnnSetTensor4dDescriptor",
    "cudnnDestroyTensorDescriptor",
    "cudnnCreateFilterDescriptor",
    "cudnnSetFilter4dDescriptor",
    "cudnnDestroyFilterDescriptor",
    "cudnnCreateConvolutionDescriptor",
    "cudnnSetConvolution2dDescriptor",
    "cudnnSetConvolutionMathType",
    "cudnnDestroyConvolutionDescriptor",
    "cudnnGetConvolutionForwardAlgorithm_v7",
    "cudnnGetConvolutionForwardWorkspaceSize",
    "cudnnConvolutionForward",
    "cudnnGetConvolutionBackwardDataAlgorithm_v7",
    "cudnnGetConvolutionBackwardDataWorkspaceSize",
    "cudnnConvolutionBackwardData",
    "cudnnGetConvolutionBackwardFilterAlgorithm_v7",
    "cudnnGetConvolutionBackwardFilterWorkspaceSize",
    "cudnnConvolutionBackwardFilter",
];

/// `cudnnGetVersion()` as `major.minor.patch` (9.x encodes it as M·10000 + m·100 + p, 8.x as
/// M·1000 + m·100 + p).
pub fn version_string(v: usize) -> String {
    if v >= 90000 {
        format!("{}.{}.{}", v / 10000, v % 10000 / 100, v % 100)
    } else {
        format!("{}.{}.{}", v / 1000, v % 1000 / 100, v % 100)
    }
}

/// The handle, owned; cuDNN handles are not thread-safe, so it only lives behind [`Dnn`]'s lock.
struct Handle(sys::cudnnHandle_t);

// SAFETY: the handle is used only while `Dnn::state` is locked, one thread at a time, which is
// what cuDNN asks of a handle shared between threads.
unsafe impl Send for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: created by `cudnnCreate` in `Dnn::open`, destroyed once here. A failure at
        // teardown has nobody left to tell.
        let _ = unsafe { dnn::destroy_handle(self.0) };
    }
}

/// Which operation an algorithm was picked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    Forward,
    BackwardData,
    BackwardFilter,
}

/// An algorithm (its `cudnn*Algo_t` as a number) and the workspace it needs, or `None` where
/// cuDNN offered none within the budget (that shape then goes through im2col + cuBLAS).
type Choice = Option<(u32, usize)>;

struct State {
    handle: Handle,
    picked: HashMap<(Op, Shape, ConvSpec), Choice>,
}

/// cuDNN on the backend's stream, with the algorithm picked once per shape.
pub(super) struct Dnn {
    state: Mutex<State>,
    version: usize,
    /// Keeps the context alive until the handle is destroyed, whatever the drop order.
    _stream: Arc<CudaStream>,
}

impl std::fmt::Debug for Dnn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cuDNN {}", version_string(self.version))
    }
}

/// Descriptors that destroy themselves.
struct Tensor(sys::cudnnTensorDescriptor_t);
struct Filter(sys::cudnnFilterDescriptor_t);
struct Conv(sys::cudnnConvolutionDescriptor_t);

impl Drop for Tensor {
    fn drop(&mut self) {
        // SAFETY: created by `create_tensor_descriptor`, destroyed once.
        let _ = unsafe { dnn::destroy_tensor_descriptor(self.0) };
    }
}
impl Drop for Filter {
    fn drop(&mut self) {
        // SAFETY: created by `create_filter_descriptor`, destroyed once.
        let _ = unsafe { dnn::destroy_filter_descriptor(self.0) };
    }
}
impl Drop for Conv {
    fn drop(&mut self) {
        // SAFETY: created by `create_convolution_descriptor`, destroyed once.
        let _ = unsafe { dnn::destroy_convolution_descriptor(self.0) };
    }
}

/// The four descriptors of one convolution: input, filter, convolution, output.
struct Descs {
    x: Tensor,
    w: Filter,
    conv: Conv,
    y: Tensor,
}

fn dnn_err(what: &str, e: dnn::CudnnError) -> Error {
    backend_err(&format!("cuDNN {what}"), format!("{:?}", e.0))
}

fn tensor(s: Shape) -> Result<Tensor> {
    let t = Tensor(dnn::create_tensor_descriptor().map_err(|e| dnn_err("tensor descriptor", e))?);
    let dims = [
        dim("n", s.n)?,
        dim("c", s.c)?,
        dim("h", s.h)?,
        dim("w", s.w)?,
    ];
    // SAFETY: `t` is a live descriptor.
    unsafe {
        dnn::set_tensor4d_descriptor(
            t.0,
            sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
            sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
            dims,
        )
    }
    .map_err(|e| dnn_err(&format!("tensor descriptor {s}"), e))?;
    Ok(t)
}

impl Descs {
    fn new(xs: Shape, spec: &ConvSpec) -> Result<Descs> {
        let x = tensor(xs)?;
        let y = tensor(spec.out_shape(xs))?;
        let w =
            Filter(dnn::create_filter_descriptor().map_err(|e| dnn_err("filter descriptor", e))?);
        let k = dim("k", spec.k)?;
        let fdims = [dim("c_out", spec.c_out)?, dim("c_in", spec.c_in)?, k, k];
        // SAFETY: `w` is a live descriptor.
        unsafe {
            dnn::set_filter4d_descriptor(
                w.0,
                sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
                fdims,
            )
        }
        .map_err(|e| dnn_err("filter descriptor", e))?;
        let conv = Conv(
            dnn::create_convolution_descriptor()
                .map_err(|e| dnn_err("convolution descriptor", e))?,
        );
        let (p, s) = (dim("pad", spec.pad)?, dim("stride", spec.stride)?);
        // SAFETY: `conv` is a live descriptor.
        unsafe {
            dnn::set_convolution2d_descriptor(
                conv.0,
                p,
                p,
                s,
                s,
                1,
                1,
                sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
            )
            .and_then(|()| {
                dnn::set_convolution_math_type(conv.0, sys::cudnnMathType_t::CUDNN_FMA_MATH)
            })
        }
        .map_err(|e| dnn_err("convolution descriptor", e))?;
        Ok(Descs { x, w, conv, y })
    }
}

/// Heuristic results asked for: more than any operation has algorithms.
const PERF: i32 = 8;
/// Algorithms per operation (`CUDNN_CONVOLUTION_*_ALGO_COUNT`); the `*_algo` lists below go no higher.
const FWD_COUNT: u32 = sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_COUNT as u32;
const DATA_COUNT: u32 =
    sys::cudnnConvolutionBwdDataAlgo_t::CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT as u32;
const FILTER_COUNT: u32 =
    sys::cudnnConvolutionBwdFilterAlgo_t::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT as u32;

/// One heuristic result: algorithm, status, workspace bytes, deterministic.
type Offer = (u32, bool, usize, bool);

/// The first deterministic offer that worked and fits the budget, else the first that fits.
fn choose(offers: &[Offer]) -> Choice {
    let fits = |o: &&Offer| o.1 && o.2 <= WORKSPACE_BUDGET;
    let pick = offers
        .iter()
        .filter(fits)
        .find(|o| o.3)
        .or_else(|| offers.iter().find(fits));
    pick.map(|o| (o.0, o.2))
}

/// cuDNN's three `cudnnConvolution*AlgoPerf_t`, which share this layout, read as plain numbers
/// so that a value outside cudarc's enums (a newer algorithm, say) is skipped, not undefined.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawPerf {
    algo: u32,
    status: u32,
    time: f32,
    memory: usize,
    determinism: u32,
    math_type: u32,
    reserved: [i32; 3],
}

const _: () = {
    assert!(size_of::<RawPerf>() == size_of::<sys::cudnnConvolutionFwdAlgoPerf_t>());
    assert!(size_of::<RawPerf>() == size_of::<sys::cudnnConvolutionBwdDataAlgoPerf_t>());
    assert!(size_of::<RawPerf>() == size_of::<sys::cudnnConvolutionBwdFilterAlgoPerf_t>());
};

/// The first `n` of `perf` as [`Offer`]s, without algorithms numbered `count` or above.
fn offers(perf: &[RawPerf], n: i32, count: u32) -> Vec<Offer> {
    perf[..(n.max(0) as usize).min(perf.len())]
        .iter()
        .filter(|p| p.algo < count)
        .map(|p| (p.algo, p.status == 0, p.memory, p.determinism == 1))
        .collect()
}

/// The enum for an algorithm number cuDNN offered (checked below its operation's count).
fn fwd_algo(a: u32) -> Result<sys::cudnnConvolutionFwdAlgo_t> {
    use sys::cudnnConvolutionFwdAlgo_t::*;
    [
        CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
        CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
        CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
        CUDNN_CONVOLUTION_FWD_ALGO_DIRECT,
        CUDNN_CONVOLUTION_FWD_ALGO_FFT,
        CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING,
        CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD,
        CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
    ]
    .into_iter()
    .find(|v| *v as u32 == a)
    .ok_or_else(|| backend_err("cuDNN", format!("unknown forward algorithm {a}")))
}

fn data_algo(a: u32) -> Result<sys::cudnnConvolutionBwdDataAlgo_t> {
    use sys::cudnnConvolutionBwdDataAlgo_t::*;
    [
        CUDNN_CONVOLUTION_BWD_DATA_ALGO_0,
        CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
        CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT,
        CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING,
        CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD,
        CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED,
    ]
    .into_iter()
    .find(|v| *v as u32 == a)
    .ok_or_else(|| backend_err("cuDNN", format!("unknown backward-data algorithm {a}")))
}

fn filter_algo(a: u32) -> Result<sys::cudnnConvolutionBwdFilterAlgo_t> {
    use sys::cudnnConvolutionBwdFilterAlgo_t::*;
    [
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0,
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT,
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3,
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD,
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED,
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING,
    ]
    .into_iter()
    .find(|v| *v as u32 == a)
    .ok_or_else(|| backend_err("cuDNN", format!("unknown backward-filter algorithm {a}")))
}

impl Dnn {
    /// Opens cuDNN on `cuda`'s stream, or says why it cannot be used.
    pub(super) fn open(cuda_stream: &Arc<CudaStream>) -> std::result::Result<Dnn, String> {
        // SAFETY: only tries to open the library by its candidate names.
        if !unsafe { sys::is_culib_present() } {
            return Err(
                "libcudnn is not on the library path (cuDNN 9, or nvidia-cudnn-cu12)".into(),
            );
        }
        let probe = std::panic::catch_unwind(|| {
            // SAFETY: `culib` opens the library found above; `get` only looks a name up.
            let lib = unsafe { sys::culib() };
            let missing: Vec<&str> = SYMBOLS
                .iter()
                .copied()
                .filter(|s| unsafe { lib.get::<unsafe extern "C" fn()>(s.as_bytes()) }.is_err())
                .collect();
            (missing, dnn::get_version())
        });
        let (missing, version) = probe.map_err(|_| "libcudnn failed to load".to_string())?;
        if !missing.is_empty() {
            return Err(format!("libcudnn lacks {}", missing.join(", ")));
        }
        if version < 90000 {
            return Err(format!(
                "cuDNN {} is older than 9, whose API this build speaks",
                version_string(version)
            ));
        }
        cuda_stream
            .context()
            .bind_to_thread()
            .map_err(|e| format!("binding the context: {e}"))?;
        let handle = Handle(dnn::create_handle().map_err(|e| format!("cudnnCreate: {:?}", e.0))?);
        // SAFETY: the handle is live and the stream belongs to the bound context.
        unsafe { dnn::set_stream(handle.0, cuda_stream.cu_stream() as *mut _) }
            .map_err(|e| format!("cudnnSetStream: {:?}", e.0))?;
        Ok(Dnn {
            state: Mutex::new(State {
                handle,
                picked: HashMap::new(),
            }),
            version,
            _stream: cuda_stream.clone(),
        })
    }

    /// `major.minor.patch` of the loaded library.
    pub(super) fn version(&self) -> String {
        version_string(self.version)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| backend_err("cuDNN", "a thread panicked while holding the handle"))
    }
}

/// Shapes cuDNN refuses (an empty dimension) go through im2col + cuBLAS, which handles them.
fn degenerate(xs: Shape, spec: &ConvSpec) -> bool {
    xs.numel() == 0 || spec.c_out == 0 || spec.c_in == 0 || spec.out_shape(xs).numel() == 0
}

impl Cuda {
    /// The algorithm for `op` on this shape, picked by cuDNN's heuristics the first time.
    fn dnn_choice(
        &self,
        st: &mut State,
        op: Op,
        xs: Shape,
        spec: &ConvSpec,
        d: &Descs,
    ) -> Result<Choice> {
        if let Some(c) = st.picked.get(&(op, xs, *spec)) {
            return Ok(*c);
        }
        let h = st.handle.0;
        let mut n = 0;
        let mut perf = [RawPerf {
            algo: 0,
            status: 0,
            time: 0.0,
            memory: 0,
            determinism: 0,
            math_type: 0,
            reserved: [0; 3],
        }; PERF as usize];
        // SAFETY (all three): the handle and descriptors are live; `perf` holds as many entries
        // as requested, and cuDNN writes at most that many.
        let offers = match op {
            Op::Forward => {
                unsafe {
                    dnn::get_convolution_forward_algorithm(
                        h,
                        d.x.0,
                        d.w.0,
                        d.conv.0,
                        d.y.0,
                        PERF,
                        &mut n,
                        perf.as_mut_ptr().cast(),
                    )
                }
                .map_err(|e| dnn_err("forward algorithm", e))?;
                offers(&perf, n, FWD_COUNT)
            }
            Op::BackwardData => {
                unsafe {
                    dnn::get_convolution_backward_data_algorithm(
                        h,
                        d.w.0,
                        d.y.0,
                        d.conv.0,
                        d.x.0,
                        PERF,
                        &mut n,
                        perf.as_mut_ptr().cast(),
                    )
                }
                .map_err(|e| dnn_err("backward-data algorithm", e))?;
                offers(&perf, n, DATA_COUNT)
            }
            Op::BackwardFilter => {
                unsafe {
                    dnn::get_convolution_backward_filter_algorithm(
                        h,
                        d.x.0,
                        d.y.0,
                        d.conv.0,
                        d.w.0,
                        PERF,
                        &mut n,
                        perf.as_mut_ptr().cast(),
                    )
                }
                .map_err(|e| dnn_err("backward-filter algorithm", e))?;
                offers(&perf, n, FILTER_COUNT)
            }
        };
        let mut choice = choose(&offers);
        if let Some((algo, _)) = choice {
            // The size the launch must be given, as cuDNN states it for this algorithm.
            // SAFETY: live handle and descriptors; `algo` came from cuDNN for this `op`.
            let bytes = unsafe {
                match op {
                    Op::Forward => dnn::get_convolution_forward_workspace_size(
                        h,
                        d.x.0,
                        d.w.0,
                        d.conv.0,
                        d.y.0,
                        fwd_algo(algo)?,
                    ),
                    Op::BackwardData => dnn::get_convolution_backward_data_workspace_size(
                        h,
                        d.w.0,
                        d.y.0,
                        d.conv.0,
                        d.x.0,
                        data_algo(algo)?,
                    ),
                    Op::BackwardFilter => dnn::get_convolution_backward_filter_workspace_size(
                        h,
                        d.x.0,
                        d.y.0,
                        d.conv.0,
                        d.w.0,
                        filter_algo(algo)?,
                    ),
                }
            }
            .map_err(|e| dnn_err("workspace size", e))?;
            choice = Some((algo, bytes));
        } else {
            log::warn!(
                "cuDNN offers no {op:?} algorithm within {} MiB for {spec:?} on {xs}: that \
                 convolution uses im2col + cuBLAS",
                WORKSPACE_BUDGET >> 20
            );
        }
        st.picked.insert((op, xs, *spec), choice);
        Ok(choice)
    }

    /// What the three launches share: the shape check, descriptors, the algorithm, a workspace
    /// of the size cuDNN asked for, then `call`. `false` (nothing launched) where this shape
    /// goes through im2col instead.
    fn dnn_launch(
        &self,
        dnn_: &Dnn,
        op: Op,
        xs: Shape,
        spec: &ConvSpec,
        call: impl FnOnce(&Launch<'_>) -> Result<()>,
    ) -> Result<bool> {
        if degenerate(xs, spec) {
            return Ok(false);
        }
        let d = Descs::new(xs, spec)?;
        // cuDNN runs on whatever context the calling thread has current, as cuBLAS does.
        self.ctx
            .bind_to_thread()
            .map_err(|e| super::driver_err("binding the context", e))?;
        let st = &mut *dnn_.lock()?;
        let Some((algo, bytes)) = self.dnn_choice(st, op, xs, spec, &d)? else {
            return Ok(false);
        };
        let mut ws = match bytes {
            0 => None,
            // SAFETY: cuDNN only writes scratch data into the workspace before reading it.
            _ => Some(unsafe { self.stream.alloc::<u8>(bytes) }.map_err(|e| {
                super::driver_err(&format!("allocating {bytes} bytes of cuDNN workspace"), e)
            })?),
        };
        let (ws_ptr, _sync) = ws.as_mut().map(|b| b.device_ptr_mut(&self.stream)).unzip();
        call(&Launch {
            handle: st.handle.0,
            d: &d,
            algo,
            ws: ws_ptr.map_or(std::ptr::null_mut(), |p| p as *mut c_void),
            bytes,
        })?;
        Ok(true)
    }

    /// `y = conv(x, w)` through cuDNN (true), or `false` where this shape goes through im2col.
    pub(super) fn dnn_forward(
        &self,
        dnn_: &Dnn,
        x: &CudaSlice<f32>,
        xs: Shape,
        w: &CudaSlice<f32>,
        spec: &ConvSpec,
        y: &mut CudaSlice<f32>,
    ) -> Result<bool> {
        let s = &self.stream;
        let ((xp, _a), (wp, _b), (yp, _c)) =
            (x.device_ptr(s), w.device_ptr(s), y.device_ptr_mut(s));
        self.dnn_launch(dnn_, Op::Forward, xs, spec, |l| {
            // SAFETY: the caller checked x, w and y against these descriptors' shapes; the
            // workspace holds the bytes cuDNN asked for this algorithm, one cuDNN offered.
            unsafe {
                dnn::convolution_forward(
                    l.handle,
                    ONE,
                    l.d.x.0,
                    xp as *const c_void,
                    l.d.w.0,
                    wp as *const c_void,
                    l.d.conv.0,
                    fwd_algo(l.algo)?,
                    l.ws,
                    l.bytes,
                    ZERO,
                    l.d.y.0,
                    yp as *mut c_void,
                )
            }
            .map_err(|e| dnn_err("convolution forward", e))
        })
    }

    /// `dx = convᵀ(dy, w)` through cuDNN (overwriting `dx`), or `false` for im2col instead.
    pub(super) fn dnn_backward_data(
        &self,
        dnn_: &Dnn,
        dy: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        xs: Shape,
        spec: &ConvSpec,
        dx: &mut CudaSlice<f32>,
    ) -> Result<bool> {
        let s = &self.stream;
        let ((dyp, _a), (wp, _b), (dxp, _c)) =
            (dy.device_ptr(s), w.device_ptr(s), dx.device_ptr_mut(s));
        self.dnn_launch(dnn_, Op::BackwardData, xs, spec, |l| {
            // SAFETY: as in `dnn_forward`, with dy and dx checked by the caller.
            unsafe {
                dnn::convolution_backward_data(
                    l.handle,
                    ONE,
                    l.d.w.0,
                    wp as *const c_void,
                    l.d.y.0,
                    dyp as *const c_void,
                    l.d.conv.0,
                    data_algo(l.algo)?,
                    l.ws,
                    l.bytes,
                    ZERO,
                    l.d.x.0,
                    dxp as *mut c_void,
                )
            }
            .map_err(|e| dnn_err("convolution backward data", e))
        })
    }

    /// `dw += ∂L/∂w` through cuDNN (beta = 1: it accumulates as the trait asks), or `false`.
    pub(super) fn dnn_backward_filter(
        &self,
        dnn_: &Dnn,
        x: &CudaSlice<f32>,
        xs: Shape,
        dy: &CudaSlice<f32>,
        spec: &ConvSpec,
        dw: &mut CudaSlice<f32>,
    ) -> Result<bool> {
        let s = &self.stream;
        let ((xp, _a), (dyp, _b), (dwp, _c)) =
            (x.device_ptr(s), dy.device_ptr(s), dw.device_ptr_mut(s));
        self.dnn_launch(dnn_, Op::BackwardFilter, xs, spec, |l| {
            // SAFETY: as in `dnn_forward`, with x, dy and dw checked by the caller.
            unsafe {
                dnn::convolution_backward_filter(
                    l.handle,
                    ONE,
                    l.d.x.0,
                    xp as *const c_void,
                    l.d.y.0,
                    dyp as *const c_void,
                    l.d.conv.0,
                    filter_algo(l.algo)?,
                    l.ws,
                    l.bytes,
                    ONE,
                    l.d.w.0,
                    dwp as *mut c_void,
                )
            }
            .map_err(|e| dnn_err("convolution backward filter", e))
        })
    }
}

/// What one launch gets from [`Cuda::dnn_launch`].
struct Launch<'a> {
    handle: sys::cudnnHandle_t,
    d: &'a Descs,
    algo: u32,
    /// Null when the algorithm needs none.
    ws: *mut c_void,
    bytes: usize,
}

/// cuDNN's α and β scaling factors (host pointers to f32 for float convolutions).
const ONE: *const c_void = (&1f32 as *const f32).cast();
const ZERO: *const c_void = (&0f32 as *const f32).cast();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_conv_path() {
        assert_eq!(parse_conv_path(" cuDNN "), Some(ConvPath::Cudnn));
        assert_eq!(parse_conv_path("gemm"), Some(ConvPath::Gemm));
        assert_eq!(parse_conv_path("im2col"), Some(ConvPath::Gemm));
        assert_eq!(parse_conv_path("fast"), None);
    }

    #[test]
    fn versions_read_as_cudnn_encodes_them() {
        assert_eq!(version_string(90300), "9.3.0");
        assert_eq!(version_string(91002), "9.10.2");
        assert_eq!(version_string(8904), "8.9.4");
    }

    #[test]
    fn choice_prefers_deterministic_within_budget() {
        let big = WORKSPACE_BUDGET + 1;
        // Fastest first, as cuDNN orders them: too big, failed, non-deterministic, deterministic.
        let offers = [
            (4, true, big, true),
            (6, false, 0, true),
            (0, true, 64, false),
            (1, true, 4096, true),
        ];
        assert_eq!(choose(&offers), Some((1, 4096)));
        assert_eq!(
            choose(&offers[..3]),
            Some((0, 64)),
            "no deterministic one: the first that fits"
        );
        assert_eq!(choose(&offers[..2]), None);
    }
}
