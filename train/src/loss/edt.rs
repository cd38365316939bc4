//! Exact squared Euclidean distance transform (Felzenszwalb & Huttenlocher, "Distance Transforms
//! of Sampled Functions", 2012): a 1-D lower envelope of parabolas along every column, then along
//! every row. Linear in the number of pixels and integer-exact, so the CPU reference and the CUDA
//! kernel (the same two passes, one thread per column then per row) agree bit for bit.
//!
//! Convention (that of `scipy.ndimage.distance_transform_edt(mask) ** 2`): a pixel in the mask gets
//! the squared distance to the nearest pixel of the image that is not in the mask; a pixel outside
//! the mask gets 0; pixels beyond the image border do not count as background.
use crate::{Error, Result};

/// The value of every pixel when the mask has no background pixel at all (a full mask): there is
/// no edge to measure from. scipy returns an artifact there; BANE treats that case on its own
/// (method doc, section 4: D² = 1 everywhere), see [`crate::loss::bane`].
pub const NO_BACKGROUND: u32 = u32::MAX;

/// Internal "no site" value: larger than any real squared distance, which is checked to fit a u32.
const INF: i64 = i64::MAX;

/// Squared Euclidean distance transform of `mask` (row-major, `h`×`w`).
///
/// Returns, per pixel, 0 outside the mask, the squared distance to the nearest non-mask pixel
/// inside it, or [`NO_BACKGROUND`] everywhere when the mask is full. Fails when `mask.len()` is
/// not `h·w` or when the image is so large that a squared distance might not fit a `u32`.
pub fn edt_squared(mask: &[bool], h: usize, w: usize) -> Result<Vec<u32>> {
    let n = h
        .checked_mul(w)
        .ok_or_else(|| Error::Shape(format!("edt_squared: {h}×{w} overflows")))?;
    if mask.len() != n {
        return Err(Error::Shape(format!(
            "edt_squared: mask has {} pixels, expected {h}×{w} = {n}",
            mask.len()
        )));
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    // The largest possible finite result is (h-1)² + (w-1)²; it must stay below NO_BACKGROUND.
    let max_d2 = (h as u128 - 1).pow(2) + (w as u128 - 1).pow(2);
    if max_d2 >= u128::from(NO_BACKGROUND) {
        return Err(Error::Shape(format!(
            "edt_squared: {h}×{w} is too large for u32 squared distances"
        )));
    }

    // Pass 1, per column: f = 0 on background, INF on the mask.
    let mut g = vec![INF; n];
    let mut env = Envelope::with_capacity(h.max(w));
    let mut f = vec![INF; h];
    let mut d = vec![INF; h];
    for x in 0..w {
        for (y, fy) in f.iter_mut().enumerate() {
            *fy = if mask[y * w + x] { INF } else { 0 };
        }
        env.transform(&f, &mut d);
        for (y, &dy) in d.iter().enumerate() {
            g[y * w + x] = dy;
        }
    }

    // Pass 2, per row, over the column results.
    let mut out = vec![0u32; n];
    let mut drow = vec![INF; w];
    for y in 0..h {
        let row = &g[y * w..(y + 1) * w];
        env.transform(row, &mut drow);
        for (o, &v) in out[y * w..(y + 1) * w].iter_mut().zip(&drow) {
            // Finite values are < NO_BACKGROUND (checked above), so the conversion cannot fail.
            *o = u32::try_from(v).unwrap_or(NO_BACKGROUND);
        }
    }
    Ok(out)
}

/// Scratch space for the 1-D transform, reused across columns and rows.
struct Envelope {
    /// Sites (positions) of the parabolas in the lower envelope, left to right.
    v: Vec<i64>,
    /// `z[k]` = floor of the left boundary of parabola `v[k]`'s region; `z[0]` = −∞.
    z: Vec<i64>,
}

impl Envelope {
    fn with_capacity(n: usize) -> Self {
        Envelope {
            v: Vec::with_capacity(n),
            z: Vec::with_capacity(n + 1),
        }
    }

    /// `d[q] = min_p (q − p)² + f[p]` over the sites with finite `f[p]`; INF when there is none.
    ///
    /// Boundaries are kept as floors of the exact rational intersections: for integer queries,
    /// `q > s ⇔ q > ⌊s⌋`, so floors describe each parabola's integer region exactly, and a
    /// parabola whose integer region becomes empty is dropped (it ties at best). No floats.
    fn transform(&mut self, f: &[i64], d: &mut [i64]) {
        self.v.clear();
        self.z.clear();
        for (q, &fq) in f.iter().enumerate() {
            if fq == INF {
                continue;
            }
            let q = q as i64;
            loop {
                let Some(&r) = self.v.last() else {
                    self.v.push(q);
                    self.z.push(i64::MIN);
                    break;
                };
                let fr = f[r as usize];
                // Intersection of the parabolas at r and q (r < q), floored.
                let s = ((fq + q * q) - (fr + r * r)).div_euclid(2 * (q - r));
                let zk = self.z.last().copied().unwrap_or(i64::MIN);
                if self.v.len() > 1 && s <= zk {
                    self.v.pop();
                    self.z.pop();
                } else {
                    self.v.push(q);
                    self.z.push(s);
                    break;
                }
            }
        }
        if self.v.is_empty() {
            d.fill(INF);
            return;
        }
        let mut k = 0;
        for (q, dq) in d.iter_mut().enumerate() {
            let q = q as i64;
            while k + 1 < self.v.len() && self.z[k + 1] < q {
                k += 1;
            }
            let p = self.v[k];
            *dq = (q - p) * (q - p) + f[p as usize];
        }
    }
}
