//! Frame (RGB8, any size) → model input (normalised float CHW), in one pass straight into the
//! input tensor. Two layouts: the frame as it is, padded at the bottom and right to the model's
//! size multiple (fully convolutional models: no resampling, thin defects keep their pixels), or a
//! bilinear resize to a fixed size (models exported at one size). Tables are built once per
//! geometry, so a frame costs one read of each source pixel and no allocation.
use crate::infer::MapGeom;

/// How a frame maps onto the model input.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    /// Where the frame lands in the model input (and so in its output map).
    pub geom: MapGeom,
    scale: [f32; 3],
    offset: [f32; 3],
    /// Per output column (resize only): left source column, weight of the right one.
    cols: Vec<(u32, f32)>,
    rows: Vec<(u32, f32)>,
}

impl Preprocess {
    /// The frame's own pixels, padded to multiples of `multiple` (values beyond are 0 = the mean).
    pub fn padded(
        frame_w: u32,
        frame_h: u32,
        multiple: usize,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Preprocess {
        let m = multiple.max(1);
        let (w, h) = (frame_w as usize, frame_h as usize);
        Self::build(
            MapGeom {
                map_w: w.div_ceil(m) * m,
                map_h: h.div_ceil(m) * m,
                content_w: w,
                content_h: h,
                frame_w,
                frame_h,
            },
            mean,
            std,
        )
    }

    /// A bilinear (half-pixel centres) resize of the whole frame to `w`×`h`.
    pub fn resized(
        frame_w: u32,
        frame_h: u32,
        w: usize,
        h: usize,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Preprocess {
        Self::build(
            MapGeom {
                map_w: w,
                map_h: h,
                content_w: w,
                content_h: h,
                frame_w,
                frame_h,
            },
            mean,
            std,
        )
    }

    fn build(geom: MapGeom, mean: [f32; 3], std: [f32; 3]) -> Preprocess {
        let identity =
            geom.content_w == geom.frame_w as usize && geom.content_h == geom.frame_h as usize;
        let (cols, rows) = if identity {
            (Vec::new(), Vec::new())
        } else {
            (
                taps(geom.frame_w as usize, geom.content_w),
                taps(geom.frame_h as usize, geom.content_h),
            )
        };
        Preprocess {
            geom,
            scale: std.map(|s| 1.0 / (255.0 * s)),
            offset: [0, 1, 2].map(|k| mean[k] / std[k]),
            cols,
            rows,
        }
    }

    /// Whether this layout fits a frame of `w`×`h`.
    pub fn fits(&self, w: u32, h: u32) -> bool {
        self.geom.frame_w == w && self.geom.frame_h == h
    }

    /// Writes the normalised CHW input (`3 · map_h · map_w` values) for `rgb` (HWC, the frame
    /// size of this layout). Padding is written as zeros, so `out` may hold anything before.
    pub fn run(&self, rgb: &[u8], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { self.run_avx2(rgb, out) };
        }
        self.run_body(rgb, out);
    }

    /// [`Self::run`] compiled for AVX2 (the build's baseline is SSE2).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn run_avx2(&self, rgb: &[u8], out: &mut [f32]) {
        self.run_body(rgb, out);
    }

