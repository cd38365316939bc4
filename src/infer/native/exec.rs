//! Running a [`Plan`]: convolutions as im2col + GEMM per tile with the bias, ReLU and fused
//! sum applied while the tile is in cache; bilinear upsampling from two cached, horizontally
//! interpolated source rows; the rest element-wise. Work units go to the engine's own thread
//! pool (none for one thread). Nothing here allocates.
use super::gemm::{PAD_SLACK, PadLayout};
use super::graph::{Conv, Epilogue, Layer};
use super::plan::{ConvWork, Plan, RESIZE_BAND, Work};
use crate::infer::upsample::resize_rows;
use contextrast_model::im2col::im2col;
use rayon::prelude::*;
use std::sync::Mutex;

/// A raw arena pointer that may cross threads: every work unit writes a disjoint set of
/// elements (checked by the planner and by each unit's index arithmetic).
#[derive(Clone, Copy)]
struct Arena(*mut f32);
// SAFETY: see the type's doc; readers only read values no unit of the same step writes.
unsafe impl Send for Arena {}
unsafe impl Sync for Arena {}

impl Arena {
    /// The element `i` floats past this pointer.
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }

    /// # Safety
    /// `r` lies in the arena and no live `&mut` covers it.
    unsafe fn get(self, r: std::ops::Range<usize>) -> &'static [f32] {
        unsafe { std::slice::from_raw_parts(self.0.add(r.start), r.len()) }
    }
}

/// Per-thread scratch and the pool that runs work units.
pub struct Workers {
    pool: Option<rayon::ThreadPool>,
    scratch: Vec<Mutex<Vec<f32>>>,
}

impl Workers {
    /// `threads` workers (1 = the calling thread, no pool).
    pub fn new(threads: usize) -> Result<Workers, String> {
        let threads = threads.max(1);
        let pool = if threads > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("infer-{i}"))
                    .build()
                    .map_err(|e| format!("cannot start {threads} inference threads: {e}"))?,
            )
        } else {
            None
        };
        Ok(Workers {
            pool,
            scratch: (0..threads).map(|_| Mutex::new(Vec::new())).collect(),
        })
    }

    /// Number of worker threads (at least 1).
    pub fn threads(&self) -> usize {
        self.scratch.len()
    }

    /// Grows every thread's scratch to `len` floats (planning time, not per frame).
    pub fn reserve(&mut self, len: usize) {
        for s in &mut self.scratch {
            let s = s.get_mut().unwrap_or_else(|e| e.into_inner());
            if s.len() < len {
                s.resize(len, 0.0);
            }
        }
    }

    /// Runs `f(unit, scratch)` for every unit in `0..n`.
    fn each(&self, n: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
        let lock = |t: usize| {
            self.scratch[t.min(self.scratch.len() - 1)]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        };
        match &self.pool {
            None => {
                let mut s = lock(0);
                (0..n).for_each(|i| f(i, &mut s));
            }
            Some(pool) => {
                let units = || {
                    (0..n).into_par_iter().for_each(|i| {
                        // `f` never re-enters rayon, so a worker holds at most its own lock.
                        let mut s = lock(rayon::current_thread_index().unwrap_or(0));
                        f(i, &mut s);
                    })
                };
                if pool.current_thread_index().is_some() {
                    units();
                } else {
                    pool.install(units);
                }
            }
        }
    }

    /// Runs `f` (one frame's steps) on the pool, so the steps' work units are split among
    /// its threads without handing a job to the pool per step: each hand-off can allocate a
    /// block of rayon's injector queue.
    pub fn frame<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }
}

impl Plan {
    /// Runs the network on the input written through [`Plan::input_mut`].
    pub fn run(&mut self, workers: &Workers) {
        let arena = Arena(self.arena.as_mut_ptr());
        for (step, work) in self.net.steps.iter().zip(&self.work) {
            let out = self.range(step.output);
            // SAFETY (all views below): ranges come from the plan, which checked that each
            // step's output is disjoint from its inputs and that all lie in the arena.
            let input = |i: usize| unsafe { arena.get(self.range(step.inputs[i])) };
            match (&step.layer, work) {
                (Layer::Conv(conv), Work::Conv(cw)) => {
                    let x = input(0);
                    let add = conv.epi.add.map(|_| input(1));
                    let dst = Arena(arena.at(out.start));
                    workers.each(cw.tiles, |t, scratch| {
                        // SAFETY: tile `t` writes only its own columns of every output row.
                        unsafe { conv_tile(conv, cw, x, add, dst, t, scratch) }
                    });
                }
                (Layer::Resize { epi, .. }, Work::Resize { rows, cols }) => {
                    let [c, ih, iw] = self.shapes[step.inputs[0]];
                    let (oh, ow) = (rows.len(), cols.len());
                    let x = input(0);
                    let add = epi.add.map(|_| input(1));
                    let dst = Arena(arena.at(out.start));
                    let bands = oh.div_ceil(RESIZE_BAND);
                    workers.each(c * bands, |u, tmp| {
                        let (ch, b) = (u / bands, u % bands);
                        let y0 = b * RESIZE_BAND;
                        let y1 = (y0 + RESIZE_BAND).min(oh);
                        let src = &x[ch * ih * iw..(ch + 1) * ih * iw];
                        // SAFETY: unit (ch, b) writes only rows y0..y1 of plane ch.
                        let plane = unsafe {
                            std::slice::from_raw_parts_mut(
                                dst.at(ch * oh * ow + y0 * ow),
                                (y1 - y0) * ow,
                            )
                        };
                        let add = add.map(|a| &a[ch * oh * ow + y0 * ow..ch * oh * ow + y1 * ow]);
                        resize_rows(src, iw, &rows[y0..y1], cols, plane, tmp);
                        epilogue(plane, 0.0, add, epi);
                    });
                }
                (Layer::Relu, _) => {
                    let x = input(0);
                    let y =
                        unsafe { std::slice::from_raw_parts_mut(arena.at(out.start), out.len()) };
                    for (y, &x) in y.iter_mut().zip(x) {
                        *y = x.max(0.0);
                    }
                }
                (Layer::Add, _) => {
                    let (a, b) = (input(0), input(1));
                    let y =
                        unsafe { std::slice::from_raw_parts_mut(arena.at(out.start), out.len()) };
                    for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
                        *y = a + b;
                    }
                }
                (Layer::Concat, _) => {
                    let mut off = out.start;
                    for &v in &step.inputs {
                        let r = self.range(v);
                        if !self.in_place[v] {
                            let src = unsafe { arena.get(r.clone()) };
                            let y =
                                unsafe { std::slice::from_raw_parts_mut(arena.at(off), r.len()) };
                            y.copy_from_slice(src);
                        }
                        off += r.len();
                    }
                }
                _ => unreachable!("the planner pairs every layer with its work"),
            }
        }
    }
}

