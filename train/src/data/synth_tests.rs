//! Tests of the synthetic line: determinism, label honesty, defect statistics.
use super::IGNORE;
use super::synth::*;
use super::synth_scene::sample_scene;
use contextrast_model::rng::SplitMix64;
use image::GrayImage;

const W: u32 = 128;
const H: u32 = 112;

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = render(11, 5, Variant::Standard, W, H);
    let b = render(11, 5, Variant::Standard, W, H);
    assert_eq!(a.0.as_raw(), b.0.as_raw());
    assert_eq!(a.1.as_raw(), b.1.as_raw());
    assert_eq!(a.2, b.2);
    for other in [
        render(12, 5, Variant::Standard, W, H),
        render(11, 6, Variant::Standard, W, H),
        render(11, 5, Variant::Shifted, W, H),
    ] {
        assert_ne!(a.0.as_raw(), other.0.as_raw());
    }
}

#[test]
fn any_frame_size_renders_with_matching_mask() {
    for (w, h) in [(640, 480), (7, 5), (1, 1), (300, 64)] {
        let (img, mask, _) = render(3, 0, Variant::Shifted, w, h);
        assert_eq!(img.dimensions(), (w, h));
        assert_eq!(mask.dimensions(), (w, h));
        assert!(mask.as_raw().iter().all(|&v| v <= STAIN || v == IGNORE));
    }
}

/// Frames of both variants with their scenes re-sampled, for checks against the geometry.
fn frames(n: u64) -> Vec<(GrayImage, FrameTruth, u64, Variant)> {
    (0..n)
        .map(|i| {
            let v = if i % 2 == 0 {
                Variant::Standard
            } else {
                Variant::Shifted
            };
            let (_, mask, truth) = render(42, i, v, W, H);
            (mask, truth, i, v)
        })
        .collect()
}

#[test]
fn every_defect_class_appears_and_lies_on_a_part() {
    let mut seen = [0usize; 5];
    for (mask, _, i, v) in frames(40) {
        let mut rng = SplitMix64::new(frame_seed(42, i, v));
        let scene = sample_scene(&mut rng, v, W, H);
        for (k, &l) in mask.as_raw().iter().enumerate() {
            if l == IGNORE {
                continue;
            }
            seen[usize::from(l)] += 1;
            if l >= SCRATCH {
                let (x, y) = ((k as u32 % W) as f32 + 0.5, (k as u32 / W) as f32 + 0.5);
                assert!(
                    scene.parts.iter().any(|p| p.sdf(x, y) <= 0.0),
                    "frame {i}: defect pixel ({x}, {y}) off every part"
                );
            }
        }
    }
    assert!(seen.iter().all(|&c| c > 0), "class pixel counts {seen:?}");
    // Defects are small: together well under a tenth of the part area.
    assert!(seen[2] + seen[3] + seen[4] < seen[1] / 10, "{seen:?}");
}

#[test]
fn about_sixty_percent_of_frames_are_defective_with_one_to_three_defects() {
    let all = frames(80);
    let defective = all.iter().filter(|f| f.1.is_defective()).count();
    assert!((36..=60).contains(&defective), "{defective}/80 defective");
    for (mask, truth, i, _) in &all {
        assert!(truth.defects.len() <= 3, "frame {i}: {:?}", truth.defects);
        // Truth is measured on the mask: areas add up to the defect pixel counts, boxes contain them.
        for class in [SCRATCH, PIT, STAIN] {
            let pixels = mask.as_raw().iter().filter(|&&l| l == class).count() as u32;
            let area: u32 = truth
                .defects
                .iter()
                .filter(|d| d.class_id == class)
                .map(|d| d.area)
                .sum();
            assert_eq!(pixels, area, "frame {i} class {class}");
        }
        for d in &truth.defects {
            let b = d.bbox;
            assert!(
                d.area > 0 && b.x1 <= W && b.y1 <= H && d.area <= (b.x1 - b.x0) * (b.y1 - b.y0)
            );
        }
    }
}

/// Pixels of `class` whose full (2r+1)² neighbourhood is also `class`.
fn interior(mask: &GrayImage, class: u8, r: i64) -> Vec<(u32, u32)> {
    let (w, h) = (mask.width() as i64, mask.height() as i64);
    let at = |x: i64, y: i64| {
        x >= 0 && y >= 0 && x < w && y < h && mask.get_pixel(x as u32, y as u32).0[0] == class
    };
    let mut out = Vec::new();
    for y in 0..h {
        for x in 0..w {
            if (-r..=r).all(|dy| (-r..=r).all(|dx| at(x + dx, y + dy))) {
                out.push((x as u32, y as u32));
            }
        }
    }
    out
}

