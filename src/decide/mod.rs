//! Per-frame verdict from a segmentation model's per-class probability maps.
//!
//! Pipeline per frame: label each content pixel (inside the ROI union) with the
//! strongest defect class above its threshold, group same-label pixels into
//! 8-connected components, drop components smaller than the class minimum area
//! (in frame pixels), then confirm the frame verdict with a k-of-n history.
//!
//! All per-frame buffers live in [`Decider`] and are sized once per geometry, so
//! steady-state [`Decider::decide`] does not touch the heap.
use crate::infer::MapGeom;

/// A region of interest in frame (image) pixel coordinates.
#[derive(Debug, Clone, PartialEq)]
pub enum Roi {
    /// Axis-aligned rectangle; a point is inside when `x <= px < x + w` (same in y).
    Rect {
        /// Left edge.
        x: f32,
        /// Top edge.
        y: f32,
        /// Width.
        w: f32,
        /// Height.
        h: f32,
    },
    /// Simple polygon (even-odd rule, so concave shapes work); at least 3 vertices.
    Polygon(Vec<[f32; 2]>),
}

/// Resolved decision settings (names already mapped to class ids by the config loader).
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionConfig {
    /// Empty = whole frame; otherwise the union of the regions.
    pub roi: Vec<Roi>,
    /// Per class: whether it is a defect class.
    pub defect: Vec<bool>,
    /// Per class probability threshold, in (0, 1].
    pub threshold: Vec<f32>,
    /// Per class minimum component area, in FRAME pixels.
    pub min_area_px: Vec<f64>,
    /// Frame is rejected when at least `confirm_k` of the last `confirm_n` frames were defective.
    pub confirm_k: usize,
    /// History length for k-of-n confirmation.
    pub confirm_n: usize,
}

/// One connected defect region.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Defect {
    /// Class id (model output channel) of the defect.
    pub class_id: u8,
    /// Area in frame pixels (map pixel count scaled by the content-to-frame ratio).
    pub area_px: f64,
    /// `[x0, y0, x1, y1]`, half-open, frame pixels, clamped to the frame.
    pub bbox: [u32; 4],
    /// Max probability of `class_id` over the component.
    pub score: f32,
    /// Mean probability of `class_id` over the component.
    pub mean_score: f32,
}

/// Result for one frame. Reused across frames so its `defects` Vec keeps its capacity.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// The frame's capture sequence number ([`Frame::seq`](crate::capture::Frame::seq)).
    pub seq: u64,
    /// Sorted by descending area.
    pub defects: Vec<Defect>,
    /// This frame has at least one defect.
    pub defective: bool,
    /// Defective and confirmed by the k-of-n history.
    pub reject: bool,
}

impl Verdict {
    /// An empty verdict (not defective, no defects), to be filled by [`Decider::decide`].
    pub fn new() -> Verdict {
        Verdict::default()
    }
}

/// Label of a pixel that carries no defect.
const NONE: u8 = u8::MAX;
/// Label of a pixel already claimed by a component; distinct from every class id
/// so the flood fill needs no separate visited buffer.
const SEEN: u8 = u8::MAX - 1;
/// Class ids must stay below the two sentinels.
const MAX_CLASSES: usize = SEEN as usize;

/// Per-geometry state, rebuilt only when the [`MapGeom`] changes.
#[derive(Debug, Default)]
struct GeomCache {
    geom: Option<MapGeom>,
    /// Content-sized initial `best` value: 0 inside the ROI, +inf outside (see `label`).
    best_init: Vec<f32>,
    /// Frame pixels per content pixel, x and y.
    sx: f64,
    sy: f64,
}

