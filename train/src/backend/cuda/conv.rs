//! Convolution as im2col + cuBLAS SGEMM. cuBLAS is column-major: a row-major `r×c` matrix is
//! its column-major transpose with leading dimension `c`, so each row-major product `C = A·B`
//! is issued as `Cᵀ = Bᵀ·Aᵀ`. Per image, with `K = c_in·k·k` and `P = oh·ow`:
//! forward `Y[c_out×P] = W[c_out×K]·col[K×P]`; input gradient `dcol = Wᵀ·dY`, then col2im;
//! weight gradient `dW += dY·colᵀ` (beta = 1, so it accumulates as the trait asks).
//! With cuDNN open (cudnn.rs) the three go through it instead; bias stays on our kernels.
use super::{Cuda, backend_err, check_len, dim, driver_err, elems_cfg, per_channel_cfg};
use crate::backend::ops::ConvOps;
use crate::backend::{ConvSpec, Shape};
use crate::{Error, Result};
use cudarc::cublas::sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
use cudarc::cublas::{Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::{CudaSlice, CudaView};

type Buf = CudaSlice<f32>;

/// Most floats one im2col scratch buffer may hold (128 MiB); larger batches go in chunks.
const COL_BUDGET: usize = 1 << 25;

/// The sizes one convolution needs, checked once.
struct Geometry {
    xs: Shape,
    ys: Shape,
    /// `c_in·k·k`: rows of the column matrix.
    kk: usize,
    /// `oh·ow`: columns of the column matrix.
    ohw: usize,
    /// Images per im2col chunk.
    chunk: usize,
    /// 1×1, stride 1, no padding: im2col is the identity and is skipped.
    direct: bool,
}

impl Geometry {
    fn new(xs: Shape, spec: &ConvSpec) -> Result<Geometry> {
        if spec.k == 0 || spec.stride == 0 {
            return Err(Error::Shape(format!(
                "conv2d: kernel {} and stride {} must be ≥ 1",
                spec.k, spec.stride
            )));
        }
        if xs.c != spec.c_in {
            return Err(Error::Shape(format!(
                "conv2d: input {xs} has {} channels, spec wants {}",
                xs.c, spec.c_in
            )));
        }
        if xs.h + 2 * spec.pad < spec.k || xs.w + 2 * spec.pad < spec.k {
            return Err(Error::Shape(format!(
                "conv2d: input {xs} padded by {} is smaller than the {}×{} kernel",
                spec.pad, spec.k, spec.k
            )));
        }
        let ys = spec.out_shape(xs);
        let kk = spec.c_in * spec.k * spec.k;
        let ohw = ys.hw();
        for (what, v) in [
            ("conv2d input", xs.numel()),
            ("conv2d output", ys.numel()),
            ("conv2d K", kk),
        ] {
            dim(what, v)?;
        }
        let per_image = kk * ohw;
        dim("conv2d column matrix", per_image)?;
        let direct = spec.k == 1 && spec.stride == 1 && spec.pad == 0;
        let chunk = (COL_BUDGET / per_image.max(1)).clamp(1, xs.n.max(1));
        Ok(Geometry {
            xs,
            ys,
            kk,
            ohw,
            chunk,
            direct,
        })
    }

    /// Images `[start, start + nb)` of each chunk.
    fn chunks(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let step = if self.direct {
            self.xs.n.max(1)
        } else {
            self.chunk
        };
        (0..self.xs.n)
            .step_by(step)
            .map(move |s| (s, step.min(self.xs.n - s)))
    }

    /// `(nb, c_in, h, w, k, stride, pad, oh, ow)`: the im2col/col2im kernel arguments.
    fn im2col_args(&self, spec: &ConvSpec, nb: usize) -> Result<[i32; 9]> {
        let (s, g) = (spec, self);
        Ok([
            dim("images", nb)?,
            dim("c_in", s.c_in)?,
            dim("h", g.xs.h)?,
            dim("w", g.xs.w)?,
            dim("k", s.k)?,
            dim("stride", s.stride)?,
            dim("pad", s.pad)?,
            dim("oh", g.ys.h)?,
            dim("ow", g.ys.w)?,
        ])
    }
}

/// A view of images `[start, start + nb)` of a buffer holding `per_image` floats per image.
fn images(buf: &Buf, start: usize, nb: usize, per_image: usize) -> Result<CudaView<'_, f32>> {
    buf.try_slice(start * per_image..(start + nb) * per_image)
        .ok_or_else(|| backend_err("conv2d", "image range outside the buffer"))
}

