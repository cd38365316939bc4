//! The contrastive loss: finite-difference gradient check, a hand-computed case, BANE on/off,
//! and config validation naming the key.
use super::bane::{IGNORE, LabelMaps, SamplingConfig, downsample_nearest, sample_anchor};
use super::contrast::{ContrastConfig, HostInputs, ScaleInput, anchor_loss, contrastive_loss};
use super::test_util::Rng;
use crate::Error;
use std::path::Path;

const STRIDES: [usize; 4] = [4, 8, 16, 32];

/// Random L2-normalised features `[b, d, h, w]` for each stride of a `full × full` image.
fn random_z(rng: &mut Rng, b: usize, d: usize, full: usize) -> [Vec<f32>; 4] {
    std::array::from_fn(|i| {
        let hw = (full / STRIDES[i]) * (full / STRIDES[i]);
        let mut z = vec![0f32; b * d * hw];
        for bi in 0..b {
            for p in 0..hw {
                let v: Vec<f64> = (0..d)
                    .map(|_| rng.below(2001) as f64 / 1000.0 - 1.0)
                    .collect();
                let n = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-3);
                for k in 0..d {
                    z[bi * d * hw + k * hw + p] = (v[k] / n) as f32;
                }
            }
        }
        z
    })
}

fn inputs(z: &[Vec<f32>; 4], b: usize, d: usize, full: usize) -> [ScaleInput<'_>; 4] {
    std::array::from_fn(|i| ScaleInput {
        z: &z[i],
        b,
        d,
        h: full / STRIDES[i],
        w: full / STRIDES[i],
        stride: STRIDES[i],
    })
}

/// Random labels over `classes` with some 255, and random predictions.
/// [`contrastive_loss`] on square `full`×`full` label and prediction maps, with features `z`
/// of `d` channels for `b` images.
#[allow(clippy::too_many_arguments)]
fn loss_of(
    z: &[Vec<f32>; 4],
    b: usize,
    d: usize,
    full: usize,
    labels: &[u8],
    pred: &[u8],
    cfg: &ContrastConfig,
    seed: u64,
    step: u64,
) -> crate::Result<super::contrast::ContrastOutput> {
    let inputs = HostInputs {
        scales: &inputs(z, b, d, full),
        labels,
        pred,
        full_h: full,
        full_w: full,
    };
    contrastive_loss(&inputs, cfg, seed, step)
}

fn random_maps(rng: &mut Rng, n: usize, classes: usize) -> (Vec<u8>, Vec<u8>) {
    let labels = (0..n)
        .map(|_| {
            if rng.chance(0.15) {
                IGNORE
            } else {
                rng.below(classes) as u8
            }
        })
        .collect();
    let pred = (0..n).map(|_| rng.below(classes) as u8).collect();
    (labels, pred)
}

#[test]
fn gradient_matches_central_differences() {
    let (b, d, full) = (2, 3, 32);
    let mut rng = Rng::new(11);
    let mut z = random_z(&mut rng, b, d, full);
    let (mut labels, pred) = random_maps(&mut rng, b * full * full, 3);
    // Scale 4 (1×1) reads pixel (0, 0) of each image: make it labelled so fusion happens.
    labels[0] = 0;
    labels[full * full] = 1;
    let cfg = ContrastConfig {
        // Small caps, so some pixels only feed the anchors and sampling really subsets.
        sampling: SamplingConfig {
            max_pos: 5,
            max_neg: 6,
            ..SamplingConfig::default()
        },
        ..ContrastConfig::default()
    };
    let run = |z: &[Vec<f32>; 4]| loss_of(z, b, d, full, &labels, &pred, &cfg, 7, 3).unwrap();
    let out = run(&z);
    assert!(out.loss > 0.0 && out.loss.is_finite());
    assert!(
        out.anchors_used.iter().all(|&a| a > 0),
        "{:?}",
        out.anchors_used
    );
    let (tol_rel, tol_abs) = (1e-3, 1e-6);
    let h = 1e-3f32;
    let mut checked = 0;
    for i in 0..4 {
        for j in 0..z[i].len() {
            let x = z[i][j];
            // The perturbations actually applied (f32 rounding), exactly, in f64.
            z[i][j] = x + h;
            let up = f64::from(z[i][j]) - f64::from(x);
            let f_up = run(&z).loss;
            z[i][j] = x - h;
            let down = f64::from(x) - f64::from(z[i][j]);
            let f_down = run(&z).loss;
            z[i][j] = x;
            let numeric = (f_up - f_down) / (up + down);
            let analytic = f64::from(out.grads[i][j]);
            let err = (numeric - analytic).abs();
            assert!(
                err <= tol_abs + tol_rel * numeric.abs().max(analytic.abs()),
                "scale {} entry {j}: analytic {analytic:e}, numeric {numeric:e}",
                i + 1
            );
            checked += 1;
        }
    }
    assert_eq!(checked, b * d * (64 + 16 + 4 + 1));
}

