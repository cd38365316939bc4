//! Half-pixel bilinear upsampling, and class scores held as the head's low-resolution logits.
//!
//! Our models end in a ×4 bilinear resize and a softmax. Materialising that at full
//! resolution writes and rereads C × H × W floats per frame (6 MB at 640×480, the larger part
//! of the per-frame work outside the model), so the native engine hands out the logits before
//! the resize and the decision samples them where it needs them ([`Logits`]).
use std::borrow::Cow;
use std::sync::Arc;

/// Source taps of one resize output coordinate: `(1 − l)·src[i0] + l·src[i1]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tap {
    /// Lower source index.
    pub i0: usize,
    /// Upper source index (`i0 + 1`, clamped to the last input index).
    pub i1: usize,
    /// Weight of `i1`, in [0, 1).
    pub l: f32,
}

/// Taps for every output index of a half-pixel bilinear resize from `in_len` to `out_len`:
/// `src = (dst + ½)·in/out − ½`, clamped at 0; the upper tap stops at the last input index
/// (the training backend's and onnxruntime's rule).
pub fn taps(in_len: usize, out_len: usize) -> Vec<Tap> {
    let scale = in_len as f32 / out_len as f32;
    (0..out_len)
        .map(|d| {
            let src = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src as usize).min(in_len.saturating_sub(1));
            Tap {
                i0,
                i1: (i0 + 1).min(in_len.saturating_sub(1)),
                l: src - i0 as f32,
            }
        })
        .collect()
}

/// Output columns of one axis and, where they follow an integer factor's pattern, the run
/// that [`hinterp`] computes without gathering: outputs `lo + f·j + t` (`t < f`, `j < n`) have
/// taps `j` and `j + 1` and weight `l[t]`, the interior of a ×f half-pixel upsampling.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    taps: Vec<Tap>,
    run: Option<Run>,
}

#[derive(Clone, Debug, PartialEq)]
struct Run {
    lo: usize,
    n: usize,
    l: Vec<f32>,
}

impl Axis {
    /// The half-pixel bilinear taps from `in_len` to `out_len` (see [`taps`]).
    pub fn new(in_len: usize, out_len: usize) -> Axis {
        let taps = taps(in_len, out_len);
        let run = find_run(&taps, in_len, out_len);
        Axis { taps, run }
    }
    /// The taps, one per output index.
    pub fn taps(&self) -> &[Tap] {
        &self.taps
    }
    /// Number of output indices.
    pub fn len(&self) -> usize {
        self.taps.len()
    }
    /// Whether the axis has no outputs.
    pub fn is_empty(&self) -> bool {
        self.taps.is_empty()
    }
}

/// The periodic interior of `taps`, when the output is an integer multiple (≥ 2) of the input
/// and every tap of the run is exactly what the pattern says (checked, not assumed).
fn find_run(taps: &[Tap], in_len: usize, out_len: usize) -> Option<Run> {
    if in_len < 2 || !out_len.is_multiple_of(in_len) || out_len / in_len < 2 {
        return None;
    }
    let f = out_len / in_len;
    // The run starts f outputs before the first that leans on source 1 (before it, clamped
    // outputs can carry taps (0, 1) with weight 0 and are left to the generic loop).
    let lo = taps.iter().position(|t| t.i0 == 1)?.checked_sub(f)?;
    let n = in_len - 1;
    if lo + f * n > taps.len() {
        return None;
    }
    let l: Vec<f32> = taps[lo..lo + f].iter().map(|t| t.l).collect();
    let fits = taps[lo..lo + f * n].iter().enumerate().all(|(x, t)| {
        let j = x / f;
        (t.i0, t.i1) == (j, j + 1) && t.l.to_bits() == l[x % f].to_bits()
    });
    fits.then_some(Run { lo, n, l })
}

