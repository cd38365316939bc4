//! Evaluation of a model on a dataset split: mIoU, per-class IoU, Boundary IoU and the confusion
//! matrix. Works the same for the engine's own checkpoint and for an ONNX file run by tract.
use crate::backend::{Backend, Shape};
use crate::data::dataset::Dataset;
use crate::metrics::{BoundaryIou, ConfusionMatrix};
use crate::nn::exec::{Mode, forward};
use crate::nn::graph::Graph;
use crate::nn::params::Params;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Something that turns a normalised CHW image into per-class logits `[C, h, w]`.
pub trait Predictor {
    /// Number of classes `C` it predicts.
    fn num_classes(&self) -> usize;
    /// Logits `[C, h, w]` of one normalised `[3, h, w]` image, at the image's size.
    fn logits(&mut self, chw: &[f32], h: usize, w: usize) -> Result<Vec<f32>>;
}

/// Evaluation results; `miou`, `boundary_iou` and `per_class` are the keys tools read.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalReport {
    /// Mean IoU over the classes that occur in prediction or truth.
    pub miou: f64,
    /// Mean Boundary IoU over the classes whose boundary bands appeared.
    pub boundary_iou: f64,
    /// Fraction of labelled pixels predicted correctly.
    pub pixel_accuracy: f64,
    /// Class name → IoU (classes absent from both prediction and truth are left out).
    pub per_class: BTreeMap<String, f64>,
    /// Class name → Boundary IoU (classes whose bands never appeared are left out).
    pub per_class_boundary: BTreeMap<String, f64>,
    /// The dataset's class names, in id order (the confusion matrix's rows and columns).
    pub class_names: Vec<String>,
    /// `confusion[truth][pred]` pixel counts.
    pub confusion: Vec<Vec<u64>>,
    /// Number of images evaluated.
    pub images: usize,
}

/// Pads a CHW image at the bottom and right to multiples of `m` (zeros = the mean colour after
/// normalisation), so any frame size can go through a network with a stride-32 encoder.
pub fn pad_chw(chw: &[f32], c: usize, h: usize, w: usize, m: usize) -> (Vec<f32>, usize, usize) {
    let (ph, pw) = (h.div_ceil(m) * m, w.div_ceil(m) * m);
    if (ph, pw) == (h, w) {
        return (chw.to_vec(), h, w);
    }
    let mut out = vec![0.0; c * ph * pw];
    for ch in 0..c {
        for y in 0..h {
            let src = &chw[(ch * h + y) * w..(ch * h + y + 1) * w];
            out[(ch * ph + y) * pw..(ch * ph + y) * pw + w].copy_from_slice(src);
        }
    }
    (out, ph, pw)
}

/// Crops `[C, ph, pw]` back to `[C, h, w]`.
pub fn crop_chw(x: &[f32], c: usize, ph: usize, pw: usize, h: usize, w: usize) -> Vec<f32> {
    if (ph, pw) == (h, w) {
        return x.to_vec();
    }
    let mut out = Vec::with_capacity(c * h * w);
    for ch in 0..c {
        for y in 0..h {
            out.extend_from_slice(&x[(ch * ph + y) * pw..(ch * ph + y) * pw + w]);
        }
    }
    out
}

pub use contextrast_model::argmax::argmax_chw;

/// The engine's own model as a [`Predictor`] (eval-mode batch norm).
pub struct EnginePredictor<'a, B: Backend> {
    /// The backend it runs on.
    pub be: &'a B,
    /// The network.
    pub graph: &'a Graph,
    /// Its parameters (`&mut` because [`forward`] takes them so; eval mode leaves them as is).
    pub params: &'a mut Params<B>,
}

impl<B: Backend> Predictor for EnginePredictor<'_, B> {
    fn num_classes(&self) -> usize {
        self.graph.num_classes
    }
    fn logits(&mut self, chw: &[f32], h: usize, w: usize) -> Result<Vec<f32>> {
        let (x, ph, pw) = pad_chw(chw, 3, h, w, self.graph.size_multiple);
        let buf = self.be.upload(&x)?;
        let acts = forward(
            self.be,
            self.graph,
            self.params,
            buf,
            Shape::new(1, 3, ph, pw),
            Mode::Eval,
            false,
        )?;
        let out = self.be.download(acts.get(self.graph.logits)?)?;
        Ok(crop_chw(&out, self.graph.num_classes, ph, pw, h, w))
    }
}

impl Predictor for contextrast_model::onnx_model::OnnxModel {
    fn num_classes(&self) -> usize {
        contextrast_model::onnx_model::OnnxModel::num_classes(self)
    }
    fn logits(&mut self, chw: &[f32], h: usize, w: usize) -> Result<Vec<f32>> {
        Ok(self.logits_chw(chw, h, w)?)
    }
}

/// Runs `model` over `indices` of `ds` and accumulates the metrics.
pub fn evaluate(
    model: &mut dyn Predictor,
    ds: &Dataset,
    indices: &[usize],
    mean: [f32; 3],
    std: [f32; 3],
) -> Result<EvalReport> {
    let c = ds.classes.classes.len();
    if model.num_classes() != c {
        return Err(Error::data(
            &ds.root,
            format!(
                "the model has {} classes, the dataset {c}",
                model.num_classes()
            ),
        ));
    }
    if indices.is_empty() {
        return Err(Error::data(&ds.root, "no images to evaluate"));
    }
    let mut cm = ConfusionMatrix::new(c);
    let mut biou = BoundaryIou::new(c);
    for &i in indices {
        let (img, mask) = ds.load_item(i)?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        let chw = crate::data::preprocess(&img, mean, std);
        let logits = model.logits(&chw, h, w)?;
        let pred = argmax_chw(&logits, c, h * w);
        cm.add(&pred, &mask)?;
        biou.add(&pred, &mask, h, w)?;
    }
    let names = ds.classes.names();
    let per_class = names
        .iter()
        .zip(cm.iou())
        .filter_map(|(n, v)| v.map(|v| (n.clone(), v)))
        .collect();
    let per_class_boundary = names
        .iter()
        .zip(biou.per_class())
        .filter_map(|(n, v)| v.map(|v| (n.clone(), v)))
        .collect();
    Ok(EvalReport {
        miou: cm.miou(),
        boundary_iou: biou.mean(),
        pixel_accuracy: cm.pixel_accuracy(),
        per_class,
        per_class_boundary,
        class_names: names,
        confusion: cm.counts(),
        images: indices.len(),
    })
}
