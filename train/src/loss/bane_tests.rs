//! BANE candidates, percentile with ties, caps, determinism, and the boundary property.
use super::bane::{
    AnchorSamples, LabelMaps, SamplingConfig, downsample_nearest, hard_negative_candidates,
    percentile_threshold, sample_anchor,
};
use super::sampling::{pixel_key, select_smallest_keys};
use super::test_util::Rng;
use std::collections::HashSet;
use std::path::Path;

const M: u8 = 2;

#[test]
fn downsample_takes_top_left_of_each_cell() {
    // b = 2, 3×5, stride 2 → 1×2 per image (floored).
    let labels: Vec<u8> = (0..30).collect();
    assert_eq!(
        downsample_nearest(&labels, 2, 3, 5, 2).unwrap(),
        vec![0, 2, 15, 17]
    );
    assert_eq!(downsample_nearest(&labels, 2, 3, 5, 1).unwrap(), labels);
    // 6×5 by 3 → 2×1 (rows 0 and 3, column 0); 5×6 by 3 → 1×2 (row 0, columns 0 and 3).
    assert_eq!(
        downsample_nearest(&labels, 1, 6, 5, 3).unwrap(),
        vec![0, 15]
    );
    assert_eq!(downsample_nearest(&labels, 1, 5, 6, 3).unwrap(), vec![0, 3]);
    assert_eq!(
        downsample_nearest(&labels, 2, 3, 5, 4).unwrap(),
        Vec::<u8>::new()
    );
    assert!(downsample_nearest(&labels, 2, 3, 5, 0).is_err());
    assert!(downsample_nearest(&labels, 2, 3, 4, 2).is_err());
}

#[test]
fn percentile_includes_ties() {
    let mut v = [9, 4, 1, 4, 1];
    assert_eq!(percentile_threshold(&mut v, 0.5), Some(4)); // ⌈2.5⌉ = 3rd smallest
    assert_eq!(percentile_threshold(&mut v, 0.4), Some(1)); // 2nd
    assert_eq!(percentile_threshold(&mut v, 1.0), Some(9));
    assert_eq!(percentile_threshold(&mut v, 1e-9), Some(1)); // rank at least 1
    assert_eq!(percentile_threshold(&mut [], 0.5), None);
}

/// One image, labels all 1 (≠ M), predicted M where `pred_m` says.
fn row_case(pred_m: &[bool]) -> Vec<u32> {
    let y = vec![1; pred_m.len()];
    let pred: Vec<u8> = pred_m.iter().map(|&p| if p { M } else { 0 }).collect();
    hard_negative_candidates(&y, &pred, 1, 1, y.len(), M, 0.5).unwrap()
}

#[test]
fn candidates_keep_ties_at_the_threshold() {
    // D² = [1, 4, 9, 4, 1] on 1..=5, t = 3rd smallest = 4: four pixels, not three.
    let e = [false, true, true, true, true, true, false];
    assert_eq!(row_case(&e), vec![1, 2, 4, 5]);
    // The image border is not an edge: D² = [16, 9, 4, 1], t = 2nd smallest = 4.
    assert_eq!(row_case(&[true, true, true, true, false]), vec![2, 3]);
}

