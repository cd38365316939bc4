use super::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts allocations on the current thread only while enabled, so tests
/// running in parallel do not disturb each other.
struct CountingAlloc;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
    }
}

// SAFETY: forwards every call to `System` unchanged; only adds a counter.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

pub(super) fn count_allocs<R>(f: impl FnOnce() -> R) -> (R, usize) {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCS.with(Cell::get))
}

fn cfg(defect: &[bool], thr: f32, min_area: f64) -> DecisionConfig {
    DecisionConfig {
        roi: Vec::new(),
        defect: defect.to_vec(),
        threshold: vec![thr; defect.len()],
        min_area_px: vec![min_area; defect.len()],
        confirm_k: 1,
        confirm_n: 1,
    }
}

/// Channel-major zero probabilities for `c` classes on the map of `g`.
fn zeros(c: usize, g: &MapGeom) -> Vec<f32> {
    vec![0.0; c * g.map_w * g.map_h]
}

fn set(p: &mut [f32], g: &MapGeom, c: usize, x: usize, y: usize, v: f32) {
    p[c * g.map_w * g.map_h + y * g.map_w + x] = v;
}

fn run(d: &mut Decider, p: &[f32], g: &MapGeom) -> Verdict {
    let mut v = Verdict::new();
    d.decide(7, p, g, &mut v).expect("decide");
    v
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn single_blob_exact_numbers() {
    let g = MapGeom::unscaled(8, 8);
    let mut p = zeros(1, &g);
    // 3x2 blob at x=2..5, y=3..5
    let vals = [0.6, 0.7, 0.8, 0.9, 0.6, 0.6];
    let mut k = 0;
    for y in 3..5 {
        for x in 2..5 {
            set(&mut p, &g, 0, x, y, vals[k]);
            k += 1;
        }
    }
    let mut d = Decider::new(cfg(&[true], 0.5, 0.0)).expect("cfg");
    let v = run(&mut d, &p, &g);
    assert_eq!(v.seq, 7);
    assert!(v.defective && v.reject);
    assert_eq!(v.defects.len(), 1);
    let dft = &v.defects[0];
    assert_eq!(dft.class_id, 0);
    assert_eq!(dft.area_px, 6.0);
    assert_eq!(dft.bbox, [2, 3, 5, 5]);
    assert!(close(dft.score, 0.9));
    assert!(close(dft.mean_score, 4.2 / 6.0));
}

#[test]
fn empty_frame_has_no_defect() {
    let g = MapGeom::unscaled(5, 5);
    let mut d = Decider::new(cfg(&[true, true], 0.5, 0.0)).expect("cfg");
    let v = run(&mut d, &zeros(2, &g), &g);
    assert!(v.defects.is_empty() && !v.defective && !v.reject);
}

#[test]
fn touching_blobs_of_different_classes_are_separate() {
    let g = MapGeom::unscaled(6, 4);
    let mut p = zeros(2, &g);
    // class 0: x 0..2 (2x3 = 6 px), class 1: x 2..3 (1x3 = 3 px), adjacent columns
    for y in 0..3 {
        for x in 0..2 {
            set(&mut p, &g, 0, x, y, 0.8);
        }
        set(&mut p, &g, 1, 2, y, 0.7);
    }
    let mut d = Decider::new(cfg(&[true, true], 0.5, 0.0)).expect("cfg");
    let v = run(&mut d, &p, &g);
    assert_eq!(v.defects.len(), 2);
    assert_eq!(v.defects[0].class_id, 0);
    assert_eq!(v.defects[0].area_px, 6.0);
    assert_eq!(v.defects[0].bbox, [0, 0, 2, 3]);
    assert_eq!(v.defects[1].class_id, 1);
    assert_eq!(v.defects[1].area_px, 3.0);
    assert_eq!(v.defects[1].bbox, [2, 0, 3, 3]);
}

#[test]
fn diagonal_pixels_join() {
    let g = MapGeom::unscaled(6, 6);
    let mut p = zeros(1, &g);
    for (x, y) in [(1, 1), (2, 2), (3, 3), (4, 2)] {
        set(&mut p, &g, 0, x, y, 0.9);
    }
    // isolated pixel (not touching even diagonally)
    set(&mut p, &g, 0, 0, 5, 0.9);
    let mut d = Decider::new(cfg(&[true], 0.5, 0.0)).expect("cfg");
    let v = run(&mut d, &p, &g);
    assert_eq!(v.defects.len(), 2);
    assert_eq!(v.defects[0].area_px, 4.0);
    assert_eq!(v.defects[0].bbox, [1, 1, 5, 4]);
    assert_eq!(v.defects[1].area_px, 1.0);
    assert_eq!(v.defects[1].bbox, [0, 5, 1, 6]);
}

#[test]
fn below_threshold_ignored() {
    let g = MapGeom::unscaled(4, 4);
    let mut p = zeros(1, &g);
    set(&mut p, &g, 0, 0, 0, 0.49);
    set(&mut p, &g, 0, 1, 0, 0.5); // exactly at threshold counts
    set(&mut p, &g, 0, 3, 3, f32::NAN);
    let mut d = Decider::new(cfg(&[true], 0.5, 0.0)).expect("cfg");
    let v = run(&mut d, &p, &g);
    assert_eq!(v.defects.len(), 1);
    assert_eq!(v.defects[0].area_px, 1.0);
    assert_eq!(v.defects[0].bbox, [1, 0, 2, 1]);
}

#[test]
fn non_defect_class_does_not_hide_defect() {
    let g = MapGeom::unscaled(3, 3);
    let mut p = zeros(3, &g);
    // class 0 = background (not a defect) dominates, class 1 is above its threshold
    set(&mut p, &g, 0, 1, 1, 0.95);
    set(&mut p, &g, 1, 1, 1, 0.3);
    set(&mut p, &g, 2, 1, 1, 0.2);
    let mut c = cfg(&[false, true, true], 0.25, 0.0);
    c.threshold = vec![0.5, 0.25, 0.1];
    let mut d = Decider::new(c).expect("cfg");
    let v = run(&mut d, &p, &g);
    assert_eq!(v.defects.len(), 1);
    // among defect classes above threshold the higher probability wins
    assert_eq!(v.defects[0].class_id, 1);
    assert!(close(v.defects[0].score, 0.3));
}

#[test]
fn defect_class_above_own_threshold_beats_higher_prob_below_threshold() {
    let g = MapGeom::unscaled(2, 1);
    let mut p = zeros(2, &g);
    set(&mut p, &g, 0, 0, 0, 0.6); // class 0 thr 0.9: not eligible
    set(&mut p, &g, 1, 0, 0, 0.4); // class 1 thr 0.3: eligible
    let mut c = cfg(&[true, true], 0.5, 0.0);
    c.threshold = vec![0.9, 0.3];
    let mut d = Decider::new(c).expect("cfg");
    let v = run(&mut d, &p, &g);
    assert_eq!(v.defects.len(), 1);
    assert_eq!(v.defects[0].class_id, 1);
}

#[test]
fn min_area_scales_with_frame_ratio() {
    // map 10x10 for a 40x40 frame: each map pixel is 4x4 = 16 frame px
    let g = MapGeom {
        frame_w: 40,
        frame_h: 40,
        ..MapGeom::unscaled(10, 10)
    };
    let mut p = zeros(1, &g);
    for (x, y) in [(2, 3), (3, 3), (2, 4), (3, 4)] {
        set(&mut p, &g, 0, x, y, 0.9);
    }
    set(&mut p, &g, 0, 8, 8, 0.9); // single pixel = 16 frame px
    let mut d = Decider::new(cfg(&[true], 0.5, 64.0)).expect("cfg");
    let v = run(&mut d, &p, &g);
    assert_eq!(v.defects.len(), 1);
    assert_eq!(v.defects[0].area_px, 64.0);
    assert_eq!(v.defects[0].bbox, [8, 12, 16, 20]);

    let mut d = Decider::new(cfg(&[true], 0.5, 64.5)).expect("cfg");
    assert!(run(&mut d, &p, &g).defects.is_empty());

    let mut d = Decider::new(cfg(&[true], 0.5, 16.0)).expect("cfg");
    let v = run(&mut d, &p, &g);
    assert_eq!(v.defects.len(), 2);
    assert_eq!(v.defects[1].area_px, 16.0);
    assert_eq!(v.defects[1].bbox, [32, 32, 36, 36]);
}

#[test]
fn non_integer_ratio_bbox_and_clamp() {
    // 3 content px over 10 frame px: pixel 1 covers [3.33, 6.67) -> [3, 7); pixel 2 ends at 10
    let g = MapGeom {
        frame_w: 10,
        frame_h: 10,
        ..MapGeom::unscaled(3, 3)
    };
    let mut p = zeros(1, &g);
    set(&mut p, &g, 0, 1, 1, 0.9);
    set(&mut p, &g, 0, 2, 2, 0.9);
    let mut d = Decider::new(cfg(&[true], 0.5, 0.0)).expect("cfg");
    let v = run(&mut d, &p, &g);
    assert_eq!(v.defects.len(), 1);
    assert_eq!(v.defects[0].bbox, [3, 3, 10, 10]);
    assert!((v.defects[0].area_px - 2.0 * 100.0 / 9.0).abs() < 1e-9);
}

#[test]
fn roi_rect_excludes_outside() {
    let g = MapGeom::unscaled(8, 8);
    let mut p = zeros(1, &g);
    for y in 0..8 {
        for x in 0..8 {
            set(&mut p, &g, 0, x, y, 0.9);
        }
    }
    let mut c = cfg(&[true], 0.5, 0.0);
    // centres 2.5..5.5 fall in [2, 6) in x, centres 1.5, 2.5 in [1, 3) in y
    c.roi = vec![Roi::Rect {
        x: 2.0,
        y: 1.0,
        w: 4.0,
        h: 2.0,
    }];
    let mut d = Decider::new(c).expect("cfg");
    let v = run(&mut d, &p, &g);
    assert_eq!(v.defects.len(), 1);
    assert_eq!(v.defects[0].area_px, 8.0);
    assert_eq!(v.defects[0].bbox, [2, 1, 6, 3]);
}

#[test]
fn roi_concave_polygon_l_shape() {
    let g = MapGeom::unscaled(8, 8);
    let mut p = zeros(1, &g);
    for y in 0..8 {
        for x in 0..8 {
            set(&mut p, &g, 0, x, y, 0.9);
        }
    }
    let mut c = cfg(&[true], 0.5, 0.0);
    // L: vertical bar x 0..2, y 0..6 plus foot x 0..6, y 4..6
    c.roi = vec![Roi::Polygon(vec![
        [0.0, 0.0],
        [2.0, 0.0],
        [2.0, 4.0],
        [6.0, 4.0],
        [6.0, 6.0],
        [0.0, 6.0],
    ])];
    let mut d = Decider::new(c).expect("cfg");
    let v = run(&mut d, &p, &g);
    assert_eq!(v.defects.len(), 1);
    // 2*4 (bar above foot) + 6*2 (foot) = 20
    assert_eq!(v.defects[0].area_px, 20.0);
    assert_eq!(v.defects[0].bbox, [0, 0, 6, 6]);

    // a blob only in the notch of the L is excluded entirely
    let mut p = zeros(1, &g);
    set(&mut p, &g, 0, 4, 2, 0.9);
    assert!(run(&mut d, &p, &g).defects.is_empty());
}

#[test]
fn roi_union_of_regions() {
    let g = MapGeom::unscaled(8, 2);
    let mut p = zeros(1, &g);
    for x in 0..8 {
        set(&mut p, &g, 0, x, 0, 0.9);
    }
    let mut c = cfg(&[true], 0.5, 0.0);
    c.roi = vec![
        Roi::Rect {
            x: 0.0,
            y: 0.0,
            w: 2.0,
            h: 2.0,
        },
        Roi::Polygon(vec![[5.0, 0.0], [8.0, 0.0], [8.0, 2.0], [5.0, 2.0]]),
    ];
    let mut d = Decider::new(c).expect("cfg");
    let v = run(&mut d, &p, &g);
    assert_eq!(v.defects.len(), 2);
    assert_eq!(v.defects[0].bbox, [5, 0, 8, 1]);
    assert_eq!(v.defects[1].bbox, [0, 0, 2, 1]);
}

#[test]
fn roi_recomputed_when_geometry_changes() {
    let mut c = cfg(&[true], 0.5, 0.0);
    c.roi = vec![Roi::Rect {
        x: 0.0,
        y: 0.0,
        w: 4.0,
        h: 4.0,
    }];
    let mut d = Decider::new(c).expect("cfg");
    // frame 8x8 at map 8x8: map pixel (3,3) centre (3.5,3.5) inside
    let g1 = MapGeom::unscaled(8, 8);
    let mut p = zeros(1, &g1);
    set(&mut p, &g1, 0, 3, 3, 0.9);
    assert_eq!(run(&mut d, &p, &g1).defects.len(), 1);
    // same map, frame 16x16: centre (7, 7) now outside the ROI
    let g2 = MapGeom {
        frame_w: 16,
        frame_h: 16,
        ..g1
    };
    assert!(run(&mut d, &p, &g2).defects.is_empty());
}

#[test]
fn padding_ignored() {
    // map 10x10, content 6x4 at top-left, frame 12x8 (2x scale)
    let g = MapGeom {
        map_w: 10,
        map_h: 10,
        content_w: 6,
        content_h: 4,
        frame_w: 12,
        frame_h: 8,
    };
    let mut p = zeros(1, &g);
    // strong blob entirely in padding
    for y in 6..9 {
        for x in 7..9 {
            set(&mut p, &g, 0, x, y, 0.99);
        }
    }
    // blob crossing the right content edge: x 4..8 on row 1, only x 4,5 are content
    for x in 4..8 {
        set(&mut p, &g, 0, x, 1, 0.9);
    }
    let mut d = Decider::new(cfg(&[true], 0.5, 0.0)).expect("cfg");
    let v = run(&mut d, &p, &g);
    assert_eq!(v.defects.len(), 1);
    assert_eq!(v.defects[0].area_px, 8.0); // 2 px * 2 * 2
    assert_eq!(v.defects[0].bbox, [8, 2, 12, 4]);
}

#[test]
fn k_of_n_confirmation() {
    let g = MapGeom::unscaled(2, 2);
    let mut c = cfg(&[true], 0.5, 0.0);
    c.confirm_k = 2;
    c.confirm_n = 3;
    let mut d = Decider::new(c).expect("cfg");
    let hit = {
        let mut p = zeros(1, &g);
        set(&mut p, &g, 0, 0, 0, 0.9);
        p
    };
    let miss = zeros(1, &g);
    let pattern = [
        true, false, true, true, false, false, true, false, false, true, true,
    ];
    let expected = [
        false, false, true, true, false, false, false, false, false, false, true,
    ];
    let mut v = Verdict::new();
    for (i, (&def, &rej)) in pattern.iter().zip(&expected).enumerate() {
        let p = if def { &hit } else { &miss };
        d.decide(i as u64, p, &g, &mut v).expect("decide");
        assert_eq!(v.seq, i as u64);
        assert_eq!(v.defective, def, "frame {i}");
        assert_eq!(v.reject, rej, "frame {i}");
    }
    // reset forgets the history: a single hit is no longer confirmed
    d.reset_history();
    d.decide(99, &hit, &g, &mut v).expect("decide");
    assert!(v.defective && !v.reject);
}

#[test]
fn bad_configs_rejected() {
    let ok = cfg(&[true, false], 0.5, 1.0);
    assert!(Decider::new(ok.clone()).is_ok());
    let mut bad: Vec<DecisionConfig> = Vec::new();
    let mut c = ok.clone();
    c.threshold.pop();
    bad.push(c);
    let mut c = ok.clone();
    c.min_area_px.push(0.0);
    bad.push(c);
    for t in [0.0, -0.1, 1.01, f32::NAN] {
        let mut c = ok.clone();
        c.threshold[1] = t;
        bad.push(c);
    }
    for a in [-1.0, f64::NAN, f64::INFINITY] {
        let mut c = ok.clone();
        c.min_area_px[0] = a;
        bad.push(c);
    }
    for (k, n) in [(0, 3), (4, 3), (0, 0)] {
        let mut c = ok.clone();
        c.confirm_k = k;
        c.confirm_n = n;
        bad.push(c);
    }
    let mut c = ok.clone();
    c.roi = vec![Roi::Polygon(vec![[0.0, 0.0], [1.0, 1.0]])];
    bad.push(c);
    let mut c = ok.clone();
    c.roi = vec![Roi::Polygon(vec![[0.0, 0.0], [1.0, f32::NAN], [2.0, 0.0]])];
    bad.push(c);
    let mut c = ok.clone();
    c.roi = vec![Roi::Rect {
        x: f32::INFINITY,
        y: 0.0,
        w: 1.0,
        h: 1.0,
    }];
    bad.push(c);
    let mut c = ok.clone();
    c.roi = vec![Roi::Rect {
        x: 0.0,
        y: 0.0,
        w: -1.0,
        h: 1.0,
    }];
    bad.push(c);
    bad.push(cfg(&[], 0.5, 0.0));
    bad.push(cfg(&[true; 300], 0.5, 0.0));
    for (i, c) in bad.into_iter().enumerate() {
        let e = Decider::new(c).expect_err(&format!("bad config {i} accepted"));
        assert!(e.starts_with("decision config"), "{e}");
    }
}

#[test]
fn bad_probs_and_geometry_rejected() {
    let g = MapGeom::unscaled(4, 4);
    let mut d = Decider::new(cfg(&[true, true], 0.5, 0.0)).expect("cfg");
    let mut v = Verdict::new();
    let e = d
        .decide(0, &zeros(1, &g), &g, &mut v)
        .expect_err("short probs");
    assert!(e.contains("length 16"), "{e}");
    assert!(d.decide(0, &[0.0; 33], &g, &mut v).is_err());
    let bad_geoms = [
        MapGeom { content_w: 5, ..g },
        MapGeom { content_h: 5, ..g },
        MapGeom { map_w: 0, ..g },
        MapGeom { content_h: 0, ..g },
        MapGeom { frame_w: 0, ..g },
        MapGeom {
            map_w: usize::MAX,
            map_h: 2,
            ..g
        },
    ];
    for bg in bad_geoms {
        let e = d
            .decide(0, &zeros(2, &g), &bg, &mut v)
            .expect_err("bad geometry");
        assert!(e.starts_with("geometry"), "{e}");
    }
    // errors leave the decider usable
    assert!(d.decide(0, &zeros(2, &g), &g, &mut v).is_ok());
}

/// Straightforward per-pixel reference: label, then BFS over 8-neighbours.
fn reference(cfg: &DecisionConfig, p: &[f32], g: &MapGeom) -> Vec<Defect> {
    let (cw, ch) = (g.content_w, g.content_h);
    let plane = g.map_w * g.map_h;
    let sx = f64::from(g.frame_w) / cw as f64;
    let sy = f64::from(g.frame_h) / ch as f64;
    let mut lab = vec![None::<(usize, f32)>; cw * ch];
    for y in 0..ch {
        for x in 0..cw {
            let (fx, fy) = ((x as f64 + 0.5) * sx, (y as f64 + 0.5) * sy);
            if !cfg.roi.is_empty() && !cfg.roi.iter().any(|r| roi_contains(r, fx, fy)) {
                continue;
            }
            for c in 0..cfg.defect.len() {
                let q = p[c * plane + y * g.map_w + x];
                if cfg.defect[c]
                    && q >= cfg.threshold[c]
                    && lab[y * cw + x].is_none_or(|(_, b)| q > b)
                {
                    lab[y * cw + x] = Some((c, q));
                }
            }
        }
    }
    let mut seen = vec![false; cw * ch];
    let mut out = Vec::new();
    for i in 0..cw * ch {
        let Some((c, _)) = lab[i] else { continue };
        if seen[i] {
            continue;
        }
        seen[i] = true;
        let mut q = std::collections::VecDeque::from([i]);
        let (mut n, mut mx, mut sum) = (0usize, 0f32, 0f64);
        let (mut x0, mut y0, mut x1, mut y1) = (cw, ch, 0, 0);
        while let Some(j) = q.pop_front() {
            let (x, y) = (j % cw, j / cw);
            let pj = lab[j].map_or(0.0, |(_, b)| b);
            n += 1;
            mx = mx.max(pj);
            sum += f64::from(pj);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
            for ny in y.saturating_sub(1)..(y + 2).min(ch) {
                for nx in x.saturating_sub(1)..(x + 2).min(cw) {
                    let k = ny * cw + nx;
                    if !seen[k] && lab[k].is_some_and(|(c2, _)| c2 == c) {
                        seen[k] = true;
                        q.push_back(k);
                    }
                }
            }
        }
        let area = n as f64 * sx * sy;
        if area >= cfg.min_area_px[c] {
            out.push(Defect {
                class_id: c as u8,
                area_px: area,
                bbox: [
                    to_frame_lo(x0, g.frame_w, cw),
                    to_frame_lo(y0, g.frame_h, ch),
                    to_frame_hi(x1, g.frame_w, cw),
                    to_frame_hi(y1, g.frame_h, ch),
                ],
                score: mx,
                mean_score: (sum / n as f64) as f32,
            });
        }
    }
    out
}

#[test]
fn matches_reference_on_random_maps() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut d_roi = DecisionConfig {
        roi: vec![
            Roi::Polygon(vec![
                [0.0, 0.0],
                [30.0, 5.0],
                [10.0, 12.0],
                [25.0, 30.0],
                [0.0, 30.0],
            ]),
            Roi::Rect {
                x: 20.0,
                y: 0.0,
                w: 15.0,
                h: 10.0,
            },
        ],
        ..cfg(&[false, true, true, true], 0.5, 3.0)
    };
    d_roi.threshold = vec![0.3, 0.55, 0.6, 0.5];
    d_roi.min_area_px = vec![0.0, 0.0, 5.0, 3.0];
    let plain = cfg(&[true, true, false], 0.6, 0.0);
    let mut v = Verdict::new();
    let mut total = 0;
    for round in 0..60 {
        let c = if round % 2 == 0 {
            d_roi.clone()
        } else {
            plain.clone()
        };
        let n_cls = c.defect.len();
        let cw = 5 + (rnd() * 30.0) as usize;
        let ch = 5 + (rnd() * 30.0) as usize;
        let g = MapGeom {
            map_w: cw + (rnd() * 4.0) as usize,
            map_h: ch + (rnd() * 4.0) as usize,
            content_w: cw,
            content_h: ch,
            frame_w: 10 + (rnd() * 60.0) as u32,
            frame_h: 10 + (rnd() * 60.0) as u32,
        };
        // Blobby noise: favour neighbours' values so components have real shapes.
        let mut p = zeros(n_cls, &g);
        for q in p.iter_mut() {
            *q = if rnd() < 0.45 {
                0.5 + rnd() * 0.5
            } else {
                rnd() * 0.5
            };
        }
        let mut dec = Decider::new(c.clone()).expect("cfg");
        dec.decide(round, &p, &g, &mut v).expect("decide");
        let mut want = reference(&c, &p, &g);
        want.sort_by(|a, b| {
            b.area_px
                .total_cmp(&a.area_px)
                .then(a.class_id.cmp(&b.class_id))
                .then(a.bbox.cmp(&b.bbox))
        });
        assert_eq!(v.defects.len(), want.len(), "round {round}");
        total += want.len();
        for (got, w) in v.defects.iter().zip(&want) {
            assert_eq!(got.class_id, w.class_id, "round {round}");
            assert_eq!(got.bbox, w.bbox, "round {round}");
            assert!((got.area_px - w.area_px).abs() < 1e-9, "round {round}");
            assert_eq!(got.score, w.score, "round {round}");
            assert!(
                (got.mean_score - w.mean_score).abs() < 1e-6,
                "round {round}"
            );
        }
    }
    assert!(
        total > 300,
        "random maps too sparse to test anything ({total})"
    );
}