#[test]
fn scratches_are_thin() {
    let (mut total, mut core3, mut core5, mut frames_with) = (0usize, 0usize, 0usize, 0usize);
    for (mask, _, _, _) in frames(60) {
        let n = mask.as_raw().iter().filter(|&&l| l == SCRATCH).count();
        if n == 0 {
            continue;
        }
        frames_with += 1;
        total += n;
        core3 += interior(&mask, SCRATCH, 1).len();
        core5 += interior(&mask, SCRATCH, 2).len();
    }
    assert!(frames_with >= 5, "only {frames_with} frames with scratches");
    // Width 1–3 px: a 3×3 square fits only on the widest, axis-aligned stretches; 5×5 almost never.
    assert!(
        (core3 as f64) < 0.2 * total as f64,
        "{core3} of {total} scratch pixels have a 3x3 core"
    );
    assert!(
        (core5 as f64) < 0.01 * total as f64,
        "{core5} of {total} scratch pixels have a 5x5 core"
    );
}

#[test]
fn shifted_is_darker() {
    let mean = |v: Variant| {
        let mut s = [0.0f64; 3];
        for i in 0..12 {
            let (img, _, _) = render(5, i, v, 64, 64);
            for p in img.pixels() {
                for (acc, v) in s.iter_mut().zip(p.0) {
                    *acc += f64::from(v);
                }
            }
        }
        s.map(|x| x / (12.0 * 64.0 * 64.0))
    };
    let (a, b) = (mean(Variant::Standard), mean(Variant::Shifted));
    let lum = |m: [f64; 3]| 0.299 * m[0] + 0.587 * m[1] + 0.114 * m[2];
    assert!(lum(b) < 0.9 * lum(a), "standard {a:?} shifted {b:?}");
}

/// Writes sample frames, masks in class colours, side by side, for a human look:
/// `CONTEXTRAST_SYNTH_DUMP=/tmp/synth cargo test -p contextrast-train --lib dump_samples -- --ignored`.
#[test]
#[ignore]
fn dump_samples() {
    let Ok(dir) = std::env::var("CONTEXTRAST_SYNTH_DUMP") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let classes = super::Classes::synthetic_default();
    for (v, w, h) in [
        (Variant::Standard, 256, 256),
        (Variant::Shifted, 256, 256),
        (Variant::Standard, 640, 480),
    ] {
        for i in 0..8 {
            let (img, mask, truth) = render(1, i, v, w, h);
            let mut both = image::RgbImage::new(2 * w, h);
            for (x, y, p) in img.enumerate_pixels() {
                both.put_pixel(x, y, *p);
                let l = mask.get_pixel(x, y).0[0];
                let c = if l == IGNORE {
                    [255, 255, 255]
                } else {
                    classes.classes[usize::from(l)].color
                };
                both.put_pixel(w + x, y, image::Rgb(c));
            }
            both.save(dir.join(format!("{v}_{w}x{h}_{i}.png"))).unwrap();
            // 4x zooms of each defect with 10 px of context: is it visible, is the mask tight?
            for (k, d) in truth.defects.iter().enumerate() {
                let (x0, y0) = (d.bbox.x0.saturating_sub(10), d.bbox.y0.saturating_sub(10));
                let (x1, y1) = ((d.bbox.x1 + 10).min(w), (d.bbox.y1 + 10).min(h));
                let z = 4;
                let mut zoom = image::RgbImage::new(2 * z * (x1 - x0), z * (y1 - y0));
                for (x, y, p) in zoom.enumerate_pixels_mut() {
                    let (sx, sy) = (x0 + (x / z) % (x1 - x0), y0 + y / z);
                    *p = if x / z < x1 - x0 {
                        *img.get_pixel(sx, sy)
                    } else {
                        let l = mask.get_pixel(sx, sy).0[0];
                        image::Rgb(if l == IGNORE {
                            [255, 255, 255]
                        } else {
                            classes.classes[usize::from(l)].color
                        })
                    };
                }
                zoom.save(dir.join(format!("{v}_{w}x{h}_{i}_defect{k}_class{}.png", d.class_id)))
                    .unwrap();
            }
        }
    }
}
