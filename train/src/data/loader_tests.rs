//! Tests of augmentation and the loader: alignment of image and mask, normalisation numbers,
//! determinism across worker counts, and errors that surface instead of panicking or hanging.
use std::sync::Arc;

use image::RgbImage;

use super::IGNORE;
use super::augment::{AugmentConfig, augment};
use super::dataset::Dataset;
use super::loader::{Loader, LoaderConfig, preprocess};
use super::synth::{Variant, generate};
use contextrast_model::rng::SplitMix64;

/// 8×8 blocks with labels 0..4; the red channel encodes the label (label·50), so alignment can
/// be read back from the augmented pixels.
fn coded_pair(w: u32, h: u32) -> (RgbImage, Vec<u8>) {
    let label = |x: u32, y: u32| ((x / 8 + 3 * (y / 8)) % 5) as u8;
    let img = RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([label(x, y) * 50, 200 - label(x, y) * 40, 7])
    });
    let mask = (0..h)
        .flat_map(|y| (0..w).map(move |x| label(x, y)))
        .collect();
    (img, mask)
}

fn no_jitter(crop: (usize, usize), scale: (f32, f32)) -> AugmentConfig {
    AugmentConfig {
        hflip: true,
        vflip: true,
        scale_min: scale.0,
        scale_max: scale.1,
        crop,
        brightness: 0.0,
        contrast: 0.0,
        saturation: 0.0,
        ..AugmentConfig::default()
    }
}

#[test]
fn augmentation_keeps_image_and_mask_aligned() {
    let (img, mask) = coded_pair(64, 48);
    let cfg = no_jitter((40, 56), (0.6, 1.6));
    let pad = [1.0, 2.0, 3.0];
    let (mut exact, mut labelled, mut padded) = (0usize, 0usize, 0usize);
    for seed in 0..40 {
        let s = augment(&img, &mask, &cfg, pad, &[], &mut SplitMix64::new(seed));
        assert_eq!(
            (s.h, s.w, s.labels.len(), s.rgb.len()),
            (40, 56, 40 * 56, 40 * 56 * 3)
        );
        for (px, &l) in s.rgb.chunks_exact(3).zip(&s.labels) {
            if l == IGNORE {
                assert_eq!(px, pad, "padding must carry the pad colour");
                padded += 1;
                continue;
            }
            labelled += 1;
            // Bilinear mixes neighbouring blocks only within a pixel of a block border.
            if (px[0] - f32::from(l) * 50.0).abs() < 0.5
                && (px[1] - (200.0 - f32::from(l) * 40.0)).abs() < 0.5
            {
                exact += 1;
            }
        }
    }
    assert!(
        padded > 0,
        "scales down to 0.6 must pad a 40x56 crop of a 64x48 image"
    );
    let frac = exact as f64 / labelled as f64;
    assert!(
        frac > 0.75,
        "only {frac:.3} of labelled pixels carry their label's colour"
    );
}

#[test]
fn flips_mirror_image_and_mask_together() {
    let (img, mask) = coded_pair(32, 24);
    let cfg = no_jitter((24, 32), (1.0, 1.0));
    let mut seen = [false; 4];
    for seed in 0..16 {
        let s = augment(&img, &mask, &cfg, [0.0; 3], &[], &mut SplitMix64::new(seed));
        let matches = |hf: bool, vf: bool| {
            (0..24usize).all(|y| {
                (0..32usize).all(|x| {
                    let (sx, sy) = (if hf { 31 - x } else { x }, if vf { 23 - y } else { y });
                    let (o, i) = (y * 32 + x, sy * 32 + sx);
                    s.labels[o] == mask[i] && s.rgb[o * 3] == f32::from(img.as_raw()[i * 3])
                })
            })
        };
        let combos = [(false, false), (true, false), (false, true), (true, true)];
        let hits: Vec<usize> = (0..4)
            .filter(|&c| matches(combos[c].0, combos[c].1))
            .collect();
        assert_eq!(
            hits.len(),
            1,
            "seed {seed}: output is not exactly one flip of the input"
        );
        seen[hits[0]] = true;
    }
    assert_eq!(seen, [true; 4], "all four flip combinations occur");
}

