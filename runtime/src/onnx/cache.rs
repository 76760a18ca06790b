//! The on-disk cache of optimized and compiled models: file keys and pruning.

use std::path::{Path, PathBuf};

/// A key for a model's bytes and the library that optimizes it (a cache file name).
pub(super) fn content_key(bytes: &[u8], library: Option<&Path>) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    library.hash(&mut h);
    crate::sys::cpu_model().hash(&mut h);
    format!("{:016x}-{}", h.finish(), bytes.len())
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
    files.sort_by(|a, b| b.0.cmp(&a.0));
    for (_, path) in files.into_iter().skip(keep) {
        let _ = std::fs::remove_file(path);
    }
}
