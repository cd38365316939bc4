//! Positives and negatives of one anchor at one scale (method doc, sections 3 and 4), with BANE's
//! boundary-aware hard negatives: the pixels nearest the edges of the region the network wrongly
//! labels as the anchor's class. CPU reference; the CUDA backend must select the same indices.
use super::edt::edt_squared;
use super::sampling::{anchor_key_base, key_from_base, select_smallest_keys};
use crate::{Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use contextrast_model::IGNORE;

/// Caps and BANE settings of the contrastive sampling (training-config fields).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingConfig {
    /// Most positives per anchor and batch: bounds memory and time.
    pub max_pos: usize,
    /// Most negatives (hard + random) per anchor and batch.
    pub max_neg: usize,
    /// Share of `max_neg` that BANE hard negatives may take; the rest are random.
    pub hard_fraction: f64,
    /// K: keep error pixels whose D² is at most the ⌈K·|E|⌉-th smallest.
    pub k_percentile: f64,
    /// BANE on; off gives the "CCL only" ablation (all negatives random).
    pub bane: bool,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            max_pos: 1024,
            max_neg: 2048,
            hard_fraction: 0.5,
            k_percentile: 0.5,
            bane: true,
        }
    }
}

impl SamplingConfig {
    /// Checks the ranges; `path` is the config file the values came from, for the error message.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |key: &str, msg: String| Error::Config {
            path: path.to_path_buf(),
            key: key.into(),
            msg,
        };
        if !(0.0..=1.0).contains(&self.hard_fraction) {
            return Err(bad(
                "hard_fraction",
                format!("{} is not in [0, 1]", self.hard_fraction),
            ));
        }
        if !(self.k_percentile > 0.0 && self.k_percentile <= 1.0) {
            return Err(bad(
                "k_percentile",
                format!("{} is not in (0, 1]", self.k_percentile),
            ));
        }
        Ok(())
    }

    /// Most hard negatives: ⌊hard_fraction·max_neg⌋ (computed in f64), 0 with BANE off.
    /// Out-of-range fractions are clamped, so sampling never fails on them.
    pub fn hard_cap(&self) -> usize {
        if !self.bane {
            return 0;
        }
        let cap = (self.hard_fraction * self.max_neg as f64).floor();
        if cap.is_nan() || cap <= 0.0 {
            0
        } else {
            (cap as usize).min(self.max_neg)
        }
    }
}

/// The pixels chosen for one anchor, as flat indices b·h·w + y·w + x at the anchor's scale, each
/// list sorted ascending. The three lists are disjoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnchorSamples {
    /// Pixels of the anchor's class.
    pub positives: Vec<u32>,
    /// BANE hard negatives (empty with BANE off).
    pub hard_negatives: Vec<u32>,
    /// Random negatives from the remaining pixels of other classes.
    pub random_negatives: Vec<u32>,
}

/// Nearest downsampling of a label-like map `[b, h, w]` by `stride` (PyTorch convention):
/// `out[b, y, x] = labels[b, y·stride, x·stride]`, of size `[b, h/stride, w/stride]` (floored).
pub fn downsample_nearest(
    labels: &[u8],
    b: usize,
    h: usize,
    w: usize,
    stride: usize,
) -> Result<Vec<u8>> {
    if stride == 0 {
        return Err(Error::Shape("downsample_nearest: stride 0".into()));
    }
    check_len("downsample_nearest", "labels", labels.len(), b, h, w)?;
    let (ho, wo) = (h / stride, w / stride);
    let mut out = Vec::with_capacity(b * ho * wo);
    if ho == 0 || wo == 0 {
        return Ok(out);
    }
    for img in labels.chunks_exact(h * w).take(b) {
        for y in 0..ho {
            let row = &img[y * stride * w..];
            out.extend((0..wo).map(|x| row[x * stride]));
        }
    }
    Ok(out)
}

/// The ⌈k·n⌉-th smallest of `values` (n = its length; the rank is clamped to [1, n], computed in
/// f64), in expected O(n): reorders `values`. `None` when empty.
pub fn percentile_threshold(values: &mut [u32], k: f64) -> Option<u32> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let rank = (k * n as f64).ceil();
    let rank = if rank.is_nan() || rank < 1.0 {
        1
    } else {
        (rank as usize).min(n)
    };
    let (_, &mut t, _) = values.select_nth_unstable(rank - 1);
    Some(t)
}

/// BANE candidates for anchor class `m` before the cap (section 4, steps 1–3), pooled over the
/// batch as sorted flat indices. Per image: E = {ŷ = m ∧ Y ∉ {m, 255}}; empty E gives nothing,
/// full E gives all of it (D² = 1 everywhere), otherwise the pixels of E with D² ≤ the
/// ⌈K·|E|⌉-th smallest D² in E (ties included).
pub fn hard_negative_candidates(
    y: &[u8],
    pred: &[u8],
    b: usize,
    h: usize,
    w: usize,
    m: u8,
    k_percentile: f64,
) -> Result<Vec<u32>> {
    check_inputs(y, pred, b, h, w)?;
    let hw = h * w;
    let per_image: Vec<Vec<u32>> = (0..b)
        .into_par_iter()
        .map(|bi| {
            let (yi, pi) = (&y[bi * hw..(bi + 1) * hw], &pred[bi * hw..(bi + 1) * hw]);
            let e: Vec<bool> = yi
                .iter()
                .zip(pi)
                .map(|(&l, &p)| p == m && l != m && l != IGNORE)
                .collect();
            image_candidates(&e, h, w, k_percentile).map(|ps| {
                // Fits u32: check_inputs bounds b·h·w.
                let off = (bi * hw) as u32;
                ps.into_iter().map(|p| off + p).collect()
            })
        })
        .collect::<Result<_>>()?;
    Ok(per_image.concat())
}

