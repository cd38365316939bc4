//! Training configuration (`train.toml`). Every field has the documented default; every bad value
//! is refused with an error that names the file and the key.
use crate::model::NetConfig;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Which loss to train with: cross-entropy only; CE + contextual contrastive learning with random
/// negatives; CE + CCL + BANE hard negatives (the paper's full method).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// Cross-entropy only (`"ce"`).
    Ce,
    /// CE + α·L_PA with BANE off: all negatives random (`"ccl"`).
    Ccl,
    /// CE + α·L_PA with BANE hard negatives (`"contextrast"`).
    Contextrast,
}

/// The training configuration (`train.toml`); every field has a default, unknown keys are refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimiser steps (batches).
    pub steps: u64,
    /// Images per batch.
    pub batch: usize,
    /// Training crop `[h, w]`; multiples of 32.
    pub crop: [usize; 2],
    /// Base learning rate, decayed by the poly schedule.
    pub lr: f32,
    /// SGD momentum, in [0, 1).
    pub momentum: f32,
    /// L2 weight decay (≥ 0).
    pub weight_decay: f32,
    /// Poly learning-rate decay power.
    pub poly_power: f32,
    /// Seeds the initialisation, the batch order and augmentation, and the contrastive sampling.
    pub seed: u64,
    /// Validate every this many steps (0 = only at the end).
    pub val_every: u64,
    /// Write `last.*` every this many steps.
    pub checkpoint_every: u64,
    /// Compute threads (0 = all cores).
    pub threads: usize,
    /// Data-loading threads.
    pub workers: usize,
    /// Per-channel normalisation of 0..1 RGB.
    pub mean: [f32; 3],
    /// Per-channel standard deviation of that normalisation (positive).
    pub std: [f32; 3],
    /// Per-class cross-entropy weights (empty = unweighted). Defects are rare; weights help.
    pub class_weights: Vec<f32>,
    /// Which loss to train with.
    pub loss: LossKind,
    /// Constants of the contrastive loss (method doc defaults); used unless `loss = "ce"`.
    pub contrast: crate::loss::contrast::ContrastConfig,
    /// The network's sizes.
    pub model: NetConfig,
    /// Augmentation settings; the trainer replaces their `crop` with this config's `crop`.
    pub augment: crate::data::augment::AugmentConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 2000,
            batch: 8,
            crop: [256, 256],
            lr: 1e-2,
            momentum: 0.9,
            weight_decay: 5e-4,
            poly_power: 0.9,
            seed: 0,
            val_every: 500,
            checkpoint_every: 100,
            threads: 0,
            workers: 1,
            mean: [0.45, 0.45, 0.45],
            std: [0.25, 0.25, 0.25],
            class_weights: Vec::new(),
            loss: LossKind::Ce,
            contrast: Default::default(),
            model: NetConfig::default(),
            augment: Default::default(),
        }
    }
}

impl TrainConfig {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: TrainConfig = toml::from_str(&text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        cfg.validate(path, None)?;
        Ok(cfg)
    }

    /// Checks ranges; `num_classes` (when known) checks `class_weights`' length.
    pub fn validate(&self, path: &Path, num_classes: Option<usize>) -> Result<()> {
        let bad = |key: &str, msg: String| {
            Err(Error::Config {
                path: path.to_path_buf(),
                key: key.into(),
                msg,
            })
        };
        if self.steps == 0 {
            return bad("steps", "must be at least 1".into());
        }
        if self.batch == 0 {
            return bad("batch", "must be at least 1".into());
        }
        if self.crop.iter().any(|&c| c == 0 || c % 32 != 0) {
            return bad(
                "crop",
                format!(
                    "{:?}: both sides must be positive multiples of 32",
                    self.crop
                ),
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", format!("{} must be positive", self.lr));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad("momentum", format!("{} must be in [0, 1)", self.momentum));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", format!("{} must be ≥ 0", self.weight_decay));
        }
        if !(self.poly_power.is_finite() && self.poly_power >= 0.0) {
            return bad("poly_power", format!("{} must be ≥ 0", self.poly_power));
        }
        if self.std.iter().any(|&s| !(s.is_finite() && s > 0.0)) {
            return bad(
                "std",
                format!("{:?}: every entry must be positive", self.std),
            );
        }
        if self
            .class_weights
            .iter()
            .any(|&w| !(w.is_finite() && w >= 0.0))
        {
            return bad("class_weights", "weights must be finite and ≥ 0".into());
        }
        if let Some(c) = num_classes
            && !self.class_weights.is_empty()
            && self.class_weights.len() != c
        {
            return bad(
                "class_weights",
                format!(
                    "has {} entries, the dataset has {c} classes",
                    self.class_weights.len()
                ),
            );
        }
        if self.loss != LossKind::Ce {
            self.contrast.validate(path)?;
        }
        if self.model.width == 0 || self.model.decoder == 0 || self.model.proj_dim == 0 {
            return bad(
                "model",
                "width, decoder and proj_dim must be positive".into(),
            );
        }
        Ok(())
    }
}
