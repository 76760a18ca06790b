//! MNIST's IDX files of unsigned bytes (`train-images-idx3-ubyte`, `...-labels-idx1-ubyte`),
//! plain or gzipped, decompressed no further than a bound (a gzip bomb stops there).

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};
use crate::files::read_regular_file;
use crate::limits::{bytes_of, human};

/// An IDX array of unsigned bytes: its dimensions and its values in row-major order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads a file whole (at most `max` bytes) and, when it starts with the gzip magic,
/// decompresses it to at most `max` bytes. `what` names the file in errors.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let p = dir.path().join("plain.bin");
/// std::fs::write(&p, [1, 2, 3])?;
/// assert_eq!(ddpm_io::idx::read_maybe_gz(&p, 1024, "data")?, vec![1, 2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_maybe_gz(path: &Path, max: u64, what: &str) -> Result<Vec<u8>> {
    let raw = read_regular_file(path, max, what)?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&raw[..])
        .take(max)
        .read_to_end(&mut out)
        .map_err(|e| Error::bad_file(path, format!("corrupt gzip: {e}")))?;
    if out.len() as u64 >= max {
        return Err(Error::TooLarge(format!("{}: decompresses to more than {}", path.display(), human(max))));
    }
    Ok(out)
}

/// Parses IDX bytes of unsigned bytes with `rank` dimensions (3 for images, 1 for labels):
/// magic `0x0000_08RR`, the big-endian dimensions, then exactly their product of values.
///
/// ```
/// let bytes = [0, 0, 8, 1, 0, 0, 0, 2, 7, 9];
/// let labels = ddpm_io::idx::parse_idx(&bytes, 1, std::path::Path::new("labels"))?;
/// assert_eq!((labels.dims, labels.data), (vec![2], vec![7, 9]));
/// # Ok::<(), ddpm_io::Error>(())
/// ```
pub fn parse_idx(bytes: &[u8], rank: usize, path: &Path) -> Result<IdxArray> {
    let header = 4 + 4 * rank;
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize;
    let magic = 0x0800 + rank;
    if bytes.len() < header || be(0) != magic {
        return Err(Error::bad_file(path, format!("not an IDX file of {rank} dimensions (expected magic 0x{magic:08x}, unsigned bytes)")));
    }
    let dims: Vec<usize> = (0..rank).map(|d| be(4 + 4 * d)).collect();
    let expected = bytes_of(&dims, 1);
    if (bytes.len() - header) as u128 != expected {
        return Err(Error::bad_file(
            path,
            format!(
                "{} bytes of values, expected {} = {expected}",
                bytes.len() - header,
                dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" x ")
            ),
        ));
    }
    Ok(IdxArray { dims, data: bytes[header..].to_vec() })
}

/// The labels file beside an MNIST images file (`...images-idx3-ubyte[.gz]` ->
/// `...labels-idx1-ubyte`, plain or gzipped), if it is there.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let images = dir.path().join("test-images-idx3-ubyte.gz");
/// std::fs::write(dir.path().join("test-labels-idx1-ubyte.gz"), b"")?;
/// assert_eq!(ddpm_io::idx::labels_beside(&images), Some(dir.path().join("test-labels-idx1-ubyte.gz")));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn labels_beside(images: &Path) -> Option<std::path::PathBuf> {
    let name = images.file_name()?.to_string_lossy().to_string();
    let labels = name.replace("images-idx3", "labels-idx1").replace("images.idx3", "labels.idx1");
    if labels == name {
        return None;
    }
    let stem = labels.trim_end_matches(".gz").to_string();
    [stem.clone(), format!("{stem}.gz")].into_iter().map(|n| images.with_file_name(n)).find(|p| p.is_file())
}

/// [`read_maybe_gz`] then [`parse_idx`].
pub fn read_idx(path: &Path, rank: usize, max: u64, what: &str) -> Result<IdxArray> {
    parse_idx(&read_maybe_gz(path, max, what)?, rank, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn images(n: u32, h: u32, w: u32) -> Vec<u8> {
        let mut b = vec![0, 0, 8, 3];
        for d in [n, h, w] {
            b.extend(d.to_be_bytes());
        }
        b.extend((0..n * h * w).map(|i| i as u8));
        b
    }

    #[test]
    fn images_plain_and_gzipped_agree() {
        let dir = tempfile::tempdir().unwrap();
        let raw = images(2, 3, 4);
        let plain = dir.path().join("x-idx3-ubyte");
        std::fs::write(&plain, &raw).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        let zipped = dir.path().join("x-idx3-ubyte.gz");
        std::fs::write(&zipped, gz.finish().unwrap()).unwrap();
        let a = read_idx(&plain, 3, 1 << 20, "images").unwrap();
        let b = read_idx(&zipped, 3, 1 << 20, "images").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.dims, vec![2, 3, 4]);
        assert_eq!(a.data.len(), 24);
    }

    #[test]
    fn wrong_magic_and_length_are_refused() {
        let p = Path::new("x");
        let mut b = images(2, 3, 4);
        assert!(parse_idx(&b, 1, p).unwrap_err().to_string().contains("0x00000801"));
        b.pop();
        assert!(parse_idx(&b, 3, p).unwrap_err().to_string().contains("expected 2 x 3 x 4 = 24"));
        assert!(parse_idx(&b[..7], 3, p).is_err());
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 1 << 20]).unwrap();
        let p = dir.path().join("bomb.gz");
        std::fs::write(&p, gz.finish().unwrap()).unwrap();
        let e = read_maybe_gz(&p, 1 << 16, "data").unwrap_err();
        assert!(matches!(e, Error::TooLarge(_)), "{e}");
    }
}