/// Steps 2–3 of section 4 for one image's error mask; indices within the image, ascending.
fn image_candidates(e: &[bool], h: usize, w: usize, k: f64) -> Result<Vec<u32>> {
    let size = e.iter().filter(|&&v| v).count();
    if size == 0 {
        return Ok(Vec::new());
    }
    let members = || {
        e.iter()
            .enumerate()
            .filter(|&(_, &v)| v)
            .map(|(p, _)| p as u32)
    };
    if size == e.len() {
        return Ok(members().collect());
    }
    let d2 = edt_squared(e, h, w)?;
    let mut inside: Vec<u32> = members().map(|p| d2[p as usize]).collect();
    let Some(t) = percentile_threshold(&mut inside, k) else {
        return Ok(Vec::new());
    };
    Ok(members().filter(|&p| d2[p as usize] <= t).collect())
}

/// One scale's labels Y_i and detached predictions ŷ_i, both `[b, h, w]`: what the sampling
/// reads, on the host (`L = [u8]`) or on a device. The two maps and their size travel together
/// because they are only ever valid together.
pub struct LabelMaps<'a, L: ?Sized> {
    /// Labels Y_i (255 = ignore).
    pub y: &'a L,
    /// Predictions ŷ_i.
    pub pred: &'a L,
    /// Batch size.
    pub b: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl<L: ?Sized> Clone for LabelMaps<'_, L> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<L: ?Sized> Copy for LabelMaps<'_, L> {}

/// Positives, BANE hard negatives and random negatives of anchor class `m` at one scale
/// (section 3), from the scale's labels and predictions `maps`.
///
/// Positives: Y = m, capped at `max_pos` by smallest key. Hard negatives: the BANE candidates
/// capped at [`SamplingConfig::hard_cap`]. Random negatives: the other negatives (Y ∉ {m, 255},
/// not already hard) capped at `max_neg − |hard|`. Every cap keeps the smallest
/// [`pixel_key`](super::sampling::pixel_key)`(seed, step, scale, m, index)`. `m = 255` selects nothing.
pub fn sample_anchor(
    maps: &LabelMaps<'_, [u8]>,
    m: u8,
    cfg: &SamplingConfig,
    seed: u64,
    step: u64,
    scale: u32,
) -> Result<AnchorSamples> {
    let LabelMaps { y, pred, b, h, w } = *maps;
    check_inputs(y, pred, b, h, w)?;
    if m == IGNORE {
        return Ok(AnchorSamples::default());
    }
    let base = anchor_key_base(seed, step, scale, u32::from(m));
    let capped = |cands: Vec<u32>, cap: usize| -> Result<Vec<u32>> {
        if cands.len() <= cap {
            return Ok(cands);
        }
        let keys: Vec<u64> = cands.iter().map(|&p| key_from_base(base, p)).collect();
        select_smallest_keys(&cands, &keys, cap)
    };

    let positives = capped(indices_where(y, |l| l == m), cfg.max_pos)?;
    let hard_negatives = if cfg.bane {
        capped(
            hard_negative_candidates(y, pred, b, h, w, m, cfg.k_percentile)?,
            cfg.hard_cap(),
        )?
    } else {
        Vec::new()
    };
    let others = without(indices_where(y, |l| l != m && l != IGNORE), &hard_negatives);
    let random_negatives = capped(others, cfg.max_neg.saturating_sub(hard_negatives.len()))?;
    Ok(AnchorSamples {
        positives,
        hard_negatives,
        random_negatives,
    })
}

/// Flat indices (ascending) of the labels that satisfy `pred`.
fn indices_where(y: &[u8], pred: impl Fn(u8) -> bool) -> Vec<u32> {
    y.iter()
        .enumerate()
        .filter(|&(_, &l)| pred(l))
        .map(|(p, _)| p as u32)
        .collect()
}

/// `all` minus `taken`, both ascending: one merge pass.
fn without(all: Vec<u32>, taken: &[u32]) -> Vec<u32> {
    let mut t = taken.iter().peekable();
    all.into_iter()
        .filter(|&p| {
            while t.next_if(|&&q| q < p).is_some() {}
            t.peek().is_none_or(|&&q| q != p)
        })
        .collect()
}

fn check_len(what: &str, name: &str, len: usize, b: usize, h: usize, w: usize) -> Result<()> {
    let n = b.checked_mul(h).and_then(|v| v.checked_mul(w));
    if n != Some(len) {
        return Err(Error::Shape(format!(
            "{what}: {name} has {len} values, expected {b}×{h}×{w}"
        )));
    }
    Ok(())
}

/// Same shapes, and every flat index fits the u32 the samples are stored in.
fn check_inputs(y: &[u8], pred: &[u8], b: usize, h: usize, w: usize) -> Result<()> {
    check_len("sample_anchor", "labels", y.len(), b, h, w)?;
    check_len("sample_anchor", "predictions", pred.len(), b, h, w)?;
    if y.len() > u32::MAX as usize {
        return Err(Error::Shape(format!(
            "sample_anchor: {b}×{h}×{w} pixels exceed u32 indices"
        )));
    }
    Ok(())
}
