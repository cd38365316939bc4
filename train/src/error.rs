//! The crate's one error type. Every variant that concerns a file names it, so a line engineer
//! reading a log knows what to fix.
use std::path::PathBuf;

/// Errors of the training engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An image could not be decoded (or, for the synthetic data's PNGs, encoded).
    #[error("{path}: cannot decode image: {msg}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// The codec's message.
        msg: String,
    },
    /// A dataset file is readable but wrong (sizes differ, unknown class id, empty set...).
    #[error("{path}: {msg}")]
    Data {
        /// The file (or dataset folder).
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A configuration value is out of range or malformed; `key` names the field.
    #[error("{path}: `{key}`: {msg}")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// The offending key.
        key: String,
        /// Why its value is refused.
        msg: String,
    },
    /// A TOML, JSON or `.npy` file could not be parsed (also used when serialising one fails).
    #[error("{path}: cannot parse: {msg}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        msg: String,
    },
    /// Tensor sizes, shapes or parameters do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A checkpoint is unreadable, malformed or does not fit this run.
    #[error("checkpoint {path}: {msg}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// Building an ONNX model, or loading one, failed.
    #[error("ONNX {path}: {msg}")]
    Onnx {
        /// The ONNX file.
        path: PathBuf,
        /// What failed.
        msg: String,
    },
    /// A compute backend (e.g. CUDA) failed or is unavailable.
    #[error("backend {backend}: {msg}")]
    Backend {
        /// The backend's name.
        backend: String,
        /// What failed.
        msg: String,
    },
    /// Training diverged (NaN/inf loss); the last good checkpoint is kept.
    #[error("training diverged at step {step}: loss is {loss}")]
    Diverged {
        /// The step whose loss was not finite.
        step: u64,
        /// That loss.
        loss: f32,
    },
    /// A run was stopped on request (nothing in the workspace returns it at present).
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
