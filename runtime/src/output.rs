//! Reading and writing sample sets: float32 .npy (NCHW), PNG grids, folders of PNGs.
//! Every file is written to a temporary name beside its destination and renamed into
//! place, so a crash never leaves a half-written file under the real name.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically (temporary file in the same folder, then rename).
pub fn write_atomically(path: impl AsRef<Path>, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let path = path.as_ref();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", path.file_name().map_or("out".into(), |n| n.to_string_lossy())))
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(|e| Error::io(&dir, e))?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        write(&mut w).map_err(|e| Error::io(path, e))?;
        w.flush().map_err(|e| Error::io(path, e))?;
    }
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    // tempfile creates 0600 files; what we write is for the user to share.
    set_mode(tmp.path(), 0o644).map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Sets Unix permission bits (no-op elsewhere).
pub fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Writes a float32 .npy file of the given shape.
pub fn write_npy(path: impl AsRef<Path>, data: &[f32], shape: &[usize]) -> Result<()> {
    let shape: Vec<u64> = shape.iter().map(|&s| s as u64).collect();
    write_atomically(path, |w| {
        use npyz::WriterBuilder;
        let mut writer = npyz::WriteOptions::<f32>::new().default_dtype().shape(&shape).writer(w).begin_nd()?;
        writer.extend(data.iter().copied())?;
        writer.finish()
    })
}

/// Reads a float32 .npy file: (data, shape).
pub fn read_npy(path: impl AsRef<Path>) -> Result<(Vec<f32>, Vec<usize>)> {
    let path = path.as_ref();
    let file = crate::limits::open_regular(path, ".npy file")?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let npy = npyz::NpyFile::new(BufReader::new(file)).map_err(|e| Error::bad_file(path, format!("not a .npy file: {e}")))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&s| usize::try_from(s).unwrap_or(usize::MAX)).collect();
    // The header's shape must fit in the file before anything is allocated for it.
    let bytes = crate::limits::bytes_of(&shape, 4);
    if bytes > file_len as u128 {
        return Err(Error::bad_file(
            path,
            format!("the header declares shape {shape:?} ({bytes} bytes of float32), but the file holds only {file_len} bytes"),
        ));
    }
    if npy.order() != npyz::Order::C {
        return Err(Error::bad_file(path, "Fortran-ordered array, expected C order"));
    }
    let is_f32 = matches!(npy.dtype(), npyz::DType::Plain(ts) if ts.type_char() == npyz::TypeChar::Float && ts.size_field() == 4);
    if !is_f32 {
        return Err(Error::bad_file(path, format!("dtype {}, expected float32", npy.dtype().descr())));
    }
    let data: Vec<f32> = npy.into_vec().map_err(|e| Error::bad_file(path, format!("truncated or corrupt data: {e}")))?;
    Ok((data, shape))
}

/// Reads an 8-bit grayscale or RGB PNG as [C, H, W] values in [-1, 1].
pub fn read_png(path: &Path) -> Result<(Vec<f32>, usize, usize, usize)> {
    let file = crate::limits::open_regular(path, "PNG image")?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| Error::bad_file(path, format!("not a PNG: {e}")))?;
    let size = reader.output_buffer_size().ok_or_else(|| Error::bad_file(path, "PNG dimensions too large"))?;
    crate::limits::check_memory(&format!("{}: a PNG of {}x{}", path.display(), reader.info().width, reader.info().height), size as u128 * 5)?;
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf).map_err(|e| Error::bad_file(path, format!("corrupt PNG: {e}")))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let (c, stride) = match info.color_type {
        png::ColorType::Grayscale => (1, 1),
        png::ColorType::GrayscaleAlpha => (1, 2),
        png::ColorType::Rgb => (3, 3),
        png::ColorType::Rgba => (3, 4),
        other => return Err(Error::bad_file(path, format!("unsupported PNG colour type {other:?}"))),
    };
    let mut out = vec![0.0f32; c * h * w];
    for i in 0..h * w {
        for ch in 0..c {
            out[ch * h * w + i] = buf[i * stride + ch] as f32 / 127.5 - 1.0;
        }
    }
    Ok((out, c, h, w))
}

/// Maps a value in [-1, 1] to a byte.
fn to_u8(v: f32) -> u8 {
    (((v + 1.0) * 0.5 * 255.0).round()).clamp(0.0, 255.0) as u8
}

/// Encodes one image (C = 1 gray, 3 RGB) given as [C, H, W] pixels in [-1, 1].
fn encode_png(w: &mut dyn Write, chw: &[f32], c: usize, h: usize, wd: usize) -> std::io::Result<()> {
    let color = match c {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        _ => return Err(std::io::Error::other(format!("{c} channels: PNG output needs 1 or 3"))),
    };
    let mut enc = png::Encoder::new(w, wd as u32, h as u32);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(std::io::Error::other)?;
    let mut bytes = vec![0u8; c * h * wd];
    for y in 0..h {
        for x in 0..wd {
            for ch in 0..c {
                bytes[(y * wd + x) * c + ch] = to_u8(chw[ch * h * wd + y * wd + x]);
            }
        }
    }
    writer.write_image_data(&bytes).map_err(std::io::Error::other)?;
    writer.finish().map_err(std::io::Error::other)
}

