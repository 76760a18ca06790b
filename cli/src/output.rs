//! Where `runtime sample` writes its samples, decided by the `--out` path.

use std::path::{Path, PathBuf};

use ddpm_io::npy::write_npy;
use ddpm_io::png::{write_png_dir_from, write_png_grid};
use ddpm_io::{Error, Result};

/// Where samples go, decided by the output path: `.npy`, `.png` (grid), or a folder
/// (a path ending in `/`, or an existing folder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputKind {
    Npy(PathBuf),
    PngGrid(PathBuf),
    PngDir(PathBuf),
}

impl OutputKind {
    pub fn from_path(path: &str) -> Result<Self> {
        let p = PathBuf::from(path);
        if path.ends_with('/') || p.is_dir() {
            return Ok(Self::PngDir(p));
        }
        match p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("npy") => Ok(Self::Npy(p)),
            Some("png") => Ok(Self::PngGrid(p)),
            _ => Err(Error::InvalidArgument(format!("--out {path}: expected a FILE.npy, a FILE.png or a DIR/ (ending in /)"))),
        }
    }

    /// Fails early (before sampling) when the destination folder does not exist.
    pub fn check_writable(&self) -> Result<()> {
        let target = match self {
            Self::Npy(p) | Self::PngGrid(p) | Self::PngDir(p) => p,
        };
        let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(Error::InvalidArgument(format!("{}: output folder does not exist", parent.display())));
        }
        Ok(())
    }

    /// `first`: the index of the first sample in the whole set (`--first-index`), which
    /// names the files of a folder.
    pub fn write(&self, data: &[f32], shape: [usize; 4], first: u64) -> Result<()> {
        match self {
            Self::Npy(p) => write_npy(p, data, &shape),
            Self::PngGrid(p) => write_png_grid(p, data, shape),
            Self::PngDir(p) => write_png_dir_from(p, data, shape, first),
        }
    }
}