    #[inline(always)]
    fn run_body(&self, rgb: &[u8], out: &mut [f32]) {
        let g = &self.geom;
        let (mw, mh) = (g.map_w, g.map_h);
        let plane = mw * mh;
        debug_assert_eq!(out.len(), 3 * plane);
        debug_assert_eq!(rgb.len(), g.frame_w as usize * g.frame_h as usize * 3);
        let fw = g.frame_w as usize;
        for y in 0..mh {
            if y >= g.content_h {
                for k in 0..3 {
                    out[k * plane + y * mw..k * plane + (y + 1) * mw].fill(0.0);
                }
                continue;
            }
            let (r, rest) = out.split_at_mut(plane);
            let (g_, b) = rest.split_at_mut(plane);
            let row = y * mw;
            let dst = [
                &mut r[row..row + mw],
                &mut g_[row..row + mw],
                &mut b[row..row + mw],
            ];
            let [dr, dg, db] = dst;
            if self.cols.is_empty() {
                let src = &rgb[y * fw * 3..(y + 1) * fw * 3];
                // Zipped, not indexed: without bounds checks the stride-3 loads vectorise.
                let [s0, s1, s2] = self.scale;
                let [o0, o1, o2] = self.offset;
                for ((px, r), (g, b)) in src
                    .chunks_exact(3)
                    .zip(dr.iter_mut())
                    .zip(dg.iter_mut().zip(db.iter_mut()))
                {
                    *r = f32::from(px[0]) * s0 - o0;
                    *g = f32::from(px[1]) * s1 - o1;
                    *b = f32::from(px[2]) * s2 - o2;
                }
            } else {
                let (y0, wy) = self.rows[y];
                let y1 = (y0 as usize + 1).min(g.frame_h as usize - 1);
                let r0 = &rgb[y0 as usize * fw * 3..(y0 as usize + 1) * fw * 3];
                let r1 = &rgb[y1 * fw * 3..(y1 + 1) * fw * 3];
                for (x, &(x0, wx)) in self.cols.iter().enumerate() {
                    let x0 = x0 as usize;
                    let x1 = (x0 + 1).min(fw - 1);
                    let mut v = [0.0f32; 3];
                    for (k, vk) in v.iter_mut().enumerate() {
                        let top =
                            f32::from(r0[x0 * 3 + k]) * (1.0 - wx) + f32::from(r0[x1 * 3 + k]) * wx;
                        let bot =
                            f32::from(r1[x0 * 3 + k]) * (1.0 - wx) + f32::from(r1[x1 * 3 + k]) * wx;
                        *vk = (top * (1.0 - wy) + bot * wy) * self.scale[k] - self.offset[k];
                    }
                    dr[x] = v[0];
                    dg[x] = v[1];
                    db[x] = v[2];
                }
            }
            for d in [dr, dg, db] {
                d[g.content_w..].fill(0.0);
            }
        }
    }
}

/// Half-pixel bilinear taps from `src` samples to `dst`: left index and right weight.
fn taps(src: usize, dst: usize) -> Vec<(u32, f32)> {
    let s = src as f32 / dst as f32;
    (0..dst)
        .map(|i| {
            let x = ((i as f32 + 0.5) * s - 0.5).clamp(0.0, (src - 1) as f32);
            let x0 = x.floor();
            (x0 as u32, x - x0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_layout_normalises_and_zero_pads() {
        // 3x2 frame into a 4x4 map (multiple 4).
        let rgb: Vec<u8> = (0..18).map(|i| (i * 10) as u8).collect();
        let p = Preprocess::padded(3, 2, 4, [0.5; 3], [0.25; 3]);
        assert_eq!((p.geom.map_w, p.geom.map_h), (4, 4));
        let mut out = vec![f32::NAN; 3 * 16];
        p.run(&rgb, &mut out);
        for k in 0..3 {
            for y in 0..4 {
                for x in 0..4 {
                    let v = out[k * 16 + y * 4 + x];
                    if x < 3 && y < 2 {
                        let want = (f32::from(rgb[(y * 3 + x) * 3 + k]) / 255.0 - 0.5) / 0.25;
                        assert!((v - want).abs() < 1e-5, "{k} {y} {x}: {v} vs {want}");
                    } else {
                        assert_eq!(v, 0.0);
                    }
                }
            }
        }
    }

    #[test]
    fn resize_matches_half_pixel_bilinear() {
        // A horizontal ramp 0, 100, 200, 255 (4 wide) down to 2 wide: centres at 0.5 and 2.5.
        let row = [0u8, 100, 200, 255];
        let rgb: Vec<u8> = row.iter().flat_map(|&v| [v, v, v]).collect();
        let p = Preprocess::resized(4, 1, 2, 1, [0.0; 3], [1.0; 3]);
        let mut out = vec![0.0; 6];
        p.run(&rgb, &mut out);
        assert!((out[0] - 50.0 / 255.0).abs() < 1e-6, "{out:?}");
        assert!((out[1] - 227.5 / 255.0).abs() < 1e-6, "{out:?}");
        // Upsampling clamps at the border instead of reading outside.
        let p = Preprocess::resized(4, 1, 8, 2, [0.0; 3], [1.0; 3]);
        let mut out = vec![0.0; 3 * 16];
        p.run(&rgb, &mut out);
        assert_eq!(out[0], 0.0);
        assert!((out[7] - 1.0).abs() < 1e-6);
    }
}