#[test]
fn jitter_changes_colours_not_labels() {
    let (img, mask) = coded_pair(32, 32);
    let mut cfg = no_jitter((32, 32), (1.0, 1.0));
    (
        cfg.hflip,
        cfg.vflip,
        cfg.brightness,
        cfg.contrast,
        cfg.saturation,
    ) = (false, false, 0.5, 0.5, 0.5);
    let s = augment(&img, &mask, &cfg, [0.0; 3], &[], &mut SplitMix64::new(3));
    assert_eq!(s.labels, mask);
    assert!(s.rgb.iter().all(|v| (0.0..=255.0).contains(v)));
    let plain: Vec<f32> = img.as_raw().iter().map(|&v| f32::from(v)).collect();
    assert_ne!(s.rgb, plain);
}

#[test]
fn config_defaults_and_validation() {
    let cfg: AugmentConfig = toml::from_str("crop = [128, 192]\nvflip = true").unwrap();
    assert_eq!(cfg.crop, (128, 192));
    assert!(cfg.vflip && cfg.hflip && cfg.scale_min == 0.75);
    assert!(toml::from_str::<AugmentConfig>("hflipp = true").is_err());
    let bad = AugmentConfig {
        scale_max: 0.5,
        ..AugmentConfig::default()
    };
    let msg = bad
        .validate(std::path::Path::new("line.toml"))
        .unwrap_err()
        .to_string();
    contextrast_model::testing::assert_mentions(&msg, &["line.toml", "augment.scale_max"]);
}

#[test]
fn preprocess_normalises_to_chw() {
    let img = RgbImage::from_fn(2, 1, |x, _| {
        if x == 0 {
            image::Rgb([255, 0, 51])
        } else {
            image::Rgb([0, 255, 102])
        }
    });
    let v = preprocess(&img, [0.5, 0.5, 0.2], [0.25, 0.5, 0.1]);
    let want = [2.0, -2.0, -1.0, 1.0, 0.0, 2.0];
    for (a, b) in v.iter().zip(want) {
        assert!((a - b).abs() < 1e-5, "{v:?}");
    }
}

fn small_set(n: usize) -> (tempfile::TempDir, Arc<Dataset>) {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), n, 4, Variant::Standard, 36, 28).unwrap();
    let ds = Arc::new(Dataset::open(dir.path()).unwrap());
    (dir, ds)
}

fn loader(ds: &Arc<Dataset>, aug: Option<AugmentConfig>, seed: u64, workers: usize) -> Loader {
    let idx = (0..ds.len()).collect();
    Loader::new(
        ds.clone(),
        idx,
        LoaderConfig {
            batch: 3,
            aug,
            mean: [0.4; 3],
            std: [0.2; 3],
            seed,
            epoch_start: 5,
            workers,
        },
    )
}

#[test]
fn batches_are_identical_for_any_worker_count() {
    let (_dir, ds) = small_set(7);
    let aug = Some(no_jitter((24, 20), (0.8, 1.3)));
    let run = |workers: usize, seed: u64| {
        let mut l = loader(&ds, aug.clone(), seed, workers);
        assert_eq!(l.batches_per_epoch(), 2);
        (0..5).map(|_| l.next_batch().unwrap()).collect::<Vec<_>>()
    };
    let inline = run(0, 1);
    assert_eq!(inline, run(1, 1));
    assert_eq!(inline, run(3, 1));
    assert_ne!(inline, run(2, 2));
    let b = &inline[0];
    assert_eq!(
        (b.n, b.h, b.w, b.images.len(), b.labels.len()),
        (3, 24, 20, 3 * 3 * 24 * 20, 3 * 24 * 20)
    );
    // Epochs count from epoch_start; batches of one epoch never repeat an item.
    assert_eq!(
        inline.iter().map(|b| b.epoch).collect::<Vec<_>>(),
        [5, 5, 6, 6, 7]
    );
    let mut e5: Vec<usize> = inline[0]
        .items
        .iter()
        .chain(&inline[1].items)
        .copied()
        .collect();
    e5.sort_unstable();
    e5.dedup();
    assert_eq!(e5.len(), 6);
    assert_ne!(inline[0].items, inline[2].items, "each epoch is reshuffled");
}

