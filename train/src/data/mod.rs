//! Training data: the dataset format (`images/`, `masks/`, `classes.toml`, split lists), the
//! procedural production line that produces it, augmentation, and the prefetching loader.
pub mod augment;
pub mod classes;
pub mod cvat;
pub mod dataset;
pub mod loader;
pub mod photometric;
pub mod synth;
mod synth_noise;
mod synth_render;
mod synth_scene;

pub use augment::{AugmentConfig, Sample, augment};
pub use classes::{ClassInfo, Classes, IGNORE};
pub use dataset::{Dataset, Item};
pub use loader::{Batch, Loader, preprocess};
pub use synth::{BBox, DefectTruth, FrameTruth, SynthManifest, Variant};

#[cfg(test)]
mod dataset_tests;
#[cfg(test)]
mod loader_tests;
#[cfg(test)]
mod synth_tests;