impl Cuda {
    /// Writes the column matrices of images `[start, start+nb)` of `x` into `col`.
    fn im2col(
        &self,
        x: &Buf,
        g: &Geometry,
        spec: &ConvSpec,
        start: usize,
        nb: usize,
        col: &mut Buf,
    ) -> Result<()> {
        let xv = images(x, start, nb, g.xs.c * g.xs.hw())?;
        let [n, c, h, w, k, s, p, oh, ow] = g.im2col_args(spec, nb)?;
        let cfg = elems_cfg(nb * g.kk * g.ohw);
        launch!(self, "im2col", cfg; &xv, col, &n, &c, &h, &w, &k, &s, &p, &oh, &ow)
    }

    fn gemm_batched(
        &self,
        cfg: StridedBatchedConfig<f32>,
        a: &CudaView<'_, f32>,
        b: &Buf,
        c: &mut cudarc::driver::CudaViewMut<'_, f32>,
    ) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| driver_err("binding the context", e))?;
        // SAFETY: the caller sized every matrix from the checked geometry, so cuBLAS reads and
        // writes only inside `a`, `b` and `c`.
        unsafe { self.blas.gemm_strided_batched(cfg, a, b, c) }
            .map_err(|e| backend_err("cuBLAS sgemm", e))
    }
}

impl ConvOps for Cuda {
    fn conv2d_forward(
        &self,
        x: &Buf,
        xs: Shape,
        w: &Buf,
        b: Option<&Buf>,
        spec: &ConvSpec,
    ) -> Result<Buf> {
        let g = Geometry::new(xs, spec)?;
        check_len("conv2d x", x.len(), xs.numel())?;
        check_len("conv2d weight", w.len(), spec.weight_len())?;
        if let Some(b) = b {
            check_len("conv2d bias", b.len(), spec.c_out)?;
        }
        let mut y = self.alloc(g.ys.numel())?;
        if g.ys.numel() == 0 {
            return Ok(y);
        }
        let by_dnn = match self.dnn.as_ref() {
            Some(d) => self.dnn_forward(d, x, xs, w, spec, &mut y)?,
            None => false,
        };
        if g.kk > 0 && !by_dnn {
            let mut col = if g.direct {
                None
            } else {
                Some(self.alloc(g.chunk * g.kk * g.ohw)?)
            };
            for (start, nb) in g.chunks() {
                if let Some(col) = col.as_mut() {
                    self.im2col(x, &g, spec, start, nb, col)?;
                }
                let a = match col.as_ref() {
                    Some(col) => images(col, 0, nb, g.kk * g.ohw)?,
                    None => images(x, start, nb, g.kk * g.ohw)?,
                };
                let per_y = spec.c_out * g.ohw;
                let mut c = y
                    .try_slice_mut(start * per_y..(start + nb) * per_y)
                    .ok_or_else(|| backend_err("conv2d", "output range outside the buffer"))?;
                let cfg = StridedBatchedConfig {
                    gemm: GemmConfig {
                        transa: CUBLAS_OP_N,
                        transb: CUBLAS_OP_N,
                        m: dim("P", g.ohw)?,
                        n: dim("c_out", spec.c_out)?,
                        k: dim("K", g.kk)?,
                        alpha: 1.0,
                        lda: dim("P", g.ohw)?,
                        ldb: dim("K", g.kk)?,
                        beta: 0.0,
                        ldc: dim("P", g.ohw)?,
                    },
                    batch_size: dim("images", nb)?,
                    stride_a: (g.kk * g.ohw) as i64,
                    stride_b: 0,
                    stride_c: per_y as i64,
                };
                self.gemm_batched(cfg, &a, w, &mut c)?;
            }
        }
        if let Some(b) = b {
            let (n, c, hw) = (dim("n", g.ys.n)?, dim("c_out", g.ys.c)?, dim("P", g.ohw)?);
            launch!(self, "bias_add", elems_cfg(g.ys.numel()); &mut y, b, &n, &c, &hw)?;
        }
        Ok(y)
    }

