//! Import of a CVAT "Segmentation mask 1.1" export into the project dataset format, so people
//! can label in CVAT and retrain on the device without a conversion script.
//!
//! The export holds `labelmap.txt` (`name:R,G,B:parts:actions`), colour-coded class masks in
//! `SegmentationClass/NAME.png`, images in `JPEGImages/NAME.{jpg,jpeg,png}` and optionally
//! `ImageSets/Segmentation/default.txt`; `SegmentationObject/` is not needed. CVAT labels are
//! matched to the model's classes by name (trimmed, case-insensitive) or through a [`NameMap`].
//!
//! Everything is checked and converted into a staging folder inside `out` first, so a failed
//! import leaves the destination dataset exactly as it was.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use image::{DynamicImage, GrayImage, ImageReader};

use crate::data::classes::{Classes, IGNORE};
use crate::{Error, Result};
use contextrast_model::atomic::write_atomic;

/// Target name that turns a CVAT label into "ignore" (mask value 255).
pub const IGNORE_NAME: &str = "ignore";

const IMAGE_EXTS: [&str; 3] = ["png", "jpg", "jpeg"];

/// User mapping from CVAT label names to model class names (or `"ignore"`), for labels whose
/// names differ from the model's, e.g. `Kratzer = "scratch"`, `background = "belt"`.
/// Keys are stored trimmed and lower-cased because label matching is case-insensitive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameMap {
    map: BTreeMap<String, String>,
}

fn norm(name: &str) -> String {
    name.trim().to_lowercase()
}

impl NameMap {
    /// An empty map.
    pub fn new() -> NameMap {
        NameMap::default()
    }

    /// Maps CVAT label `from` to model class `to` (or [`IGNORE_NAME`]); a later insert wins.
    pub fn insert(&mut self, from: &str, to: &str) -> &mut NameMap {
        self.map.insert(norm(from), to.trim().to_string());
        self
    }

    /// The target for CVAT label `label`, if mapped.
    pub fn get(&self, label: &str) -> Option<&str> {
        self.map.get(&norm(label)).map(String::as_str)
    }

    /// Number of mapped CVAT labels.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no label is mapped.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Parses a TOML table of `"CVAT label" = "model class"` lines; `path` only names the source
    /// in errors. Keys equal up to case but with different targets are rejected as ambiguous.
    pub fn from_toml(text: &str, path: &Path) -> Result<NameMap> {
        let raw: BTreeMap<String, String> = toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let mut out = NameMap::new();
        for (from, to) in &raw {
            if let Some(prev) = out.get(from)
                && !prev.eq_ignore_ascii_case(to.trim())
            {
                return Err(Error::Config {
                    path: path.to_path_buf(),
                    key: from.clone(),
                    msg: format!(
                        "label names match case-insensitively, so {from:?} is mapped twice \
                         ({prev:?} and {to:?})"
                    ),
                });
            }
            out.insert(from, to);
        }
        Ok(out)
    }

    /// Reads a name map file (see [`NameMap::from_toml`]).
    pub fn load(path: impl AsRef<Path>) -> Result<NameMap> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        NameMap::from_toml(&text, path)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for NameMap {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> NameMap {
        let mut m = NameMap::new();
        for (k, v) in iter {
            m.insert(k.as_ref(), v.as_ref());
        }
        m
    }
}

/// Import settings beyond the name map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Every k-th imported image (k, 2k, ...) goes to `val.txt` instead of `train.txt`;
    /// `None` puts all into `train.txt` and leaves splits to the caller.
    pub val_every: Option<usize>,
}

/// What an import added: for the operator to see class balance before training.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Image/mask pairs written.
    pub images: usize,
    /// Labelled pixels per model class id over the imported masks.
    pub pixels_per_class: Vec<u64>,
    /// Pixels written as 255 (labels mapped to "ignore").
    pub ignored_pixels: u64,
}

/// One `labelmap.txt` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Label {
    name: String,
    color: [u8; 3],
}

/// Parses `labelmap.txt`. The name is everything before the last three `:` fields, so a label
/// containing `:` still parses; a bare `name:R,G,B` line is accepted too.
fn parse_labelmap(path: &Path, text: &str) -> Result<Vec<Label>> {
    let mut labels: Vec<Label> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |msg: String| Error::data(path, format!("line {}: {msg}", n + 1));
        let fields: Vec<&str> = line.split(':').collect();
        let (name, color) = match fields.len() {
            0 | 1 => return Err(bad(format!("expected `name:R,G,B::`, found {line:?}"))),
            2 | 3 => (fields[0].to_string(), fields[1]),
            k => (fields[..k - 3].join(":"), fields[k - 3]),
        };
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err(bad("empty label name".into()));
        }
        let parts: Vec<&str> = color.split(',').map(str::trim).collect();
        let rgb: Vec<u8> = parts.iter().filter_map(|p| p.parse().ok()).collect();
        let [r, g, b] = rgb[..] else {
            return Err(bad(format!(
                "label {name:?}: colour {color:?} is not R,G,B with values 0-255"
            )));
        };
        if parts.len() != 3 {
            return Err(bad(format!(
                "label {name:?}: colour {color:?} is not R,G,B"
            )));
        }
        if let Some(prev) = labels.iter().find(|l| norm(&l.name) == norm(&name)) {
            return Err(bad(format!(
                "label {name:?} appears twice (also as {:?})",
                prev.name
            )));
        }
        labels.push(Label {
            name,
            color: [r, g, b],
        });
    }
    if labels.is_empty() {
        return Err(Error::data(path, "lists no labels"));
    }
    Ok(labels)
}