/// One source row at the output columns: `dst[x] = r[i0] + l·(r[i1] − r[i0])`. Over the
/// axis's run the same expression is evaluated source pair by source pair, so the loads are
/// contiguous and the loop vectorises; the result is the same to the bit.
#[inline(always)]
pub fn hinterp(r: &[f32], cols: &Axis, dst: &mut [f32]) {
    let generic = |dst: &mut [f32], taps: &[Tap]| {
        for (d, c) in dst.iter_mut().zip(taps) {
            *d = r[c.i0] + c.l * (r[c.i1] - r[c.i0]);
        }
    };
    let Some(run) = &cols.run else {
        return generic(dst, &cols.taps);
    };
    let (lo, f) = (run.lo, run.l.len());
    let hi = lo + f * run.n;
    generic(&mut dst[..lo], &cols.taps[..lo]);
    match f {
        2 => run_pairs::<2>(r, &run.l, &mut dst[lo..hi]),
        4 => run_pairs::<4>(r, &run.l, &mut dst[lo..hi]),
        8 => run_pairs::<8>(r, &run.l, &mut dst[lo..hi]),
        _ => generic(&mut dst[lo..hi], &cols.taps[lo..hi]),
    }
    generic(&mut dst[hi..], &cols.taps[hi..]);
}

/// The run of a ×F axis: F outputs per source pair `(a, b)`, `a + l[t]·(b − a)`.
#[inline(always)]
fn run_pairs<const F: usize>(r: &[f32], l: &[f32], dst: &mut [f32]) {
    let l: [f32; F] = std::array::from_fn(|t| l[t]);
    for (o, (&a, &b)) in dst.chunks_exact_mut(F).zip(r.iter().zip(&r[1..])) {
        let d = b - a;
        for t in 0..F {
            o[t] = a + l[t] * d;
        }
    }
}

/// Output rows `rows` of one plane: each from two source rows interpolated horizontally,
/// cached in `tmp` (2 × out width) so consecutive output rows sharing a source pair reuse them.
pub fn resize_rows(
    src: &[f32],
    iw: usize,
    rows: &[Tap],
    cols: &Axis,
    out: &mut [f32],
    tmp: &mut [f32],
) {
    let ow = cols.len();
    let (h0, h1) = tmp[..2 * ow].split_at_mut(ow);
    let mut cached = (usize::MAX, usize::MAX);
    for (y, ty) in rows.iter().enumerate() {
        if cached != (ty.i0, ty.i1) {
            if cached.1 == ty.i0 {
                h0.copy_from_slice(h1);
            } else {
                hinterp(&src[ty.i0 * iw..(ty.i0 + 1) * iw], cols, h0);
            }
            hinterp(&src[ty.i1 * iw..(ty.i1 + 1) * iw], cols, h1);
            cached = (ty.i0, ty.i1);
        }
        let l = ty.l;
        for ((o, &a), &b) in out[y * ow..(y + 1) * ow].iter_mut().zip(&*h0).zip(&*h1) {
            *o = a + l * (b - a);
        }
    }
}

/// A bilinear upsampling from `in_h`×`in_w` to `out_h`×`out_w`, as taps per output row and
/// column. Built once per frame size and shared, so handing it out per frame costs nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct Upsample {
    in_h: usize,
    in_w: usize,
    rows: Vec<Tap>,
    cols: Axis,
    /// `row_start[a]..row_start[a + 1]`: the output rows whose upper tap is source row `a`.
    row_start: Vec<usize>,
    col_start: Vec<usize>,
}

/// Where each source index's run of outputs starts (taps' `i0` never decreases).
fn starts(taps: &[Tap], in_len: usize) -> Vec<usize> {
    (0..=in_len)
        .map(|a| taps.partition_point(|t| t.i0 < a))
        .collect()
}

impl Upsample {
    /// The taps of a half-pixel bilinear resize from `in_h`×`in_w` to `out_h`×`out_w`.
    pub fn new(in_h: usize, in_w: usize, out_h: usize, out_w: usize) -> Upsample {
        let (rows, cols) = (taps(in_h, out_h), Axis::new(in_w, out_w));
        Upsample {
            in_h,
            in_w,
            row_start: starts(&rows, in_h),
            col_start: starts(cols.taps(), in_w),
            rows,
            cols,
        }
    }
    /// The output rows whose taps are source rows `a` and `min(a + 1, in_h − 1)`.
    pub fn rows_of(&self, a: usize) -> std::ops::Range<usize> {
        self.row_start[a]..self.row_start[a + 1]
    }
    /// The output columns whose taps are source columns `b` and `min(b + 1, in_w − 1)`.
    pub fn cols_of(&self, b: usize) -> std::ops::Range<usize> {
        self.col_start[b]..self.col_start[b + 1]
    }
    /// `(in_h, in_w)`: the source size.
    pub fn in_hw(&self) -> (usize, usize) {
        (self.in_h, self.in_w)
    }
    /// `(out_h, out_w)`: the output size.
    pub fn out_hw(&self) -> (usize, usize) {
        (self.rows.len(), self.cols.len())
    }
    /// The taps of each output row.
    pub fn rows(&self) -> &[Tap] {
        &self.rows
    }
    /// The taps of each output column.
    pub fn cols(&self) -> &[Tap] {
        self.cols.taps()
    }
}

