//! A segmentation dataset on disk: `images/NAME.{png,jpg,jpeg}` paired by stem with
//! `masks/NAME.png` (8-bit class ids, 255 = ignore), `classes.toml`, and optional
//! `train.txt` / `val.txt` listing names one per line.
//!
//! `open` checks everything that can be checked cheaply up front — pairing, sizes, mask format
//! and every mask's class ids — so a broken set fails before training, not hours into it.
//! Image pixel data is decoded only by `load_item`, which repeats the checks.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use image::{ColorType, DynamicImage, ImageDecoder, ImageReader, RgbImage};
use rayon::prelude::*;

use super::classes::Classes;
use crate::{Error, Result};

/// One image/mask pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The shared file stem.
    pub name: String,
    /// `images/NAME.{png,jpg,jpeg}`.
    pub image: PathBuf,
    /// `masks/NAME.png`.
    pub mask: PathBuf,
}

/// An opened, validated dataset.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The dataset folder.
    pub root: PathBuf,
    /// Its `classes.toml`.
    pub classes: Classes,
    /// Sorted by name.
    pub items: Vec<Item>,
    /// Indices into `items`.
    pub train: Vec<usize>,
    /// Indices into `items` of the validation split (without `val.txt`: what `train.txt`
    /// leaves out, or every item).
    pub val: Vec<usize>,
    /// Labelled pixels per class over all masks (ignore excluded): class balance at a glance.
    pub class_pixels: Vec<u64>,
}

const IMAGE_EXTS: [&str; 3] = ["png", "jpg", "jpeg"];

fn ext_lower(p: &Path) -> String {
    p.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Regular files of `dir` whose extension is in `exts`, keyed by stem. Two files with one stem
/// (`a.png` and `a.jpg`) are ambiguous and rejected.
fn list_by_stem(dir: &Path, exts: &[&str]) -> Result<BTreeMap<String, PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = BTreeMap::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if !path.is_file() || !exts.contains(&ext_lower(&path).as_str()) {
            continue;
        }
        let Some(stem) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string)
        else {
            return Err(Error::data(&path, "file name is not valid UTF-8"));
        };
        if let Some(prev) = out.insert(stem, path.clone()) {
            return Err(Error::data(
                &path,
                format!("same name as {}; keep one", prev.display()),
            ));
        }
    }
    Ok(out)
}

/// Opens an image file with its format guessed from the content (a `.png` that is really a JPEG
/// still loads).
fn reader(path: &Path) -> Result<ImageReader<std::io::BufReader<std::fs::File>>> {
    ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))
}

fn image_err(path: &Path, e: image::ImageError) -> Error {
    Error::Image {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

/// Image dimensions from the header only.
fn header_dims(path: &Path) -> Result<(u32, u32)> {
    reader(path)?
        .into_dimensions()
        .map_err(|e| image_err(path, e))
}

/// Decodes a mask and checks that it is 8-bit single-channel: a colour or 16-bit "mask" would
/// be silently converted by a generic loader and give wrong class ids.
fn decode_mask(path: &Path) -> Result<(u32, u32, Vec<u8>)> {
    let decoder = reader(path)?
        .into_decoder()
        .map_err(|e| image_err(path, e))?;
    let color = decoder.color_type();
    if color != ColorType::L8 {
        return Err(Error::data(
            path,
            format!("mask must be 8-bit single-channel (gray) PNG of class ids, found {color:?}"),
        ));
    }
    let img = DynamicImage::from_decoder(decoder).map_err(|e| image_err(path, e))?;
    let (w, h) = (img.width(), img.height());
    Ok((w, h, img.into_luma8().into_raw()))
}

/// Fails on the first pixel that is neither a class id nor ignore, naming value and position.
fn check_ids(path: &Path, mask: &[u8], width: u32, classes: &Classes) -> Result<()> {
    match mask.iter().position(|&v| !classes.is_valid_label(v)) {
        None => Ok(()),
        Some(i) => Err(Error::data(
            path,
            format!(
                "class id {} at pixel ({}, {}) is not in classes.toml ({} classes; 255 = ignore)",
                mask[i],
                i as u32 % width.max(1),
                i as u32 / width.max(1),
                classes.len()
            ),
        )),
    }
}

/// Reads a split list: one name per line; blank lines and `#` comments skipped; a path or file
/// name is reduced to its stem, so `images/a.png` and `a` both mean item `a`.
fn read_split(path: &Path, by_name: &HashMap<&str, usize>) -> Result<Option<Vec<usize>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let stem = Path::new(line)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(line);
        match by_name.get(stem) {
            Some(&i) => out.push(i),
            None => {
                return Err(Error::data(
                    path,
                    format!("line {}: no image/mask pair named {stem:?}", n + 1),
                ));
            }
        }
    }
    if out.is_empty() {
        return Err(Error::data(path, "lists no items (empty set)"));
    }
    Ok(Some(out))
}

