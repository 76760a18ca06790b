//! The error type of `ddpm-io`: every variant is about the caller's input or files.

use std::path::PathBuf;

/// What can go wrong reading or writing a file, or asking the machine for too much.
/// Messages name the file, what was found and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    /// A file exists but is not what it should be (a folder, a FIFO, a corrupt .npy, ...).
    #[error("{}: {msg}", path.display())]
    BadFile { path: PathBuf, msg: String },
    /// A request needs more memory than the limit (see [`crate::limits`]).
    #[error("{0}")]
    TooLarge(String),
    /// A caller-side argument is out of range (0 threads, a size that does not parse, ...).
    #[error("{0}")]
    InvalidArgument(String),
}

impl Error {
    /// An I/O error on `path`.
    ///
    /// ```
    /// let e = ddpm_io::Error::io("x.npy", std::io::Error::other("disk full"));
    /// assert_eq!(e.to_string(), "x.npy: disk full");
    /// ```
    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        Error::Io { path: path.into(), err }
    }
    /// A file that is not what it should be.
    ///
    /// ```
    /// let e = ddpm_io::Error::bad_file("x.npy", "not a .npy file");
    /// assert_eq!(e.to_string(), "x.npy: not a .npy file");
    /// ```
    pub fn bad_file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::BadFile { path: path.into(), msg: msg.into() }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
