//! A bounds-checked wrapper around `gemm::gemm`. The crate takes raw pointers and strides; every
//! call in the backend goes through here so the one `unsafe` block sits next to the checks that
//! make it sound.
use crate::{Error, Result};
use gemm::Parallelism;

/// A read-only strided matrix view: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(super) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

/// A mutable strided matrix view, laid out like [`MatRef`].
pub(super) struct MatMut<'a> {
    pub data: &'a mut [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A dense row-major `rows × cols` matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }
    /// The transpose of a dense row-major `rows × cols` matrix (a `cols × rows` view).
    pub fn rows_t(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows: cols,
            cols: rows,
            rs: 1,
            cs: cols,
        }
    }
}

impl<'a> MatMut<'a> {
    /// A dense row-major `rows × cols` matrix.
    pub fn rows(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        MatMut {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }
}

/// Number of elements a view reaches, i.e. one past its largest index.
fn span(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// Whether distinct `(i, j)` of a view map to distinct indices (row- or column-major-like
/// strides), so that threads inside gemm never write one element twice.
fn distinct(rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    match (rows <= 1, cols <= 1) {
        (true, true) => true,
        (true, false) => cs >= 1,
        (false, true) => rs >= 1,
        (false, false) => (cs >= 1 && rs >= cs * cols) || (rs >= 1 && cs >= rs * rows),
    }
}

fn to_isize(v: usize) -> Result<isize> {
    isize::try_from(v).map_err(|_| Error::Shape(format!("gemm: stride {v} overflows isize")))
}

/// `dst = lhs·rhs` (or `dst += lhs·rhs` when `accumulate`), single-threaded: callers parallelise
/// over images or tiles, which beats splitting one small GEMM across threads.
pub(super) fn gemm(
    dst: MatMut<'_>,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    accumulate: bool,
) -> Result<()> {
    gemm_with(dst, lhs, rhs, accumulate, Parallelism::None)
}

/// [`gemm`] with an explicit threading choice; `Parallelism::Rayon(n)` only pays for big
/// single products (see `peak.rs`).
pub(super) fn gemm_with(
    dst: MatMut<'_>,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    accumulate: bool,
    par: Parallelism,
) -> Result<()> {
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    if lhs.rows != m || rhs.cols != n || rhs.rows != k {
        return Err(Error::Shape(format!(
            "gemm: dst {m}×{n} = lhs {}×{} · rhs {}×{}",
            lhs.rows, lhs.cols, rhs.rows, rhs.cols
        )));
    }
    let checks = [
        ("dst", span(m, n, dst.rs, dst.cs), dst.data.len()),
        ("lhs", span(m, k, lhs.rs, lhs.cs), lhs.data.len()),
        ("rhs", span(k, n, rhs.rs, rhs.cs), rhs.data.len()),
    ];
    for (name, need, have) in checks {
        if need > have {
            return Err(Error::Shape(format!(
                "gemm: {name} view needs {need} elements, buffer has {have}"
            )));
        }
    }
    if !distinct(m, n, dst.rs, dst.cs) {
        return Err(Error::Shape(format!(
            "gemm: dst strides ({}, {}) overlap",
            dst.rs, dst.cs
        )));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst.data[i * dst.rs + j * dst.cs] = 0.0;
                }
            }
        }
        return Ok(());
    }
    let (d_rs, d_cs) = (to_isize(dst.rs)?, to_isize(dst.cs)?);
    let (l_rs, l_cs) = (to_isize(lhs.rs)?, to_isize(lhs.cs)?);
    let (r_rs, r_cs) = (to_isize(rhs.rs)?, to_isize(rhs.cs)?);
    // SAFETY: the checks above guarantee every index the three views reach lies inside its
    // slice; `dst` is a unique borrow, so it cannot alias `lhs` or `rhs`; and its strides map
    // distinct (i, j) to distinct elements, so threads inside gemm never write one twice.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            d_cs,
            d_rs,
            accumulate,
            lhs.data.as_ptr(),
            l_cs,
            l_rs,
            rhs.data.as_ptr(),
            r_cs,
            r_rs,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}