/// Turns probability maps into verdicts; holds the reusable buffers and the k-of-n history.
#[derive(Debug)]
pub struct Decider {
    cfg: DecisionConfig,
    /// Class ids of the defect classes, so the per-pixel loop skips the others.
    defect_ids: Vec<u8>,
    cache: GeomCache,
    /// `(content_w + 2) x (content_h + 2)`: winning defect class or [`NONE`]/[`SEEN`].
    /// The one-pixel [`NONE`] border lets the flood fill visit neighbours without edge tests.
    labels: Vec<u8>,
    /// Content-sized: probability of the winning class.
    best: Vec<f32>,
    /// Flood-fill stack of padded runs `[x_start, x_end, y]`; capacity = content pixels
    /// (each pixel is in at most one pushed run), so it never grows.
    stack: Vec<[u32; 3]>,
    /// Ring buffer of the last `confirm_n` frames' `defective`.
    history: Vec<bool>,
    hist_pos: usize,
    /// Row buffers of the decision on logits (see [`logits`]).
    rows: logits::RowScratch,
}

fn finite(v: f32) -> bool {
    v.is_finite()
}

impl Decider {
    /// Validates the config up front so `decide` never has to.
    pub fn new(cfg: DecisionConfig) -> Result<Decider, String> {
        let c = cfg.defect.len();
        if c == 0 {
            return Err("decision config: no classes".into());
        }
        if c > MAX_CLASSES {
            return Err(format!(
                "decision config: {c} classes, at most {MAX_CLASSES} supported"
            ));
        }
        if cfg.threshold.len() != c || cfg.min_area_px.len() != c {
            return Err(format!(
                "decision config: per-class lengths differ (defect {c}, threshold {}, min_area_px {})",
                cfg.threshold.len(),
                cfg.min_area_px.len()
            ));
        }
        for (i, &t) in cfg.threshold.iter().enumerate() {
            if !(t > 0.0 && t <= 1.0) {
                return Err(format!(
                    "decision config: threshold[{i}] = {t} not in (0, 1]"
                ));
            }
        }
        for (i, &a) in cfg.min_area_px.iter().enumerate() {
            if !(a.is_finite() && a >= 0.0) {
                return Err(format!(
                    "decision config: min_area_px[{i}] = {a} must be finite and >= 0"
                ));
            }
        }
        if cfg.confirm_k < 1 || cfg.confirm_k > cfg.confirm_n {
            return Err(format!(
                "decision config: need 1 <= confirm_k <= confirm_n, got k={} n={}",
                cfg.confirm_k, cfg.confirm_n
            ));
        }
        for (i, roi) in cfg.roi.iter().enumerate() {
            match roi {
                Roi::Rect { x, y, w, h } => {
                    if ![*x, *y, *w, *h].into_iter().all(finite) || *w < 0.0 || *h < 0.0 {
                        return Err(format!(
                            "decision config: roi[{i}] rect needs finite coords and w, h >= 0"
                        ));
                    }
                }
                Roi::Polygon(pts) => {
                    if pts.len() < 3 {
                        return Err(format!(
                            "decision config: roi[{i}] polygon has {} points, need >= 3",
                            pts.len()
                        ));
                    }
                    if !pts.iter().flatten().copied().all(finite) {
                        return Err(format!(
                            "decision config: roi[{i}] polygon has non-finite coords"
                        ));
                    }
                }
            }
        }
        let defect_ids = (0..c)
            .filter(|&i| cfg.defect[i])
            .map(|i| i as u8) // c <= MAX_CLASSES, checked above
            .collect();
        let history = vec![false; cfg.confirm_n];
        Ok(Decider {
            cfg,
            defect_ids,
            cache: GeomCache::default(),
            labels: Vec::new(),
            best: Vec::new(),
            stack: Vec::new(),
            history,
            hist_pos: 0,
            rows: logits::RowScratch::default(),
        })
    }

    /// Forgets the k-of-n history (e.g. after a line stop).
    pub fn reset_history(&mut self) {
        self.history.fill(false);
        self.hist_pos = 0;
    }