/// Resolves a model class name (trimmed, case-insensitive) or "ignore" to a mask value.
fn class_value(classes: &Classes, name: &str) -> Option<u8> {
    let want = norm(name);
    if want == IGNORE_NAME {
        return Some(IGNORE);
    }
    (0u8..)
        .zip(&classes.classes)
        .find(|(_, c)| norm(&c.name) == want)
        .map(|(i, _)| i)
}

/// Colour → mask value for every label. Fails listing all unknown labels at once, so the user
/// fixes the name map in one go.
fn build_lut(
    path: &Path,
    labels: &[Label],
    classes: &Classes,
    names: &NameMap,
) -> Result<HashMap<[u8; 3], u8>> {
    let class_list = classes.names().join(", ");
    let mut lut: HashMap<[u8; 3], (u8, &str)> = HashMap::new();
    let mut unknown = Vec::new();
    for l in labels {
        // An explicit mapping wins over a same-named class.
        let value = match names.get(&l.name) {
            Some(target) => match class_value(classes, target) {
                Some(v) => v,
                None => {
                    return Err(Error::data(
                        path,
                        format!(
                            "label {:?} is mapped to {target:?}, which is not a model class \
                             (classes: {class_list}; or \"{IGNORE_NAME}\")",
                            l.name
                        ),
                    ));
                }
            },
            None => match class_value(classes, &l.name) {
                Some(v) => v,
                None => {
                    unknown.push(format!("{:?}", l.name));
                    continue;
                }
            },
        };
        match lut.get(&l.color) {
            Some(&(v, other)) if v != value => {
                return Err(Error::data(
                    path,
                    format!(
                        "labels {other:?} and {:?} share colour {:?} but map to different classes",
                        l.name, l.color
                    ),
                ));
            }
            _ => {
                lut.insert(l.color, (value, &l.name));
            }
        }
    }
    if !unknown.is_empty() {
        return Err(Error::data(
            path,
            format!(
                "CVAT label(s) {} match no model class (classes: {class_list}); map them to a \
                 class or to \"{IGNORE_NAME}\" in the name map",
                unknown.join(", ")
            ),
        ));
    }
    Ok(lut.into_iter().map(|(c, (v, _))| (c, v)).collect())
}

fn ext_lower(p: &Path) -> String {
    p.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Files of `dir` with an extension in `exts`, by stem. A missing `dir` is empty, so the
/// caller reports the missing files by name; sub-folders (CVAT's nested task names) are
/// rejected because the dataset format is flat.
fn list_by_stem(dir: &Path, exts: &[&str], must_exist: bool) -> Result<BTreeMap<String, PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if !must_exist && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(BTreeMap::new());
        }
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut out = BTreeMap::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            if must_exist {
                return Err(Error::data(
                    &path,
                    "sub-folders are not supported (export with flat image names)",
                ));
            }
            continue;
        }
        if !exts.contains(&ext_lower(&path).as_str()) {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            return Err(Error::data(&path, "file name is not valid UTF-8"));
        };
        if let Some(prev) = out.insert(stem.to_string(), path.clone()) {
            return Err(Error::data(
                &path,
                format!("same name as {}; keep one", prev.display()),
            ));
        }
    }
    Ok(out)
}

