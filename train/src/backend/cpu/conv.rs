//! Convolution as im2col + GEMM. Per image, with `P = oh·ow` and `K = c_in·k·k`:
//! forward `y[c_out × P] = W[c_out × K] · col[K × P]`; backward-input
//! `dcol = Wᵀ · dy` then col2im; backward-weight `dW += dy · colᵀ`. Work is split into
//! (image, tile) units, each running a single-threaded GEMM: with few images and two cores,
//! splitting one small-M GEMM across threads loses (see platform notes), tiling does not.
//! 1×1 stride-1 convs read the input as the column matrix directly.
use super::Cpu;
use super::matmul::{MatMut, MatRef, gemm};
use super::{check_len, check_shape};
use crate::backend::ops::ConvOps;
use crate::backend::{ConvSpec, Shape};
use crate::{Error, Result};
use contextrast_model::im2col::{Geom, col2im_add, im2col};
use rayon::prelude::*;
use std::ops::Range;

/// Column-matrix elements one tile may hold (16 MiB of f32): bounds scratch memory per thread.
const COL_BUDGET: usize = 1 << 22;
/// Narrowest tile worth a GEMM call; narrower ones waste the microkernel.
const MIN_TILE: usize = 256;

/// Checks the spec against the input shape and returns the per-image geometry.
fn geometry(op: &str, xs: Shape, spec: &ConvSpec) -> Result<Geom> {
    let bad = |msg: String| {
        Err(Error::Shape(format!(
            "{op}: {msg} (input {xs}, spec {spec:?})"
        )))
    };
    if spec.k == 0 || spec.stride == 0 || spec.c_in == 0 || spec.c_out == 0 {
        return bad("kernel, stride and channel counts must be at least 1".into());
    }
    if xs.c != spec.c_in {
        return bad(format!(
            "input has {} channels, conv expects {}",
            xs.c, spec.c_in
        ));
    }
    if xs.h == 0 || xs.w == 0 || xs.h + 2 * spec.pad < spec.k || xs.w + 2 * spec.pad < spec.k {
        return bad("padded input is smaller than the kernel".into());
    }
    Ok(Geom::new(spec, xs.h, xs.w))
}

/// How many pieces to cut one image's work into: enough for every thread to have a unit, and
/// enough to keep each piece's scratch under `COL_BUDGET`, but no piece narrower than
/// `min_width` of the `width` being cut. `forced` (tests) overrides the choice.
fn pieces(
    n: usize,
    col_elems: usize,
    width: usize,
    min_width: usize,
    forced: Option<usize>,
) -> usize {
    if let Some(f) = forced {
        return f.clamp(1, width.max(1));
    }
    let for_threads = rayon::current_num_threads().div_ceil(n.max(1));
    let for_memory = col_elems.div_ceil(COL_BUDGET);
    for_threads
        .max(for_memory)
        .min((width / min_width.max(1)).max(1))
}

/// Forward pass of columns `p0..p0 + t` of one image into `out` (`c_out × t`, row-major).
fn forward_tile(
    x_n: &[f32],
    w: &[f32],
    g: &Geom,
    cols: Range<usize>,
    col: &mut Vec<f32>,
    out: &mut [f32],
) -> Result<()> {
    let (p0, t, c_out) = (cols.start, cols.len(), w.len() / g.rows());
    let lhs = MatRef::rows(w, c_out, g.rows());
    let dst = MatMut::rows(out, c_out, t);
    if g.is_pointwise() {
        let rhs = MatRef {
            data: &x_n[p0..],
            rows: g.c_in,
            cols: t,
            rs: g.p(),
            cs: 1,
        };
        return gemm(dst, lhs, rhs, false);
    }
    col.resize(g.rows() * t, 0.0);
    im2col(x_n, g, p0, t, col);
    gemm(dst, lhs, MatRef::rows(col, g.rows(), t), false)
}