    /// `probs`: `C x map_h x map_w` probabilities, channel-major (C = number of classes).
    ///
    /// All checks run before any state changes, so on `Err` neither the history nor `out`
    /// is touched. No heap allocation after the first frame of a geometry, unless a frame
    /// has more defects than `out.defects` has ever held.
    pub fn decide(
        &mut self,
        seq: u64,
        probs: &[f32],
        geom: &MapGeom,
        out: &mut Verdict,
    ) -> Result<(), String> {
        check_geom(geom)?;
        let c = self.cfg.defect.len();
        let plane = geom.map_w * geom.map_h; // no overflow: checked in check_geom
        let expected = plane
            .checked_mul(c)
            .ok_or_else(|| "probs: C x map_h x map_w overflows usize".to_string())?;
        if probs.len() != expected {
            return Err(format!(
                "probs: length {} != C*map_h*map_w = {c}*{}*{} = {expected}",
                probs.len(),
                geom.map_h,
                geom.map_w
            ));
        }
        if self.cache.geom != Some(*geom) {
            self.rebuild_cache(geom);
        }

        out.seq = seq;
        out.defects.clear();
        self.label(probs, geom);
        self.finish(geom, out);
        Ok(())
    }

    /// From the labelled map to the verdict: components, their order, the k-of-n history.
    fn finish(&mut self, geom: &MapGeom, out: &mut Verdict) {
        self.components(geom, out);
        out.defects.sort_unstable_by(|a, b| {
            b.area_px
                .total_cmp(&a.area_px)
                .then(a.class_id.cmp(&b.class_id))
                .then(a.bbox.cmp(&b.bbox))
        });
        out.defective = !out.defects.is_empty();
        out.reject = self.push_history(out.defective);
    }

    /// Sizes the buffers and rasterises the ROI for a new geometry (the only allocating path).
    fn rebuild_cache(&mut self, g: &MapGeom) {
        let (cw, ch) = (g.content_w, g.content_h);
        let n = cw * ch;
        self.labels.clear();
        self.labels.resize((cw + 2) * (ch + 2), NONE);
        self.best.clear();
        self.best.resize(n, 0.0);
        self.stack.clear();
        self.stack.reserve_exact(n);
        let sx = f64::from(g.frame_w) / cw as f64;
        let sy = f64::from(g.frame_h) / ch as f64;
        self.cache.best_init.clear();
        self.cache.best_init.reserve_exact(n);
        for y in 0..ch {
            let fy = (y as f64 + 0.5) * sy;
            for x in 0..cw {
                let fx = (x as f64 + 0.5) * sx;
                let roi = &self.cfg.roi;
                let inside = roi.is_empty() || roi.iter().any(|r| roi_contains(r, fx, fy));
                self.cache
                    .best_init
                    .push(if inside { 0.0 } else { f32::INFINITY });
            }
        }
        self.cache.sx = sx;
        self.cache.sy = sy;
        self.cache.geom = Some(*g);
    }

