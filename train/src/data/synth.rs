//! Procedural conveyor-line frames with pixel-exact masks, for training without a camera and
//! for end-to-end tests with known ground truth. Each frame is a pure function of
//! (seed, index, variant, size): our own SplitMix64 and hash noise, so the bytes never change
//! with a dependency update.
//!
//! `Standard` is the line as commissioned; `Shifted` is the same classes under other lighting
//! (warmer or colder, darker, stronger gradient) on another belt and other materials — the
//! domain shift that `retrain` is meant to recover from.
use std::collections::BTreeMap;
use std::path::Path;

use image::{GrayImage, RgbImage};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::classes::Classes;
use super::synth_render::rasterise;
use super::synth_scene::sample_scene;
use crate::{Error, Result};
use contextrast_model::atomic::write_atomic;
use contextrast_model::rng::{SplitMix64, hash_words};

pub use super::classes::{BELT, PART, PIT, SCRATCH, STAIN};
pub use super::synth_scene::Variant;

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Pixel bounding box, half-open: columns x0..x1, rows y0..y1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BBox {
    /// First column.
    pub x0: u32,
    /// First row.
    pub y0: u32,
    /// One past the last column.
    pub x1: u32,
    /// One past the last row.
    pub y1: u32,
}

/// One visible defect instance, measured on the final mask (what is labelled is what counts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefectTruth {
    /// The defect's class id (as in the mask).
    pub class_id: u8,
    /// Pixels labelled with this instance's class by this instance.
    pub area: u32,
    /// Bounding box of those pixels.
    pub bbox: BBox,
}

/// Ground truth of a frame beyond its mask: the defect instances, for detection recall.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameTruth {
    /// The visible defect instances.
    pub defects: Vec<DefectTruth>,
    /// Parts with at least one pixel in the frame.
    pub parts: u32,
}

impl FrameTruth {
    /// Whether the frame should be rejected.
    pub fn is_defective(&self) -> bool {
        !self.defects.is_empty()
    }
}

/// Contents of `truth.json` written by [`generate`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynthManifest {
    /// The stream's seed.
    pub seed: u64,
    /// The look of the line rendered.
    pub variant: Variant,
    /// Frame width, in pixels.
    pub width: u32,
    /// Frame height, in pixels.
    pub height: u32,
    /// Per frame name (file stem).
    pub frames: BTreeMap<String, FrameTruth>,
}

/// The per-frame seed; also used by tests to show that frames are independent.
pub(super) fn frame_seed(seed: u64, index: u64, variant: Variant) -> u64 {
    hash_words(&[seed, index, variant.tag()])
}

/// Renders frame `index` of the stream `(seed, variant)`: image, class-id mask, and truth.
///
/// Frames of any size work; parts scale with the smaller side, while scratch widths stay 1–3 px
/// and pits stay a few pixels, as on a real camera where defects are near the resolution limit.
pub fn render(
    seed: u64,
    index: u64,
    variant: Variant,
    width: u32,
    height: u32,
) -> (RgbImage, GrayImage, FrameTruth) {
    let (width, height) = (width.max(1), height.max(1));
    let fs = frame_seed(seed, index, variant);
    let mut rng = SplitMix64::new(fs);
    let scene = sample_scene(&mut rng, variant, width, height);
    let raster = rasterise(&scene, hash_words(&[fs, 0x4E_4F49_5345]));
    let truth = measure_truth(
        &scene.defects.iter().map(|d| d.class_id).collect::<Vec<_>>(),
        &raster,
        width,
    );
    let parts = scene
        .parts
        .iter()
        .filter(|p| {
            let (w, h) = (width as f32, height as f32);
            p.cx + p.radius > 0.0
                && p.cx - p.radius < w
                && p.cy + p.radius > 0.0
                && p.cy - p.radius < h
        })
        .count() as u32;
    // Both buffers have exactly width·height(·3) elements by construction.
    let img = RgbImage::from_raw(width, height, raster.rgb)
        .unwrap_or_else(|| RgbImage::new(width, height));
    let mask = GrayImage::from_raw(width, height, raster.labels)
        .unwrap_or_else(|| GrayImage::new(width, height));
    (img, mask, FrameTruth { parts, ..truth })
}

