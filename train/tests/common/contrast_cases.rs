//! The whole-loss cases both L_PA suites run: tests/cuda_contrast_parity.rs on a GPU and
//! tests/cuda_contrast_emulated.rs on the CUDA emulator, so both check the same inputs.
use super::Rng;
use contextrast_train::Result;
use contextrast_train::backend::Shape;
use contextrast_train::loss::bane::IGNORE;
use contextrast_train::loss::contrast::{
    ContrastConfig, ContrastOutput, HostInputs, SCALES, ScaleInput, contrastive_loss,
};

pub const STRIDES: [usize; SCALES] = [4, 8, 16, 32];

/// Blocky label maps `[b, h, w]` over `classes` (blocks of `block` pixels, some pixels noisy,
/// `ignore` of them 255) and predictions that copy the labels except in flipped blocks: error
/// regions with edges, as BANE sees them.
pub fn maps(
    rng: &mut Rng,
    (b, h, w): (usize, usize, usize),
    classes: &[u8],
    block: usize,
    ignore: f64,
) -> (Vec<u8>, Vec<u8>) {
    let pick = |rng: &mut Rng| classes[rng.below(classes.len() as u64) as usize];
    let (bh, bw) = (h.div_ceil(block), w.div_ceil(block));
    let mut y = vec![0u8; b * h * w];
    let mut p = vec![0u8; b * h * w];
    for bi in 0..b {
        let lab: Vec<u8> = (0..bh * bw).map(|_| pick(rng)).collect();
        let flip: Vec<Option<u8>> = (0..bh * bw)
            .map(|_| rng.chance(0.3).then(|| pick(rng)))
            .collect();
        for r in 0..h {
            for c in 0..w {
                let k = (r / block) * bw + c / block;
                let i = bi * h * w + r * w + c;
                y[i] = if rng.chance(0.05) { pick(rng) } else { lab[k] };
                p[i] = flip[k].unwrap_or(y[i]);
                if rng.chance(ignore) {
                    y[i] = IGNORE;
                }
            }
        }
    }
    (y, p)
}

/// Random L2-normalised features `[b, d, h, w]`.
pub fn features(rng: &mut Rng, s: Shape) -> Vec<f32> {
    let hw = s.hw();
    let mut z = vec![0f32; s.numel()];
    for bi in 0..s.n {
        for p in 0..hw {
            let v: Vec<f64> = (0..s.c)
                .map(|_| rng.below(2001) as f64 / 1000.0 - 1.0)
                .collect();
            let n = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-3);
            for k in 0..s.c {
                z[bi * s.c * hw + k * hw + p] = (v[k] / n) as f32;
            }
        }
    }
    z
}

/// One whole-loss case: shapes, classes and maps.
pub struct Case {
    pub name: String,
    pub b: usize,
    pub d: usize,
    pub h: usize,
    pub w: usize,
    pub labels: Vec<u8>,
    pub pred: Vec<u8>,
    pub z: Vec<Vec<f32>>,
}

impl Case {
    /// The model's class count for this case: one past the largest id in the labels and
    /// predictions, plus one class that occurs nowhere (a model's rare class a batch lacks).
    pub fn classes(&self) -> usize {
        let top = self
            .labels
            .iter()
            .chain(&self.pred)
            .filter(|&&l| l != IGNORE)
            .max()
            .map_or(0, |&l| usize::from(l) + 1);
        top + 1
    }
}

pub fn case(
    rng: &mut Rng,
    name: &str,
    (b, d, h, w): (usize, usize, usize, usize),
    classes: &[u8],
) -> Case {
    let (labels, pred) = maps(rng, (b, h, w), classes, 7, 0.1);
    let z = STRIDES
        .iter()
        .map(|&s| features(rng, Shape::new(b, d, h / s, w / s)))
        .collect();
    Case {
        name: name.into(),
        b,
        d,
        h,
        w,
        labels,
        pred,
        z,
    }
}

