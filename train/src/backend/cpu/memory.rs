//! Host memory: a buffer is a `Vec`, so uploads and downloads are copies.
use super::{Cpu, elementwise};
use crate::Result;
use crate::backend::ops::Memory;

impl Memory for Cpu {
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
}