#[test]
fn hand_computed_two_pixels() {
    // One image 32×32; at scale 1 (8×8) only pixel (0, 1) is class 0 and (1, 0) is class 1;
    // everything else (scale 4 included) is ignored. Each anchor: 1 positive, 1 negative.
    let (b, d, full) = (1, 2, 32);
    let mut labels = vec![IGNORE; full * full];
    labels[4] = 0; // scale-1 pixel (0, 1)
    labels[4 * full] = 1; // scale-1 pixel (1, 0)
    let pred = vec![0u8; full * full];
    let mut z: [Vec<f32>; 4] = std::array::from_fn(|i| {
        let hw = (full / STRIDES[i]).pow(2);
        vec![0f32; b * d * hw]
    });
    let (u, v) = ([0.6f32, 0.8], [1.0f32, 0.0]);
    let hw = 64;
    z[0][1] = u[0];
    z[0][hw + 1] = u[1];
    z[0][8] = v[0];
    z[0][hw + 8] = v[1];
    let cfg = ContrastConfig::default();
    let out = loss_of(&z, b, d, full, &labels, &pred, &cfg, 0, 0).unwrap();
    let tau = 0.1;
    let uu = 1.0f64;
    let vv = 1.0f64;
    let uv = 0.6f64;
    // Anchor 0 = u: ℓ = −log(e^{u·u/τ} / (e^{u·u/τ} + e^{u·v/τ})), likewise anchor 1 = v.
    let l0 = -((uu / tau).exp() / ((uu / tau).exp() + (uv / tau).exp())).ln();
    let l1 = -((vv / tau).exp() / ((vv / tau).exp() + (uv / tau).exp())).ln();
    let expect = (l0 + l1) / 2.0;
    assert_eq!(out.anchors_used, [2, 0, 0, 0]);
    assert!((out.per_scale[0] - expect).abs() < 1e-6, "{:?}", out);
    assert!((out.loss - 0.1 * expect).abs() < 1e-7);
    // The single-anchor kernel directly: one positive, one negative.
    let (l, gp, gn) = anchor_loss(&[0.3], &[0.5], tau);
    let want = -((3.0f64).exp() / ((3.0f64).exp() + (5.0f64).exp())).ln();
    assert!((l - want).abs() < 1e-12);
    let sig = 1.0 / (1.0 + (-2.0f64).exp());
    assert!((gp[0] + sig).abs() < 1e-12 && (gn[0] - sig).abs() < 1e-12);
}

#[test]
fn bane_on_and_off_use_different_negatives_deterministically() {
    let (b, d, full) = (2, 4, 128);
    let mut rng = Rng::new(5);
    let z = random_z(&mut rng, b, d, full);
    // Blobs: class by quadrant, predictions shifted so there are wrongly predicted regions.
    let mut labels = vec![0u8; b * full * full];
    let mut pred = vec![0u8; b * full * full];
    for bi in 0..b {
        for y in 0..full {
            for x in 0..full {
                let p = bi * full * full + y * full + x;
                labels[p] = (usize::from(y >= full / 2) * 2 + usize::from(x >= full / 2)) as u8;
                pred[p] =
                    (usize::from(y >= full / 2 - 12) * 2 + usize::from(x >= full / 2 + 12)) as u8;
            }
        }
    }
    let sampling = SamplingConfig {
        max_pos: 16,
        max_neg: 16,
        ..SamplingConfig::default()
    };
    let on = ContrastConfig {
        sampling: sampling.clone(),
        ..ContrastConfig::default()
    };
    let off = ContrastConfig {
        sampling: SamplingConfig {
            bane: false,
            ..sampling
        },
        ..ContrastConfig::default()
    };
    let run = |cfg: &ContrastConfig| loss_of(&z, b, d, full, &labels, &pred, cfg, 9, 4).unwrap();
    let (a, a2, c) = (run(&on), run(&on), run(&off));
    assert_eq!(a, a2, "same inputs, same output");
    assert_eq!(a.anchors_used, c.anchors_used);
    assert_ne!(a.per_scale[0], c.per_scale[0]);
    assert_ne!(a.grads[0], c.grads[0]);
    // The cause: with BANE on, scale 1's anchors draw hard negatives that BANE off does not.
    let y1 = downsample_nearest(&labels, b, full, full, 4).unwrap();
    let p1 = downsample_nearest(&pred, b, full, full, 4).unwrap();
    let (h1, w1) = (full / 4, full / 4);
    let maps = LabelMaps {
        y: y1.as_slice(),
        pred: p1.as_slice(),
        b,
        h: h1,
        w: w1,
    };
    let negs = |cfg: &SamplingConfig, m: u8| {
        let s = sample_anchor(&maps, m, cfg, 9, 4, 1).unwrap();
        let mut n = s.hard_negatives;
        n.extend(s.random_negatives);
        n.sort_unstable();
        n
    };
    assert!((0..4).any(|m| negs(&on.sampling, m) != negs(&off.sampling, m)));
    assert_eq!(run(&off), c);
    // The reported sample sizes are those of the lists the loss used; BANE off draws no hard ones.
    assert!(c.anchors.iter().all(|a| a.hard == 0));
    assert!(a.anchors.iter().any(|a| a.hard > 0));
    assert_eq!(a.anchors.len(), a.anchors_used.iter().sum::<usize>());
    for r in a.anchors.iter().filter(|r| r.scale == 0) {
        let s = sample_anchor(&maps, r.class, &on.sampling, 9, 4, 1).unwrap();
        let got = (r.positives, r.hard, r.random);
        let want = (
            s.positives.len(),
            s.hard_negatives.len(),
            s.random_negatives.len(),
        );
        assert_eq!(got, want, "class {}", r.class);
    }
}

