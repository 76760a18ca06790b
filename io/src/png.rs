//! PNG images: 8-bit grayscale or RGB read as [C, H, W] values in [-1, 1]; samples written
//! as one grid or one file each (atomically).

use std::io::{BufReader, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::files::{create_dir_atomically, open_regular, write_atomically};

/// Reads an 8-bit grayscale or RGB PNG as [C, H, W] values in [-1, 1].
pub fn read_png(path: &Path) -> Result<(Vec<f32>, usize, usize, usize)> {
    let file = open_regular(path, "PNG image")?;
    let mut decoder = ::png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(::png::Transformations::EXPAND | ::png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| Error::bad_file(path, format!("not a PNG: {e}")))?;
    let size = reader.output_buffer_size().ok_or_else(|| Error::bad_file(path, "PNG dimensions too large"))?;
    crate::limits::check_memory(
        &format!("{}: a PNG of {}x{}", path.display(), reader.info().width, reader.info().height),
        size as u128 * 5,
    )?;
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf).map_err(|e| Error::bad_file(path, format!("corrupt PNG: {e}")))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let (c, stride) = match info.color_type {
        ::png::ColorType::Grayscale => (1, 1),
        ::png::ColorType::GrayscaleAlpha => (1, 2),
        ::png::ColorType::Rgb => (3, 3),
        ::png::ColorType::Rgba => (3, 4),
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
        1 => ::png::ColorType::Grayscale,
        3 => ::png::ColorType::Rgb,
        _ => return Err(std::io::Error::other(format!("{c} channels: PNG output needs 1 or 3"))),
    };
    let mut enc = ::png::Encoder::new(w, wd as u32, h as u32);
    enc.set_color(color);
    enc.set_depth(::png::BitDepth::Eight);
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

/// Writes interleaved 8-bit RGB pixels (row-major, `width` x `height`) as a PNG, atomically.
pub fn write_rgb_png(path: &Path, rgb: &[u8], width: usize, height: usize) -> Result<()> {
    if rgb.len() != width * height * 3 {
        return Err(Error::InvalidArgument(format!("{} bytes for an RGB image of {width}x{height}", rgb.len())));
    }
    write_atomically(path, |w| {
        let mut enc = ::png::Encoder::new(w, width as u32, height as u32);
        enc.set_color(::png::ColorType::Rgb);
        enc.set_depth(::png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(std::io::Error::other)?;
        writer.write_image_data(rgb).map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    })
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
    write_png_dir_from(dir, data, shape, 0)
}

/// [`write_png_dir`] for samples `first ..` of a set: file names carry the sample's index
/// in the whole set (`{first + i:06}.png`), so that the folders of shards merge by copying.
pub fn write_png_dir_from(dir: impl AsRef<Path>, data: &[f32], shape: [usize; 4], first: u64) -> Result<()> {
    let dir = dir.as_ref();
    let [n, c, h, w] = shape;
    check_png_channels(c)?;
    let write_all = |target: &Path| -> Result<()> {
        for i in 0..n {
            let item = &data[i * c * h * w..(i + 1) * c * h * w];
            write_atomically(target.join(format!("{:06}.png", first + i as u64)), |wr| encode_png(wr, item, c, h, w))?;
        }
        Ok(())
    };
    if dir.is_dir() {
        return write_all(dir);
    }
    create_dir_atomically(dir, write_all)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn png_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.png");
        let data = [-1.0, 1.0, 0.0, 1.0];
        write_png_grid_cols(&p, &data, [1, 1, 2, 2], None).unwrap();
        let (back, c, h, w) = read_png(&p).unwrap();
        assert_eq!((c, h, w), (1, 6, 6));
        assert_eq!(back[2 * 6 + 2], -1.0);
        assert_eq!(back[2 * 6 + 3], 1.0);
    }
}