    /// Per-pixel argmax over defect classes above threshold. Row-outer, class-inner:
    /// one row of `labels`/`best` stays in L1 while each class plane streams through
    /// once, and the branch-free inner loop vectorises.
    fn label(&mut self, probs: &[f32], g: &MapGeom) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { self.label_avx2(probs, g) };
        }
        self.label_body(probs, g);
    }

    /// [`Self::label`] compiled for AVX2 (the build's baseline is SSE2).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn label_avx2(&mut self, probs: &[f32], g: &MapGeom) {
        self.label_body(probs, g);
    }

    #[inline(always)]
    fn label_body(&mut self, probs: &[f32], g: &MapGeom) {
        let (cw, ch, mw) = (g.content_w, g.content_h, g.map_w);
        let plane = g.map_w * g.map_h;
        for y in 0..ch {
            let lo = (y + 1) * (cw + 2) + 1;
            let lab = &mut self.labels[lo..lo + cw];
            let best = &mut self.best[y * cw..(y + 1) * cw];
            lab.fill(NONE);
            // Pixels outside the ROI start at +inf so no probability can claim them;
            // this folds the mask into the argmax instead of a separate pass.
            best.copy_from_slice(&self.cache.best_init[y * cw..(y + 1) * cw]);
            for &cls in &self.defect_ids {
                let thr = self.cfg.threshold[cls as usize];
                let start = cls as usize * plane + y * mw;
                let row = &probs[start..start + cw];
                for ((&p, l), b) in row.iter().zip(lab.iter_mut()).zip(best.iter_mut()) {
                    // best starts at 0 < thr, so the first eligible class always wins;
                    // strict `>` keeps ties on the lower class id; NaN fails both tests.
                    let take = (p >= thr) & (p > *b);
                    // Bit-mask blend: measurably faster than `if` on the u8 lane.
                    let m = 0u8.wrapping_sub(u8::from(take));
                    *l = (*l & !m) | (cls & m);
                    *b = if take { p } else { *b };
                }
            }
        }
    }

    /// 8-connected components of equal labels: a block-skipping scan for seeds,
    /// then an iterative flood fill per seed.
    fn components(&mut self, g: &MapGeom, out: &mut Verdict) {
        /// Bytes tested at once when skipping empty runs; the fixed size lets the
        /// AND-fold compile to a few SIMD instructions.
        const BLOCK: usize = 32;
        let (cw, ch) = (g.content_w, g.content_h);
        let stride = cw + 2;
        for sy in 1..=ch {
            let row = sy * stride + 1;
            let mut x = 0;
            while x < cw {
                if x + BLOCK <= cw {
                    // A byte is NONE or SEEN iff its top 7 bits are set, so a block can be
                    // skipped iff the AND of its bytes has them set.
                    let blk = &self.labels[row + x..row + x + BLOCK];
                    if blk.iter().fold(u8::MAX, |a, &b| a & b) & SEEN == SEEN {
                        x += BLOCK;
                        continue;
                    }
                }
                let end = (x + BLOCK).min(cw);
                while x < end {
                    if self.labels[row + x] < SEEN {
                        self.flood(x + 1, sy, g, out);
                    }
                    x += 1;
                }
            }
        }
    }

    /// Span flood fill of the component seeded at padded `(sx, sy)`; pushes it to `out`
    /// unless it is below the class minimum area. Works on horizontal runs, which
    /// keeps the branches predictable (far faster than per-pixel 8-neighbour DFS).
    fn flood(&mut self, sx: usize, sy: usize, g: &MapGeom, out: &mut Verdict) {
        let (cw, ch) = (g.content_w, g.content_h);
        let stride = cw + 2;
        // Locals instead of `self.` fields so the optimiser keeps pointers in registers.
        let labels = &mut self.labels[..];
        let best = &self.best[..];
        let stack = &mut self.stack;
        let cls = labels[sy * stride + sx];
        stack.clear();
        claim_run(labels, stack, cls, sy * stride, sx, sy);
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        let mut count = 0usize;
        let mut max_p = f32::NEG_INFINITY;
        let mut sum_p = 0.0f64;
        while let Some([xs, xe, y]) = stack.pop() {
            let (xs, xe, y) = (xs as usize, xe as usize, y as usize);
            // Padded (x, y) -> content index (y - 1) * cw + (x - 1); xs >= 1.
            let b = (y - 1) * cw;
            for &p in &best[b + xs - 1..b + xe - 1] {
                max_p = max_p.max(p);
                sum_p += f64::from(p);
            }
            count += xe - xs;
            x0 = x0.min(xs);
            x1 = x1.max(xe);
            y0 = y0.min(y);
            y1 = y1.max(y);
            // 8-connectivity: runs in the rows above and below that touch [xs-1, xe].
            for ny in [y - 1, y + 1] {
                let r = ny * stride;
                let mut x = xs - 1;
                while x <= xe {
                    if labels[r + x] == cls {
                        x = claim_run(labels, stack, cls, r, x, ny);
                    } else {
                        x += 1;
                    }
                }
            }
        }
        let area = count as f64 * self.cache.sx * self.cache.sy;
        if area < self.cfg.min_area_px[cls as usize] {
            return;
        }
        // Padded -> content: x0 - 1 and y0 - 1 for the starts; x1 is an exclusive padded
        // end (content end + 1), y1 an inclusive padded row (= exclusive content end).
        out.defects.push(Defect {
            class_id: cls,
            area_px: area,
            bbox: [
                to_frame_lo(x0 - 1, g.frame_w, cw),
                to_frame_lo(y0 - 1, g.frame_h, ch),
                to_frame_hi(x1 - 1, g.frame_w, cw),
                to_frame_hi(y1, g.frame_h, ch),
            ],
            score: max_p,
            mean_score: (sum_p / count as f64) as f32,
        });
    }

    /// Records this frame and returns whether it is a confirmed reject.
    fn push_history(&mut self, defective: bool) -> bool {
        let n = self.history.len();
        self.history[self.hist_pos] = defective;
        self.hist_pos = (self.hist_pos + 1) % n;
        // Slots not yet written are `false` (construction/reset), so counting the whole
        // ring counts exactly the defective frames among the last n seen.
        let hits = self.history.iter().filter(|&&d| d).count();
        defective && hits >= self.cfg.confirm_k
    }
}

