//! The crate's one error type; each variant about a file names it.
use std::path::PathBuf;

/// Errors of reading and writing model files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// An ONNX file is unreadable or not a model we can run.
    #[error("ONNX {path}: {msg}")]
    Onnx {
        /// The model file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// A tensor has the wrong size for the model.
    #[error("shape mismatch: {0}")]
    Shape(String),
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
}