/// Areas and boxes of the defect instances that survived to the final mask.
fn measure_truth(classes: &[u8], raster: &super::synth_render::Raster, width: u32) -> FrameTruth {
    let mut acc: Vec<Option<DefectTruth>> = vec![None; classes.len()];
    for (i, &k) in raster.instances.iter().enumerate() {
        if k == 0 {
            continue;
        }
        let (x, y) = ((i as u32) % width, (i as u32) / width);
        let slot = &mut acc[usize::from(k - 1)];
        let t = slot.get_or_insert(DefectTruth {
            class_id: classes[usize::from(k - 1)],
            area: 0,
            bbox: BBox {
                x0: x,
                y0: y,
                x1: x + 1,
                y1: y + 1,
            },
        });
        t.area += 1;
        t.bbox = BBox {
            x0: t.bbox.x0.min(x),
            y0: t.bbox.y0.min(y),
            x1: t.bbox.x1.max(x + 1),
            y1: t.bbox.y1.max(y + 1),
        };
    }
    FrameTruth {
        defects: acc.into_iter().flatten().collect(),
        parts: 0,
    }
}

/// Encodes an image as PNG (fast compression: generation speed matters more than size).
fn encode_png(
    path: &Path,
    buf: &[u8],
    w: u32,
    h: u32,
    color: image::ExtendedColorType,
) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive)
        .write_image(buf, w, h, color)
        .map_err(|e| Error::Image {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
    Ok(out)
}

/// Every fifth frame is validation; sets under five frames give their last frame to it, so
/// neither list is ever empty (one frame: train only).
fn is_val(i: usize, count: usize) -> bool {
    if count >= 5 {
        i % 5 == 4
    } else {
        count > 1 && i == count - 1
    }
}

/// Name of frame `index` in a generated dataset.
pub fn frame_name(variant: Variant, index: u64) -> String {
    format!("{}_{index:06}", variant.prefix())
}

/// Writes a dataset of `count` frames to `out`: `images/`, `masks/`, `classes.toml`,
/// `train.txt`/`val.txt` (every fifth frame is validation: a deterministic 80/20 split)
/// and `truth.json` ([`SynthManifest`]). Refuses a folder whose `images/` already holds files, so
/// stale frames of an earlier run cannot leak into the new set.
pub fn generate(
    out: &Path,
    count: usize,
    seed: u64,
    variant: Variant,
    width: u32,
    height: u32,
) -> Result<()> {
    if count == 0 || width == 0 || height == 0 {
        return Err(Error::data(
            out,
            format!("nothing to generate: {count} frames of {width}x{height}"),
        ));
    }
    let images = out.join("images");
    let masks = out.join("masks");
    if let Ok(mut entries) = std::fs::read_dir(&images)
        && entries.next().is_some()
    {
        return Err(Error::data(
            &images,
            "already contains files; generate into an empty folder",
        ));
    }
    for dir in [&images, &masks] {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let frames = (0..count as u64)
        .into_par_iter()
        .map(|i| {
            let name = frame_name(variant, i);
            let (img, mask, truth) = render(seed, i, variant, width, height);
            let ip = images.join(format!("{name}.png"));
            let mp = masks.join(format!("{name}.png"));
            write_atomic(
                &ip,
                &encode_png(
                    &ip,
                    img.as_raw(),
                    width,
                    height,
                    image::ExtendedColorType::Rgb8,
                )?,
            )?;
            write_atomic(
                &mp,
                &encode_png(
                    &mp,
                    mask.as_raw(),
                    width,
                    height,
                    image::ExtendedColorType::L8,
                )?,
            )?;
            Ok((name, truth))
        })
        .collect::<Result<Vec<_>>>()?;
    Classes::synthetic_default().save(out.join("classes.toml"))?;
    let list = |val: bool| {
        frames
            .iter()
            .enumerate()
            .filter(|(i, _)| is_val(*i, count) == val)
            .map(|(_, (n, _))| format!("{n}\n"))
            .collect::<String>()
    };
    write_atomic(&out.join("train.txt"), list(false).as_bytes())?;
    // A one-frame set has no validation list: `Dataset::open` then validates on that frame.
    if count > 1 {
        write_atomic(&out.join("val.txt"), list(true).as_bytes())?;
    }
    let manifest = SynthManifest {
        seed,
        variant,
        width,
        height,
        frames: frames.into_iter().collect(),
    };
    let path = out.join("truth.json");
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Parse {
        path: path.clone(),
        msg: e.to_string(),
    })?;
    Ok(write_atomic(&path, &json)?)
}

/// Reads `truth.json` written by [`generate`].
pub fn load_truth(dir: &Path) -> Result<SynthManifest> {
    let path = dir.join("truth.json");
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Parse {
        path,
        msg: e.to_string(),
    })
}
