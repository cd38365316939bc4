//! The runtime library's one error type. Every variant about a file or a device names it, so an
//! operator reading the journal knows what to fix without a backtrace.
use std::path::PathBuf;

/// Everything that can go wrong in the runtime; each names the file, key, device or line concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file or device failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or device concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A line-config value is missing, out of range or malformed; `key` names the field.
    #[error("{path}: `{key}`: {msg}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// The dotted key, e.g. `reject.delay_ms`.
        key: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A file is not valid TOML (or not the expected shape); the message has line and column.
    #[error("{path}: cannot parse: {msg}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        msg: String,
    },
    /// A camera (or other frame source) cannot be opened or stopped delivering.
    #[error("camera {device}: {msg}")]
    Camera {
        /// The device (node path or source description).
        device: String,
        /// What went wrong.
        msg: String,
    },
    /// One frame could not be read or decoded; the pipeline skips and counts it.
    #[error("frame {source_name}: {msg}")]
    Frame {
        /// Where the frame came from (file name, camera buffer).
        source_name: String,
        /// What went wrong.
        msg: String,
    },
    /// A GPIO line cannot be found, requested or driven.
    #[error("gpio {line}: {msg}")]
    Gpio {
        /// The line as configured (name, or chip and offset).
        line: String,
        /// What went wrong.
        msg: String,
    },
    /// The model cannot be loaded or run, or does not fit the frames.
    #[error("model {path}: {msg}")]
    Model {
        /// The model file.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
    /// A runtime thread (the reject output, the model watcher) could not be started.
    #[error("{what}: {source}")]
    Thread {
        /// Which thread.
        what: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A step of a retrain run failed; `step` says which, the cause names the file.
    #[error("{step}: {source}")]
    Retrain {
        /// The step that failed.
        step: String,
        /// Why it failed.
        #[source]
        source: Box<Error>,
    },
    /// An error of the training engine (or the model format), passed through unchanged.
    #[error(transparent)]
    Train(#[from] contextrast_train::Error),
}

/// Result alias used across the runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    /// A config error naming file and key.
    pub fn config(
        path: impl Into<PathBuf>,
        key: impl Into<String>,
        msg: impl Into<String>,
    ) -> Self {
        Error::Config {
            path: path.into(),
            key: key.into(),
            msg: msg.into(),
        }
    }
    /// A camera error naming the device.
    pub fn camera(device: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Camera {
            device: device.into(),
            msg: msg.into(),
        }
    }
    /// An error reading one frame, naming where it came from.
    pub fn frame(source_name: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Frame {
            source_name: source_name.into(),
            msg: msg.into(),
        }
    }
    /// A GPIO error naming the line.
    pub fn gpio(line: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Gpio {
            line: line.into(),
            msg: msg.into(),
        }
    }
    /// A model error naming the model file.
    pub fn model(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Model {
            path: path.into(),
            msg: msg.into(),
        }
    }
    /// A thread that could not be started, with the OS error.
    pub fn thread(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Thread {
            what: what.into(),
            source,
        }
    }
    /// `source`, said to have happened during retrain step `step`.
    pub fn retrain(step: impl Into<String>, source: impl Into<Error>) -> Self {
        Error::Retrain {
            step: step.into(),
            source: Box::new(source.into()),
        }
    }
}

/// A model-format error reads as it did when the trainer raised it; a file's I/O error is the
/// runtime's own `Io`.
impl From<contextrast_model::Error> for Error {
    fn from(e: contextrast_model::Error) -> Self {
        match e {
            contextrast_model::Error::Io { path, source } => Error::Io { path, source },
            other => Error::Train(other.into()),
        }
    }
}