impl Dataset {
    /// Opens and validates the dataset in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Dataset> {
        let root = dir.as_ref().to_path_buf();
        let classes = Classes::load(root.join("classes.toml"))?;
        let images = list_by_stem(&root.join("images"), &IMAGE_EXTS)?;
        let masks_dir = root.join("masks");
        let masks = list_by_stem(&masks_dir, &["png"])?;
        if images.is_empty() {
            return Err(Error::data(
                root.join("images"),
                "no PNG or JPEG images (empty set)",
            ));
        }
        let mut items = Vec::with_capacity(images.len());
        for (name, image) in images {
            let Some(mask) = masks.get(&name) else {
                return Err(Error::data(
                    &image,
                    format!(
                        "has no mask: expected {}",
                        masks_dir.join(format!("{name}.png")).display()
                    ),
                ));
            };
            items.push(Item {
                name,
                image,
                mask: mask.clone(),
            });
        }
        let orphans = masks.len() - items.len();
        if orphans > 0 {
            log::warn!(
                "{}: {orphans} mask(s) without an image are skipped",
                masks_dir.display()
            );
        }
        let per_item = items
            .par_iter()
            .map(|it| {
                let (iw, ih) = header_dims(&it.image)?;
                let (mw, mh, mask) = decode_mask(&it.mask)?;
                if (iw, ih) != (mw, mh) {
                    return Err(Error::data(
                        &it.mask,
                        format!(
                            "mask is {mw}x{mh} but image {} is {iw}x{ih}",
                            it.image.display()
                        ),
                    ));
                }
                check_ids(&it.mask, &mask, mw, &classes)?;
                let mut counts = vec![0u64; classes.len()];
                for &v in &mask {
                    if let Some(c) = counts.get_mut(usize::from(v)) {
                        *c += 1;
                    }
                }
                Ok(counts)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut class_pixels = vec![0u64; classes.len()];
        for counts in per_item {
            for (a, b) in class_pixels.iter_mut().zip(counts) {
                *a += b;
            }
        }
        let by_name: HashMap<&str, usize> = items
            .iter()
            .enumerate()
            .map(|(i, it)| (it.name.as_str(), i))
            .collect();
        let train = read_split(&root.join("train.txt"), &by_name)?;
        let val = read_split(&root.join("val.txt"), &by_name)?;
        let all: Vec<usize> = (0..items.len()).collect();
        let complement = |of: &[usize]| {
            let rest: Vec<usize> = all.iter().copied().filter(|i| !of.contains(i)).collect();
            if rest.is_empty() { all.clone() } else { rest }
        };
        // One list given: the other is what it leaves out (or everything, if it takes all).
        let (train, val) = match (train, val) {
            (Some(t), Some(v)) => (t, v),
            (Some(t), None) => {
                let v = complement(&t);
                (t, v)
            }
            (None, Some(v)) => (complement(&v), v),
            (None, None) => (all.clone(), all.clone()),
        };
        Ok(Dataset {
            root,
            classes,
            items,
            train,
            val,
            class_pixels,
        })
    }

    /// Number of image/mask pairs.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is no pair.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Decodes item `i`: the RGB image and its class-id mask (row-major, width·height), with the
    /// same checks as `open` (the files may have changed since).
    pub fn load_item(&self, i: usize) -> Result<(RgbImage, Vec<u8>)> {
        let Some(it) = self.items.get(i) else {
            return Err(Error::data(
                &self.root,
                format!("item index {i} out of range ({} items)", self.items.len()),
            ));
        };
        let img = reader(&it.image)?
            .decode()
            .map_err(|e| image_err(&it.image, e))?
            .into_rgb8();
        let (mw, mh, mask) = decode_mask(&it.mask)?;
        if img.dimensions() != (mw, mh) {
            return Err(Error::data(
                &it.mask,
                format!(
                    "mask is {mw}x{mh} but image {} is {}x{}",
                    it.image.display(),
                    img.width(),
                    img.height()
                ),
            ));
        }
        check_ids(&it.mask, &mask, mw, &self.classes)?;
        Ok((img, mask))
    }
}
