//! CIFAR-10's binary batches (`data_batch_1.bin` .. `data_batch_5.bin`, `test_batch.bin`):
//! records of one label byte (0..10) and 3,072 pixel bytes (32x32, the red, green and blue
//! planes).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::files::read_regular_file;

/// Bytes of one record.
pub const RECORD: usize = 1 + 3072;

/// The classes, by label.
pub const CLASSES: [&str; 10] = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// Reads batches (each file at most `max` bytes): (pixels [N, 3, 32, 32] as bytes, labels).
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let mut record = vec![7u8];
/// record.extend([128u8; 3072]);
/// let f = dir.path().join("test_batch.bin");
/// std::fs::write(&f, &record)?;
/// let (pixels, labels) = ddpm_io::cifar::read_batches(&[f], 1 << 20)?;
/// assert_eq!((pixels.len(), labels), (3072, vec![7]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_batches(files: &[PathBuf], max: u64) -> Result<(Vec<u8>, Vec<i64>)> {
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for f in files {
        let b = read_regular_file(f, max, "CIFAR-10 batch")?;
        if b.is_empty() || b.len() % RECORD != 0 {
            return Err(Error::bad_file(f, format!("{} bytes, expected a multiple of {RECORD} (CIFAR-10 binary records)", b.len())));
        }
        for r in b.chunks_exact(RECORD) {
            if r[0] > 9 {
                return Err(Error::bad_file(f, format!("label {} outside 0..10", r[0])));
            }
            labels.push(r[0] as i64);
            pixels.extend_from_slice(&r[1..]);
        }
    }
    Ok((pixels, labels))
}

/// The batch files of a folder: `data_batch_*.bin` (training), else `test_batch.bin`.
pub fn batches_in(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    entries.sort();
    let named = |prefix: &str| -> Vec<PathBuf> {
        entries
            .iter()
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)) && p.extension().is_some_and(|e| e == "bin"))
            .cloned()
            .collect()
    };
    let train = named("data_batch");
    if train.is_empty() {
        named("test_batch")
    } else {
        train
    }
}
