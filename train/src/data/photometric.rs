//! Photometric augmentation beyond brightness/contrast/saturation: gamma, colour temperature,
//! hue, blur and sensor noise, so that a new lamp, a dirtier lens or a darker exposure does not
//! erase what the model learnt. Applied after the geometric sampling, to image pixels only
//! (padding stays at the mean, which normalises to 0). Each effect draws random numbers only when
//! it is switched on, so a config without these keys augments exactly as before.
use contextrast_model::rng::SplitMix64;

/// Strengths of the photometric effects; 0 switches an effect off.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Photometric {
    /// Gamma drawn log-uniformly in [1/(1 + g), 1 + g]: `v = 255·(v/255)^γ`.
    pub gamma: f32,
    /// Colour temperature: red gain `1 + t·u`, blue gain `1 − t·u`, `u` uniform in [−1, 1]
    /// (warm halogen vs cold LED light).
    pub temperature: f32,
    /// Hue rotation about the grey axis, uniform in [−hue, hue] degrees (belt and part colours
    /// differ between lines).
    pub hue: f32,
    /// Gaussian blur with σ uniform in [0, blur] pixels, applied to half the samples (focus).
    pub blur: f32,
    /// Additive Gaussian noise with σ uniform in [0, noise] grey levels (0..255).
    pub noise: f32,
}

impl Photometric {
    /// True when no effect is on: [`apply`] then leaves the image and the RNG untouched.
    pub fn is_off(&self) -> bool {
        *self == Photometric::default()
    }
}

/// Applies the effects in a camera's order (light colour, response curve, optics, sensor noise)
/// to an HWC RGB image `rgb` (values 0..255) of width `w`; `on_image[i]` marks pixel `i` as
/// image rather than padding. Values end clamped to 0..255.
pub fn apply(rgb: &mut [f32], on_image: &[bool], w: usize, p: &Photometric, rng: &mut SplitMix64) {
    if p.is_off() {
        return;
    }
    if p.temperature > 0.0 {
        let u = rng.range(-1.0, 1.0) * p.temperature;
        let gains = [1.0 + u, 1.0, 1.0 - u];
        for_image_pixels(rgb, on_image, |px| {
            for (v, g) in px.iter_mut().zip(gains) {
                *v *= g;
            }
        });
    }
    if p.hue > 0.0 {
        let m = hue_matrix(rng.range(-p.hue, p.hue).to_radians());
        for_image_pixels(rgb, on_image, |px| {
            let [r, g, b] = [px[0], px[1], px[2]];
            for (v, row) in px.iter_mut().zip(&m) {
                *v = row[0] * r + row[1] * g + row[2] * b;
            }
        });
    }
    if p.gamma > 0.0 {
        let span = (1.0 + p.gamma).ln();
        let gamma = rng.range(-span, span).exp();
        for_image_pixels(rgb, on_image, |px| {
            for v in px.iter_mut() {
                *v = 255.0 * (v.clamp(0.0, 255.0) / 255.0).powf(gamma);
            }
        });
    }
    if p.blur > 0.0 && rng.chance(0.5) {
        let sigma = rng.range(0.0, p.blur);
        blur(rgb, on_image, w, sigma);
    }
    if p.noise > 0.0 {
        let sigma = rng.range(0.0, p.noise);
        for_image_pixels(rgb, on_image, |px| {
            for v in px.iter_mut() {
                *v += sigma * rng.gaussian() as f32;
            }
        });
    }
    for_image_pixels(rgb, on_image, |px| {
        for v in px.iter_mut() {
            *v = v.clamp(0.0, 255.0);
        }
    });
}

/// Calls `f` on each RGB pixel of `rgb` that `on_image` marks as image (not padding).
pub(super) fn for_image_pixels(rgb: &mut [f32], on_image: &[bool], mut f: impl FnMut(&mut [f32])) {
    for (px, _) in rgb.chunks_exact_mut(3).zip(on_image).filter(|(_, on)| **on) {
        f(px);
    }
}

/// Rotation by `a` radians about the grey axis (1, 1, 1)/√3: keeps grey grey and luminance close.
fn hue_matrix(a: f32) -> [[f32; 3]; 3] {
    let (s, c) = a.sin_cos();
    let k = (1.0 - c) / 3.0;
    let r = s / 3f32.sqrt();
    [
        [c + k, k - r, k + r],
        [k + r, c + k, k - r],
        [k - r, k + r, c + k],
    ]
}