/// One column tile of a convolution: `dst[:, p0..p0+t] = W · col + b`, then ReLU, then the
/// fused sum. A direct 3×3 tile first pads the band of input rows it reads into its thread's
/// scratch (so padding is split among the threads with the tiles, needs no step of its own,
/// and is still in cache when the product reads it); other tiles build their im2col there.
///
/// # Safety
/// `dst` points at the output's `c_out × P` block, and no other thread writes columns
/// `p0..p0 + t` of it.
#[allow(clippy::too_many_arguments)]
unsafe fn conv_tile(
    conv: &Conv,
    cw: &ConvWork,
    x: &[f32],
    add: Option<&[f32]>,
    dst: Arena,
    t_idx: usize,
    scratch: &mut [f32],
) {
    let g = &cw.geom;
    let (p, k, c_out) = (g.p(), g.rows(), conv.spec.c_out);
    let p0 = t_idx * cw.tile;
    let t = cw.tile.min(p - p0);
    if cw.direct {
        // Tiles are whole output rows.
        let (y0, y1) = (p0 / g.ow, (p0 + t) / g.ow);
        let l = PadLayout::new(g.h, g.w, g.stride);
        let rows = l.rows_for(y1 - y0);
        let band = l.band(rows);
        let xp = &mut scratch[..g.c_in * band + PAD_SLACK];
        for (c, xb) in xp.chunks_exact_mut(band).enumerate().take(g.c_in) {
            l.pad_rows(x, c, y0 * g.stride, rows, xb);
        }
        for y in y0..y1 {
            // SAFETY: `xp` holds this tile's bands plus slack (`k = 9·c_in`, the plan sized
            // the scratch); row y of every output channel belongs to this tile.
            unsafe {
                super::gemm::conv3x3_row(
                    &cw.packed,
                    xp.as_ptr(),
                    l,
                    rows,
                    (y - y0) * g.stride,
                    g.ow,
                    dst.at(y * g.ow),
                    p,
                )
            };
        }
    } else {
        let (rhs, ldb) = if g.is_pointwise() {
            (x[p0..].as_ptr(), p)
        } else {
            let col = &mut scratch[..k * t];
            im2col(x, g, p0, t, col);
            (col.as_ptr(), t)
        };
        // SAFETY: rhs is `k × t` with rows `ldb` apart inside `x` or `col`; dst rows are `p`
        // apart and this tile's columns are its own.
        unsafe { super::gemm::gemm(&cw.packed, rhs, ldb, t, dst.at(p0), p) };
    }
    for o in 0..c_out {
        // SAFETY: row `o` of this tile, inside the block and owned by this tile.
        let row = unsafe { std::slice::from_raw_parts_mut(dst.at(o * p + p0), t) };
        let add = add.map(|a| &a[o * p + p0..o * p + p0 + t]);
        epilogue(row, conv.bias[o], add, &conv.epi);
    }
}

/// `v = v + b`, then ReLU, `+ add`, ReLU as `epi` asks; one loop per case so each vectorises.
fn epilogue(row: &mut [f32], b: f32, add: Option<&[f32]>, epi: &Epilogue) {
    let lo = |on: bool| if on { 0.0 } else { f32::NEG_INFINITY };
    match add {
        None => {
            let lo = lo(epi.relu || epi.relu_after);
            row.iter_mut().for_each(|v| *v = (*v + b).max(lo));
        }
        Some(a) => {
            let (lo1, lo2) = (lo(epi.relu), lo(epi.relu_after));
            for (v, &a) in row.iter_mut().zip(a) {
                *v = ((*v + b).max(lo1) + a).max(lo2);
            }
        }
    }
}
