//! What a deployed model needs besides its weights: class names and colours, which classes are
//! defects, the input size and normalisation it was trained with, its metrics and where it came
//! from. Stored inside the ONNX file (`metadata_props`) so a model can never be separated from
//! the facts needed to run and judge it.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `metadata_props` key holding the whole [`ModelMeta`] as JSON: the authoritative copy.
pub const META_KEY: &str = "contextrast.meta";

/// Model metadata. `class_names`, `colors` and `defect` are indexed by class id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelMeta {
    /// Class names, indexed by class id (0 is the background).
    pub class_names: Vec<String>,
    /// Overlay colour per class (RGB).
    pub colors: Vec<[u8; 3]>,
    /// Whether a class counts as a defect (drives the reject decision).
    pub defect: Vec<bool>,
    /// Input height the model was trained and validated at.
    pub input_h: usize,
    /// Input width the model was trained and validated at.
    pub input_w: usize,
    /// Per-channel normalisation applied to RGB in [0, 1]: `(x − mean) / std`.
    pub mean: [f32; 3],
    /// Per-channel divisor of that normalisation.
    pub std: [f32; 3],
    /// Input height and width must be multiples of this (the network's deepest stride).
    pub size_multiple: usize,
    /// Validation metrics at export (e.g. `miou`, `biou`, `iou.scratch`).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Where the model came from: `git_rev`, `data`, `steps`, `seed`, `date`, `tool_version`.
    #[serde(default)]
    pub provenance: BTreeMap<String, String>,
}

impl ModelMeta {
    /// Number of classes the model predicts.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Checks internal consistency; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        let c = self.class_names.len();
        if c == 0 {
            return Err("class_names is empty".into());
        }
        if self.colors.len() != c || self.defect.len() != c {
            return Err(format!(
                "{c} class_names but {} colors and {} defect flags",
                self.colors.len(),
                self.defect.len()
            ));
        }
        // The plain `classes` key is a comma list: a comma (or an empty name) would corrupt it.
        if let Some(bad) = self
            .class_names
            .iter()
            .find(|n| n.is_empty() || n.contains(','))
        {
            return Err(format!("class name `{bad}` is empty or contains a comma"));
        }
        if self.size_multiple == 0 {
            return Err("size_multiple is 0".into());
        }
        if self.input_h == 0
            || self.input_w == 0
            || !self.input_h.is_multiple_of(self.size_multiple)
            || !self.input_w.is_multiple_of(self.size_multiple)
        {
            return Err(format!(
                "input size {}x{} is not a positive multiple of size_multiple {}",
                self.input_h, self.input_w, self.size_multiple
            ));
        }
        if self.mean.iter().any(|v| !v.is_finite())
            || self
                .std
                .iter()
                .any(|v| v.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) || !v.is_finite())
        {
            return Err(format!(
                "mean {:?} / std {:?} must be finite with std > 0",
                self.mean, self.std
            ));
        }
        // JSON has no NaN: a non-finite metric would not survive the round trip.
        if let Some((k, v)) = self.metrics.iter().find(|(_, v)| !v.is_finite()) {
            return Err(format!("metric `{k}` is {v}"));
        }
        Ok(())
    }

    /// The `metadata_props` entries: [`META_KEY`] (JSON) plus plain keys that tools without a
    /// JSON parser (Netron, shell scripts, other runtimes) can read: `classes` and
    /// `defect_classes` (comma lists of names), `mean` and `std` (comma lists), `input_size`
    /// (`HxW`).
    pub fn to_props(&self) -> Result<Vec<(String, String)>, String> {
        self.validate()?;
        let json =
            serde_json::to_string(self).map_err(|e| format!("cannot serialise metadata: {e}"))?;
        let list = |v: &[f32; 3]| {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let defects: Vec<&str> = self
            .class_names
            .iter()
            .zip(&self.defect)
            .filter(|(_, d)| **d)
            .map(|(n, _)| n.as_str())
            .collect();
        Ok(vec![
            (META_KEY.to_string(), json),
            ("classes".into(), self.class_names.join(",")),
            ("defect_classes".into(), defects.join(",")),
            ("mean".into(), list(&self.mean)),
            ("std".into(), list(&self.std)),
            (
                "input_size".into(),
                format!("{}x{}", self.input_h, self.input_w),
            ),
        ])
    }

    /// Reads the metadata from `metadata_props` entries. `Ok(None)` when [`META_KEY`] is absent
    /// (a foreign model); an error when it is present but malformed or inconsistent.
    pub fn from_props<'a>(
        props: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Option<ModelMeta>, String> {
        let Some((_, json)) = props.into_iter().find(|(k, _)| *k == META_KEY) else {
            return Ok(None);
        };
        let meta: ModelMeta =
            serde_json::from_str(json).map_err(|e| format!("metadata `{META_KEY}`: {e}"))?;
        meta.validate()
            .map_err(|e| format!("metadata `{META_KEY}`: {e}"))?;
        Ok(Some(meta))
    }
}

/// A realistic metadata record, for the tests of this crate and of the exporter above it.
#[doc(hidden)]
pub fn sample() -> ModelMeta {
    ModelMeta {
        class_names: vec![
            "background".into(),
            "scratch".into(),
            "dent".into(),
            "stain".into(),
        ],
        colors: vec![[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]],
        defect: vec![false, true, true, false],
        input_h: 512,
        input_w: 640,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        size_multiple: 32,
        metrics: BTreeMap::from([
            ("miou".into(), 0.8123456789012345),
            ("biou".into(), 1.0 / 3.0),
            ("pixel_accuracy".into(), 0.987),
        ]),
        provenance: BTreeMap::from([
            ("git_rev".into(), "11c1dfc".into()),
            ("seed".into(), "42".into()),
            ("data".into(), "runs/line3 (1200 images)".into()),
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(m: &ModelMeta) -> Vec<(String, String)> {
        m.to_props().unwrap()
    }

    #[test]
    fn round_trips_exactly_through_props() {
        let m = sample();
        let p = props(&m);
        let back = ModelMeta::from_props(p.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(back, Some(m));
    }

    #[test]
    fn plain_keys_hold_readable_values() {
        let p: BTreeMap<_, _> = props(&sample()).into_iter().collect();
        assert_eq!(p["classes"], "background,scratch,dent,stain");
        assert_eq!(p["defect_classes"], "scratch,dent");
        assert_eq!(p["mean"], "0.485,0.456,0.406");
        assert_eq!(p["std"], "0.229,0.224,0.225");
        assert_eq!(p["input_size"], "512x640");
    }

    #[test]
    fn absent_key_is_none_and_bad_json_is_an_error() {
        assert_eq!(ModelMeta::from_props([("classes", "a,b")]).unwrap(), None);
        let err = ModelMeta::from_props([(META_KEY, "{not json")]).unwrap_err();
        assert!(err.contains(META_KEY), "{err}");
    }

    #[test]
    fn validation_names_the_problem() {
        let mut m = sample();
        m.colors.pop();
        assert!(m.validate().unwrap_err().contains("3 colors"));
        let mut m = sample();
        m.class_names[1] = "scratch,deep".into();
        assert!(m.validate().unwrap_err().contains("comma"));
        let mut m = sample();
        m.input_w = 650;
        assert!(m.validate().unwrap_err().contains("512x650"));
        let mut m = sample();
        m.std[2] = 0.0;
        assert!(m.validate().unwrap_err().contains("std"));
        let mut m = sample();
        m.metrics.insert("miou".into(), f64::NAN);
        assert!(m.validate().unwrap_err().contains("miou"));
    }
}
