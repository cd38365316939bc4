//! On-device retraining, the parts that decide what reaches the line: the retrain config, the
//! merged training set, the promotion gate, and the atomic promote / rollback of the model file
//! the service watches. The training itself is the train crate's; `run.rs` is one retrain run
//! (import, merge, fine-tune, judge, promote, report, resume) and `rollback`.
pub mod plots;
pub mod run;

use crate::config::{parse_toml, resolve_beside};
use crate::{Error, Result};
use contextrast_model::atomic::write_atomic;
use contextrast_train::data::Dataset;
use contextrast_train::evaluate::EvalReport;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `retrain.toml`. Relative paths are relative to the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrainConfig {
    /// The model file the inspection service watches (promotion replaces it atomically).
    pub model: PathBuf,
    /// Its checkpoint (fine-tuning starts here); default: `model` with `.json`.
    #[serde(default)]
    pub checkpoint: Option<PathBuf>,
    /// Runs, reports and the in-progress run (resumed after a power cut).
    pub work: PathBuf,
    /// Labelled dataset folders in the project's format (images/, masks/, classes.toml).
    #[serde(default)]
    pub data: Vec<PathBuf>,
    /// CVAT "Segmentation mask 1.1" exports.
    #[serde(default)]
    pub cvat: Vec<PathBuf>,
    /// CVAT label name → model class name (`"ignore"` = not labelled).
    #[serde(default)]
    pub cvat_names: BTreeMap<String, String>,
    /// Trusted held-out sets both models are judged on. Without one, every `val_every`-th image
    /// of the training data is held out instead.
    #[serde(default)]
    pub holdout: Vec<PathBuf>,
    /// Where a source has no `val.txt` (and for CVAT imports), every `val_every`-th image is held
    /// out; at least 2; default 5.
    #[serde(default = "defaults::val_every")]
    pub val_every: usize,
    /// Training device: `auto` (default: the GPU when usable, else the CPU), `cpu` or `cuda`.
    #[serde(default = "defaults::device")]
    pub device: String,
    /// Training threads: leave cores to the inspection service.
    #[serde(default = "defaults::threads")]
    pub threads: usize,
    /// CPU niceness of the retrain process (0..19): the service wins every contest.
    #[serde(default = "defaults::nice")]
    pub nice: i32,
    /// `[train]`: the fine-tune's settings.
    #[serde(default)]
    pub train: FineTune,
    /// `[gate]`: what a candidate must meet to be promoted.
    #[serde(default)]
    pub gate: Gate,
    /// The file this was read from (for error messages); not a TOML key.
    #[serde(skip)]
    pub path: PathBuf,
}

mod defaults {
    pub fn val_every() -> usize {
        5
    }
    pub fn device() -> String {
        "auto".into()
    }
    pub fn threads() -> usize {
        2
    }
    pub fn nice() -> i32 {
        10
    }
}

/// `[train]`: fine-tuning settings (a short run at a low learning rate from the running model).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FineTune {
    /// Optimiser steps (batches); at least 1.
    pub steps: u64,
    /// Images per batch; at least 1.
    pub batch: usize,
    /// Training crop `[h, w]` in pixels; multiples of 32.
    pub crop: [usize; 2],
    /// Learning rate; must be positive.
    pub lr: f32,
    /// `ce`, `ccl` or `contextrast`.
    pub loss: String,
    /// Random seed of the fine-tune.
    pub seed: u64,
}

impl Default for FineTune {
    fn default() -> Self {
        FineTune {
            steps: 500,
            batch: 4,
            crop: [256, 256],
            lr: 2e-3,
            loss: "contextrast".into(),
            seed: 1,
        }
    }
}

/// `[gate]`: how much worse than the running model a candidate may be on the held-out set.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gate {
    /// Allowed mIoU drop (absolute, 0..1).
    pub miou_tolerance: f64,
    /// Allowed drop of each defect class's pixel recall (absolute, 0..1).
    pub recall_tolerance: f64,
    /// A defect class's recall is guarded only where the running model segments it with at
    /// least this IoU: a model that paints a class everywhere has a high recall of it that is
    /// worth nothing, and a candidate must not be refused for no longer doing that.
    pub guard_min_iou: f64,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            miou_tolerance: 0.0,
            recall_tolerance: 0.02,
            guard_min_iou: 0.05,
        }
    }
}