fn check_png_channels(c: usize) -> Result<()> {
    if c == 1 || c == 3 {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("PNG output needs 1 or 3 channels, the samples have {c}; write .npy instead")))
    }
}

/// Lays [N, C, H, W] samples out in a near-square grid with a 2-pixel border: [C, GH, GW].
pub fn grid(data: &[f32], shape: [usize; 4], cols: Option<usize>) -> (Vec<f32>, usize, usize) {
    let [n, c, h, w] = shape;
    let cols = cols.unwrap_or_else(|| (n as f64).sqrt().ceil() as usize).max(1);
    let rows = n.div_ceil(cols);
    let pad = 2;
    let (gh, gw) = (rows * (h + pad) + pad, cols * (w + pad) + pad);
    let mut out = vec![-1.0f32; c * gh * gw];
    for i in 0..n {
        let (r, col) = (i / cols, i % cols);
        for ch in 0..c {
            for y in 0..h {
                let src = &data[((i * c + ch) * h + y) * w..][..w];
                let dst = ch * gh * gw + (pad + r * (h + pad) + y) * gw + pad + col * (w + pad);
                out[dst..dst + w].copy_from_slice(src);
            }
        }
    }
    (out, gh, gw)
}

/// Writes [N, C, H, W] samples in [-1, 1] as one PNG grid.
pub fn write_png_grid(path: impl AsRef<Path>, data: &[f32], shape: [usize; 4]) -> Result<()> {
    write_png_grid_cols(path, data, shape, None)
}

/// The same with a given number of columns (row-major).
pub fn write_png_grid_cols(path: impl AsRef<Path>, data: &[f32], shape: [usize; 4], cols: Option<usize>) -> Result<()> {
    check_png_channels(shape[1])?;
    let (g, gh, gw) = grid(data, shape, cols);
    write_atomically(path, |w| encode_png(w, &g, shape[1], gh, gw))
}

/// Writes one PNG per sample (`000000.png`, ...) into `dir`. A folder that does not exist
/// yet is filled under a temporary name and renamed into place when complete.
pub fn write_png_dir(dir: impl AsRef<Path>, data: &[f32], shape: [usize; 4]) -> Result<()> {
    let dir = dir.as_ref();
    let [n, c, h, w] = shape;
    check_png_channels(c)?;
    let write_all = |target: &Path| -> Result<()> {
        for i in 0..n {
            let item = &data[i * c * h * w..(i + 1) * c * h * w];
            write_atomically(target.join(format!("{i:06}.png")), |wr| encode_png(wr, item, c, h, w))?;
        }
        Ok(())
    };
    if dir.is_dir() {
        return write_all(dir);
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", dir.file_name().map_or("out".into(), |n| n.to_string_lossy())))
        .tempdir_in(&parent)
        .map_err(|e| Error::io(&parent, e))?;
    write_all(tmp.path())?;
    set_mode(tmp.path(), 0o755).map_err(|e| Error::io(dir, e))?;
    let tmp_path = tmp.keep();
    std::fs::rename(&tmp_path, dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp_path);
        Error::io(dir, e)
    })
}

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
            _ => Err(Error::InvalidArgument(format!(
                "--out {path}: expected a FILE.npy, a FILE.png or a DIR/ (ending in /)"
            ))),
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

    pub fn write(&self, data: &[f32], shape: [usize; 4]) -> Result<()> {
        match self {
            Self::Npy(p) => write_npy(p, data, &shape),
            Self::PngGrid(p) => write_png_grid(p, data, shape),
            Self::PngDir(p) => write_png_dir(p, data, shape),
        }
    }
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

    #[test]
    fn grid_places_samples() {
        let data: Vec<f32> = (0..4).map(|i| i as f32 / 4.0).collect();
        let (g, gh, gw) = grid(&data, [4, 1, 1, 1], None);
        assert_eq!((gh, gw), (8, 8));
        assert_eq!(g[2 * 8 + 2], 0.0);
        assert_eq!(g[2 * 8 + 5], 0.25);
        assert_eq!(g[5 * 8 + 2], 0.5);
        assert_eq!(g[5 * 8 + 5], 0.75);
    }

    #[test]
    fn pixel_mapping() {
        assert_eq!(to_u8(-1.0), 0);
        assert_eq!(to_u8(1.0), 255);
        assert_eq!(to_u8(3.0), 255);
        assert_eq!(to_u8(0.0), 128);
    }
}