    fn conv2d_backward_input(&self, dy: &Buf, w: &Buf, xs: Shape, spec: &ConvSpec) -> Result<Buf> {
        let g = Geometry::new(xs, spec)?;
        check_len("conv2d_backward_input dy", dy.len(), g.ys.numel())?;
        check_len("conv2d_backward_input weight", w.len(), spec.weight_len())?;
        let mut dx = self.alloc(xs.numel())?;
        if xs.numel() == 0 || spec.c_out == 0 {
            return Ok(dx);
        }
        if let Some(d) = self.dnn.as_ref()
            && self.dnn_backward_data(d, dy, w, xs, spec, &mut dx)?
        {
            return Ok(dx);
        }
        let mut dcol = if g.direct {
            None
        } else {
            Some(self.alloc(g.chunk * g.kk * g.ohw)?)
        };
        let per_y = spec.c_out * g.ohw;
        for (start, nb) in g.chunks() {
            let a = images(dy, start, nb, per_y)?;
            let cfg = StridedBatchedConfig {
                gemm: GemmConfig {
                    transa: CUBLAS_OP_N,
                    transb: CUBLAS_OP_T,
                    m: dim("P", g.ohw)?,
                    n: dim("K", g.kk)?,
                    k: dim("c_out", spec.c_out)?,
                    alpha: 1.0,
                    lda: dim("P", g.ohw)?,
                    ldb: dim("K", g.kk)?,
                    beta: 0.0,
                    ldc: dim("P", g.ohw)?,
                },
                batch_size: dim("images", nb)?,
                stride_a: per_y as i64,
                stride_b: 0,
                stride_c: (g.kk * g.ohw) as i64,
            };
            let per_x = xs.c * xs.hw();
            match dcol.as_mut() {
                None => {
                    let mut c = dx
                        .try_slice_mut(start * per_x..(start + nb) * per_x)
                        .ok_or_else(|| backend_err("conv2d", "input range outside the buffer"))?;
                    self.gemm_batched(cfg, &a, w, &mut c)?;
                }
                Some(dcol) => {
                    {
                        let mut c = dcol.try_slice_mut(0..nb * g.kk * g.ohw).ok_or_else(|| {
                            backend_err("conv2d", "column range outside the buffer")
                        })?;
                        self.gemm_batched(cfg, &a, w, &mut c)?;
                    }
                    let mut dxv = dx
                        .try_slice_mut(start * per_x..(start + nb) * per_x)
                        .ok_or_else(|| backend_err("conv2d", "input range outside the buffer"))?;
                    let [n, c, h, wd, k, s, p, oh, ow] = g.im2col_args(spec, nb)?;
                    let cfg = elems_cfg(nb * per_x);
                    launch!(self, "col2im", cfg; &*dcol, &mut dxv, &n, &c, &h, &wd, &k, &s, &p, &oh, &ow)?;
                }
            }
        }
        Ok(dx)
    }