impl RetrainConfig {
    /// Reads, resolves relative paths beside the file and checks a retrain config.
    pub fn load(path: &Path) -> Result<RetrainConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut cfg: RetrainConfig = parse_toml(&text, path)?;
        cfg.path = path.to_path_buf();
        let rel = |p: &mut PathBuf| resolve_beside(path, p);
        rel(&mut cfg.model);
        rel(&mut cfg.work);
        if let Some(c) = cfg.checkpoint.as_mut() {
            rel(c);
        }
        for p in cfg
            .data
            .iter_mut()
            .chain(&mut cfg.cvat)
            .chain(&mut cfg.holdout)
        {
            rel(p);
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        let bad = |key: &str, msg: String| Err(Error::config(&self.path, key, msg));
        if self.data.is_empty() && self.cvat.is_empty() {
            return bad(
                "data",
                "no labelled data: give `data` folders or `cvat` exports".into(),
            );
        }
        if self.val_every < 2 {
            return bad(
                "val_every",
                format!("{} holds out everything; use 2 or more", self.val_every),
            );
        }
        if !matches!(self.device.as_str(), "auto" | "cpu" | "cuda") {
            return bad(
                "device",
                format!("`{}` is not auto, cpu or cuda", self.device),
            );
        }
        if !(0..=19).contains(&self.nice) {
            return bad("nice", format!("{} is not in 0..=19", self.nice));
        }
        let t = &self.train;
        if t.steps == 0 || t.batch == 0 {
            return bad("train.steps", "steps and batch must be at least 1".into());
        }
        if t.crop.iter().any(|&c| c == 0 || c % 32 != 0) {
            return bad(
                "train.crop",
                format!("{:?}: sides must be positive multiples of 32", t.crop),
            );
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return bad("train.lr", format!("{} is not a positive rate", t.lr));
        }
        if !matches!(t.loss.as_str(), "ce" | "ccl" | "contextrast") {
            return bad(
                "train.loss",
                format!("`{}` is not ce, ccl or contextrast", t.loss),
            );
        }
        for (key, v) in [
            ("gate.miou_tolerance", self.gate.miou_tolerance),
            ("gate.recall_tolerance", self.gate.recall_tolerance),
            ("gate.guard_min_iou", self.gate.guard_min_iou),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(key, format!("{v} is not in 0..1"));
            }
        }
        Ok(())
    }

    /// The running model's checkpoint.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.checkpoint
            .clone()
            .unwrap_or_else(|| self.model.with_extension("json"))
    }
}

/// Copies the labelled data into one dataset folder `out` (names prefixed by their source so they
/// cannot collide) with `train.txt` and `val.txt`. Each source's own `val.txt` is kept when it has
/// one; otherwise every `val_every`-th image is held out. The classes must be the model's.
pub fn merge_datasets(
    sources: &[PathBuf],
    model_classes: &[String],
    val_every: usize,
    out: &Path,
) -> Result<(usize, usize)> {
    let (images, masks) = (out.join("images"), out.join("masks"));
    for d in [&images, &masks] {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let (mut train, mut val) = (String::new(), String::new());
    let (mut n_train, mut n_val) = (0, 0);
    let mut classes_written = false;
    for (s, src) in sources.iter().enumerate() {
        let ds = Dataset::open(src)?;
        let names = ds.classes.names();
        if names != model_classes {
            return Err(Error::config(
                src.join("classes.toml"),
                "class",
                format!("classes {names:?} are not the model's {model_classes:?}"),
            ));
        }
        if !classes_written {
            ds.classes.save(out.join("classes.toml"))?;
            classes_written = true;
        }
        let own_val = src.join("val.txt").is_file();
        for (i, item) in ds.items.iter().enumerate() {
            let name = format!("s{s}_{}", item.name);
            let ext = item
                .image
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("png");
            copy(&item.image, &images.join(format!("{name}.{ext}")))?;
            copy(&item.mask, &masks.join(format!("{name}.png")))?;
            let is_val = if own_val {
                ds.val.contains(&i)
            } else {
                i % val_every == val_every - 1
            };
            let list = if is_val { &mut val } else { &mut train };
            list.push_str(&name);
            list.push('\n');
            if is_val {
                n_val += 1;
            } else {
                n_train += 1;
            }
        }
    }
    if n_train == 0 {
        return Err(Error::config(
            out,
            "data",
            "no training images after the split",
        ));
    }
    write_atomic(&out.join("train.txt"), train.as_bytes())?;
    write_atomic(&out.join("val.txt"), val.as_bytes())?;
    Ok((n_train, n_val))
}

/// Hard link where possible (same file system), else a copy.
fn copy(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        return Ok(());
    }
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).map_err(|e| Error::io(from, e))?;
    }
    Ok(())
}

