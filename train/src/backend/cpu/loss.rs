//! Softmax cross-entropy and argmax over channels. Per image the channel reductions are
//! whole-plane passes (max, then exp-sum), so one exp per logit, written straight into the
//! gradient buffer; images run in parallel and loss partials are summed in f64 in image order.
use super::Cpu;
use super::{check_len, check_shape};
use crate::backend::ops::{ContrastOps, LossOps};
use crate::backend::{IGNORE, Shape};
use crate::{Error, Result};
use contextrast_model::argmax::argmax_into;
use rayon::prelude::*;

/// Largest class count a `u8` label map can hold next to [`IGNORE`].
const MAX_CLASSES: usize = IGNORE as usize;

fn check_classes(op: &str, shape: Shape) -> Result<()> {
    if shape.c == 0 || shape.c > MAX_CLASSES {
        return Err(Error::Shape(format!(
            "{op}: {} classes in {shape}; u8 labels allow 1..={MAX_CLASSES}",
            shape.c
        )));
    }
    Ok(())
}

/// Mean (weighted: `Σ w[yᵢ]·ℓᵢ / Σ w[yᵢ]`, PyTorch) cross-entropy over labelled pixels and the
/// gradient of that mean. Labels other than [`IGNORE`] must be below `shape.c`.
fn softmax_cross_entropy(
    logits: &[f32],
    shape: Shape,
    labels: &[u8],
    class_weights: Option<&[f32]>,
) -> Result<(f32, Vec<f32>)> {
    const OP: &str = "softmax_cross_entropy";
    check_classes(OP, shape)?;
    check_shape(OP, "logits", logits.len(), shape)?;
    check_len(OP, "labels", labels.len(), shape.n * shape.hw())?;
    if let Some(w) = class_weights {
        check_len(OP, "class_weights", w.len(), shape.c)?;
    }
    if let Some((i, &l)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| l != IGNORE && usize::from(l) >= shape.c)
    {
        return Err(Error::Shape(format!(
            "{OP}: label {l} at pixel {i} is out of range for {} classes",
            shape.c
        )));
    }
    let weight = |l: u8| class_weights.map_or(1.0, |w| f64::from(w[usize::from(l)]));
    let total: f64 = labels
        .iter()
        .filter(|&&l| l != IGNORE)
        .map(|&l| weight(l))
        .sum();
    let mut grad = vec![0.0f32; logits.len()];
    if total == 0.0 {
        return Ok((0.0, grad));
    }
    let (hw, chw) = (shape.hw(), shape.c * shape.hw());
    let partials: Vec<f64> = grad
        .par_chunks_mut(chw)
        .zip(logits.par_chunks(chw).zip(labels.par_chunks(hw)))
        .map(|(g, (x, y))| {
            let mut mx = x[..hw].to_vec();
            for plane in x.chunks(hw).skip(1) {
                mx.iter_mut().zip(plane).for_each(|(m, &v)| *m = m.max(v));
            }
            let mut se = vec![0.0f32; hw];
            for (gp, xp) in g.chunks_mut(hw).zip(x.chunks(hw)) {
                for (((e, &v), &m), s) in gp.iter_mut().zip(xp).zip(&mx).zip(se.iter_mut()) {
                    *e = (v - m).exp();
                    *s += *e;
                }
            }
            let mut loss = 0.0f64;
            for (p, &l) in y.iter().enumerate() {
                if l == IGNORE {
                    (0..shape.c).for_each(|c| g[c * hw + p] = 0.0);
                    continue;
                }
                let (w, lc) = (weight(l), usize::from(l));
                loss += w * (f64::from(se[p]).ln() + f64::from(mx[p]) - f64::from(x[lc * hw + p]));
                let k = (w / total) as f32;
                let inv = 1.0 / se[p];
                for c in 0..shape.c {
                    let prob = g[c * hw + p] * inv;
                    g[c * hw + p] = k * (prob - if c == lc { 1.0 } else { 0.0 });
                }
            }
            loss
        })
        .collect();
    Ok(((partials.iter().sum::<f64>() / total) as f32, grad))
}

/// Per-pixel argmax over channels; ties go to the lowest class id.
fn argmax_channels(logits: &[f32], shape: Shape) -> Result<Vec<u8>> {
    const OP: &str = "argmax_channels";
    check_classes(OP, shape)?;
    check_shape(OP, "logits", logits.len(), shape)?;
    let (hw, chw) = (shape.hw(), shape.c * shape.hw());
    let mut out = vec![0u8; shape.n * hw];
    if out.is_empty() {
        return Ok(out);
    }
    out.par_chunks_mut(hw)
        .zip(logits.par_chunks(chw))
        .for_each(|(out, x)| argmax_into(x, out));
    Ok(out)
}

impl LossOps for Cpu {
    fn softmax_cross_entropy(
        &self,
        logits: &Vec<f32>,
        shape: Shape,
        labels: &Vec<u8>,
        class_weights: Option<&Vec<f32>>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let (loss, grad) =
            softmax_cross_entropy(logits, shape, labels, class_weights.map(|w| w.as_slice()))?;
        Ok((vec![loss], grad))
    }
    fn argmax_channels(&self, logits: &Vec<f32>, shape: Shape) -> Result<Vec<u8>> {
        argmax_channels(logits, shape)
    }
}

/// L_PA through the default: the CPU reference itself.
impl ContrastOps for Cpu {}