fn image_err(path: &Path, e: image::ImageError) -> Error {
    Error::Image {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

/// Decodes with the format guessed from content (a `.png` that is really a JPEG still loads).
fn decode(path: &Path) -> Result<DynamicImage> {
    ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?
        .decode()
        .map_err(|e| image_err(path, e))
}

/// Converts a colour mask to class ids, adding to the report's counts. Every unknown colour is
/// counted first, so the error shows the worst offenders rather than the first pixel.
fn convert_mask(
    path: &Path,
    lut: &HashMap<[u8; 3], u8>,
    report: &mut ImportReport,
) -> Result<GrayImage> {
    let rgb = decode(path)?.into_rgb8();
    let (w, h) = rgb.dimensions();
    let mut ids = Vec::with_capacity(rgb.as_raw().len() / 3);
    let mut unknown: HashMap<[u8; 3], u64> = HashMap::new();
    let mut last: Option<([u8; 3], Option<u8>)> = None;
    for px in rgb.pixels() {
        let c = px.0;
        let v = match last {
            Some((lc, lv)) if lc == c => lv,
            _ => {
                let v = lut.get(&c).copied();
                last = Some((c, v));
                v
            }
        };
        match v {
            Some(v) => ids.push(v),
            None => {
                *unknown.entry(c).or_default() += 1;
                ids.push(IGNORE);
            }
        }
    }
    if !unknown.is_empty() {
        let mut worst: Vec<([u8; 3], u64)> = unknown.into_iter().collect();
        worst.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let shown: Vec<String> = worst
            .iter()
            .take(5)
            .map(|([r, g, b], n)| format!("RGB({r},{g},{b}) on {n} pixel(s)"))
            .collect();
        let more = worst.len().saturating_sub(5);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        return Err(Error::data(
            path,
            format!("colour(s) not in labelmap.txt: {}{more}", shown.join(", ")),
        ));
    }
    for &v in &ids {
        match report.pixels_per_class.get_mut(usize::from(v)) {
            Some(c) => *c += 1,
            None => report.ignored_pixels += 1,
        }
    }
    GrayImage::from_raw(w, h, ids)
        .ok_or_else(|| Error::data(path, "mask buffer does not match its size"))
}

/// Names listed in a split file, reduced to stems like `Dataset::open` does; `None` if absent.
fn read_list(path: &Path) -> Result<Option<Vec<String>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    Ok(Some(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                Path::new(l)
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or(l)
                    .to_string()
            })
            .collect(),
    ))
}

/// Appends `names` to a split list (creating it), keeping earlier lines.
fn append_list(path: &Path, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let mut text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(path, e)),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    for n in names {
        text.push_str(n);
        text.push('\n');
    }
    Ok(write_atomic(path, text.as_bytes())?)
}

/// The staging folder inside `out`; removed on drop, so an error leaves no half import.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One pair to import.
struct Pending {
    name: String,
    image: PathBuf,
    mask: PathBuf,
}

/// Pairs masks with images, from `default.txt` when present (CVAT's own list, which also fixes
/// the order), otherwise from the files; anything unpaired is an error naming it.
fn pair_items(src: &Path) -> Result<Vec<Pending>> {
    let mask_dir = src.join("SegmentationClass");
    let image_dir = src.join("JPEGImages");
    let masks = list_by_stem(&mask_dir, &["png"], true)?;
    let images = list_by_stem(&image_dir, &IMAGE_EXTS, true)?;
    let list_path = src
        .join("ImageSets")
        .join("Segmentation")
        .join("default.txt");
    let names: Vec<String> = match read_list(&list_path)? {
        Some(list) => {
            let mut seen = HashSet::new();
            list.into_iter()
                .filter(|n| seen.insert(n.clone()))
                .collect()
        }
        None => {
            if let Some((name, image)) = images.iter().find(|(n, _)| !masks.contains_key(*n)) {
                return Err(Error::data(
                    image,
                    format!(
                        "image has no mask: expected {}",
                        mask_dir.join(format!("{name}.png")).display()
                    ),
                ));
            }
            masks.keys().cloned().collect()
        }
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let Some(mask) = masks.get(&name) else {
            return Err(Error::data(
                mask_dir.join(format!("{name}.png")),
                format!(
                    "mask missing for {name:?} listed in {}",
                    list_path.display()
                ),
            ));
        };
        let Some(image) = images.get(&name) else {
            return Err(Error::data(
                mask,
                format!(
                    "mask has no image: expected {} (.jpg, .jpeg or .png)",
                    image_dir.join(&name).display()
                ),
            ));
        };
        out.push(Pending {
            name,
            image: image.clone(),
            mask: mask.clone(),
        });
    }
    if out.is_empty() {
        return Err(Error::data(&mask_dir, "no masks to import (empty export)"));
    }
    Ok(out)
}

/// Imports the CVAT export in `src` into the dataset at `out`, with all images in `train.txt`.
/// See [`import_cvat_with`].
pub fn import_cvat(
    src: &Path,
    classes: &Classes,
    out: &Path,
    names: &NameMap,
) -> Result<ImportReport> {
    import_cvat_with(src, classes, out, names, &ImportOptions::default())
}