/// A model's figures on the held-out set, as the gate and the report use them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct GateScores {
    /// Mean IoU over classes.
    pub miou: f64,
    /// Mean boundary IoU.
    pub boundary_iou: f64,
    /// IoU of each class, by name.
    pub iou: BTreeMap<String, f64>,
    /// Pixel recall of each defect class.
    pub recall: BTreeMap<String, f64>,
}

impl GateScores {
    /// From an evaluation report; `defect` flags which classes' recall the gate guards.
    pub fn from_report(r: &EvalReport, defect: &[bool]) -> GateScores {
        let recall = r
            .class_names
            .iter()
            .enumerate()
            .filter(|(i, _)| defect.get(*i).copied().unwrap_or(false))
            .filter_map(|(i, name)| {
                let row = r.confusion.get(i)?;
                let total: u64 = row.iter().sum();
                (total > 0).then(|| (name.clone(), row[i] as f64 / total as f64))
            })
            .collect();
        GateScores {
            miou: r.miou,
            boundary_iou: r.boundary_iou,
            iou: r.per_class.clone(),
            recall,
        }
    }
}

/// The gate's verdict, with every reason a candidate was refused.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Decision {
    /// Whether the candidate may replace the running model (no reasons against it).
    pub promote: bool,
    /// Why it was refused, one line each; empty when promoted.
    pub reasons: Vec<String>,
    /// Defect classes whose recall was not guarded (the running model's IoU below
    /// `guard_min_iou`).
    pub unguarded: Vec<String>,
}

impl Gate {
    /// Promote only if the candidate is no worse beyond the tolerances: mIoU, and the recall of
    /// every defect class the held-out set contains.
    pub fn judge(&self, current: &GateScores, candidate: &GateScores) -> Decision {
        let mut reasons = Vec::new();
        if !candidate.miou.is_finite() || candidate.miou < current.miou - self.miou_tolerance {
            reasons.push(format!(
                "mIoU {:.4} < current {:.4} − tolerance {}",
                candidate.miou, current.miou, self.miou_tolerance
            ));
        }
        let mut unguarded = Vec::new();
        for (class, &cur) in &current.recall {
            if current.iou.get(class).copied().unwrap_or(0.0) < self.guard_min_iou {
                unguarded.push(class.clone());
                continue;
            }
            let cand = candidate.recall.get(class).copied().unwrap_or(0.0);
            if cand < cur - self.recall_tolerance {
                reasons.push(format!(
                    "{class} recall {cand:.4} < current {cur:.4} − tolerance {}",
                    self.recall_tolerance
                ));
            }
        }
        Decision {
            promote: reasons.is_empty(),
            reasons,
            unguarded,
        }
    }
}

/// Where the previous model is kept for `rollback`.
pub fn previous_path(model: &Path) -> PathBuf {
    model.with_extension("prev.onnx")
}

/// Replaces `model` by `candidate` atomically, keeping the running one as `model.prev.onnx`.
/// The rename is the commit: the service sees either the old file or the new one, never half.
pub fn promote(model: &Path, candidate: &Path) -> Result<()> {
    let prev = previous_path(model);
    if model.exists() {
        let bytes = std::fs::read(model).map_err(|e| Error::io(model, e))?;
        write_atomic(&prev, &bytes)?;
    }
    let bytes = std::fs::read(candidate).map_err(|e| Error::io(candidate, e))?;
    write_atomic(model, &bytes)?;
    Ok(())
}

/// Puts the previous model back (atomically); the replaced one is kept as `model.rolledback.onnx`.
pub fn rollback(model: &Path) -> Result<()> {
    let prev = previous_path(model);
    let bytes = std::fs::read(&prev).map_err(|e| Error::io(&prev, e))?;
    if model.exists() {
        let cur = std::fs::read(model).map_err(|e| Error::io(model, e))?;
        write_atomic(&model.with_extension("rolledback.onnx"), &cur)?;
    }
    write_atomic(model, &bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests;
