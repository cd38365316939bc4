//! Training-time augmentation: random scale, crop (with padding), flips, colour jitter and the
//! photometric effects of [`super::photometric`] (gamma, colour temperature, hue, blur, noise),
//! done as one inverse mapping from output to source pixel so image and mask cannot drift
//! apart. The image is sampled bilinearly, the mask by nearest neighbour (class ids must not
//! be blended); padding gets label 255 so it costs nothing in the loss.
use std::path::Path;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::classes::IGNORE;
use super::photometric::{self, Photometric};
use crate::{Error, Result};
use contextrast_model::rng::SplitMix64;

/// Augmentation settings; every field has a default, so a config may set only what it changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Mirror left–right with probability 1/2.
    pub hflip: bool,
    /// Mirror top–bottom with probability 1/2 (fine for a top-down camera).
    pub vflip: bool,
    /// Uniform random scale factor range applied before cropping.
    pub scale_min: f32,
    /// Upper end of the scale range (≥ `scale_min`).
    pub scale_max: f32,
    /// Output size (height, width).
    pub crop: (usize, usize),
    /// Jitter strengths: each factor is drawn from [1 − x, 1 + x].
    pub brightness: f32,
    /// Contrast jitter strength, in [0, 1).
    pub contrast: f32,
    /// Saturation jitter strength, in [0, 1).
    pub saturation: f32,
    /// Gamma range: γ log-uniform in [1/(1 + gamma), 1 + gamma]; 0 = off.
    pub gamma: f32,
    /// Colour temperature: red and blue gains 1 ± u·temperature, u in [−1, 1]; 0 = off.
    pub temperature: f32,
    /// Hue rotation range in degrees about the grey axis; 0 = off.
    pub hue: f32,
    /// Largest Gaussian blur σ in pixels, applied to half the samples; 0 = off.
    pub blur: f32,
    /// Largest additive noise σ in grey levels (0..255); 0 = off.
    pub noise: f32,
    /// Probability that a crop is placed around a defect (a defect class present in the image
    /// drawn uniformly, then one of its pixels), so rare 1–3 px defects are seen far more often
    /// than their share of the pixels; 0 = off (crops uniformly placed).
    pub defect_crop: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            hflip: true,
            vflip: false,
            scale_min: 0.75,
            scale_max: 1.25,
            crop: (256, 256),
            brightness: 0.2,
            contrast: 0.2,
            saturation: 0.2,
            gamma: 0.0,
            temperature: 0.0,
            hue: 0.0,
            blur: 0.0,
            noise: 0.0,
            defect_crop: 0.0,
        }
    }
}

impl AugmentConfig {
    /// Checks ranges; `path` is the config file the values came from (named in the error).
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |key: &str, msg: String| Error::Config {
            path: path.to_path_buf(),
            key: format!("augment.{key}"),
            msg,
        };
        if !(self.scale_min > 0.0 && self.scale_min.is_finite()) {
            return Err(bad("scale_min", format!("{} must be > 0", self.scale_min)));
        }
        if !(self.scale_max >= self.scale_min && self.scale_max.is_finite()) {
            return Err(bad(
                "scale_max",
                format!(
                    "{} must be ≥ scale_min ({})",
                    self.scale_max, self.scale_min
                ),
            ));
        }
        if self.crop.0 == 0 || self.crop.1 == 0 {
            return Err(bad(
                "crop",
                format!("{:?} must be positive (height, width)", self.crop),
            ));
        }
        for (key, v) in [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("saturation", self.saturation),
        ] {
            if !(0.0..1.0).contains(&v) {
                return Err(bad(key, format!("{v} must be in [0, 1)")));
            }
        }
        for (key, v, max) in [
            ("defect_crop", self.defect_crop, 1.0),
            ("gamma", self.gamma, 4.0),
            ("temperature", self.temperature, 0.99),
            ("hue", self.hue, 180.0),
            ("blur", self.blur, 8.0),
            ("noise", self.noise, 64.0),
        ] {
            if !(0.0..=max).contains(&v) {
                return Err(bad(key, format!("{v} must be in [0, {max}]")));
            }
        }
        Ok(())
    }

    /// The photometric effects beyond the colour jitter.
    pub fn photometric(&self) -> Photometric {
        Photometric {
            gamma: self.gamma,
            temperature: self.temperature,
            hue: self.hue,
            blur: self.blur,
            noise: self.noise,
        }
    }
}