#[test]
fn unaugmented_batches_hold_the_normalised_dataset_pixels() {
    let (_dir, ds) = small_set(3);
    let mut l = loader(&ds, None, 0, 1);
    let b = l.next_batch().unwrap();
    let (img, mask) = ds.load_item(b.items[1]).unwrap();
    let plane = 3 * 28 * 36;
    let want = preprocess(&img, [0.4; 3], [0.2; 3]);
    assert_eq!(&b.images[plane..2 * plane], want.as_slice());
    assert_eq!(&b.labels[28 * 36..2 * 28 * 36], mask.as_slice());
}

#[test]
fn a_corrupt_file_surfaces_as_an_error_and_the_loader_goes_on() {
    let (dir, ds) = small_set(6);
    std::fs::write(dir.path().join("images/std_000003.png"), b"broken").unwrap();
    for workers in [0, 2] {
        let mut l = loader(&ds, Some(no_jitter((16, 16), (1.0, 1.0))), 8, workers);
        let results: Vec<_> = (0..4).map(|_| l.next_batch()).collect();
        let errors: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|e| e.to_string())
            .collect();
        assert!(
            !errors.is_empty(),
            "workers {workers}: no error for a corrupt file"
        );
        assert!(
            errors.iter().all(|m| m.contains("std_000003.png")),
            "{errors:?}"
        );
        assert!(
            results.iter().any(|r| r.is_ok()),
            "batches without the file still load"
        );
    }
}

#[test]
fn invalid_arguments_are_errors_not_panics() {
    let (_dir, ds) = small_set(2);
    for (items, batch, want) in [
        (vec![], 2, "empty set"),
        (vec![0, 9], 2, "index 9"),
        (vec![0, 1], 0, "batch size"),
    ] {
        let mut l = Loader::new(
            ds.clone(),
            items,
            LoaderConfig {
                batch,
                aug: None,
                mean: [0.0; 3],
                std: [1.0; 3],
                seed: 0,
                epoch_start: 0,
                workers: 1,
            },
        );
        let e = l.next_batch().unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
}

/// A 128×128 image with a 1-px "scratch" (class 2, 40 px) and a 20×20 "stain" (class 4, 400 px)
/// in opposite corners; everything else is class 1.
fn sparse_defects() -> (RgbImage, Vec<u8>) {
    let (w, h) = (128usize, 128usize);
    let img = RgbImage::from_fn(w as u32, h as u32, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mask = (0..h)
        .flat_map(|y| {
            (0..w).map(move |x| match (x, y) {
                (10..=49, 5) => 2,
                (100..=119, 100..=119) => 4,
                _ => 1,
            })
        })
        .collect();
    (img, mask)
}

#[test]
fn defect_crops_show_rare_defects_far_more_often() {
    let (img, mask) = sparse_defects();
    let mut cfg = no_jitter((32, 32), (1.0, 1.0));
    let count = |cfg: &AugmentConfig, class: u8| {
        (0..400)
            .filter(|&seed| {
                let s = augment(
                    &img,
                    &mask,
                    cfg,
                    [0.0; 3],
                    &[2, 3, 4],
                    &mut SplitMix64::new(seed),
                );
                s.labels.contains(&class)
            })
            .count()
    };
    let uniform = (count(&cfg, 2), count(&cfg, 4));
    cfg.defect_crop = 1.0;
    let focused = (count(&cfg, 2), count(&cfg, 4));
    // A uniform 32×32 window holds the scratch about 1 time in 6 and the stain 1 in 8; every
    // focused crop holds one of the two, each about half the time (the class is drawn first).
    assert!(uniform.0 < 110 && uniform.1 < 110, "uniform {uniform:?}");
    assert!(focused.0 > 160 && focused.1 > 160, "focused {focused:?}");
    assert!(
        focused.0 + focused.1 >= 400,
        "every crop holds a defect: {focused:?}"
    );
    // With no listed defect class in the image, crops fall back to uniform placement.
    let none = augment(&img, &mask, &cfg, [0.0; 3], &[3], &mut SplitMix64::new(5));
    assert_eq!((none.h, none.w), (32, 32));
    assert!(
        AugmentConfig {
            defect_crop: 1.5,
            ..AugmentConfig::default()
        }
        .validate(std::path::Path::new("t.toml"))
        .is_err()
    );
}
