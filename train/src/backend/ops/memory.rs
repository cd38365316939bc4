//! The base family: buffer types, allocation and host transfers.
use crate::Result;

/// Buffers on the backend. `Buf` is a flat f32 buffer, `Labels` a flat u8 class map. Nothing
/// above the backend touches raw host data except through `upload`/`download`, so a GPU
/// backend slots in without changing the model, the losses or the trainer.
pub trait Memory: Send + Sync + Sized + 'static {
    /// A flat f32 buffer on the backend.
    type Buf: Send + Sync + 'static;
    /// A flat u8 class map on the backend.
    type Labels: Send + Sync + 'static;

    /// Short name for logs ("cpu", "cuda:0 (Orin)").
    fn name(&self) -> String;

    /// A buffer of `len` zeros.
    fn zeros(&self, len: usize) -> Result<Self::Buf>;
    /// Copies host values into a new buffer.
    fn upload(&self, data: &[f32]) -> Result<Self::Buf>;
    /// Copies a buffer back to the host.
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>>;
    /// Copies a host class map into a new label buffer.
    fn upload_labels(&self, data: &[u8]) -> Result<Self::Labels>;
    /// Copies a label buffer back to the host.
    fn download_labels(&self, labels: &Self::Labels) -> Result<Vec<u8>>;
    /// Number of f32 values in `buf`.
    fn len(&self, buf: &Self::Buf) -> usize;
    /// Number of class ids in `labels`.
    fn labels_len(&self, labels: &Self::Labels) -> usize;
    /// Sets every value of `buf` to `value`.
    fn fill(&self, buf: &mut Self::Buf, value: f32) -> Result<()>;
    /// Waits until every op issued so far has finished, and reports any error it raised. A GPU
    /// backend only enqueues work, so timing an op needs this; on the CPU every op is done when
    /// it returns, hence the no-op default.
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
}
