//! Device memory: buffers are `CudaSlice`s on the backend's one stream; downloads wait for it.
use super::{Cuda, dim, driver_err, elems_cfg};
use crate::Result;
use crate::backend::ops::Memory;
use cudarc::driver::CudaSlice;

impl Memory for Cuda {
    type Buf = CudaSlice<f32>;
    type Labels = CudaSlice<u8>;

    fn name(&self) -> String {
        self.name.clone()
    }

    fn zeros(&self, len: usize) -> Result<Self::Buf> {
        self.alloc(len)
    }

    fn upload(&self, data: &[f32]) -> Result<Self::Buf> {
        self.stream
            .clone_htod(data)
            .map_err(|e| driver_err("upload", e))
    }

    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>> {
        let v = self
            .stream
            .clone_dtoh(buf)
            .map_err(|e| driver_err("download", e))?;
        self.synchronize()?;
        Ok(v)
    }

    fn upload_labels(&self, data: &[u8]) -> Result<Self::Labels> {
        self.stream
            .clone_htod(data)
            .map_err(|e| driver_err("upload_labels", e))
    }

    fn download_labels(&self, labels: &Self::Labels) -> Result<Vec<u8>> {
        let v = self
            .stream
            .clone_dtoh(labels)
            .map_err(|e| driver_err("download_labels", e))?;
        self.synchronize()?;
        Ok(v)
    }

    fn len(&self, buf: &Self::Buf) -> usize {
        buf.len()
    }

    fn labels_len(&self, labels: &Self::Labels) -> usize {
        labels.len()
    }

    fn fill(&self, buf: &mut Self::Buf, value: f32) -> Result<()> {
        let n = dim("fill length", buf.len())?;
        if n == 0 {
            return Ok(());
        }
        launch!(self, "fill_f32", elems_cfg(buf.len()); buf, &value, &n)
    }

    /// Waits for the stream and reports any asynchronous error (the one definition: the
    /// backend's own code calls it through the trait too).
    fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| driver_err("synchronize", e))?;
        self.ctx
            .check_err()
            .map_err(|e| driver_err("deferred error", e))
    }
}
