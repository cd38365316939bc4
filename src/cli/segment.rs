//! `contextrast segment`: run a model on images and write what it sees — class-id masks, colour
//! overlays and, with `--probs`, the raw model output — so a model can be tried before the line.
use anyhow::{Context, Result};
use clap::Args;
use contextrast::infer::setup::{DEFAULT_MEAN, DEFAULT_STD, palette};
use contextrast_model::argmax::argmax_chw;
use contextrast_model::onnx_model::OnnxModel;
use contextrast_train::data::preprocess;
use contextrast_train::npy::write_npy;
use image::imageops::FilterType;
use image::{GrayImage, Luma, Rgb, RgbImage};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct SegmentArgs {
    /// ONNX segmentation model (ours, or any with one NCHW float input and [1, C, h, w] logits).
    #[arg(long)]
    model: PathBuf,
    /// An image, or a folder of images (PNG/JPEG, name order).
    #[arg(long)]
    input: PathBuf,
    /// Output folder: NAME_mask.png (class ids), NAME_overlay.png, NAME_probs.npy.
    #[arg(long)]
    out: PathBuf,
    /// Also write the raw model output as float32 .npy, shape [C, h, w].
    #[arg(long)]
    probs: bool,
    /// Input size HxW for a model without our metadata (default: the image's, padded to 32).
    #[arg(long)]
    size: Option<String>,
    /// Per-channel mean of 0..1 RGB, e.g. 0.45,0.45,0.45 (for a model without metadata).
    #[arg(long, value_delimiter = ',')]
    mean: Option<Vec<f32>>,
    /// Per-channel std of 0..1 RGB (for a model without metadata).
    #[arg(long, value_delimiter = ',')]
    std: Option<Vec<f32>>,
}

fn triple(v: &Option<Vec<f32>>, name: &str, default: [f32; 3]) -> Result<[f32; 3]> {
    match v {
        None => Ok(default),
        Some(v) if v.len() == 3 && v.iter().all(|x| x.is_finite()) => Ok([v[0], v[1], v[2]]),
        Some(v) => anyhow::bail!("--{name} needs three numbers, got {v:?}"),
    }
}

pub fn run(a: SegmentArgs) -> Result<()> {
    let model = OnnxModel::load(&a.model)?;
    let meta = model.meta().cloned();
    let mean = triple(
        &a.mean,
        "mean",
        meta.as_ref().map_or(DEFAULT_MEAN, |m| m.mean),
    )?;
    let std = triple(&a.std, "std", meta.as_ref().map_or(DEFAULT_STD, |m| m.std))?;
    if std.iter().any(|&s| s <= 0.0) {
        anyhow::bail!("--std must be positive");
    }
    let size = match (&a.size, &meta) {
        (Some(s), _) => Some(super::export::parse_size(s)?),
        (None, Some(m)) => Some((m.input_h, m.input_w)),
        (None, None) => None,
    };
    let colors = palette(
        model.num_classes(),
        meta.as_ref().map(|m| m.colors.as_slice()),
    );
    let inputs = list_images(&a.input)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let (mut done, mut failed) = (0usize, 0usize);
    for path in &inputs {
        // One bad file is reported and skipped; the others still run.
        match segment_one(&model, path, &a.out, size, mean, std, &colors, a.probs) {
            Ok(()) => done += 1,
            Err(e) => {
                failed += 1;
                log::error!("{}: {e:#}", path.display());
            }
        }
    }
    log::info!(
        "segmented {done} image(s) into {}; {failed} failed",
        a.out.display()
    );
    if done == 0 {
        anyhow::bail!("no image could be segmented");
    }
    Ok(())
}

/// The image itself, or the folder's PNG/JPEG files in name order (as the replay source plays them).
fn list_images(input: &Path) -> Result<Vec<PathBuf>> {
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    Ok(contextrast::capture::replay::list_images(input)?)
}

#[allow(clippy::too_many_arguments)]
fn segment_one(
    model: &OnnxModel,
    path: &Path,
    out: &Path,
    size: Option<(usize, usize)>,
    mean: [f32; 3],
    std: [f32; 3],
    colors: &[[u8; 3]],
    probs: bool,
) -> Result<()> {
    let img = image::open(path).context("cannot decode image")?.to_rgb8();
    let (w0, h0) = img.dimensions();
    let resized = match size {
        Some((h, w)) if (h as u32, w as u32) != (h0, w0) => std::borrow::Cow::Owned(
            image::imageops::resize(&img, w as u32, h as u32, FilterType::Triangle),
        ),
        _ => std::borrow::Cow::Borrowed(&img),
    };
    let (w, h) = (resized.width() as usize, resized.height() as usize);
    let logits = model.logits_chw(&preprocess(&resized, mean, std), h, w)?;
    let c = model.num_classes();
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if probs {
        write_npy(&out.join(format!("{stem}_probs.npy")), &logits, &[c, h, w])?;
    }
    let ids = argmax_chw(&logits, c, h * w);
    let small = GrayImage::from_fn(w as u32, h as u32, |x, y| {
        Luma([ids[y as usize * w + x as usize]])
    });
    // Back to the image's own size (nearest: class ids must not blend).
    let mask = image::imageops::resize(&small, w0, h0, FilterType::Nearest);
    let overlay = RgbImage::from_fn(w0, h0, |x, y| {
        let p = img.get_pixel(x, y).0;
        let id = mask.get_pixel(x, y).0[0] as usize;
        if id == 0 {
            return Rgb(p);
        }
        let k = colors.get(id).copied().unwrap_or([255, 255, 255]);
        Rgb(std::array::from_fn(|i| {
            ((p[i] as u16 + k[i] as u16) / 2) as u8
        }))
    });
    let mask_path = out.join(format!("{stem}_mask.png"));
    mask.save(&mask_path)
        .with_context(|| format!("writing {}", mask_path.display()))?;
    let ov = out.join(format!("{stem}_overlay.png"));
    overlay
        .save(&ov)
        .with_context(|| format!("writing {}", ov.display()))?;
    Ok(())
}
