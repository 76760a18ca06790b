//! Training data, decoded once into memory as bytes: a folder of images (PNG/JPEG,
//! recursively; sub-folder names as class labels), MNIST IDX files (plain or .gz, labels
//! beside them when present) or CIFAR-10 binary batches.

use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};

/// Images as bytes [N, C, H, W] (0..255) with optional class labels.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub pixels: Vec<u8>,
    pub labels: Option<Vec<i64>>,
    /// Class names by label (image folders), if any.
    pub class_names: Vec<String>,
    pub n: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Files that could not be read and were skipped.
    pub skipped: usize,
    pub source: String,
}

impl Dataset {
    pub fn item_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Item `i` scaled to [-1, 1], optionally flipped left-right, appended to `out`.
    pub fn push_item(&self, i: usize, flip: bool, out: &mut Vec<f32>) {
        let (h, w) = (self.height, self.width);
        let item = &self.pixels[i * self.item_len()..(i + 1) * self.item_len()];
        for c in 0..self.channels {
            for y in 0..h {
                let row = &item[(c * h + y) * w..(c * h + y + 1) * w];
                if flip {
                    out.extend(row.iter().rev().map(|&p| p as f32 / 127.5 - 1.0));
                } else {
                    out.extend(row.iter().map(|&p| p as f32 / 127.5 - 1.0));
                }
            }
        }
    }
}

fn bad(path: &Path, msg: impl Into<String>) -> TrainError {
    TrainError::Data(format!("{}: {}", path.display(), msg.into()))
}

/// A training-data file, plain or gzipped, read (and decompressed) to at most a quarter of
/// the memory limit.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let (limit, _) = ddpm_io::limits::memory_limit();
    ddpm_io::idx::read_maybe_gz(path, limit / 4, "training data").map_err(|e| match e {
        ddpm_io::Error::TooLarge(_) => {
            bad(path, format!("decompresses to more than {} (a quarter of the memory limit)", ddpm_io::limits::human(limit / 4)))
        }
        other => bad(path, strip_path(&other.to_string(), path)),
    })
}

/// A message of ddpm-io without its leading "PATH: " (the trainer's own error adds it).
fn strip_path(msg: &str, path: &Path) -> String {
    msg.strip_prefix(&format!("{}: ", path.display())).unwrap_or(msg).to_string()
}

fn load_idx(path: &Path) -> Result<Dataset> {
    let images = ddpm_io::idx::parse_idx(&read_maybe_gz(path)?, 3, path).map_err(|e| bad(path, strip_path(&e.to_string(), path)))?;
    let [n, h, w] = [images.dims[0], images.dims[1], images.dims[2]];
    let labels = match ddpm_io::idx::labels_beside(path) {
        Some(lp) => {
            let l = ddpm_io::idx::parse_idx(&read_maybe_gz(&lp)?, 1, &lp).map_err(|e| bad(&lp, strip_path(&e.to_string(), &lp)))?;
            if l.dims[0] != n {
                return Err(bad(&lp, format!("not an IDX label file with {n} labels (it has {})", l.dims[0])));
            }
            Some(l.data.iter().map(|&v| v as i64).collect())
        }
        None => None,
    };
    Ok(Dataset {
        pixels: images.data,
        labels,
        class_names: vec![],
        n,
        channels: 1,
        height: h,
        width: w,
        skipped: 0,
        source: path.display().to_string(),
    })
}

fn load_cifar(files: &[PathBuf]) -> Result<Dataset> {
    let (limit, _) = ddpm_io::limits::memory_limit();
    let (pixels, labels) = ddpm_io::cifar::read_batches(files, limit / 4).map_err(|e| TrainError::Data(e.to_string()))?;
    Ok(Dataset {
        pixels,
        n: labels.len(),
        labels: Some(labels),
        class_names: ddpm_io::cifar::CLASSES.iter().map(|s| s.to_string()).collect(),
        channels: 3,
        height: 32,
        width: 32,
        skipped: 0,
        source: files.first().and_then(|f| f.parent()).map(|p| p.display().to_string()).unwrap_or_default(),
    })
}

/// Image files under `dir`, searched recursively: regular files only (a FIFO or device named
/// `x.png` would block the read), each folder once (a link back up the tree is no loop).
fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    collect_images_in(dir, out, &mut seen, 0)
}

fn collect_images_in(dir: &Path, out: &mut Vec<PathBuf>, seen: &mut std::collections::HashSet<PathBuf>, depth: usize) -> Result<()> {
    const MAX_DEPTH: usize = 64;
    if depth > MAX_DEPTH {
        return Err(bad(dir, format!("folders nested deeper than {MAX_DEPTH} levels")));
    }
    if !seen.insert(dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())) {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).map_err(|e| bad(dir, e.to_string()))?.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let Ok(meta) = std::fs::metadata(&p) else { continue };
        if meta.is_dir() {
            collect_images_in(&p, out, seen, depth + 1)?;
        } else if meta.is_file()
            && matches!(p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(), Some("png" | "jpg" | "jpeg"))
        {
            out.push(p);
        }
    }
    Ok(())
}