#[test]
fn u_and_spiral_shapes_are_one_component() {
    // Span fill must climb back up: a U whose arms only meet at the bottom, and
    // a spiral that winds inwards.
    let rows = [
        "#.#.#####",
        "#.#.#...#",
        "#.#.#.#.#",
        "###.#.#.#",
        "....#.#.#",
        "....#.###",
        "....#....",
        "....#####",
    ];
    let g = MapGeom::unscaled(9, 8);
    let mut p = zeros(1, &g);
    for (y, r) in rows.iter().enumerate() {
        for (x, ch) in r.bytes().enumerate() {
            if ch == b'#' {
                set(&mut p, &g, 0, x, y, 0.9);
            }
        }
    }
    let mut d = Decider::new(cfg(&[true], 0.5, 0.0)).expect("cfg");
    let v = run(&mut d, &p, &g);
    assert_eq!(v.defects.len(), 2);
    assert_eq!(v.defects[0].area_px, 26.0);
    assert_eq!(v.defects[0].bbox, [4, 0, 9, 8]);
    assert_eq!(v.defects[1].area_px, 9.0);
    assert_eq!(v.defects[1].bbox, [0, 0, 3, 4]);
}

/// 640x480, 5 classes (class 0 background), a few blobs of varied shape.
fn bench_setup() -> (Decider, Vec<f32>, MapGeom) {
    let g = MapGeom::unscaled(640, 480);
    let c = 5;
    let mut p = zeros(c, &g);
    let plane = g.map_w * g.map_h;
    p[..plane].fill(0.9);
    for (k, (cx, cy, r)) in [(100, 100, 30), (300, 200, 60), (500, 400, 20), (50, 400, 5)]
        .into_iter()
        .enumerate()
    {
        let cls = 1 + k % 4;
        for y in cy - r..cy + r {
            for x in cx - r..cx + r {
                if (x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r {
                    set(&mut p, &g, cls, x as usize, y as usize, 0.8);
                }
            }
        }
    }
    // speckle noise on class 2
    for i in (0..plane).step_by(997) {
        p[2 * plane + i] = 0.7;
    }
    let mut cf = cfg(&[false, true, true, true, true], 0.5, 4.0);
    cf.roi = vec![Roi::Polygon(vec![
        [10.0, 10.0],
        [630.0, 10.0],
        [630.0, 470.0],
        [10.0, 470.0],
    ])];
    cf.confirm_k = 2;
    cf.confirm_n = 5;
    (Decider::new(cf).expect("cfg"), p, g)
}

#[test]
fn steady_state_decide_does_not_allocate() {
    let (mut d, p, g) = bench_setup();
    let mut v = Verdict::new();
    d.decide(0, &p, &g, &mut v).expect("warm-up");
    assert_eq!(v.defects.len(), 4);
    let (r, allocs) = count_allocs(|| {
        let mut r = Ok(());
        for seq in 1..4 {
            r = r.and(d.decide(seq, &p, &g, &mut v));
        }
        r
    });
    assert!(r.is_ok());
    assert_eq!(allocs, 0, "decide allocated {allocs} times in steady state");
    // sanity check that the counter works
    let (_, n) = count_allocs(|| Vec::<u8>::with_capacity(8));
    assert_eq!(n, 1);
}

#[test]
fn timing_640x480_5_classes() {
    let (mut d, p, g) = bench_setup();
    let mut v = Verdict::new();
    d.decide(0, &p, &g, &mut v).expect("warm-up");
    // Median of batches: the dev VM is noisy, a single mean over-reports.
    let (batches, per_batch) = if cfg!(debug_assertions) {
        (3, 2)
    } else {
        (41, 10)
    };
    let mut ms: Vec<f64> = (0..batches)
        .map(|_| {
            let t = std::time::Instant::now();
            for seq in 0..per_batch {
                d.decide(seq, &p, &g, &mut v).expect("decide");
            }
            t.elapsed().as_secs_f64() * 1e3 / per_batch as f64
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "decide 640x480x5: median {:.3} ms/frame, min {:.3}, max {:.3} ({batches}x{per_batch} frames, {} defects)",
        ms[ms.len() / 2],
        ms[0],
        ms[ms.len() - 1],
        v.defects.len()
    );
    assert_eq!(v.defects.len(), 4);
}
