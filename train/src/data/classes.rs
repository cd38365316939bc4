//! `classes.toml`: the class list of a dataset (names, display colours, which are defects).
//! Class ids are positions in the list; 255 is reserved for "ignore" in masks.
use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};
use contextrast_model::atomic::write_atomic;

/// Class ids of [`Classes::synthetic_default`]: the belt (background).
pub const BELT: u8 = 0;
/// Synthetic class id: a part on the belt.
pub const PART: u8 = 1;
/// Synthetic class id: a scratch (defect).
pub const SCRATCH: u8 = 2;
/// Synthetic class id: a pit (defect).
pub const PIT: u8 = 3;
/// Synthetic class id: a stain (defect).
pub const STAIN: u8 = 4;

pub use contextrast_model::IGNORE;

/// One class: id = its position in [`Classes::classes`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassInfo {
    /// Unique, non-empty name.
    pub name: String,
    /// Overlay colour for event images and previews.
    pub color: [u8; 3],
    /// Whether pixels of this class count as a defect when deciding a verdict.
    #[serde(default)]
    pub defect: bool,
}

/// The class list, stored as `[[class]]` tables so the file reads top to bottom as ids 0, 1, 2...
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classes {
    /// The classes, in id order.
    #[serde(rename = "class", default)]
    pub classes: Vec<ClassInfo>,
}

impl Classes {
    /// Reads and validates `classes.toml`.
    pub fn load(path: impl AsRef<Path>) -> Result<Classes> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let classes: Classes = toml::from_str(&text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        classes.validate(path)?;
        Ok(classes)
    }

    /// Writes `classes.toml` atomically (temp file + rename), so a reader never sees half a file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.validate(path)?;
        let text = toml::to_string(self).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        Ok(write_atomic(path, text.as_bytes())?)
    }

    /// The classes of the synthetic line: belt (background), part, and three defects.
    pub fn synthetic_default() -> Classes {
        let c = |name: &str, color: [u8; 3], defect: bool| ClassInfo {
            name: name.to_string(),
            color,
            defect,
        };
        Classes {
            classes: vec![
                c("belt", [40, 40, 40], false),
                c("part", [70, 130, 180], false),
                c("scratch", [255, 0, 0], true),
                c("pit", [255, 200, 0], true),
                c("stain", [200, 0, 255], true),
            ],
        }
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// Whether there is no class (a validated list never is).
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// The class names, in id order.
    pub fn names(&self) -> Vec<String> {
        self.classes.iter().map(|c| c.name.clone()).collect()
    }

    /// Ids of the defect classes, ascending.
    pub fn defect_ids(&self) -> Vec<u8> {
        (0u8..)
            .zip(&self.classes)
            .filter(|(_, c)| c.defect)
            .map(|(i, _)| i)
            .collect()
    }

    /// The id of the class called `name`.
    pub fn id_of(&self, name: &str) -> Option<u8> {
        self.classes
            .iter()
            .position(|c| c.name == name)
            .and_then(|i| u8::try_from(i).ok())
    }

    /// True if `id` is a valid mask value: a class id or [`IGNORE`].
    pub fn is_valid_label(&self, id: u8) -> bool {
        id == IGNORE || usize::from(id) < self.classes.len()
    }

    /// Checks what the rest of the engine assumes: 1..=255 classes with distinct, non-empty names.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let cfg = |key: String, msg: String| Error::Config {
            path: path.to_path_buf(),
            key,
            msg,
        };
        if self.classes.is_empty() {
            return Err(cfg("class".into(), "no [[class]] entries".into()));
        }
        if self.classes.len() > usize::from(IGNORE) {
            return Err(cfg(
                "class".into(),
                format!(
                    "{} classes, at most 255 (id 255 means ignore)",
                    self.classes.len()
                ),
            ));
        }
        let mut seen = HashSet::new();
        for (i, c) in self.classes.iter().enumerate() {
            if c.name.trim().is_empty() {
                return Err(cfg(format!("class[{i}].name"), "empty name".into()));
            }
            if !seen.insert(c.name.as_str()) {
                return Err(cfg(
                    format!("class[{i}].name"),
                    format!("duplicate name {:?}", c.name),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_default_round_trips_through_toml() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("classes.toml");
        let c = Classes::synthetic_default();
        c.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("[[class]]"), "{text}");
        assert_eq!(Classes::load(&path).unwrap(), c);
        assert_eq!(c.names(), ["belt", "part", "scratch", "pit", "stain"]);
        assert_eq!(c.defect_ids(), [2, 3, 4]);
        assert_eq!(c.id_of("pit"), Some(3));
        assert!(c.is_valid_label(4) && c.is_valid_label(IGNORE) && !c.is_valid_label(5));
    }

    #[test]
    fn parses_the_documented_format_with_defect_defaulting_to_false() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("classes.toml");
        std::fs::write(
            &path,
            "[[class]]\nname = \"bg\"\ncolor = [0,0,0]\n\n[[class]]\nname = \"scratch\"\ncolor = [255,0,0]\ndefect = true\n",
        )
        .unwrap();
        let c = Classes::load(&path).unwrap();
        assert_eq!(c.len(), 2);
        assert!(!c.classes[0].defect);
        assert_eq!(c.defect_ids(), [1]);
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("my-classes.toml");
        let cases = [
            ("[[class]]\nname = \"a\"\ncolor = [0,0]\n", "cannot parse"),
            (
                "[[class]]\nname = \"a\"\ncolor = [0,0,0]\n[[class]]\nname = \"a\"\ncolor = [1,1,1]\n",
                "duplicate",
            ),
            ("", "no [[class]]"),
        ];
        for (text, want) in cases {
            std::fs::write(&path, text).unwrap();
            let msg = Classes::load(&path).unwrap_err().to_string();
            contextrast_model::testing::assert_mentions(&msg, &["my-classes.toml", want]);
        }
        let missing = dir.path().join("absent.toml");
        let msg = Classes::load(&missing).unwrap_err().to_string();
        assert!(msg.contains("absent.toml"), "{msg}");
    }
}
