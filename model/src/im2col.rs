//! im2col and its adjoint col2im for one image. Row `r = (c·k + ki)·k + kj` of the column matrix
//! holds, for each output position, the input pixel that kernel tap `(c, ki, kj)` sees (0 in the
//! padding). Inner loops run over a contiguous range of valid output columns, so there is no
//! per-pixel bounds branch.
use crate::ConvSpec;

/// The geometry of one image's convolution.
#[derive(Clone, Copy, Debug)]
pub struct Geom {
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel side.
    pub k: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

impl Geom {
    /// The geometry of `spec` applied to an `h`×`w` input.
    pub fn new(spec: &ConvSpec, h: usize, w: usize) -> Self {
        let (oh, ow) = spec.out_hw(h, w);
        Geom {
            c_in: spec.c_in,
            h,
            w,
            k: spec.k,
            stride: spec.stride,
            pad: spec.pad,
            oh,
            ow,
        }
    }
    /// Output positions per image: the GEMM's N.
    pub fn p(&self) -> usize {
        self.oh * self.ow
    }
    /// Rows of the column matrix: the GEMM's K.
    pub fn rows(&self) -> usize {
        self.c_in * self.k * self.k
    }
    /// 1×1, stride 1, no padding: the input already is the column matrix.
    pub fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }
}

/// Output indices `[lo, hi)` along one axis whose input index `o·stride + off − pad` lies in
/// `0..len`.
fn valid(off: usize, pad: usize, stride: usize, len: usize, out: usize) -> (usize, usize) {
    let lo = if off >= pad {
        0
    } else {
        (pad - off).div_ceil(stride)
    };
    let hi = if len + pad <= off {
        0
    } else {
        ((len - 1 + pad - off) / stride + 1).min(out)
    };
    (lo.min(hi), hi)
}

/// Input row for output row `o` and tap `off`, or `None` in the padding.
fn src_index(o: usize, off: usize, g: &Geom, len: usize) -> Option<usize> {
    (o * g.stride + off).checked_sub(g.pad).filter(|&i| i < len)
}

/// Writes output columns `p0..p0 + t` of the column matrix of `x` (`c_in × h × w`) into `col`
/// (`rows × t`, row-major).
pub fn im2col(x: &[f32], g: &Geom, p0: usize, t: usize, col: &mut [f32]) {
    let (k, s, hw) = (g.k, g.stride, g.h * g.w);
    for c in 0..g.c_in {
        let plane = &x[c * hw..(c + 1) * hw];
        for ki in 0..k {
            for kj in 0..k {
                let r = (c * k + ki) * k + kj;
                let row = &mut col[r * t..(r + 1) * t];
                let (xlo, xhi) = valid(kj, g.pad, s, g.w, g.ow);
                let mut p = p0;
                while p < p0 + t {
                    let (oy, ox0) = (p / g.ow, p % g.ow);
                    let ox1 = g.ow.min(ox0 + (p0 + t - p));
                    let dst = &mut row[p - p0..p - p0 + (ox1 - ox0)];
                    // Valid columns of this segment; empty when it lies wholly in the padding.
                    let lo = xlo.clamp(ox0, ox1);
                    let hi = xhi.clamp(lo, ox1);
                    match src_index(oy, ki, g, g.h) {
                        Some(iy) if lo < hi => {
                            let src = &plane[iy * g.w..(iy + 1) * g.w];
                            dst[..lo - ox0].fill(0.0);
                            dst[hi - ox0..].fill(0.0);
                            let first = lo * s + kj - g.pad;
                            let out = &mut dst[lo - ox0..hi - ox0];
                            let n = hi - lo;
                            if s == 1 {
                                out.copy_from_slice(&src[first..first + n]);
                            } else {
                                // An exact-length source slice lets the compiler drop the
                                // bounds checks; `step_by` does not vectorise.
                                let src = &src[first..first + s * (n - 1) + 1];
                                for (i, o) in out.iter_mut().enumerate() {
                                    *o = src[i * s];
                                }
                            }
                        }
                        _ => dst.fill(0.0),
                    }
                    p += ox1 - ox0;
                }
            }
        }
    }
}

/// The adjoint of [`im2col`] over all output columns: adds `col` (`cn·k·k × p`, the rows of
/// `cn` consecutive input channels) into `dx` (`cn × h × w`).
pub fn col2im_add(col: &[f32], g: &Geom, cn: usize, dx: &mut [f32]) {
    let (k, s, hw, p) = (g.k, g.stride, g.h * g.w, g.p());
    for c in 0..cn {
        let plane = &mut dx[c * hw..(c + 1) * hw];
        for ki in 0..k {
            for kj in 0..k {
                let r = (c * k + ki) * k + kj;
                let row = &col[r * p..(r + 1) * p];
                let (lo, hi) = valid(kj, g.pad, s, g.w, g.ow);
                if lo >= hi {
                    continue;
                }
                for oy in 0..g.oh {
                    let Some(iy) = src_index(oy, ki, g, g.h) else {
                        continue;
                    };
                    let dst = &mut plane[iy * g.w..(iy + 1) * g.w];
                    let src = &row[oy * g.ow + lo..oy * g.ow + hi];
                    let first = lo * s + kj - g.pad;
                    if s == 1 {
                        dst[first..first + (hi - lo)]
                            .iter_mut()
                            .zip(src)
                            .for_each(|(d, v)| *d += v);
                    } else {
                        for (d, v) in dst[first..].iter_mut().step_by(s).zip(src) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}