#[test]
fn config_errors_name_the_key() {
    let path = Path::new("train.toml");
    assert!(ContrastConfig::default().validate(path).is_ok());
    type Edit = fn(&mut ContrastConfig);
    let cases: [(Edit, &str); 10] = [
        (|c| c.tau = 0.0, "contrast.tau"),
        (|c| c.tau = f64::NAN, "contrast.tau"),
        (|c| c.alpha = -0.1, "contrast.alpha"),
        (
            |c| c.lambda = [0.1, f64::INFINITY, 0.7, 1.0],
            "contrast.lambda",
        ),
        (|c| (c.w_l, c.w_h) = (0.7, 0.7), "contrast.w_l"),
        (|c| (c.w_l, c.w_h) = (1.5, -0.5), "contrast.w_h"),
        (|c| c.warmup_fraction = 1.5, "contrast.warmup_fraction"),
        (
            |c| c.sampling.k_percentile = 0.0,
            "contrast.sampling.k_percentile",
        ),
        (
            |c| c.sampling.k_percentile = 1.5,
            "contrast.sampling.k_percentile",
        ),
        (
            |c| c.sampling.hard_fraction = -0.1,
            "contrast.sampling.hard_fraction",
        ),
    ];
    for (edit, key) in cases {
        let mut cfg = ContrastConfig::default();
        edit(&mut cfg);
        match cfg.validate(path) {
            Err(Error::Config {
                key: k, path: p, ..
            }) => {
                assert_eq!(k, key);
                assert_eq!(p, path);
            }
            other => panic!("{key}: expected a config error, got {other:?}"),
        }
    }
    // serde: defaults fill missing fields, unknown fields are refused.
    let c: ContrastConfig = toml::from_str("tau = 0.2").unwrap();
    assert_eq!(c.tau, 0.2);
    assert_eq!(c.lambda, [0.1, 0.4, 0.7, 1.0]);
    assert!(toml::from_str::<ContrastConfig>("taus = 0.2").is_err());
}

/// Features with no channels are refused by name; an image smaller than the deepest stride (an
/// empty scale) is not an error and that scale contributes nothing.
#[test]
fn degenerate_sizes_are_refused_or_handled() {
    let mut rng = Rng::new(5);
    let (b, full) = (2, 16);
    let (labels, pred) = random_maps(&mut rng, b * full * full, 3);
    let cfg = ContrastConfig::default();
    let run = |z: &[Vec<f32>; 4], d| loss_of(z, b, d, full, &labels, &pred, &cfg, 1, 1);
    let err = run(&random_z(&mut rng, b, 0, full), 0).unwrap_err();
    assert!(
        matches!(&err, Error::Shape(m) if m.contains("0 channels")),
        "{err}"
    );

    let z = random_z(&mut rng, b, 4, full);
    assert!(z[3].is_empty(), "16 px at stride 32 is an empty scale");
    let out = run(&z, 4).unwrap();
    assert!(out.loss.is_finite() && out.loss > 0.0, "{}", out.loss);
    assert_eq!(out.anchors_used[3], 0);
    assert!(out.grads[3].is_empty());
    assert!(out.grads[0].iter().any(|&g| g != 0.0));
}