/// Class logits at the head's resolution, `C × in_h × in_w`: the probabilities at map pixel
/// `(x, y)` are the softmax over classes of the logits bilinearly upsampled to `(x, y)`.
#[derive(Clone, Debug)]
pub struct Logits {
    /// Logits, channel-major `C × in_h × in_w`.
    pub data: Vec<f32>,
    /// The upsampling from the head's resolution to the map's.
    pub up: Arc<Upsample>,
}

impl Logits {
    /// Number of classes the data holds (0 when it does not fill whole planes).
    pub fn classes(&self) -> usize {
        let (h, w) = self.up.in_hw();
        if h * w == 0 || !self.data.len().is_multiple_of(h * w) {
            0
        } else {
            self.data.len() / (h * w)
        }
    }

    /// The full-resolution probabilities, `C × out_h × out_w`, computed exactly as
    /// [`crate::decide::Decider::decide_logits`] sees them.
    pub fn to_probs(&self) -> Vec<f32> {
        let c = self.classes();
        let (ih, iw) = self.up.in_hw();
        let (oh, ow) = self.up.out_hw();
        let plane = oh * ow;
        let mut up = vec![0.0; c * plane];
        let mut tmp = vec![0.0; 2 * ow];
        for (k, dst) in up.chunks_exact_mut(plane.max(1)).enumerate().take(c) {
            let src = &self.data[k * ih * iw..(k + 1) * ih * iw];
            resize_rows(src, iw, self.up.rows(), &self.up.cols, dst, &mut tmp);
        }
        let mut probs = vec![0.0; c * plane];
        crate::infer::softmax_channels(&up, &mut probs, c);
        probs
    }
}

/// How a frame's class scores are held.
#[derive(Clone, Debug)]
pub enum Scores {
    /// Probabilities at the map's resolution, `C × map_h × map_w`.
    Probs(Vec<f32>),
    /// The head's logits before its final upsampling and softmax.
    Logits(Logits),
}

impl Default for Scores {
    fn default() -> Scores {
        Scores::Probs(Vec::new())
    }
}

impl Scores {
    /// The probability buffer to fill, switching to that form (an engine that produces
    /// probabilities keeps its buffer from frame to frame).
    pub fn probs_mut(&mut self) -> &mut Vec<f32> {
        if !matches!(self, Scores::Probs(_)) {
            *self = Scores::Probs(Vec::new());
        }
        match self {
            Scores::Probs(p) => p,
            Scores::Logits(_) => unreachable!("just switched to probabilities"),
        }
    }

    /// The logit buffer to fill for upsampling `up`, switching to that form.
    pub fn logits_mut(&mut self, up: &Arc<Upsample>) -> &mut Vec<f32> {
        match self {
            Scores::Logits(l) => {
                if !Arc::ptr_eq(&l.up, up) {
                    l.up = up.clone();
                }
            }
            Scores::Probs(_) => {
                *self = Scores::Logits(Logits {
                    data: Vec::new(),
                    up: up.clone(),
                })
            }
        }
        match self {
            Scores::Logits(l) => &mut l.data,
            Scores::Probs(_) => unreachable!("just switched to logits"),
        }
    }