/// `y = conv(x, w) + b`; `tiles` forces the number of column tiles per image (tests).
pub(super) fn forward(
    x: &[f32],
    xs: Shape,
    w: &[f32],
    b: Option<&[f32]>,
    spec: &ConvSpec,
    tiles: Option<usize>,
) -> Result<Vec<f32>> {
    const OP: &str = "conv2d_forward";
    let g = geometry(OP, xs, spec)?;
    check_shape(OP, "x", x.len(), xs)?;
    check_len(OP, "w", w.len(), spec.weight_len())?;
    if let Some(b) = b {
        check_len(OP, "b", b.len(), spec.c_out)?;
    }
    let (c_out, p) = (spec.c_out, g.p());
    let mut y = vec![0.0; spec.out_shape(xs).numel()];
    if y.is_empty() {
        return Ok(y);
    }
    let per_image = pieces(xs.n, g.rows() * p, p, MIN_TILE, tiles);
    let tile = p.div_ceil(per_image);
    y.par_chunks_mut(c_out * p)
        .zip(x.par_chunks(xs.c * xs.h * xs.w))
        .try_for_each_init(Vec::new, |col, (y_n, x_n)| -> Result<()> {
            if tile >= p {
                forward_tile(x_n, w, &g, 0..p, col, y_n)?;
            } else {
                let parts: Vec<Vec<f32>> = (0..p.div_ceil(tile))
                    .into_par_iter()
                    .map_init(Vec::new, |col, i| {
                        let (p0, t) = (i * tile, tile.min(p - i * tile));
                        let mut out = vec![0.0; c_out * t];
                        forward_tile(x_n, w, &g, p0..p0 + t, col, &mut out).map(|()| out)
                    })
                    .collect::<Result<_>>()?;
                for (i, part) in parts.iter().enumerate() {
                    let t = part.len() / c_out;
                    for co in 0..c_out {
                        let dst = co * p + i * tile;
                        y_n[dst..dst + t].copy_from_slice(&part[co * t..(co + 1) * t]);
                    }
                }
            }
            if let Some(b) = b {
                for (row, &bias) in y_n.chunks_mut(p).zip(b) {
                    row.iter_mut().for_each(|v| *v += bias);
                }
            }
            Ok(())
        })?;
    Ok(y)
}

/// `dx` of a convolution; `groups` forces the number of input-channel groups per image (tests).
/// Groups own disjoint input channels, so their col2im writes never overlap.
pub(super) fn backward_input(
    dy: &[f32],
    w: &[f32],
    xs: Shape,
    spec: &ConvSpec,
    groups: Option<usize>,
) -> Result<Vec<f32>> {
    const OP: &str = "conv2d_backward_input";
    let g = geometry(OP, xs, spec)?;
    check_shape(OP, "dy", dy.len(), spec.out_shape(xs))?;
    check_len(OP, "w", w.len(), spec.weight_len())?;
    let (c_out, p, hw, kk) = (spec.c_out, g.p(), xs.h * xs.w, g.k * g.k);
    let mut dx = vec![0.0; xs.numel()];
    if dx.is_empty() {
        return Ok(dx);
    }
    let per_image = pieces(xs.n, g.rows() * p, xs.c, 1, groups);
    let cg = xs.c.div_ceil(per_image);
    dx.par_chunks_mut(xs.c * hw)
        .zip(dy.par_chunks(c_out * p))
        .try_for_each(|(dx_n, dy_n)| {
            dx_n.par_chunks_mut(cg * hw).enumerate().try_for_each_init(
                Vec::new,
                |col, (gi, dx_g)| -> Result<()> {
                    let cn = dx_g.len() / hw;
                    // Rows c0·k·k .. of Wᵀ: element (r, co) is w[co·K + c0·k·k + r].
                    let lhs = MatRef {
                        data: &w[gi * cg * kk..],
                        rows: cn * kk,
                        cols: c_out,
                        rs: 1,
                        cs: g.rows(),
                    };
                    let rhs = MatRef::rows(dy_n, c_out, p);
                    if g.is_pointwise() {
                        return gemm(MatMut::rows(dx_g, cn, p), lhs, rhs, false);
                    }
                    col.resize(cn * kk * p, 0.0);
                    gemm(MatMut::rows(col, cn * kk, p), lhs, rhs, false)?;
                    col2im_add(col, &g, cn, dx_g);
                    Ok(())
                },
            )
        })?;
    Ok(dx)
}

