//! Channel concatenation and its inverse. In NCHW each image's channels are contiguous, so both
//! are block copies: parallel over images (concat) or over parts (split).
use super::Cpu;
use super::check_shape;
use crate::backend::Shape;
use crate::backend::ops::LayoutOps;
use crate::{Error, Result};
use rayon::prelude::*;

/// The common `[n, Σc, h, w]` shape of `shapes`, or an error naming the first part that differs.
fn joint(op: &str, shapes: &[Shape]) -> Result<Shape> {
    let Some(&first) = shapes.first() else {
        return Err(Error::Shape(format!("{op}: no parts")));
    };
    for (i, s) in shapes.iter().enumerate() {
        if (s.n, s.h, s.w) != (first.n, first.h, first.w) {
            return Err(Error::Shape(format!(
                "{op}: part {i} has shape {s}, part 0 has {first}"
            )));
        }
    }
    Ok(first.with_c(shapes.iter().map(|s| s.c).sum()))
}

fn concat_channels(parts: &[(&[f32], Shape)]) -> Result<Vec<f32>> {
    const OP: &str = "concat_channels";
    let shapes: Vec<Shape> = parts.iter().map(|p| p.1).collect();
    let out_shape = joint(OP, &shapes)?;
    for (i, (buf, s)) in parts.iter().enumerate() {
        check_shape(OP, &format!("part {i}"), buf.len(), *s)?;
    }
    let mut out = vec![0.0; out_shape.numel()];
    if out.is_empty() {
        return Ok(out);
    }
    let hw = out_shape.hw();
    out.par_chunks_mut(out_shape.c * hw)
        .enumerate()
        .for_each(|(img, out)| {
            let mut at = 0;
            for (buf, s) in parts {
                let len = s.c * hw;
                out[at..at + len].copy_from_slice(&buf[img * len..(img + 1) * len]);
                at += len;
            }
        });
    Ok(out)
}

fn split_channels(dy: &[f32], shapes: &[Shape]) -> Result<Vec<Vec<f32>>> {
    const OP: &str = "split_channels";
    let in_shape = joint(OP, shapes)?;
    check_shape(OP, "dy", dy.len(), in_shape)?;
    let hw = in_shape.hw();
    let offsets: Vec<usize> = shapes
        .iter()
        .scan(0, |at, s| {
            let start = *at;
            *at += s.c * hw;
            Some(start)
        })
        .collect();
    Ok(shapes
        .par_iter()
        .zip(&offsets)
        .map(|(s, &start)| {
            let len = s.c * hw;
            (0..s.n)
                .flat_map(|img| {
                    let base = img * in_shape.c * hw + start;
                    dy[base..base + len].iter().copied()
                })
                .collect::<Vec<f32>>()
        })
        .collect())
}

impl LayoutOps for Cpu {
    fn concat_channels(&self, parts: &[(&Vec<f32>, Shape)]) -> Result<Vec<f32>> {
        let parts: Vec<(&[f32], Shape)> = parts.iter().map(|(b, s)| (b.as_slice(), *s)).collect();
        concat_channels(&parts)
    }
    fn split_channels(&self, dy: &Vec<f32>, shapes: &[Shape]) -> Result<Vec<Vec<f32>>> {
        split_channels(dy, shapes)
    }
}