pub fn cases() -> Vec<Case> {
    let mut rng = Rng(5);
    let mut out = vec![
        case(&mut rng, "square", (2, 8, 64, 64), &[0, 1, 2]),
        case(&mut rng, "odd", (1, 5, 70, 45), &[0, 1, 3]),
        case(&mut rng, "wide", (3, 16, 96, 128), &[0, 1, 2, 4, 6]),
        case(&mut rng, "one class", (2, 4, 32, 32), &[2]),
    ];
    // Class 3 only at pixels no stride-32 sample sees: present at scale 1, absent at scale 4
    // (its anchors are not fused). Image 0 fully mis-predicted as 0 (a full error region).
    let mut c = case(
        &mut rng,
        "unfused class + full error",
        (2, 8, 64, 64),
        &[0, 1],
    );
    let (h, w) = (c.h, c.w);
    for r in (4..h).step_by(8) {
        for col in (4..w).step_by(8) {
            c.labels[h * w + r * w + col] = 3;
        }
    }
    c.labels[..h * w].fill(1);
    c.pred[..h * w].fill(0);
    out.push(c);
    // Perfect predictions: no error region anywhere, no hard negatives.
    let mut c = case(&mut rng, "perfect prediction", (2, 8, 64, 64), &[0, 1, 2]);
    c.pred = c
        .labels
        .iter()
        .map(|&l| if l == IGNORE { 0 } else { l })
        .collect();
    out.push(c);
    // Every pixel the stride-32 scale samples is 255: no class there, so the deepest scale has
    // no anchor, fuses into nothing, and its class list is empty (a zero-length upload).
    let mut c = case(
        &mut rng,
        "deepest scale all ignored",
        (1, 3, 64, 64),
        &[0, 1, 2],
    );
    for r in (0..c.h).step_by(32) {
        for col in (0..c.w).step_by(32) {
            c.labels[r * c.w + col] = IGNORE;
        }
    }
    out.push(c);
    out
}

pub fn configs() -> Vec<(&'static str, ContrastConfig)> {
    let base = ContrastConfig::default();
    let mut small = base.clone();
    small.sampling.max_pos = 9;
    small.sampling.max_neg = 20;
    let mut off = base.clone();
    off.sampling.bane = false;
    off.sampling.max_neg = 37;
    let mut tau = base.clone();
    tau.tau = 0.05;
    tau.w_l = 0.3;
    tau.w_h = 0.7;
    tau.sampling.k_percentile = 0.2;
    tau.sampling.hard_fraction = 0.7;
    tau.sampling.max_neg = 101;
    let mut zero = base.clone();
    zero.sampling.max_pos = 0;
    zero.sampling.max_neg = 0;
    let mut all_hard = base.clone();
    all_hard.sampling.max_neg = 64;
    all_hard.sampling.hard_fraction = 1.0;
    all_hard.sampling.k_percentile = 1.0;
    vec![
        ("default", base),
        ("small caps", small),
        ("BANE off", off),
        ("tau 0.05, w 0.3/0.7, K 0.2, hard 0.7", tau),
        ("zero caps", zero),
        ("all hard, K 1", all_hard),
    ]
}

pub fn cpu_reference(
    c: &Case,
    cfg: &ContrastConfig,
    seed: u64,
    step: u64,
) -> Result<ContrastOutput> {
    let inputs: [ScaleInput; SCALES] = std::array::from_fn(|i| ScaleInput {
        z: &c.z[i],
        b: c.b,
        d: c.d,
        h: c.h / STRIDES[i],
        w: c.w / STRIDES[i],
        stride: STRIDES[i],
    });
    contrastive_loss(
        &HostInputs {
            scales: &inputs,
            labels: &c.labels,
            pred: &c.pred,
            full_h: c.h,
            full_w: c.w,
        },
        cfg,
        seed,
        step,
    )
}

/// `|a − b| ≤ rtol · max(|a|, |b|)` (1e-12 floor): the losses of two implementations.
#[track_caller]
pub fn assert_close64(what: &str, reference: f64, got: f64, rtol: f64) {
    assert!(
        (reference - got).abs() <= rtol * reference.abs().max(got.abs()).max(1e-12),
        "{what}: reference {reference} vs {got} beyond rtol {rtol}"
    );
}