/// `dw += ∂L/∂w`, `db += ∂L/∂b`; `tiles` forces the column tiles per image (tests).
/// Units (image, tile) are cut into one contiguous run per thread, each summing into its own
/// partial; partials are added in a fixed order, so the result does not depend on scheduling.
pub(super) fn backward_weight(
    x: &[f32],
    xs: Shape,
    dy: &[f32],
    spec: &ConvSpec,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    tiles: Option<usize>,
) -> Result<()> {
    const OP: &str = "conv2d_backward_weight";
    let g = geometry(OP, xs, spec)?;
    check_shape(OP, "x", x.len(), xs)?;
    check_shape(OP, "dy", dy.len(), spec.out_shape(xs))?;
    check_len(OP, "dw", dw.len(), spec.weight_len())?;
    if let Some(db) = db.as_deref() {
        check_len(OP, "db", db.len(), spec.c_out)?;
    }
    let (c_out, p, rows, chw) = (spec.c_out, g.p(), g.rows(), xs.c * xs.h * xs.w);
    let per_image = pieces(xs.n, rows * p, p, MIN_TILE, tiles);
    let tile = p.div_ceil(per_image);
    let per = p.div_ceil(tile);
    let units = xs.n * per;
    if units == 0 {
        return Ok(());
    }
    let runs = units.min(rayon::current_num_threads().max(1));
    let (want_db, w_len) = (db.is_some(), dw.len());
    let partials: Vec<(Vec<f32>, Vec<f64>)> = (0..runs)
        .into_par_iter()
        .map(|run| -> Result<(Vec<f32>, Vec<f64>)> {
            let mut dw_p = vec![0.0f32; w_len];
            let mut db_p = vec![0.0f64; if want_db { c_out } else { 0 }];
            let mut col = Vec::new();
            for u in run * units / runs..(run + 1) * units / runs {
                let (img, p0) = (u / per, (u % per) * tile);
                let t = tile.min(p - p0);
                let (x_n, dy_n) = (
                    &x[img * chw..(img + 1) * chw],
                    &dy[img * c_out * p..(img + 1) * c_out * p],
                );
                let lhs = MatRef {
                    data: &dy_n[p0..],
                    rows: c_out,
                    cols: t,
                    rs: p,
                    cs: 1,
                };
                // colᵀ (t × K): element (q, r) is col[r·t + q], or x[r·P + p0 + q] for 1×1.
                let rhs = if g.is_pointwise() {
                    MatRef {
                        data: &x_n[p0..],
                        rows: t,
                        cols: rows,
                        rs: 1,
                        cs: p,
                    }
                } else {
                    col.resize(rows * t, 0.0);
                    im2col(x_n, &g, p0, t, &mut col);
                    MatRef::rows_t(&col, rows, t)
                };
                gemm(MatMut::rows(&mut dw_p, c_out, rows), lhs, rhs, true)?;
                for (co, acc) in db_p.iter_mut().enumerate() {
                    *acc += dy_n[co * p + p0..co * p + p0 + t]
                        .iter()
                        .map(|&v| f64::from(v))
                        .sum::<f64>();
                }
            }
            Ok((dw_p, db_p))
        })
        .collect::<Result<_>>()?;
    let mut db = db;
    for (dw_p, db_p) in &partials {
        dw.iter_mut().zip(dw_p).for_each(|(d, v)| *d += v);
        if let Some(db) = db.as_deref_mut() {
            db.iter_mut().zip(db_p).for_each(|(d, &v)| *d += v as f32);
        }
    }
    Ok(())
}

impl ConvOps for Cpu {
    fn conv2d_forward(
        &self,
        x: &Vec<f32>,
        xs: Shape,
        w: &Vec<f32>,
        b: Option<&Vec<f32>>,
        spec: &ConvSpec,
    ) -> Result<Vec<f32>> {
        forward(x, xs, w, b.map(|b| b.as_slice()), spec, None)
    }
    fn conv2d_backward_input(
        &self,
        dy: &Vec<f32>,
        w: &Vec<f32>,
        xs: Shape,
        spec: &ConvSpec,
    ) -> Result<Vec<f32>> {
        backward_input(dy, w, xs, spec, None)
    }
    fn conv2d_backward_weight(
        &self,
        x: &Vec<f32>,
        xs: Shape,
        dy: &Vec<f32>,
        spec: &ConvSpec,
        dw: &mut Vec<f32>,
        db: Option<&mut Vec<f32>>,
    ) -> Result<()> {
        backward_weight(x, xs, dy, spec, dw, db.map(|b| b.as_mut_slice()), None)
    }
}