/// An augmented sample: RGB as f32 in 0..255, HWC (bilinear output is fractional, so it is
/// kept unrounded), and its labels.
#[derive(Clone, Debug)]
pub struct Sample {
    /// `[h, w, 3]` RGB values in 0..255.
    pub rgb: Vec<f32>,
    /// `[h, w]` class ids (255 on padding).
    pub labels: Vec<u8>,
    /// Height, in pixels.
    pub h: usize,
    /// Width, in pixels.
    pub w: usize,
}

/// Per-axis sampling table: for each output coordinate, the two bilinear taps and weight, the
/// nearest source index, and whether it falls on the image at all (else padding).
struct Axis {
    lo: Vec<usize>,
    hi: Vec<usize>,
    t: Vec<f32>,
    near: Vec<usize>,
    valid: Vec<bool>,
}

/// `src` pixels scaled to `scaled`, read from offset `off` (negative = padding before the
/// image), `out` outputs, optionally mirrored. Half-pixel centres, as in ONNX/PyTorch
/// `align_corners = false`.
fn axis(src: usize, scaled: usize, off: i64, out: usize, flip: bool) -> Axis {
    let s = scaled as f32 / src as f32;
    let mut a = Axis {
        lo: Vec::with_capacity(out),
        hi: Vec::with_capacity(out),
        t: Vec::with_capacity(out),
        near: Vec::with_capacity(out),
        valid: Vec::with_capacity(out),
    };
    let last = src - 1;
    for o in 0..out {
        let o = if flip { out - 1 - o } else { o };
        let u = o as i64 + off;
        let valid = u >= 0 && u < scaled as i64;
        let centre = (u as f32 + 0.5) / s;
        let f = (centre - 0.5).clamp(0.0, last as f32);
        let lo = f.floor() as usize;
        a.lo.push(lo);
        a.hi.push((lo + 1).min(last));
        a.t.push(f - lo as f32);
        a.near.push((centre.floor().max(0.0) as usize).min(last));
        a.valid.push(valid);
    }
    a
}

/// Offset into the scaled axis: a random window when it is larger than the crop, else a
/// negative offset that places the image at a random position inside the padded crop.
fn offset(rng: &mut SplitMix64, scaled: usize, crop: usize) -> i64 {
    if scaled >= crop {
        rng.below((scaled - crop + 1) as u64) as i64
    } else {
        -(rng.below((crop - scaled + 1) as u64) as i64)
    }
}

/// A pixel of a defect in `mask` (`w` wide), as (x, y): one of the `defects` classes present,
/// drawn uniformly (so a scratch is as likely as a stain many times its area), then one of its
/// pixels. `None` when the image has no defect.
fn defect_pixel(
    rng: &mut SplitMix64,
    mask: &[u8],
    w: usize,
    defects: &[u8],
) -> Option<(usize, usize)> {
    let mut count = [0usize; 256];
    for &c in mask {
        count[c as usize] += 1;
    }
    let present: Vec<u8> = defects
        .iter()
        .copied()
        .filter(|&c| count[c as usize] > 0)
        .collect();
    if present.is_empty() {
        return None;
    }
    let class = present[rng.below(present.len() as u64) as usize];
    let nth = rng.below(count[class as usize] as u64) as usize;
    let i = mask
        .iter()
        .enumerate()
        .filter(|&(_, &c)| c == class)
        .nth(nth)
        .map(|(i, _)| i)?;
    Some((i % w, i / w))
}

/// Offset that puts scaled coordinate `at` at a random place in the crop, kept inside the
/// range [`offset`] could draw so a defect crop pads no more than a uniform one.
fn offset_around(rng: &mut SplitMix64, at: f32, scaled: usize, crop: usize) -> i64 {
    let (lo, hi) = if scaled >= crop {
        (0, (scaled - crop) as i64)
    } else {
        (-((crop - scaled) as i64), 0)
    };
    let want = at.floor() as i64 - rng.below(crop as u64) as i64;
    want.clamp(lo, hi)
}

