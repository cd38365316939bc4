//! CPU reference backend: plain `Vec`s, rayon for threads, `gemm` for the matrix products.
//! Every op checks its buffer lengths first and returns `Error::Shape` instead of panicking;
//! the op bodies live in one file per family and `impl Backend` below only dispatches.
use super::{Backend, ConvSpec, Shape};
use crate::{Error, Result};

mod batchnorm;
mod conv;
mod elementwise;
/// Public so the runtime's forward-only engine lays out convolutions exactly as training does.
pub mod im2col;
mod layout;
mod loss;
mod matmul;
mod normalize;
mod optim;
mod peak;
mod resize;

#[cfg(test)]
mod tests;

pub use peak::gemm_peak_gflops;

/// The CPU backend. Threads come from rayon's global pool (size it with `RAYON_NUM_THREADS` or
/// `rayon::ThreadPoolBuilder::build_global`).
#[derive(Clone, Debug, Default)]
pub struct Cpu;

/// Fails with `Error::Shape` unless `buf` has exactly `want` elements; `op` and `what` name the
/// call and the argument so the message says which tensor was wrong.
pub(super) fn check_len(op: &str, what: &str, have: usize, want: usize) -> Result<()> {
    if have == want {
        Ok(())
    } else {
        Err(Error::Shape(format!(
            "{op}: `{what}` has {have} elements, expected {want}"
        )))
    }
}

/// Like [`check_len`] for an NCHW tensor, naming the shape in the message.
pub(super) fn check_shape(op: &str, what: &str, have: usize, shape: Shape) -> Result<()> {
    if have == shape.numel() {
        Ok(())
    } else {
        Err(Error::Shape(format!(
            "{op}: `{what}` has {have} elements, expected {} for shape {shape}",
            shape.numel()
        )))
    }
}

/// Elementwise ops below this length run on the calling thread: spawning costs more.
pub(super) const PAR_MIN: usize = 1 << 14;

impl Backend for Cpu {
    type Buf = Vec<f32>;
    type Labels = Vec<u8>;

