//! The one error type of `ddpm-models`.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A UNet2DModel config key is unknown, unsupported or inconsistent.
    #[error("{file}: config key `{key}`: {msg}")]
    Config { file: String, key: String, msg: String },
    /// A weight is missing, unexpected or of the wrong shape.
    #[error("{file}: tensor `{name}`: {msg}")]
    Weight { file: String, name: String, msg: String },
    /// A file could not be read or written.
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    /// A file is not what it should be (truncated safetensors, invalid JSON, ...).
    #[error("{}: {msg}", path.display())]
    BadFile { path: PathBuf, msg: String },
    /// A tensor has the wrong shape for an operation.
    #[error("{0}")]
    Shape(String),
    /// An error from libtorch.
    #[cfg(feature = "tch")]
    #[error("libtorch: {0}")]
    Tch(#[from] tch::TchError),
    /// A shared check of the runtime crate (file and memory limits).
    #[error(transparent)]
    Runtime(#[from] ddpm_runtime::Error),
    /// A backend-specific failure.
    #[error("{0}")]
    Backend(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        Error::Io { path: path.into(), err }
    }
    pub fn bad_file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::BadFile { path: path.into(), msg: msg.into() }
    }
    /// True when the error comes from the caller's input (exit 2 in the CLIs).
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Runtime(e) => e.is_bad_input(),
            other => matches!(other, Error::Config { .. } | Error::Weight { .. } | Error::Io { .. } | Error::BadFile { .. }),
        }
    }
}

impl From<ddpm_io::Error> for Error {
    fn from(e: ddpm_io::Error) -> Self {
        Error::Runtime(e.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