    fn conv2d_backward_weight(
        &self,
        x: &Buf,
        xs: Shape,
        dy: &Buf,
        spec: &ConvSpec,
        dw: &mut Buf,
        db: Option<&mut Buf>,
    ) -> Result<()> {
        let g = Geometry::new(xs, spec)?;
        check_len("conv2d_backward_weight x", x.len(), xs.numel())?;
        check_len("conv2d_backward_weight dy", dy.len(), g.ys.numel())?;
        check_len("conv2d_backward_weight dw", dw.len(), spec.weight_len())?;
        if let Some(db) = db.as_ref() {
            check_len("conv2d_backward_weight db", db.len(), spec.c_out)?;
        }
        if g.ys.numel() == 0 {
            return Ok(());
        }
        let per_y = spec.c_out * g.ohw;
        let by_dnn = match self.dnn.as_ref() {
            Some(d) => self.dnn_backward_filter(d, x, xs, dy, spec, dw)?,
            None => false,
        };
        if g.kk > 0 && !by_dnn {
            let mut col = if g.direct {
                None
            } else {
                Some(self.alloc(g.chunk * g.kk * g.ohw)?)
            };
            let cfg = GemmConfig {
                transa: CUBLAS_OP_T,
                transb: CUBLAS_OP_N,
                m: dim("K", g.kk)?,
                n: dim("c_out", spec.c_out)?,
                k: dim("P", g.ohw)?,
                alpha: 1.0f32,
                lda: dim("P", g.ohw)?,
                ldb: dim("P", g.ohw)?,
                beta: 1.0,
                ldc: dim("K", g.kk)?,
            };
            for (start, nb) in g.chunks() {
                if let Some(col) = col.as_mut() {
                    self.im2col(x, &g, spec, start, nb, col)?;
                }
                for i in 0..nb {
                    let a = match col.as_ref() {
                        Some(col) => images(col, i, 1, g.kk * g.ohw)?,
                        None => images(x, start + i, 1, g.kk * g.ohw)?,
                    };
                    let bv = images(dy, start + i, 1, per_y)?;
                    self.ctx
                        .bind_to_thread()
                        .map_err(|e| driver_err("binding the context", e))?;
                    // SAFETY: `a` is K×P, `bv` is c_out×P and `dw` is c_out×K, all checked above.
                    unsafe { self.blas.gemm(cfg, &a, &bv, dw) }
                        .map_err(|e| backend_err("cuBLAS sgemm", e))?;
                }
            }
        }
        if let Some(db) = db {
            let (n, c, hw) = (dim("n", g.ys.n)?, dim("c_out", g.ys.c)?, dim("P", g.ohw)?);
            launch!(self, "bias_grad", per_channel_cfg(c); dy, db, &n, &c, &hw)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(c_in: usize, c_out: usize, k: usize, stride: usize, pad: usize) -> ConvSpec {
        ConvSpec {
            c_in,
            c_out,
            k,
            stride,
            pad,
        }
    }

    #[test]
    fn geometry_rejects_bad_specs_without_panicking() {
        let xs = Shape::new(2, 3, 4, 4);
        assert!(Geometry::new(xs, &spec(3, 8, 0, 1, 0)).is_err());
        assert!(Geometry::new(xs, &spec(3, 8, 3, 0, 1)).is_err());
        assert!(Geometry::new(xs, &spec(4, 8, 3, 1, 1)).is_err());
        assert!(
            Geometry::new(xs, &spec(3, 8, 7, 1, 1)).is_err(),
            "kernel larger than padded input"
        );
    }

    #[test]
    fn geometry_sizes_and_chunks() {
        let g = Geometry::new(Shape::new(5, 3, 9, 7), &spec(3, 8, 3, 2, 1)).ok();
        let g = g.as_ref();
        assert_eq!(
            g.map(|g| (g.ys, g.kk, g.ohw, g.direct)),
            Some((Shape::new(5, 8, 5, 4), 27, 20, false))
        );
        let chunks: Vec<_> = g.map(|g| g.chunks().collect()).unwrap_or_default();
        assert_eq!(chunks, vec![(0, 5)]);
        let direct = Geometry::new(Shape::new(3, 4, 2, 2), &spec(4, 2, 1, 1, 0)).ok();
        assert_eq!(direct.as_ref().map(|g| g.direct), Some(true));
    }

    #[test]
    fn big_images_are_chunked_within_budget() {
        // 64·9 rows × 256·256 columns = 37.7 M floats per image: one image per chunk.
        let g = Geometry::new(Shape::new(3, 64, 256, 256), &spec(64, 64, 3, 1, 1)).ok();
        let chunks: Vec<_> = g.as_ref().map(|g| g.chunks().collect()).unwrap_or_default();
        assert_eq!(chunks, vec![(0, 1), (1, 1), (2, 1)]);
        // 16·9 × 32·32 = 147 k floats per image: 227 images fit, the batch of 300 splits.
        let g = Geometry::new(Shape::new(300, 16, 32, 32), &spec(16, 16, 3, 1, 1)).ok();
        let chunks: Vec<_> = g.as_ref().map(|g| g.chunks().collect()).unwrap_or_default();
        assert_eq!(chunks, vec![(0, 227), (227, 73)]);
    }
}