#[test]
fn full_and_empty_error_regions() {
    assert_eq!(row_case(&[true; 6]), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(row_case(&[false; 6]), Vec::<u32>::new());
}

#[test]
fn error_region_excludes_correct_and_ignored_pixels() {
    // Predicted M everywhere; only labels ∉ {M, 255} are errors. Ignored and correct pixels are
    // edges of E like any other non-E pixel.
    let y = [1, 1, 1, 255, 1, 1, 1, M, 3, 3, 3];
    let pred = [M; 11];
    // E = {0,1,2} (D² 9,4,1 → t = 4), {4,5,6} (1,4,1), {8,9,10} (1,4,9); 9 values, 5th smallest = 4.
    let got = hard_negative_candidates(&y, &pred, 1, 1, 11, M, 0.5).unwrap();
    assert_eq!(got, vec![1, 2, 4, 5, 6, 8, 9]);
}

#[test]
fn candidates_pool_over_the_batch_with_offsets() {
    // Two 1×7 images; the error strip of image 1 starts at flat index 7.
    let y = vec![1; 14];
    let mut pred = vec![0; 14];
    pred[8..13].fill(M);
    assert_eq!(
        hard_negative_candidates(&y, &pred, 2, 1, 7, M, 0.5).unwrap(),
        vec![8, 9, 11, 12]
    );
}

/// A 40×40 image, background labelled 0, a 20×20 square of class 1 at rows/cols 10..30 that the
/// network calls M. Returns (y, pred, depth of each pixel inside the square: 1 = outer ring).
fn square() -> (Vec<u8>, Vec<u8>, Vec<usize>) {
    let (n, lo, hi) = (40, 10, 30);
    let mut y = vec![0; n * n];
    let mut pred = vec![0; n * n];
    let mut depth = vec![0; n * n];
    for r in lo..hi {
        for c in lo..hi {
            y[r * n + c] = 1;
            pred[r * n + c] = M;
            depth[r * n + c] = 1 + (r - lo).min(c - lo).min(hi - 1 - r).min(hi - 1 - c);
        }
    }
    (y, pred, depth)
}

#[test]
fn hard_negatives_sit_at_the_error_regions_edge() {
    let (y, pred, depth) = square();
    // D² = depth²; |E| = 400, the 200th smallest D² is 9 (rings of 76 + 68 + 60 = 204 pixels).
    let cands = hard_negative_candidates(&y, &pred, 1, 40, 40, M, 0.5).unwrap();
    assert_eq!(cands.len(), 204);
    assert!(cands.iter().all(|&p| (1..=3).contains(&depth[p as usize])));
    // Capped: still only from the outer half ring (depth ≤ 5 of 10).
    let cfg = SamplingConfig {
        max_neg: 100,
        ..SamplingConfig::default()
    };
    let s = sample_anchor(
        &LabelMaps {
            y: &y,
            pred: &pred,
            b: 1,
            h: 40,
            w: 40,
        },
        M,
        &cfg,
        5,
        1,
        2,
    )
    .unwrap();
    assert_eq!(s.hard_negatives.len(), 50);
    assert!(
        s.hard_negatives
            .iter()
            .all(|&p| (1..=5).contains(&depth[p as usize]))
    );
    assert!(s.hard_negatives.iter().all(|p| cands.contains(p)));
}

fn random_batch(rng: &mut Rng, b: usize, h: usize, w: usize) -> (Vec<u8>, Vec<u8>) {
    let n = b * h * w;
    let y: Vec<u8> = (0..n)
        .map(|_| {
            if rng.chance(0.05) {
                255
            } else {
                rng.below(4) as u8
            }
        })
        .collect();
    // Predictions right 60% of the time, with blobs of M to make real error regions.
    let pred: Vec<u8> = y
        .iter()
        .enumerate()
        .map(|(p, &l)| {
            let blob = ((p % w) / 8).is_multiple_of(2) && (p / w / 8).is_multiple_of(2);
            if blob {
                M
            } else if rng.chance(0.6) && l != 255 {
                l
            } else {
                rng.below(4) as u8
            }
        })
        .collect();
    (y, pred)
}

fn check_caps(
    y: &[u8],
    pred: &[u8],
    b: usize,
    h: usize,
    w: usize,
    cfg: &SamplingConfig,
    s: &AnchorSamples,
) {
    let pos: Vec<u32> = (0..y.len() as u32)
        .filter(|&p| y[p as usize] == M)
        .collect();
    let neg: Vec<u32> = (0..y.len() as u32)
        .filter(|&p| y[p as usize] != M && y[p as usize] != 255)
        .collect();
    // Positives: exactly the max_pos smallest keys.
    let keys: Vec<u64> = pos
        .iter()
        .map(|&p| pixel_key(9, 4, 3, u32::from(M), p))
        .collect();
    assert_eq!(
        s.positives,
        select_smallest_keys(&pos, &keys, cfg.max_pos).unwrap()
    );
    assert_eq!(s.positives.len(), pos.len().min(cfg.max_pos));
    // Hard: subset of the candidates, as many as the cap allows.
    let cands = if cfg.bane {
        hard_negative_candidates(y, pred, b, h, w, M, cfg.k_percentile).unwrap()
    } else {
        vec![]
    };
    assert_eq!(s.hard_negatives.len(), cands.len().min(cfg.hard_cap()));
    assert!(
        s.hard_negatives
            .iter()
            .all(|p| cands.binary_search(p).is_ok())
    );
    // Random: other negatives, filling up to max_neg.
    let hard: HashSet<u32> = s.hard_negatives.iter().copied().collect();
    let rest = neg.iter().filter(|p| !hard.contains(p)).count();
    assert_eq!(
        s.random_negatives.len(),
        rest.min(cfg.max_neg - s.hard_negatives.len())
    );
    assert!(
        s.random_negatives
            .iter()
            .all(|p| neg.binary_search(p).is_ok() && !hard.contains(p))
    );
    for list in [&s.positives, &s.hard_negatives, &s.random_negatives] {
        assert!(list.is_sorted());
    }
}

#[test]
fn caps_and_disjoint_sets() {
    let mut rng = Rng::new(5);
    let (b, h, w) = (3, 32, 48);
    let (y, pred) = random_batch(&mut rng, b, h, w);
    for cfg in [
        SamplingConfig::default(),
        SamplingConfig {
            max_pos: 50,
            max_neg: 80,
            ..SamplingConfig::default()
        },
        SamplingConfig {
            max_pos: 10,
            max_neg: 300,
            hard_fraction: 0.9,
            ..SamplingConfig::default()
        },
        SamplingConfig {
            max_neg: 500,
            bane: false,
            ..SamplingConfig::default()
        },
        SamplingConfig {
            max_pos: 100_000,
            max_neg: 100_000,
            ..SamplingConfig::default()
        },
    ] {
        let s = sample_anchor(
            &LabelMaps {
                y: &y,
                pred: &pred,
                b,
                h,
                w,
            },
            M,
            &cfg,
            9,
            4,
            3,
        )
        .unwrap();
        check_caps(&y, &pred, b, h, w, &cfg, &s);
        if !cfg.bane {
            assert!(s.hard_negatives.is_empty());
        }
    }
    // The capped case really caps.
    let cfg = SamplingConfig {
        max_pos: 50,
        max_neg: 80,
        ..SamplingConfig::default()
    };
    let s = sample_anchor(
        &LabelMaps {
            y: &y,
            pred: &pred,
            b,
            h,
            w,
        },
        M,
        &cfg,
        9,
        4,
        3,
    )
    .unwrap();
    assert_eq!(
        (
            s.positives.len(),
            s.hard_negatives.len(),
            s.random_negatives.len()
        ),
        (50, 40, 40)
    );
}

#[test]
fn deterministic_and_keyed_by_seed_and_step() {
    let mut rng = Rng::new(6);
    let (y, pred) = random_batch(&mut rng, 2, 24, 24);
    let cfg = SamplingConfig {
        max_pos: 30,
        max_neg: 60,
        ..SamplingConfig::default()
    };
    let run = |seed, step| {
        sample_anchor(
            &LabelMaps {
                y: &y,
                pred: &pred,
                b: 2,
                h: 24,
                w: 24,
            },
            M,
            &cfg,
            seed,
            step,
            1,
        )
        .unwrap()
    };
    let a = run(1, 1);
    assert_eq!(a, run(1, 1));
    assert_ne!(a.positives, run(2, 1).positives);
    assert_ne!(a.positives, run(1, 2).positives);
    // Same result whatever the rayon pool.
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        assert_eq!(pool.install(|| run(1, 1)), a);
    }
}

