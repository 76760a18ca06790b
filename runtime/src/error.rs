//! The one error type of `ddpm-runtime`.

use std::path::PathBuf;

/// Everything that can go wrong in the runtime. Messages name the file, key or tensor,
/// what was found and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A scheduler or model config key is unknown, unsupported or of the wrong type.
    #[error("{}config key `{key}`: {msg}", file_prefix(.file))]
    Config { file: String, key: String, msg: String },
    /// A scheduler config value that no sampler can run (see [`crate::params`]).
    #[error("{}config key `{}`: {err}", file_prefix(.file), .err.key())]
    Param { file: String, err: crate::params::ParamError },
    /// A config file or metadata entry is not valid JSON.
    #[error("{what}: invalid JSON: {msg}")]
    Json { what: String, msg: String },
    /// A caller-side argument is out of range (zero steps, a batch size of 0, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// A tensor has the wrong shape or length.
    #[error("{name}: shape {found}, expected {expected}")]
    Shape { name: String, found: String, expected: String },
    /// A tensor holds NaN or infinite values.
    #[error("{0}: contains NaN or infinite values")]
    NonFinite(String),
    /// A file could not be read or written.
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    /// A file exists but is not what it should be (corrupt .npy, not an ONNX model, ...).
    #[error("{}: {msg}", path.display())]
    BadFile { path: PathBuf, msg: String },
    /// ONNX Runtime could not be loaded from any of the places tried.
    #[error("could not load ONNX Runtime; tried: {0}")]
    OrtLoad(String),
    /// An execution provider was asked for and is not available.
    #[error("execution provider `{ep}` is not available: {msg}")]
    ExecutionProvider { ep: String, msg: String },
    /// An error from ONNX Runtime while running a model.
    #[cfg(feature = "onnx")]
    #[error("ONNX Runtime: {0}")]
    Ort(#[from] ort::Error),
    /// A request needs more memory than the limit (see [`crate::limits`]).
    #[error("{0}")]
    TooLarge(String),
    /// The machine cannot run what was asked (a precision its CPU lacks, ...).
    #[error("{0}")]
    Unsupported(String),
    /// The denoiser failed (for denoisers outside this crate).
    #[error("denoiser: {0}")]
    Denoiser(String),
    /// A model served remotely (feature `triton`): the server, the model and what failed.
    #[error("server {server}, model {model}: {kind}: {msg}")]
    Remote { server: String, model: String, kind: RemoteErrorKind, msg: String },
}

/// What went wrong with a served model. An unknown model and a model that does not fit
/// the contract are the caller's input (exit 2 in the CLIs); an unreachable server and a
/// failed request are failures of the service (exit 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteErrorKind {
    /// No connection, or the server stopped answering (after the retries).
    Unreachable,
    /// The server has no model of that name.
    UnknownModel,
    /// The model's inputs, outputs or configs are not those of the .onnx contract.
    Mismatch,
    /// A request the server answered with an error.
    Failed,
}

impl std::fmt::Display for RemoteErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unreachable => "server unreachable",
            Self::UnknownModel => "unknown model",
            Self::Mismatch => "model does not fit the contract",
            Self::Failed => "request failed",
        })
    }
}

/// Whitespace collapsed to single spaces (messages of other systems span lines).
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Error {
    pub(crate) fn config(key: &str, msg: impl Into<String>) -> Self {
        Error::Config { file: String::new(), key: key.to_string(), msg: msg.into() }
    }
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), err: source }
    }
    /// An error of a served model.
    pub fn remote(server: &str, model: &str, kind: RemoteErrorKind, msg: String) -> Self {
        Error::Remote { server: server.into(), model: model.into(), kind, msg }
    }
    /// A file that is not what it should be.
    pub fn bad_file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::BadFile { path: path.into(), msg: msg.into() }
    }
    /// The same error, said of the file `file` (a config error raised before the file's
    /// name was known).
    pub fn in_file(self, file: &str) -> Self {
        match self {
            Error::Config { file: f, key, msg } if f.is_empty() => Error::Config { file: file.into(), key, msg },
            Error::Param { file: f, err } if f.is_empty() => Error::Param { file: file.into(), err },
            other => other,
        }
    }
    /// True when the error comes from the caller's input (exit code 2 in the CLIs)
    /// rather than from an internal failure.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Denoiser(_) => false,
            Error::Remote { kind, .. } => matches!(kind, RemoteErrorKind::UnknownModel | RemoteErrorKind::Mismatch),
            _ => !self.is_ort_runtime(),
        }
    }
    fn is_ort_runtime(&self) -> bool {
        #[cfg(feature = "onnx")]
        if let Error::Ort(_) = self {
            return true;
        }
        false
    }
}

fn file_prefix(file: &str) -> String {
    if file.is_empty() {
        String::new()
    } else {
        format!("{file}: ")
    }
}

impl From<crate::params::ParamError> for Error {
    fn from(err: crate::params::ParamError) -> Self {
        Error::Param { file: String::new(), err }
    }
}

impl From<ddpm_io::Error> for Error {
    fn from(e: ddpm_io::Error) -> Self {
        match e {
            ddpm_io::Error::Io { path, err } => Error::Io { path, err },
            ddpm_io::Error::BadFile { path, msg } => Error::BadFile { path, msg },
            ddpm_io::Error::TooLarge(m) => Error::TooLarge(m),
            ddpm_io::Error::InvalidArgument(m) => Error::InvalidArgument(m),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