/// Resizes the shorter side to `size` and crops the centre (the usual DDPM preprocessing).
fn resize_crop(img: image::DynamicImage, size: (usize, usize), channels: usize) -> Vec<u8> {
    let (th, tw) = (size.0 as u32, size.1 as u32);
    let (w, h) = (img.width(), img.height());
    let scale = (tw as f64 / w as f64).max(th as f64 / h as f64);
    let (nw, nh) = (((w as f64 * scale).round() as u32).max(tw), ((h as f64 * scale).round() as u32).max(th));
    let resized = if (nw, nh) == (w, h) { img } else { img.resize_exact(nw, nh, image::imageops::FilterType::Triangle) };
    let cropped = resized.crop_imm((nw - tw) / 2, (nh - th) / 2, tw, th);
    let mut out = vec![0u8; channels * (th * tw) as usize];
    let plane = (th * tw) as usize;
    if channels == 1 {
        for (i, p) in cropped.to_luma8().pixels().enumerate() {
            out[i] = p.0[0];
        }
    } else {
        for (i, p) in cropped.to_rgb8().pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = p.0[c];
            }
        }
    }
    out
}

fn load_folder(dir: &Path, channels: usize, size: (usize, usize), strict: bool) -> Result<Dataset> {
    let mut files = Vec::new();
    collect_images(dir, &mut files)?;
    // Sub-folder names (first level) are class labels when every image sits in one.
    let mut class_names: Vec<String> = files
        .iter()
        .filter_map(|f| f.strip_prefix(dir).ok()?.components().next().map(|c| c.as_os_str().to_string_lossy().to_string()))
        .filter(|first| dir.join(first).is_dir())
        .collect();
    class_names.sort();
    class_names.dedup();
    let all_in_classes = !class_names.is_empty() && files.iter().all(|f| f.parent() != Some(dir));
    ddpm_io::limits::check_memory(
        &format!("{}: {} images of {channels}x{}x{}", dir.display(), files.len(), size.0, size.1),
        ddpm_io::limits::bytes_of(&[files.len(), channels, size.0, size.1], 1),
    )
    .map_err(|e| TrainError::Data(e.to_string()))?;
    let (mut pixels, mut labels, mut skipped) = (Vec::new(), Vec::new(), 0usize);
    for f in &files {
        match image::open(f) {
            Ok(img) => {
                pixels.extend(resize_crop(img, size, channels));
                if all_in_classes {
                    let first = f
                        .strip_prefix(dir)
                        .ok()
                        .and_then(|r| r.components().next())
                        .map(|c| c.as_os_str().to_string_lossy().to_string())
                        .unwrap_or_default();
                    labels.push(class_names.iter().position(|c| *c == first).unwrap_or(0) as i64);
                }
            }
            Err(e) if strict => return Err(bad(f, format!("unreadable image: {e}"))),
            Err(e) => {
                tracing::warn!("skipping {}: {e}", f.display());
                skipped += 1;
            }
        }
    }
    let n = pixels.len() / (channels * size.0 * size.1).max(1);
    Ok(Dataset {
        pixels,
        labels: all_in_classes.then_some(labels),
        class_names: if all_in_classes { class_names } else { vec![] },
        n,
        channels,
        height: size.0,
        width: size.1,
        skipped,
        source: dir.display().to_string(),
    })
}

/// Loads `path` as the model expects it (`channels`, `size`); see the module docs.
pub fn load(path: &Path, channels: usize, size: (usize, usize), strict: bool) -> Result<Dataset> {
    if !path.exists() {
        return Err(bad(path, "no such file or folder"));
    }
    let is_idx = |p: &Path| p.file_name().map(|n| n.to_string_lossy().contains("idx3")).unwrap_or(false);
    let ds = if path.is_file() {
        if is_idx(path) {
            load_idx(path)?
        } else {
            return Err(bad(
                path,
                "expected an MNIST IDX images file (…idx3-ubyte[.gz]), a folder of images, or a folder of CIFAR-10 .bin batches",
            ));
        }
    } else {
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(path).map_err(|e| bad(path, e.to_string()))?.flatten().map(|e| e.path()).collect();
        entries.sort();
        let idx: Vec<&PathBuf> =
            entries.iter().filter(|p| is_idx(p) && p.file_name().is_some_and(|n| n.to_string_lossy().contains("train"))).collect();
        let idx_any: Vec<&PathBuf> = entries.iter().filter(|p| is_idx(p)).collect();
        let bins: Vec<PathBuf> = entries
            .iter()
            .filter(|p| {
                p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("data_batch")) && p.extension().is_some_and(|e| e == "bin")
            })
            .cloned()
            .collect();
        if let Some(f) = idx.first().or(idx_any.first()) {
            load_idx(f)?
        } else if !bins.is_empty() {
            load_cifar(&bins)?
        } else {
            load_folder(path, channels, size, strict)?
        }
    };
    if ds.n == 0 {
        return Err(bad(path, format!("no usable image ({} unreadable files skipped)", ds.skipped)));
    }
    if ds.channels != channels {
        return Err(TrainError::Usage(format!(
            "config key `in_channels` is {channels}, but {} holds {}-channel images",
            path.display(),
            ds.channels
        )));
    }
    if (ds.height, ds.width) != size {
        return Err(TrainError::Usage(format!(
            "config key `sample_size` is {}x{}, but {} holds {}x{} images",
            size.0,
            size.1,
            path.display(),
            ds.height,
            ds.width
        )));
    }
    Ok(ds)
}
