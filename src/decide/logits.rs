//! The decision straight from the head's low-resolution logits ([`Logits`]), so the
//! full-resolution probability maps are never written or read (they were most of the
//! per-frame work outside the model).
//!
//! A pixel's probability of class `d` is at most `exp(logit_d − max logit)`, so where its
//! logit is further than `ln(threshold)` below the pixel's maximum the class is ruled out.
//! Bilinear upsampling keeps every output between its source cell's extremes, so one test per
//! source cell (its four corners' largest logit of `d` against the largest of the classes'
//! smallest corners) rules out all of the cell's pixels at once; in our heads' ×4 output that
//! is 16 pixels per test. Only the pixels of cells that pass are upsampled and run through the
//! softmax, with the same arithmetic in the same order as [`Logits::to_probs`], so verdicts,
//! scores and areas equal those of [`Decider::decide`] on `to_probs()` bit for bit (a test
//! holds them to it). A frame with non-finite or huge logits, where those bounds do not hold,
//! takes the exact path at every pixel.
use super::{Decider, NONE, Verdict, check_geom};
use crate::infer::Logits;
use crate::infer::MapGeom;
use crate::infer::exp_nonpositive;
use crate::infer::upsample::Tap;

/// Slack under `ln(threshold)` for the fast exp's relative error (< 5e-7) and `ln`'s rounding.
const MARGIN: f32 = 1e-3;
/// Relative slack for the rounding of the interpolation (a few ulp of the values involved).
const ROUNDING: f32 = 1e-6;
/// Logits at or beyond this size may overflow the interpolation: exact path for the frame.
const HUGE: f32 = 1e30;

/// Per-frame buffers, grown to the source width and class count on first use.
#[derive(Debug, Default)]
pub(super) struct RowScratch {
    /// Per class, the larger and the smaller of each source column's two rows: `C·iw` each.
    hi: Vec<f32>,
    lo: Vec<f32>,
    /// Per source cell of the row: the largest of the classes' smallest corners.
    lo_max: Vec<f32>,
    /// Per source cell of the row: whether its pixels need the softmax.
    need: Vec<u8>,
    /// One pixel's upsampled logits.
    v: Vec<f32>,
    /// Per class: the bound under which a defect class is ruled out.
    bound: Vec<f32>,
}

impl RowScratch {
    fn size(&mut self, c: usize, iw: usize) {
        for (buf, n) in [
            (&mut self.hi, c * iw),
            (&mut self.lo, c * iw),
            (&mut self.lo_max, iw),
            (&mut self.v, c),
            (&mut self.bound, c),
        ] {
            buf.resize(n, 0.0);
        }
        self.need.resize(iw, 0);
    }
}

impl Decider {
    /// [`Decider::decide`] on the probabilities `logits` stand for: the softmax of their
    /// upsampling to the map. Same checks, same guarantees (no state changes on `Err`, no heap
    /// allocation after the first frame of a geometry), same verdict.
    pub fn decide_logits(
        &mut self,
        seq: u64,
        logits: &Logits,
        geom: &MapGeom,
        out: &mut Verdict,
    ) -> Result<(), String> {
        check_geom(geom)?;
        let c = self.cfg.defect.len();
        let (ih, iw) = logits.up.in_hw();
        if logits.classes() != c {
            return Err(format!(
                "logits: {} values are not {c} classes of {iw}x{ih}",
                logits.data.len()
            ));
        }
        if logits.up.out_hw() != (geom.map_h, geom.map_w) {
            let (oh, ow) = logits.up.out_hw();
            return Err(format!(
                "logits: upsampled to {ow}x{oh}, but the map is {}x{}",
                geom.map_w, geom.map_h
            ));
        }
        if self.cache.geom != Some(*geom) {
            self.rebuild_cache(geom);
        }
        out.seq = seq;
        out.defects.clear();
        self.label_logits(logits, geom);
        self.finish(geom, out);
        Ok(())
    }