    /// Probabilities at the map's resolution: borrowed when held as such, computed from the
    /// logits otherwise (allocates: for defect images and checks, not the per-frame path).
    pub fn probs(&self) -> Cow<'_, [f32]> {
        match self {
            Scores::Probs(p) => Cow::Borrowed(p),
            Scores::Logits(l) => Cow::Owned(l.to_probs()),
        }
    }

    /// Whether every value the model produced is finite. Checked on the raw output: the
    /// softmax maps a NaN logit to a probability near 0 and would hide it.
    pub fn all_finite(&self) -> bool {
        let v = match self {
            Scores::Probs(p) => p,
            Scores::Logits(l) => &l.data,
        };
        v.iter().all(|x| x.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_follow_the_half_pixel_rule() {
        // ×4 from 3: src = (d + ½)/4 − ½.
        let t = taps(3, 12);
        assert_eq!((t[0].i0, t[0].i1, t[0].l), (0, 1, 0.0)); // -0.375 clamps to 0
        assert_eq!((t[2].i0, t[2].i1, t[2].l), (0, 1, 0.125));
        assert_eq!((t[6].i0, t[6].i1, t[6].l), (1, 2, 0.125));
        // The last outputs sit past the last input: both taps on it.
        assert_eq!((t[11].i0, t[11].i1), (2, 2));
        let up = Upsample::new(3, 2, 12, 7);
        assert_eq!(
            [up.rows_of(0), up.rows_of(1), up.rows_of(2)],
            [0..6, 6..10, 10..12]
        );
        assert_eq!([up.cols_of(0), up.cols_of(1)], [0..5, 5..7]);
    }

    #[test]
    fn runs_are_found_where_the_pattern_holds_and_interpolate_alike() {
        // ×2, ×4, ×8 have runs; ×3 may (its weights must repeat exactly); a downsampling and a
        // non-integer factor have none.
        for (i, o, want) in [
            (5, 10, true),
            (7, 28, true),
            (3, 24, true),
            (9, 4, false),
            (4, 10, false),
        ] {
            assert_eq!(Axis::new(i, o).run.is_some(), want, "{i} -> {o}");
        }
        let r: Vec<f32> = (0..13)
            .map(|i| ((i * 29) % 17) as f32 * 0.37 - 2.0)
            .collect();
        for (i, o) in [(13, 26), (13, 52), (13, 104), (13, 39), (13, 30), (1, 4)] {
            let a = Axis::new(i, o);
            let mut fast = vec![f32::NAN; o];
            hinterp(&r[..i], &a, &mut fast);
            let slow: Vec<f32> = a
                .taps()
                .iter()
                .map(|c| r[c.i0] + c.l * (r[c.i1] - r[c.i0]))
                .collect();
            assert_eq!(
                fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                slow.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{i} -> {o}"
            );
        }
    }

    #[test]
    fn to_probs_matches_a_direct_computation() {
        let (c, ih, iw, oh, ow) = (3, 3, 5, 12, 20);
        let data: Vec<f32> = (0..c * ih * iw)
            .map(|i| ((i * 37) % 23) as f32 * 0.3 - 3.0)
            .collect();
        let l = Logits {
            data: data.clone(),
            up: Arc::new(Upsample::new(ih, iw, oh, ow)),
        };
        assert_eq!(l.classes(), 3);
        let p = l.to_probs();
        let (rows, cols) = (taps(ih, oh), taps(iw, ow));
        let at = |k: usize, y: usize, x: usize| f64::from(data[(k * ih + y) * iw + x]);
        for y in 0..oh {
            for x in 0..ow {
                let (r, q) = (rows[y], cols[x]);
                let v: Vec<f64> = (0..c)
                    .map(|k| {
                        let top = at(k, r.i0, q.i0) * f64::from(1.0 - q.l)
                            + at(k, r.i0, q.i1) * f64::from(q.l);
                        let bot = at(k, r.i1, q.i0) * f64::from(1.0 - q.l)
                            + at(k, r.i1, q.i1) * f64::from(q.l);
                        top * f64::from(1.0 - r.l) + bot * f64::from(r.l)
                    })
                    .collect();
                let z: f64 = v.iter().map(|v| v.exp()).sum();
                for k in 0..c {
                    let got = f64::from(p[(k * oh + y) * ow + x]);
                    assert!((got - v[k].exp() / z).abs() < 1e-5, "({x}, {y}) class {k}");
                }
            }
        }
    }

    #[test]
    fn scores_switch_form_and_check_the_raw_output() {
        let up = Arc::new(Upsample::new(1, 1, 2, 2));
        let mut s = Scores::default();
        s.logits_mut(&up).extend([0.0, f32::NAN]);
        assert!(!s.all_finite());
        // The softmax hides the NaN: the probabilities are finite.
        assert!(s.probs().iter().all(|p| p.is_finite()));
        s.probs_mut().push(0.5);
        assert!(matches!(&s, Scores::Probs(p) if p == &[0.5]));
        assert!(s.all_finite());
    }
}
