//! Hash-based lattice noise for the synthetic line's textures. Stateless (a pure function of
//! position and seed), so any pixel can be shaded in any order and the result never changes.

/// A 32-bit integer hash of a lattice point (Wellons' "lowbias32" finaliser).
#[inline]
pub(super) fn hash2(ix: i32, iy: i32, seed: u32) -> u32 {
    let mut h = (ix as u32).wrapping_mul(0x8DA6_B343)
        ^ (iy as u32).wrapping_mul(0xD816_3841)
        ^ seed.wrapping_mul(0xCB1A_B31F);
    h ^= h >> 16;
    h = h.wrapping_mul(0x7FEB_352D);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846C_A68B);
    h ^ (h >> 16)
}

/// Maps a hash to [-1, 1].
#[inline]
fn signed(h: u32) -> f32 {
    (h >> 8) as f32 * (2.0 / (1u32 << 24) as f32) - 1.0
}

/// Independent per-pixel noise in [-1, 1]: film grain, belt fibres.
#[inline]
pub(super) fn white(ix: i32, iy: i32, seed: u32) -> f32 {
    signed(hash2(ix, iy, seed))
}

#[inline]
fn fade(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// Smooth 2-D value noise in [-1, 1] with features about one unit apart.
#[inline]
pub(super) fn value2(x: f32, y: f32, seed: u32) -> f32 {
    let (xf, yf) = (x.floor(), y.floor());
    let (ix, iy) = (xf as i32, yf as i32);
    let (tx, ty) = (fade(x - xf), fade(y - yf));
    let a = white(ix, iy, seed);
    let b = white(ix + 1, iy, seed);
    let c = white(ix, iy + 1, seed);
    let d = white(ix + 1, iy + 1, seed);
    let top = a + (b - a) * tx;
    let bottom = c + (d - c) * tx;
    top + (bottom - top) * ty
}

/// Smooth 1-D value noise in [-1, 1]: lathe rings on turned parts.
#[inline]
pub(super) fn value1(x: f32, seed: u32) -> f32 {
    let xf = x.floor();
    let i = xf as i32;
    let t = fade(x - xf);
    let a = white(i, 0x5EED, seed);
    let b = white(i + 1, 0x5EED, seed);
    a + (b - a) * t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_noise_is_bounded_continuous_and_hits_lattice_values() {
        let mut max_step = 0.0f32;
        let mut prev = value2(0.0, 3.3, 9);
        for i in 1..2000 {
            let x = i as f32 * 0.01;
            let v = value2(x, 3.3, 9);
            assert!((-1.0..=1.0).contains(&v));
            max_step = max_step.max((v - prev).abs());
            prev = v;
        }
        assert!(max_step < 0.05, "jump {max_step}");
        assert_eq!(value2(4.0, 7.0, 9), white(4, 7, 9));
        assert_ne!(value2(0.5, 0.5, 1), value2(0.5, 0.5, 2));
    }

    #[test]
    fn white_noise_has_zero_mean_and_fills_the_range() {
        let n = 100_000;
        let vals: Vec<f32> = (0..n).map(|i| white(i % 317, i / 317, 3)).collect();
        let mean = vals.iter().sum::<f32>() / n as f32;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!(vals.iter().any(|&v| v > 0.99) && vals.iter().any(|&v| v < -0.99));
    }
}