/// Augments one image/mask pair. `pad` is the RGB value (0..255) for padding: the loader passes
/// the mean, so padding normalises to 0. `defects` are the class ids that
/// [`AugmentConfig::defect_crop`] centres crops on. The same `rng` state gives the same result.
pub fn augment(
    img: &RgbImage,
    mask: &[u8],
    cfg: &AugmentConfig,
    pad: [f32; 3],
    defects: &[u8],
    rng: &mut SplitMix64,
) -> Sample {
    let (sw, sh) = (img.width() as usize, img.height() as usize);
    let (ch, cw) = cfg.crop;
    let s = if cfg.scale_max > cfg.scale_min {
        rng.range(cfg.scale_min, cfg.scale_max)
    } else {
        cfg.scale_min
    };
    let scaled_w = ((sw as f32 * s).round() as usize).max(1);
    let scaled_h = ((sh as f32 * s).round() as usize).max(1);
    // Drawn only when on, so recipes without it augment exactly as before.
    let around = if cfg.defect_crop > 0.0 && rng.chance(cfg.defect_crop) {
        defect_pixel(rng, mask, sw, defects)
    } else {
        None
    };
    let (ox, oy) = match around {
        Some((x, y)) => {
            let sx = scaled_w as f32 / sw as f32;
            let sy = scaled_h as f32 / sh as f32;
            (
                offset_around(rng, (x as f32 + 0.5) * sx, scaled_w, cw),
                offset_around(rng, (y as f32 + 0.5) * sy, scaled_h, ch),
            )
        }
        None => (offset(rng, scaled_w, cw), offset(rng, scaled_h, ch)),
    };
    let hflip = rng.chance(0.5) && cfg.hflip;
    let vflip = rng.chance(0.5) && cfg.vflip;
    let jitter = |rng: &mut SplitMix64, x: f32| 1.0 + rng.range(-x, x);
    let (b, c, sat) = (
        jitter(rng, cfg.brightness),
        jitter(rng, cfg.contrast),
        jitter(rng, cfg.saturation),
    );

    let xs = axis(sw, scaled_w, ox, cw, hflip);
    let ys = axis(sh, scaled_h, oy, ch, vflip);
    let src = img.as_raw();
    let mut rgb = vec![0.0f32; ch * cw * 3];
    let mut labels = vec![IGNORE; ch * cw];
    let mut on_image = vec![false; ch * cw];
    let mut sum = 0.0f64;
    let mut count = 0usize;
    for y in 0..ch {
        let (r0, r1, ty) = (ys.lo[y] * sw, ys.hi[y] * sw, ys.t[y]);
        for x in 0..cw {
            let o = y * cw + x;
            if !(ys.valid[y] && xs.valid[x]) {
                rgb[o * 3..o * 3 + 3].copy_from_slice(&pad);
                continue;
            }
            labels[o] = mask[ys.near[y] * sw + xs.near[x]];
            on_image[o] = true;
            let (c0, c1, tx) = (xs.lo[x], xs.hi[x], xs.t[x]);
            for k in 0..3 {
                let p = |r: usize, c: usize| f32::from(src[(r + c) * 3 + k]);
                let top = p(r0, c0) + (p(r0, c1) - p(r0, c0)) * tx;
                let bot = p(r1, c0) + (p(r1, c1) - p(r1, c0)) * tx;
                let v = (top + (bot - top) * ty) * b;
                rgb[o * 3 + k] = v;
                sum += f64::from(v);
            }
            count += 3;
        }
    }
    if count > 0 && (c != 1.0 || sat != 1.0) {
        let mean = (sum / count as f64) as f32;
        photometric::for_image_pixels(&mut rgb, &on_image, |px| {
            let gray = 0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2];
            for v in px.iter_mut() {
                let v2 = gray + (*v - gray) * sat;
                *v = ((v2 - mean) * c + mean).clamp(0.0, 255.0);
            }
        });
    } else {
        for v in &mut rgb {
            *v = v.clamp(0.0, 255.0);
        }
    }
    photometric::apply(&mut rgb, &on_image, cw, &cfg.photometric(), rng);
    Sample {
        rgb,
        labels,
        h: ch,
        w: cw,
    }
}
