//! # ddpm-io
//!
//! The small helpers every ddpm-rs crate shares, with no tch and no ONNX Runtime in them:
//! files read whole only when they are regular files of a bounded size ([`files`]), files
//! written to a temporary name and renamed into place ([`files::write_atomically`]),
//! float32 `.npy` ([`npy`], feature `npy`), PNG images and grids ([`png`], feature `png`),
//! MNIST IDX files ([`idx`], feature `idx`), the memory and thread limits a request is
//! checked against ([`limits`]), facts about the machine ([`machine`]) and the plumbing of
//! the command-line tools ([`cli`], feature `cli`).
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("hello.txt");
//! ddpm_io::files::write_atomically(&path, |w| w.write_all(b"hi"))?;
//! assert_eq!(ddpm_io::files::read_regular_text(&path, 16, "greeting")?, "hi");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(clippy::unwrap_used)]

pub mod cifar;
#[cfg(feature = "cli")]
pub mod cli;
pub mod error;
pub mod files;
#[cfg(feature = "idx")]
pub mod idx;
pub mod limits;
pub mod machine;
#[cfg(feature = "npy")]
pub mod npy;
#[cfg(feature = "plot")]
pub mod plot;
#[cfg(feature = "png")]
pub mod png;

pub use error::{Error, Result};