/// Separable Gaussian blur of the image pixels; taps that fall on padding or outside are left out
/// and the rest renormalised, so the padding colour does not bleed into the part.
fn blur(rgb: &mut [f32], on_image: &[bool], w: usize, sigma: f32) {
    if sigma < 0.05 || w == 0 {
        return;
    }
    let h = on_image.len() / w;
    let radius = (3.0 * sigma).ceil() as usize;
    let taps: Vec<f32> = (0..=2 * radius)
        .map(|i| {
            let d = i as f32 - radius as f32;
            (-d * d / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let pass = |src: &[f32], dst: &mut [f32], horizontal: bool| {
        for y in 0..h {
            for x in 0..w {
                let o = y * w + x;
                if !on_image[o] {
                    dst[o * 3..o * 3 + 3].copy_from_slice(&src[o * 3..o * 3 + 3]);
                    continue;
                }
                let mut acc = [0.0f32; 3];
                let mut wsum = 0.0f32;
                for (i, t) in taps.iter().enumerate() {
                    let d = i as isize - radius as isize;
                    let (xx, yy) = if horizontal {
                        (x as isize + d, y as isize)
                    } else {
                        (x as isize, y as isize + d)
                    };
                    if xx < 0 || yy < 0 || xx >= w as isize || yy >= h as isize {
                        continue;
                    }
                    let q = yy as usize * w + xx as usize;
                    if !on_image[q] {
                        continue;
                    }
                    for k in 0..3 {
                        acc[k] += t * src[q * 3 + k];
                    }
                    wsum += t;
                }
                for k in 0..3 {
                    dst[o * 3 + k] = acc[k] / wsum;
                }
            }
        }
    };
    let mut tmp = vec![0.0f32; rgb.len()];
    pass(rgb, &mut tmp, true);
    pass(&tmp, rgb, false);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: usize, h: usize) -> (Vec<f32>, Vec<bool>) {
        let rgb = (0..w * h * 3)
            .map(|i| ((i * 37) % 200) as f32 + 20.0)
            .collect();
        (rgb, vec![true; w * h])
    }

    #[test]
    fn off_leaves_image_and_rng_untouched() {
        let (mut rgb, on) = image(8, 4);
        let before = rgb.clone();
        let mut rng = SplitMix64::seeded(3);
        apply(&mut rgb, &on, 8, &Photometric::default(), &mut rng);
        assert_eq!(rgb, before);
        assert_eq!(rng.next_u64(), SplitMix64::seeded(3).next_u64());
    }

    #[test]
    fn hue_rotation_keeps_grey_and_turns_a_third_of_a_circle_into_a_channel_shift() {
        let m = hue_matrix(0.0);
        for (i, row) in m.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                assert!((v - f32::from(u8::from(i == j))).abs() < 1e-6);
            }
        }
        // 120° maps red onto green: a pure permutation of the channels.
        let m = hue_matrix(120f32.to_radians());
        let px = [200.0, 10.0, 30.0];
        let out: Vec<f32> = m
            .iter()
            .map(|r| r[0] * px[0] + r[1] * px[1] + r[2] * px[2])
            .collect();
        assert!(
            (out[0] - 30.0).abs() < 1e-3 && (out[1] - 200.0).abs() < 1e-3,
            "{out:?}"
        );
        let grey = m.iter().map(|r| r.iter().sum::<f32>()).collect::<Vec<_>>();
        assert!(grey.iter().all(|s| (s - 1.0).abs() < 1e-6), "{grey:?}");
    }

    #[test]
    fn temperature_moves_red_and_blue_oppositely_and_keeps_green() {
        let (mut rgb, on) = image(4, 4);
        let before = rgb.clone();
        let p = Photometric {
            temperature: 0.3,
            ..Photometric::default()
        };
        apply(&mut rgb, &on, 4, &p, &mut SplitMix64::seeded(1));
        let ratio = |c: usize| {
            let s = |v: &[f32]| v.iter().skip(c).step_by(3).sum::<f32>();
            s(&rgb) / s(&before)
        };
        assert!((ratio(1) - 1.0).abs() < 1e-6);
        assert!(
            (ratio(0) - 1.0) * (ratio(2) - 1.0) < 0.0,
            "{} {}",
            ratio(0),
            ratio(2)
        );
    }

    #[test]
    fn gamma_keeps_black_and_white_and_orders_greys() {
        let mut rgb = vec![0.0, 128.0, 255.0];
        let p = Photometric {
            gamma: 0.5,
            ..Photometric::default()
        };
        apply(&mut rgb, &[true], 1, &p, &mut SplitMix64::seeded(9));
        assert_eq!(rgb[0], 0.0);
        assert!((rgb[2] - 255.0).abs() < 1e-3);
        assert!(
            rgb[1] > 0.0 && rgb[1] < 255.0 && (rgb[1] - 128.0).abs() > 1.0,
            "{rgb:?}"
        );
    }

    #[test]
    fn blur_spreads_a_line_keeps_its_mass_and_ignores_padding() {
        let (w, h) = (13, 5);
        let mut rgb = vec![0.0f32; w * h * 3];
        for y in 0..h {
            let o = (y * w + 4) * 3;
            rgb[o..o + 3].copy_from_slice(&[90.0; 3]);
        }
        let mut on = vec![true; w * h];
        // A padded column far away must neither change nor pull the line towards it.
        for y in 0..h {
            on[y * w + 12] = false;
            rgb[(y * w + 12) * 3] = 255.0;
        }
        blur(&mut rgb, &on, w, 1.0);
        let row: Vec<f32> = (0..w).map(|x| rgb[(2 * w + x) * 3]).collect();
        assert!(row[4] < 90.0 && row[3] > 0.0 && row[5] > 0.0, "{row:?}");
        assert!((row[3] - row[5]).abs() < 1e-4, "symmetric: {row:?}");
        let mass: f32 = row[..12].iter().sum();
        assert!((mass - 90.0).abs() < 0.5, "mass {mass}: {row:?}");
        assert_eq!(row[12], 255.0);
    }

    #[test]
    fn noise_has_about_the_drawn_spread_and_stays_in_range() {
        let (w, h) = (64, 64);
        let mut rgb = vec![128.0f32; w * h * 3];
        let p = Photometric {
            noise: 10.0,
            ..Photometric::default()
        };
        apply(
            &mut rgb,
            &vec![true; w * h],
            w,
            &p,
            &mut SplitMix64::seeded(5),
        );
        let n = rgb.len() as f32;
        let mean = rgb.iter().sum::<f32>() / n;
        let sd = (rgb.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n).sqrt();
        assert!((mean - 128.0).abs() < 0.5, "mean {mean}");
        assert!(sd > 0.5 && sd < 10.5, "sd {sd}");
        assert!(rgb.iter().all(|v| (0.0..=255.0).contains(v)));
    }
}
