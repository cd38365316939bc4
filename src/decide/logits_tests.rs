use super::super::tests::count_allocs;
use super::super::{Decider, DecisionConfig, Roi, Verdict};
use crate::infer::Logits;
use crate::infer::MapGeom;
use crate::infer::upsample::Upsample;
use std::sync::Arc;

/// xorshift in [0, 1).
fn rng(mut seed: u64) -> impl FnMut() -> f32 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn config(defect: Vec<bool>, threshold: Vec<f32>, roi: Vec<Roi>) -> DecisionConfig {
    let c = defect.len();
    DecisionConfig {
        roi,
        defect,
        threshold,
        min_area_px: vec![2.0; c],
        confirm_k: 2,
        confirm_n: 3,
    }
}

/// Smooth random logits: a few classes lead in blobs, as a segmentation head's do.
fn blob_logits(c: usize, ih: usize, iw: usize, rnd: &mut impl FnMut() -> f32) -> Vec<f32> {
    let mut x = vec![0.0; c * ih * iw];
    for k in 0..c {
        let (cx, cy) = (rnd() * iw as f32, rnd() * ih as f32);
        let r = 1.0 + rnd() * 3.0;
        let lead = if k == 0 { 2.0 } else { 1.0 + rnd() * 6.0 };
        for y in 0..ih {
            for xx in 0..iw {
                let d2 = (xx as f32 - cx).powi(2) + (y as f32 - cy).powi(2);
                x[(k * ih + y) * iw + xx] = lead * (-d2 / (r * r)).exp() + (rnd() - 0.5) * 2.0;
            }
        }
    }
    x
}

#[test]
fn equals_deciding_on_the_upsampled_probabilities() {
    let mut rnd = rng(0x9e37_79b9_7f4a_7c15);
    let (mut total, mut rejects) = (0, 0);
    for round in 0..80u64 {
        let c = 2 + round as usize % 4;
        let (ih, iw) = (2 + (rnd() * 10.0) as usize, 2 + (rnd() * 12.0) as usize);
        // ×4 as our heads, and some other factors, with and without letterbox padding.
        let (oh, ow) = if round % 3 == 0 {
            (ih * 3 + 1, iw * 2 + 3)
        } else {
            (ih * 4, iw * 4)
        };
        let (ch, cw) = if round % 2 == 0 {
            (oh, ow)
        } else {
            (oh - (rnd() * 3.0) as usize, ow - (rnd() * 3.0) as usize)
        };
        let g = MapGeom {
            map_w: ow,
            map_h: oh,
            content_w: cw,
            content_h: ch,
            frame_w: 3 * cw as u32 / 2,
            frame_h: ch as u32,
        };
        let mut data = blob_logits(c, ih, iw, &mut rnd);
        if round % 5 == 4 {
            // What a broken model puts out: the softmax must treat it the same both ways.
            for (i, v) in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e30]
                .into_iter()
                .enumerate()
            {
                let at = (i * 7919 + round as usize) % data.len();
                data[at] = v;
            }
        }
        let mut threshold: Vec<f32> = (0..c).map(|_| 0.2 + rnd() * 0.7).collect();
        if round % 7 == 0 {
            // The ends of (0, 1]: a threshold far below the fast exp's range, and one.
            threshold[1] = 1e-39;
            threshold[c - 1] = 1.0;
        }
        let defect = (0..c).map(|k| k > 0 || round % 4 == 1).collect();
        let roi = if round % 3 == 1 {
            vec![Roi::Rect {
                x: 2.0,
                y: 1.0,
                w: g.frame_w as f32 * 0.6,
                h: g.frame_h as f32 * 0.7,
            }]
        } else {
            Vec::new()
        };
        let cfg = config(defect, threshold, roi);
        let logits = Logits {
            data,
            up: Arc::new(Upsample::new(ih, iw, oh, ow)),
        };
        let probs = logits.to_probs();
        let (mut a, mut b) = (
            Decider::new(cfg.clone()).unwrap(),
            Decider::new(cfg).unwrap(),
        );
        let (mut va, mut vb) = (Verdict::new(), Verdict::new());
        // Three frames so the k-of-n history is compared too.
        for seq in 0..3 {
            a.decide_logits(seq, &logits, &g, &mut va).unwrap();
            b.decide(seq, &probs, &g, &mut vb).unwrap();
            assert_eq!(va, vb, "round {round}, frame {seq}");
        }
        total += va.defects.len();
        rejects += usize::from(va.reject);
    }
    assert!(total > 100, "too few defects to compare ({total})");
    assert!(rejects > 10, "too few rejects to compare ({rejects})");
}