/// Imports the CVAT export in `src` into the dataset at `out` (created or appended to): copies
/// images byte for byte, writes `masks/NAME.png` as ids of `classes`, appends names to
/// `train.txt` / `val.txt`, and writes `classes.toml` if absent. An existing `classes.toml` must
/// list the same class names in the same order, since the ids written depend on it.
pub fn import_cvat_with(
    src: &Path,
    classes: &Classes,
    out: &Path,
    names: &NameMap,
    opts: &ImportOptions,
) -> Result<ImportReport> {
    let classes_path = out.join("classes.toml");
    classes.validate(&classes_path)?;
    if opts.val_every == Some(0) {
        return Err(Error::Config {
            path: src.to_path_buf(),
            key: "val_every".into(),
            msg: "must be at least 1".into(),
        });
    }
    let have_classes = classes_path.exists();
    if have_classes {
        let existing = Classes::load(&classes_path)?;
        if existing.names() != classes.names() {
            return Err(Error::data(
                &classes_path,
                format!(
                    "dataset classes [{}] differ from the model's [{}]; import into a new folder",
                    existing.names().join(", "),
                    classes.names().join(", ")
                ),
            ));
        }
    }

    let labelmap = src.join("labelmap.txt");
    let text = std::fs::read_to_string(&labelmap).map_err(|e| Error::io(&labelmap, e))?;
    let lut = build_lut(
        &labelmap,
        &parse_labelmap(&labelmap, &text)?,
        classes,
        names,
    )?;
    let items = pair_items(src)?;

    let images_dir = out.join("images");
    let masks_dir = out.join("masks");
    let old_images = list_by_stem(&images_dir, &IMAGE_EXTS, false)?;
    let old_masks = list_by_stem(&masks_dir, &["png"], false)?;
    for it in &items {
        if let Some(p) = old_images.get(&it.name).or_else(|| old_masks.get(&it.name)) {
            return Err(Error::data(
                p,
                format!(
                    "already in the dataset; refusing to overwrite it with {}",
                    it.image.display()
                ),
            ));
        }
    }

    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let staging = Staging(out.join(format!(".cvat-import-{}.tmp", std::process::id())));
    let (st_img, st_mask) = (staging.0.join("images"), staging.0.join("masks"));
    for d in [&st_img, &st_mask] {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }

    let mut report = ImportReport {
        images: 0,
        pixels_per_class: vec![0; classes.len()],
        ignored_pixels: 0,
    };
    let mut moves = Vec::with_capacity(items.len() * 2);
    for it in &items {
        // Full decode, not just the header: a truncated image should fail now, not in training.
        let (iw, ih) = {
            let img = decode(&it.image)?;
            (img.width(), img.height())
        };
        let mask = convert_mask(&it.mask, &lut, &mut report)?;
        if mask.dimensions() != (iw, ih) {
            return Err(Error::data(
                &it.mask,
                format!(
                    "mask is {}x{} but image {} is {iw}x{ih}",
                    mask.width(),
                    mask.height(),
                    it.image.display()
                ),
            ));
        }
        let mask_tmp = st_mask.join(format!("{}.png", it.name));
        mask.save_with_format(&mask_tmp, image::ImageFormat::Png)
            .map_err(|e| image_err(&mask_tmp, e))?;
        let ext = it
            .image
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("jpg");
        let file = format!("{}.{ext}", it.name);
        let img_tmp = st_img.join(&file);
        std::fs::copy(&it.image, &img_tmp).map_err(|e| Error::io(&it.image, e))?;
        moves.push((img_tmp, images_dir.join(file)));
        moves.push((mask_tmp, masks_dir.join(format!("{}.png", it.name))));
        report.images += 1;
    }

    // Split lists: every k-th image to val. When a list file is created in a dataset that had
    // images but no such list, seed it so the old images keep their effective split
    // (`Dataset::open` treats an absent list as "the rest").
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, it) in items.iter().enumerate() {
        match opts.val_every {
            Some(k) if (i + 1) % k == 0 => val.push(it.name.clone()),
            _ => train.push(it.name.clone()),
        }
    }
    let (train_path, val_path) = (out.join("train.txt"), out.join("val.txt"));
    let old_train = read_list(&train_path)?;
    let old_val = read_list(&val_path)?;
    let listed: HashSet<&String> = old_train.iter().chain(&old_val).flatten().collect();
    let unlisted: Vec<String> = old_images
        .keys()
        .filter(|n| !listed.contains(n))
        .cloned()
        .collect();
    if old_train.is_none() && !train.is_empty() {
        train.splice(0..0, unlisted);
    } else if old_train.is_some() && old_val.is_none() && !val.is_empty() {
        val.splice(0..0, unlisted);
    }

    if !have_classes {
        classes.save(&classes_path)?;
    }
    for d in [&images_dir, &masks_dir] {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    for (from, to) in &moves {
        std::fs::rename(from, to).map_err(|e| Error::io(to, e))?;
    }
    append_list(&train_path, &train)?;
    append_list(&val_path, &val)?;
    drop(staging);
    Ok(report)
}

#[cfg(test)]
#[path = "cvat_tests.rs"]
mod tests;