/// Extends the `cls` run through padded `(x, y)` (row offset `r`) both ways, marks it
/// SEEN and pushes `[start, end, y]`; returns `end`. Marking on push means every pixel
/// is pushed once, so the stack never exceeds its reserved capacity; the NONE border
/// stops the extension.
fn claim_run(
    labels: &mut [u8],
    stack: &mut Vec<[u32; 3]>,
    cls: u8,
    r: usize,
    x: usize,
    y: usize,
) -> usize {
    let mut s = x;
    while labels[r + s - 1] == cls {
        s -= 1;
    }
    let mut e = x + 1;
    while labels[r + e] == cls {
        e += 1;
    }
    labels[r + s..r + e].fill(SEEN);
    // Padded coords fit u32: padded pixels <= u32::MAX, checked in check_geom.
    stack.push([s as u32, e as u32, y as u32]);
    e
}

/// Rejects geometry that would make indexing or scaling meaningless.
fn check_geom(g: &MapGeom) -> Result<(), String> {
    if g.map_w == 0 || g.map_h == 0 || g.content_w == 0 || g.content_h == 0 {
        return Err(format!("geometry: zero map/content size in {g:?}"));
    }
    if g.frame_w == 0 || g.frame_h == 0 {
        return Err(format!("geometry: zero frame size in {g:?}"));
    }
    if g.content_w > g.map_w || g.content_h > g.map_h {
        return Err(format!("geometry: content larger than map in {g:?}"));
    }
    match g.map_w.checked_mul(g.map_h) {
        Some(_) if (g.content_w + 2) * (g.content_h + 2) <= u32::MAX as usize => Ok(()),
        _ => Err(format!("geometry: map too large in {g:?}")),
    }
}

/// First frame pixel covered by content coordinate `v` (floor of `v*frame/content`).
fn to_frame_lo(v: usize, frame: u32, content: usize) -> u32 {
    let f = (v as u128 * u128::from(frame)) / content as u128;
    f.min(u128::from(frame)) as u32
}

/// End (exclusive) frame pixel for content end `v` (ceil of `v*frame/content`), clamped.
fn to_frame_hi(v: usize, frame: u32, content: usize) -> u32 {
    let f = (v as u128 * u128::from(frame)).div_ceil(content as u128);
    f.min(u128::from(frame)) as u32
}

fn roi_contains(roi: &Roi, px: f64, py: f64) -> bool {
    match roi {
        Roi::Rect { x, y, w, h } => {
            let (x, y, w, h) = (f64::from(*x), f64::from(*y), f64::from(*w), f64::from(*h));
            px >= x && px < x + w && py >= y && py < y + h
        }
        Roi::Polygon(pts) => {
            // Even-odd ray cast towards +x.
            let mut inside = false;
            let mut j = pts.len() - 1;
            for i in 0..pts.len() {
                let (xi, yi) = (f64::from(pts[i][0]), f64::from(pts[i][1]));
                let (xj, yj) = (f64::from(pts[j][0]), f64::from(pts[j][1]));
                if (yi > py) != (yj > py) && px < (xj - xi) * (py - yi) / (yj - yi) + xi {
                    inside = !inside;
                }
                j = i;
            }
            inside
        }
    }
}

pub mod detection;
mod logits;
#[cfg(test)]
mod tests;
