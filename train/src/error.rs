//! The crate's one error type. Every variant that concerns a file names it, so a line engineer
//! reading a log knows what to fix.
use std::path::PathBuf;

/// Errors of the training engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot decode image: {msg}")]
    Image { path: PathBuf, msg: String },
    /// A dataset file is readable but wrong (sizes differ, unknown class id, empty set...).
    #[error("{path}: {msg}")]
    Data { path: PathBuf, msg: String },
    /// A configuration value is out of range or malformed; `key` names the field.
    #[error("{path}: `{key}`: {msg}")]
    Config {
        path: PathBuf,
        key: String,
        msg: String,
    },
    #[error("{path}: cannot parse: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("shape mismatch: {0}")]
    Shape(String),
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    #[error("ONNX {path}: {msg}")]
    Onnx { path: PathBuf, msg: String },
    #[error("backend {backend}: {msg}")]
    Backend { backend: String, msg: String },
    /// Training diverged (NaN/inf loss); the last good checkpoint is kept.
    #[error("training diverged at step {step}: loss is {loss}")]
    Diverged { step: u64, loss: f32 },
    #[error("interrupted")]
    Interrupted,
}

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    /// A data error naming the file.
    pub fn data(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            msg: msg.into(),
        }
    }
}

/// Model-format errors keep their meaning: a file's I/O error stays one, a bad ONNX stays one.
impl From<contextrast_model::Error> for Error {
    fn from(e: contextrast_model::Error) -> Self {
        match e {
            contextrast_model::Error::Io { path, source } => Error::Io { path, source },
            contextrast_model::Error::Onnx { path, msg } => Error::Onnx { path, msg },
            contextrast_model::Error::Shape(msg) => Error::Shape(msg),
        }
    }
}
