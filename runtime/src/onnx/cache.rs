//! The on-disk cache of optimized and compiled models: file keys and pruning.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A key for a model's bytes, the library that optimizes it and the CPU it optimizes for
/// (ONNX Runtime's blocked layouts depend on the vector width): a cache file name.
pub(super) fn content_key(bytes: &[u8], library: Option<&Path>) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    h.update(library.map(|l| l.display().to_string()).unwrap_or_default().as_bytes());
    h.update(crate::sys::cpu_model().as_bytes());
    h.update(crate::sys::CpuFeatures::get().present().join(",").as_bytes());
    format!("{}-{}", &format!("{:x}", h.finalize())[..24], bytes.len())
}

/// The checksum of a cached model (what this runtime wrote there), in a sibling folder:
/// `optimized/K.onnx` has `optimized.sha256/K.onnx`.
fn checksum_path(file: &Path) -> PathBuf {
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut folder = dir.file_name().unwrap_or_default().to_os_string();
    folder.push(".sha256");
    dir.with_file_name(folder).join(file.file_name().unwrap_or_default())
}

/// Records the checksum of a cached model just written (under a temporary name, renamed).
pub(super) fn record_checksum(file: &Path) -> std::io::Result<()> {
    let bytes = std::fs::read(file)?;
    let sum = format!("{:x}", Sha256::digest(&bytes));
    let sidecar = checksum_path(file);
    if let Some(parent) = sidecar.parent() {
        std::fs::create_dir_all(parent)?;
    }
    ddpm_io::files::write_atomically(&sidecar, |w| w.write_all(sum.as_bytes())).map_err(std::io::Error::other)
}

/// The bytes of a cached model if they are exactly what this runtime wrote (its checksum
/// file agrees); an error saying why not otherwise. A cache is trusted no further than that:
/// a file replaced under a key, truncated, or without its checksum is not used.
pub(super) fn read_verified(file: &Path) -> Result<Vec<u8>, String> {
    let bytes = ddpm_io::files::read_regular_file(file, 2 << 30, "cached model").map_err(|e| e.to_string())?;
    let want = ddpm_io::files::read_regular_text(&checksum_path(file), 1024, "checksum")
        .map_err(|_| "no readable checksum file beside it".to_string())?;
    let got = format!("{:x}", Sha256::digest(&bytes));
    if want.trim() != got {
        return Err(format!("its checksum {got} is not the {} recorded when it was written", want.trim()));
    }
    Ok(bytes)
}

/// Removes a cached model and its checksum.
pub(super) fn remove(file: &Path) {
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(checksum_path(file));
}

/// How many files a model cache folder keeps (the most recently used).
pub(super) const CACHE_KEEP: usize = 32;

/// Deletes all but the `keep` most recently modified files of a cache folder, so that it
/// does not grow without bound.
pub(super) fn prune_cache(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            m.is_file().then(|| (m.modified().unwrap_or(std::time::UNIX_EPOCH), e.path()))
        })
        .collect();
    if files.len() <= keep {
        return;
    }
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    for (_, path) in files.into_iter().skip(keep) {
        remove(&path);
    }
}

/// Before a compiler's own cache folder (OpenVINO's compiled blobs) is handed to it: every
/// file there must match the checksum recorded when it was written, else it is removed, so
/// that a blob replaced under its name is never loaded.
#[cfg_attr(not(feature = "openvino"), allow(dead_code))]
pub(super) fn verify_folder(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        let regular = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
        if !regular || read_verified(&path).is_err() {
            tracing::warn!("{}: not what this runtime wrote to its cache; removed", path.display());
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                let _ = std::fs::remove_dir_all(&path);
            }
            remove(&path);
        }
    }
}

/// After the compiler wrote its cache folder: records the checksum of each new file.
pub(super) fn record_folder(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) && !checksum_path(&path).is_file() {
            let _ = record_checksum(&path);
        }
    }
}