#[test]
fn ignore_class_selects_nothing() {
    let y = [255, 1, 255, 0];
    let s = sample_anchor(
        &LabelMaps {
            y: &y,
            pred: &[255; 4],
            b: 1,
            h: 2,
            w: 2,
        },
        255,
        &SamplingConfig::default(),
        0,
        0,
        1,
    )
    .unwrap();
    assert_eq!(s, AnchorSamples::default());
}

#[test]
fn shape_errors() {
    let cfg = SamplingConfig::default();
    let err = sample_anchor(
        &LabelMaps {
            y: &[0; 6],
            pred: &[0; 5],
            b: 1,
            h: 2,
            w: 3,
        },
        M,
        &cfg,
        0,
        0,
        1,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("predictions has 5 values"), "{err}");
    assert!(
        sample_anchor(
            &LabelMaps {
                y: &[0; 5],
                pred: &[0; 6],
                b: 1,
                h: 2,
                w: 3
            },
            M,
            &cfg,
            0,
            0,
            1
        )
        .is_err()
    );
    assert!(hard_negative_candidates(&[0; 6], &[0; 6], 2, 2, 3, M, 0.5).is_err());
}

#[test]
fn config_caps_and_validation() {
    let d = SamplingConfig::default();
    assert_eq!(d.hard_cap(), 1024);
    assert_eq!(
        SamplingConfig {
            bane: false,
            ..d.clone()
        }
        .hard_cap(),
        0
    );
    assert_eq!(
        SamplingConfig {
            max_neg: 2047,
            hard_fraction: 0.3,
            ..d.clone()
        }
        .hard_cap(),
        614
    );
    assert_eq!(
        SamplingConfig {
            hard_fraction: 7.0,
            ..d.clone()
        }
        .hard_cap(),
        2048
    );
    let path = Path::new("line.toml");
    assert!(d.validate(path).is_ok());
    let err = SamplingConfig {
        hard_fraction: 1.5,
        ..d.clone()
    }
    .validate(path)
    .unwrap_err()
    .to_string();
    contextrast_model::testing::assert_mentions(&err, &["line.toml", "hard_fraction"]);
    let err = SamplingConfig {
        k_percentile: 0.0,
        ..d
    }
    .validate(path)
    .unwrap_err()
    .to_string();
    assert!(err.contains("k_percentile"), "{err}");
}