#[test]
fn probabilities_at_the_threshold_decide_alike() {
    // Flat logits make the bounds tight: every pixel's defect probability sits within a
    // hair of the threshold, above or below, so any bound that skips too much shows.
    let g = MapGeom {
        map_w: 12,
        map_h: 8,
        content_w: 12,
        content_h: 8,
        frame_w: 12,
        frame_h: 8,
    };
    let mut defects = 0;
    for thr in [0.05f32, 0.3, 0.5, 0.77, 0.99, 1.0] {
        for delta in [-1e-3f32, -1e-5, 0.0, 1e-6, 1e-5, 1e-4, 1e-3] {
            // Two classes: p(defect) = σ(z), so z = logit(thr) + δ.
            let z = (f64::from(thr) / (1.0 - f64::from(thr)).max(1e-30)).ln() as f32 + delta;
            let z = if thr == 1.0 { 30.0 } else { z };
            let logits = Logits {
                data: [vec![0.0; 6], vec![z; 6]].concat(),
                up: Arc::new(Upsample::new(2, 3, 8, 12)),
            };
            let cfg = config(vec![false, true], vec![0.5, thr], Vec::new());
            let (mut a, mut b) = (
                Decider::new(cfg.clone()).unwrap(),
                Decider::new(cfg).unwrap(),
            );
            let (mut va, mut vb) = (Verdict::new(), Verdict::new());
            a.decide_logits(0, &logits, &g, &mut va).unwrap();
            b.decide(0, &logits.to_probs(), &g, &mut vb).unwrap();
            assert_eq!(va, vb, "threshold {thr}, δ {delta}");
            defects += va.defects.len();
        }
    }
    // Both sides of each threshold were hit.
    assert!(
        (10..40).contains(&defects),
        "{defects} frames with a defect"
    );
}

#[test]
fn logits_that_do_not_fit_are_refused_without_touching_the_history() {
    let cfg = config(vec![false, true], vec![0.5, 0.5], Vec::new());
    let mut d = Decider::new(cfg).unwrap();
    let g = MapGeom {
        map_w: 8,
        map_h: 8,
        content_w: 8,
        content_h: 8,
        frame_w: 8,
        frame_h: 8,
    };
    let up = Arc::new(Upsample::new(2, 2, 8, 8));
    // Class 1 leads everywhere: a defect over the whole frame.
    let good = Logits {
        data: vec![0.0, 0.0, 0.0, 0.0, 5.0, 5.0, 5.0, 5.0],
        up: up.clone(),
    };
    let mut v = Verdict::new();
    let three = Logits {
        data: vec![0.0; 12],
        up,
    };
    let e = d.decide_logits(0, &three, &g, &mut v).unwrap_err();
    assert!(e.contains("not 2 classes of 2x2"), "{e}");
    let wrong_size = Logits {
        data: good.data.clone(),
        up: Arc::new(Upsample::new(2, 2, 8, 4)),
    };
    let e = d.decide_logits(0, &wrong_size, &g, &mut v).unwrap_err();
    assert!(e.contains("upsampled to 4x8, but the map is 8x8"), "{e}");
    assert_eq!(v, Verdict::new());
    // confirm_k = 2: the refused frames did not count, so the first good one is no reject.
    d.decide_logits(1, &good, &g, &mut v).unwrap();
    assert_eq!(v.defects.len(), 1);
    assert_eq!(v.defects[0].area_px, 64.0);
    assert!(!v.reject);
    d.decide_logits(2, &good, &g, &mut v).unwrap();
    assert!(v.reject);
}

#[test]
fn steady_state_decide_logits_does_not_allocate() {
    let mut rnd = rng(7);
    let (c, ih, iw) = (5, 120, 160);
    let logits = Logits {
        data: blob_logits(c, ih, iw, &mut rnd),
        up: Arc::new(Upsample::new(ih, iw, 480, 640)),
    };
    let g = MapGeom {
        map_w: 640,
        map_h: 480,
        content_w: 640,
        content_h: 480,
        frame_w: 640,
        frame_h: 480,
    };
    let cfg = config(
        vec![false, true, true, true, true],
        vec![0.5; 5],
        Vec::new(),
    );
    let mut d = Decider::new(cfg).unwrap();
    let mut v = Verdict::new();
    d.decide_logits(0, &logits, &g, &mut v).unwrap();
    let (r, allocs) =
        count_allocs(|| (1..4).try_for_each(|seq| d.decide_logits(seq, &logits, &g, &mut v)));
    assert!(r.is_ok());
    assert_eq!(allocs, 0, "decide_logits allocated {allocs} times");
}