    fn name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn zeros(&self, len: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; len])
    }
    fn upload(&self, data: &[f32]) -> Result<Vec<f32>> {
        Ok(data.to_vec())
    }
    fn download(&self, buf: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(buf.clone())
    }
    fn upload_labels(&self, data: &[u8]) -> Result<Vec<u8>> {
        Ok(data.to_vec())
    }
    fn download_labels(&self, labels: &Vec<u8>) -> Result<Vec<u8>> {
        Ok(labels.clone())
    }
    fn len(&self, buf: &Vec<f32>) -> usize {
        buf.len()
    }
    fn labels_len(&self, labels: &Vec<u8>) -> usize {
        labels.len()
    }
    fn fill(&self, buf: &mut Vec<f32>, value: f32) -> Result<()> {
        elementwise::fill(buf, value);
        Ok(())
    }

    fn add(&self, a: &Vec<f32>, b: &Vec<f32>) -> Result<Vec<f32>> {
        elementwise::add(a, b)
    }
    fn add_assign(&self, acc: &mut Vec<f32>, x: &Vec<f32>) -> Result<()> {
        elementwise::add_assign(acc, x)
    }
    fn scale(&self, buf: &mut Vec<f32>, s: f32) -> Result<()> {
        elementwise::scale(buf, s);
        Ok(())
    }
    fn relu_forward(&self, x: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(elementwise::relu_forward(x))
    }
    fn relu_backward(&self, dy: &Vec<f32>, y: &Vec<f32>) -> Result<Vec<f32>> {
        elementwise::relu_backward(dy, y)
    }

    fn conv2d_forward(
        &self,
        x: &Vec<f32>,
        xs: Shape,
        w: &Vec<f32>,
        b: Option<&Vec<f32>>,
        spec: &ConvSpec,
    ) -> Result<Vec<f32>> {
        conv::forward(x, xs, w, b.map(|b| b.as_slice()), spec, None)
    }
    fn conv2d_backward_input(
        &self,
        dy: &Vec<f32>,
        w: &Vec<f32>,
        xs: Shape,
        spec: &ConvSpec,
    ) -> Result<Vec<f32>> {
        conv::backward_input(dy, w, xs, spec, None)
    }
    fn conv2d_backward_weight(
        &self,
        x: &Vec<f32>,
        xs: Shape,
        dy: &Vec<f32>,
        spec: &ConvSpec,
        dw: &mut Vec<f32>,
        db: Option<&mut Vec<f32>>,
    ) -> Result<()> {
        conv::backward_weight(x, xs, dy, spec, dw, db.map(|b| b.as_mut_slice()), None)
    }

    fn batchnorm_forward_train(
        &self,
        x: &Vec<f32>,
        xs: Shape,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        running_mean: &mut Vec<f32>,
        running_var: &mut Vec<f32>,
        momentum: f32,
        eps: f32,
    ) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        batchnorm::forward_train(x, xs, gamma, beta, running_mean, running_var, momentum, eps)
    }
    fn batchnorm_forward_eval(
        &self,
        x: &Vec<f32>,
        xs: Shape,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        running_mean: &Vec<f32>,
        running_var: &Vec<f32>,
        eps: f32,
    ) -> Result<Vec<f32>> {
        batchnorm::forward_eval(x, xs, gamma, beta, running_mean, running_var, eps)
    }
    fn batchnorm_backward(
        &self,
        dy: &Vec<f32>,
        x: &Vec<f32>,
        xs: Shape,
        gamma: &Vec<f32>,
        mean: &Vec<f32>,
        invstd: &Vec<f32>,
        dgamma: &mut Vec<f32>,
        dbeta: &mut Vec<f32>,
    ) -> Result<Vec<f32>> {
        batchnorm::backward(dy, x, xs, gamma, mean, invstd, dgamma, dbeta)
    }

    fn resize_bilinear_forward(
        &self,
        x: &Vec<f32>,
        xs: Shape,
        out_h: usize,
        out_w: usize,
    ) -> Result<Vec<f32>> {
        resize::forward(x, xs, out_h, out_w)
    }
    fn resize_bilinear_backward(
        &self,
        dy: &Vec<f32>,
        xs: Shape,
        out_h: usize,
        out_w: usize,
    ) -> Result<Vec<f32>> {
        resize::backward(dy, xs, out_h, out_w)
    }
    fn concat_channels(&self, parts: &[(&Vec<f32>, Shape)]) -> Result<Vec<f32>> {
        let parts: Vec<(&[f32], Shape)> = parts.iter().map(|(b, s)| (b.as_slice(), *s)).collect();
        layout::concat_channels(&parts)
    }
    fn split_channels(&self, dy: &Vec<f32>, shapes: &[Shape]) -> Result<Vec<Vec<f32>>> {
        layout::split_channels(dy, shapes)
    }

    fn l2_normalize_forward(&self, x: &Vec<f32>, xs: Shape) -> Result<Vec<f32>> {
        normalize::l2_forward(x, xs)
    }
    fn l2_normalize_backward(&self, dy: &Vec<f32>, x: &Vec<f32>, xs: Shape) -> Result<Vec<f32>> {
        normalize::l2_backward(dy, x, xs)
    }

    fn softmax_cross_entropy(
        &self,
        logits: &Vec<f32>,
        shape: Shape,
        labels: &Vec<u8>,
        class_weights: Option<&Vec<f32>>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let (loss, grad) = loss::softmax_cross_entropy(
            logits,
            shape,
            labels,
            class_weights.map(|w| w.as_slice()),
        )?;
        Ok((vec![loss], grad))
    }
    fn argmax_channels(&self, logits: &Vec<f32>, shape: Shape) -> Result<Vec<u8>> {
        loss::argmax_channels(logits, shape)
    }

    fn sgd_step(
        &self,
        param: &mut Vec<f32>,
        grad: &Vec<f32>,
        velocity: &mut Vec<f32>,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
    ) -> Result<()> {
        optim::sgd_step(param, grad, velocity, lr, momentum, weight_decay)
    }
}