    fn label_logits(&mut self, logits: &Logits, g: &MapGeom) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { self.label_logits_avx2(logits, g) };
        }
        self.label_logits_body(logits, g);
    }

    /// [`Self::label_logits`] compiled for AVX2 (the build's baseline is SSE2). AVX2 does not
    /// enable FMA, so the arithmetic rounds as the baseline's does.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn label_logits_avx2(&mut self, logits: &Logits, g: &MapGeom) {
        self.label_logits_body(logits, g);
    }

    #[inline(always)]
    fn label_logits_body(&mut self, logits: &Logits, g: &MapGeom) {
        let (cw, ch) = (g.content_w, g.content_h);
        let c = self.cfg.defect.len();
        let up = &logits.up;
        let (ih, iw) = up.in_hw();
        let (rows, cols) = (up.rows(), up.cols());
        let data = &logits.data[..];
        let Decider {
            cfg,
            defect_ids,
            cache,
            labels,
            best,
            rows: scratch,
            ..
        } = self;
        scratch.size(c, iw);
        let RowScratch {
            hi,
            lo,
            lo_max,
            need,
            v,
            bound,
        } = scratch;
        for &d in defect_ids.iter() {
            let b = cfg.threshold[d as usize].ln() - MARGIN;
            // Far below -87 the fast exp is clamped and the bound no longer holds.
            bound[d as usize] = if b < -80.0 { f32::NEG_INFINITY } else { b };
        }
        let mut px = Pixels {
            defect_ids,
            threshold: &cfg.threshold,
            bound,
            best_init: &cache.best_init,
            labels,
            best,
            cw,
        };
        // A fold rather than `all`: no early exit, so it vectorises.
        let tame = data.iter().fold(true, |t, x| t & (x.abs() < HUGE));
        for y in 0..ch {
            let lo = (y + 1) * (cw + 2) + 1;
            px.labels[lo..lo + cw].fill(NONE);
        }
        for a in 0..ih {
            let ys = up.rows_of(a);
            let ys = ys.start.min(ch)..ys.end.min(ch);
            if ys.is_empty() {
                continue;
            }
            let a1 = (a + 1).min(ih - 1);
            if tame {
                // Column extremes over the two source rows, per class.
                for k in 0..c {
                    let plane = &data[k * ih * iw..(k + 1) * ih * iw];
                    let (r0, r1) = (&plane[a * iw..(a + 1) * iw], &plane[a1 * iw..(a1 + 1) * iw]);
                    let (hk, lk) = (&mut hi[k * iw..(k + 1) * iw], &mut lo[k * iw..(k + 1) * iw]);
                    for (((h, l), &p), &q) in hk.iter_mut().zip(lk.iter_mut()).zip(r0).zip(r1) {
                        *h = p.max(q);
                        *l = p.min(q);
                    }
                }
                // Cell b spans source columns b and b + 1 (the last one only itself): the
                // pairs run over the shifted slices, so each loop vectorises.
                lo_max.fill(f32::NEG_INFINITY);
                for lk in lo.chunks_exact(iw) {
                    for ((m, &p), &q) in lo_max.iter_mut().zip(lk).zip(&lk[1..]) {
                        *m = m.max(p.min(q));
                    }
                    lo_max[iw - 1] = lo_max[iw - 1].max(lk[iw - 1]);
                }
                need.fill(0);
                for &d in px.defect_ids {
                    let hd = &hi[d as usize * iw..(d as usize + 1) * iw];
                    let bd = px.bound[d as usize];
                    let test = |n: &mut u8, h: f32, m: f32| {
                        let slack = ROUNDING * (h.abs() + m.abs());
                        // Tame logits: every term is finite, so `>=` decides as `!<` would.
                        *n |= u8::from(h - m >= bd - slack);
                    };
                    for (((n, &m), &p), &q) in need.iter_mut().zip(&*lo_max).zip(hd).zip(&hd[1..]) {
                        test(n, p.max(q), m);
                    }
                    test(&mut need[iw - 1], hd[iw - 1], lo_max[iw - 1]);
                }
            } else {
                need.fill(1);
            }
            for (b, &n) in need.iter().enumerate() {
                if n == 0 {
                    continue;
                }
                let xs = up.cols_of(b);
                let x0 = xs.start.min(cw);
                for (y, &ty) in rows[ys.clone()].iter().enumerate() {
                    for (x, &tx) in cols[x0..xs.end.min(cw)].iter().enumerate() {
                        px.label(data, (ih, iw), ty, tx, v, (x0 + x, ys.start + y));
                    }
                }
            }
        }
    }
}

/// What labelling one pixel reads and writes.
struct Pixels<'a> {
    defect_ids: &'a [u8],
    threshold: &'a [f32],
    /// Per class: the bound under which a defect class is ruled out.
    bound: &'a [f32],
    best_init: &'a [f32],
    labels: &'a mut [u8],
    best: &'a mut [f32],
    cw: usize,
}

impl Pixels<'_> {
    /// Labels content pixel `(x, y)`: its logits upsampled and its softmax, exactly as
    /// `resize_rows` and `softmax_strided` compute them, then the thresholds as `label_body`
    /// applies them (first eligible class wins, ties keep the lower id).
    #[inline(always)]
    fn label(
        &mut self,
        data: &[f32],
        (ih, iw): (usize, usize),
        ty: Tap,
        tx: Tap,
        v: &mut [f32],
        (x, y): (usize, usize),
    ) {
        for (k, vk) in v.iter_mut().enumerate() {
            let plane = &data[k * ih * iw..(k + 1) * ih * iw];
            let (r0, r1) = (&plane[ty.i0 * iw..], &plane[ty.i1 * iw..]);
            let h0 = r0[tx.i0] + tx.l * (r0[tx.i1] - r0[tx.i0]);
            let h1 = r1[tx.i0] + tx.l * (r1[tx.i1] - r1[tx.i0]);
            *vk = h0 + ty.l * (h1 - h0);
        }
        let m = v[1..].iter().fold(v[0], |m, &x| m.max(x));
        // The cell's test again, now on this pixel's own logits: most pixels of a cell that
        // passed are ruled out here, before any exp.
        if self
            .defect_ids
            .iter()
            .all(|&d| v[d as usize] - m < self.bound[d as usize])
        {
            return;
        }
        let mut s = 0.0f32;
        for x in v.iter_mut() {
            *x = exp_nonpositive(*x - m);
            s += *x;
        }
        let inv = 1.0 / s;
        let i = y * self.cw + x;
        let mut best = self.best_init[i];
        for &d in self.defect_ids {
            let p = v[d as usize] * inv;
            if p >= self.threshold[d as usize] && p > best {
                self.labels[(y + 1) * (self.cw + 2) + 1 + x] = d;
                best = p;
            }
        }
        self.best[i] = best;
    }
}

#[cfg(test)]
#[path = "logits_tests.rs"]
mod tests;
