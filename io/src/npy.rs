//! float32 `.npy` files (NCHW sample sets, initial noise), read with the header's shape
//! checked against the file's size before anything is allocated.

use std::io::BufReader;
use std::path::Path;

use crate::error::{Error, Result};
use crate::files::{open_regular, write_atomically};

/// Writes a float32 .npy file of the given shape (atomically).
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("x.npy");
/// ddpm_io::npy::write_npy(&path, &[0.5, -1.0, 2.0, 0.0], &[1, 1, 2, 2])?;
/// let (data, shape) = ddpm_io::npy::read_npy(&path)?;
/// assert_eq!((data, shape), (vec![0.5, -1.0, 2.0, 0.0], vec![1, 1, 2, 2]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_npy(path: impl AsRef<Path>, data: &[f32], shape: &[usize]) -> Result<()> {
    let shape: Vec<u64> = shape.iter().map(|&s| s as u64).collect();
    write_atomically(path, |w| {
        use npyz::WriterBuilder;
        let mut writer = npyz::WriteOptions::<f32>::new().default_dtype().shape(&shape).writer(w).begin_nd()?;
        writer.extend(data.iter().copied())?;
        writer.finish()
    })
}

/// Reads a float32 .npy file: (data, shape). A header whose shape does not fit in the
/// file, Fortran order or another dtype is a [`Error::BadFile`] naming the file.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("x.npy");
/// std::fs::write(&path, b"not numpy")?;
/// assert!(ddpm_io::npy::read_npy(&path).unwrap_err().to_string().contains("not a .npy file"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn read_npy(path: impl AsRef<Path>) -> Result<(Vec<f32>, Vec<usize>)> {
    let path = path.as_ref();
    let file = open_regular(path, ".npy file")?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let npy = npyz::NpyFile::new(BufReader::new(file)).map_err(|e| Error::bad_file(path, format!("not a .npy file: {e}")))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&s| usize::try_from(s).unwrap_or(usize::MAX)).collect();
    // The dtype first: a file of another dtype is named as such, whatever its size.
    if npy.order() != npyz::Order::C {
        return Err(Error::bad_file(path, "Fortran-ordered array, expected C order"));
    }
    let is_f32 = matches!(npy.dtype(), npyz::DType::Plain(ts) if ts.type_char() == npyz::TypeChar::Float && ts.size_field() == 4);
    if !is_f32 {
        return Err(Error::bad_file(path, format!("dtype {}, expected float32", npy.dtype().descr())));
    }
    // The header's shape must fit in the file before anything is allocated for it.
    let bytes = crate::limits::bytes_of(&shape, 4);
    if bytes > file_len as u128 {
        return Err(Error::bad_file(
            path,
            format!("the header declares shape {shape:?} ({bytes} bytes of float32), but the file holds only {file_len} bytes"),
        ));
    }
    let data: Vec<f32> = npy.into_vec().map_err(|e| Error::bad_file(path, format!("truncated or corrupt data: {e}")))?;
    Ok((data, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write_npy(&p, &data, &[2, 3, 2, 2]).unwrap();
        let (back, shape) = read_npy(&p).unwrap();
        assert_eq!(back, data);
        assert_eq!(shape, vec![2, 3, 2, 2]);
    }

    /// An int8 or float64 array is named by its dtype, whether its data is smaller than
    /// float32's (int8) or larger (float64).
    #[test]
    fn another_dtype_is_named_whatever_its_size() {
        let dir = tempfile::tempdir().unwrap();
        for (descr, item) in [("|i1", 1usize), ("<f8", 8)] {
            let p = dir.path().join("x.npy");
            let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2, 8), }}");
            let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
            let pad = 64 - (10 + header.len() + 1) % 64;
            let header = format!("{header}{}\n", " ".repeat(pad));
            bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
            bytes.extend_from_slice(header.as_bytes());
            bytes.resize(bytes.len() + 16 * item, 0);
            std::fs::write(&p, bytes).unwrap();
            let err = read_npy(&p).unwrap_err().to_string();
            assert!(err.contains(&format!("dtype '{descr}', expected float32")), "{descr}: {err}");
        }
    }
}
