//! Sample quality: Fréchet distance between feature distributions (Heusel et al. 2017,
//! "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium")
//! in the feature space of a pluggable ONNX feature extractor, plus the extractor's mean
//! top-class confidence and the entropy of its class histogram.
//!
//! The `runtime eval` command of the CLI is this crate; it sits apart from `ddpm-runtime` so
//! that an application that samples compiles no linear algebra.
#![warn(clippy::unwrap_used)]

use std::path::Path;

use nalgebra::{DMatrix, DVector, SymmetricEigen};
use ort::session::Session;
use ort::value::Tensor;

use ddpm_runtime::{Error, Result};

/// An ONNX network with one image input [B, C, H, W] and an output named `features`
/// (else its last output); an output named `logits` gives the class statistics.
pub struct FeatureExtractor {
    name: String,
    session: Session,
    input: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl FeatureExtractor {
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = ddpm_io::files::read_regular_file(path, 2 << 30, "ONNX feature extractor")?;
        Self::from_memory(&bytes, &path.display().to_string())
    }

    pub fn from_memory(bytes: &[u8], name: &str) -> Result<Self> {
        let env = ddpm_runtime::onnx::environment(None)?;
        let session = Session::builder(&env)?
            .with_intra_threads(ddpm_runtime::sys::physical_cores())
            .map_err(ort::Error::from)?
            .commit_from_memory(bytes)
            .map_err(|e| Error::bad_file(name, format!("not a loadable ONNX model: {e}")))?;
        let input = session.inputs().first().ok_or_else(|| Error::bad_file(name, "the extractor has no input"))?;
        let dims = match input.dtype() {
            ort::value::ValueType::Tensor { shape, .. } if shape.len() == 4 => shape.to_vec(),
            _ => return Err(Error::bad_file(name, "the extractor's input must be an image batch [B, C, H, W]")),
        };
        if dims[1..].iter().any(|&d| d <= 0) {
            return Err(Error::bad_file(name, "the extractor's input must have fixed C, H and W"));
        }
        let image: Vec<usize> = dims[1..].iter().map(|&d| d as usize).collect();
        ddpm_io::limits::check_memory(
            &format!("{name}: a batch of 256 images of {}x{}x{} (the extractor's input)", image[0], image[1], image[2]),
            ddpm_io::limits::bytes_of(&image, 4 * 256 * 2),
        )?;
        if !session.outputs().iter().any(|o| o.name() == "features") {
            tracing::info!("{name}: no output named `features`; using its last output");
        }
        Ok(Self {
            name: name.to_string(),
            input: input.name().to_string(),
            channels: dims[1] as usize,
            height: dims[2] as usize,
            width: dims[3] as usize,
            session,
        })
    }

    /// Features [n, d] and, if the network has a `logits` output, logits [n, k].
    pub fn features(&mut self, images: &[f32], n: usize) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        let per = self.channels * self.height * self.width;
        if images.len() != n * per {
            return Err(Error::Shape {
                name: "images".into(),
                found: format!("{} values", images.len()),
                expected: format!("[{n}, {}, {}, {}]", self.channels, self.height, self.width),
            });
        }
        let (mut feats, mut logits) = (Vec::new(), Vec::new());
        let mut has_logits = false;
        for start in (0..n).step_by(256) {
            let b = (n - start).min(256);
            let x = Tensor::from_array((
                vec![b as i64, self.channels as i64, self.height as i64, self.width as i64],
                images[start * per..(start + b) * per].to_vec(),
            ))?;
            let out = self
                .session
                .run(ort::inputs![self.input.as_str() => x])
                .map_err(|e| Error::bad_file(&self.name, format!("ONNX Runtime could not run the extractor: {e}")))?;
            let bad_output = |what: &str, msg: String| Error::bad_file(&self.name, format!("extractor output `{what}`: {msg}"));
            let (fname, f) = match out.get("features") {
                Some(f) => ("features".to_string(), f),
                None => {
                    let last = out.len().checked_sub(1).ok_or_else(|| bad_output("features", "the extractor has no output".into()))?;
                    ("(the last output)".to_string(), &out[last])
                }
            };
            let (shape, values) = f.try_extract_tensor::<f32>().map_err(|e| bad_output(&fname, format!("{e}, expected float32")))?;
            if shape.len() != 2 || shape[0] != b as i64 || shape[1] < 1 {
                return Err(bad_output(&fname, format!("shape {:?}, expected [{b}, D] with D at least 1", &shape[..])));
            }
            feats.extend_from_slice(values);
            if let Some(l) = out.get("logits") {
                let (shape, values) = l.try_extract_tensor::<f32>().map_err(|e| bad_output("logits", format!("{e}, expected float32")))?;
                if shape.len() != 2 || shape[0] != b as i64 || shape[1] < 1 {
                    return Err(bad_output("logits", format!("shape {:?}, expected [{b}, K] with K at least 1", &shape[..])));
                }
                has_logits = true;
                logits.extend_from_slice(values);
            }
        }
        if feats.iter().any(|v| !v.is_finite()) {
            return Err(Error::bad_file(&self.name, "extractor output `features` contains NaN or infinite values"));
        }
        if logits.iter().any(|v| !v.is_finite()) {
            return Err(Error::bad_file(&self.name, "extractor output `logits` contains NaN or infinite values"));
        }
        Ok((feats, has_logits.then_some(logits)))
    }
}

/// Mean and covariance (unbiased) of n row vectors of dimension d.
pub fn moments(x: &[f32], n: usize, d: usize) -> (DVector<f64>, DMatrix<f64>) {
    let m = DMatrix::from_row_slice(n, d, &x.iter().map(|&v| v as f64).collect::<Vec<_>>());
    let mean = DVector::from_iterator(d, (0..d).map(|j| m.column(j).mean()));
    let mut centred = m;
    for j in 0..d {
        let mj = mean[j];
        centred.column_mut(j).add_scalar_mut(-mj);
    }
    let cov = centred.transpose() * &centred / ((n.max(2) - 1) as f64);
    (mean, cov)
}

fn sym_sqrt(a: &DMatrix<f64>) -> DMatrix<f64> {
    let e = SymmetricEigen::new(a.clone());
    let s = e.eigenvalues.map(|v| v.max(0.0).sqrt());
    &e.eigenvectors * DMatrix::from_diagonal(&s) * e.eigenvectors.transpose()
}

/// ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), with tr((S1 S2)^(1/2)) computed as
/// tr((S1^(1/2) S2 S1^(1/2))^(1/2)) (symmetric, so a symmetric eigen-decomposition does).
pub fn frechet_distance(m1: &DVector<f64>, s1: &DMatrix<f64>, m2: &DVector<f64>, s2: &DMatrix<f64>) -> f64 {
    let r1 = sym_sqrt(s1);
    let inner = &r1 * s2 * &r1;
    let inner = (&inner + inner.transpose()) * 0.5;
    let tr_sqrt: f64 = SymmetricEigen::new(inner).eigenvalues.iter().map(|v| v.max(0.0).sqrt()).sum();
    ((m1 - m2).norm_squared() + s1.trace() + s2.trace() - 2.0 * tr_sqrt).max(0.0)
}

/// What `runtime eval` reports.
#[derive(Debug, Clone)]
pub struct Report {
    pub n_samples: usize,
    pub n_real: usize,
    pub fid: f64,
    /// Mean max softmax probability of the samples (extractors with logits).
    pub confidence: Option<f64>,
    /// Entropy (nats) of the samples' predicted-class histogram.
    pub class_entropy: Option<f64>,
    /// Predicted class of each sample.
    pub predicted: Option<Vec<usize>>,
}

/// (mean max-softmax, histogram entropy in nats, argmax per row) of logits [n, k].
pub fn class_stats(logits: &[f32], n: usize) -> (f64, f64, Vec<usize>) {
    let k = logits.len() / n.max(1);
    let mut conf = 0.0;
    let mut hist = vec![0usize; k];
    let mut pred = Vec::with_capacity(n);
    for row in logits.chunks(k) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
        let z: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
        conf += 1.0 / z;
        let arg = row.iter().enumerate().fold(0, |a, (i, &v)| if v > row[a] { i } else { a });
        hist[arg] += 1;
        pred.push(arg);
    }
    let entropy = -hist
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n as f64;
            p * p.ln()
        })
        .sum::<f64>();
    (conf / n as f64, entropy, pred)
}

/// FID and class statistics of `samples` against `real` (both [n, C, H, W] in [-1, 1]).
pub fn evaluate(extractor: &mut FeatureExtractor, samples: &[f32], n_samples: usize, real: &[f32], n_real: usize) -> Result<Report> {
    if n_samples < 2 || n_real < 2 {
        return Err(Error::InvalidArgument("FID needs at least 2 samples and 2 real images".into()));
    }
    let (fs, logits) = extractor.features(samples, n_samples)?;
    let d = fs.len() / n_samples;
    // The moments hold an [n, d] matrix and a few [d, d] ones in float64.
    ddpm_io::limits::check_memory(
        &format!("FID over {d} features of {} images", n_samples.max(n_real)),
        ddpm_io::limits::bytes_of(&[d, d], 8 * 8) + ddpm_io::limits::bytes_of(&[n_samples.max(n_real), d], 8 * 2),
    )?;
    let (fr, _) = extractor.features(real, n_real)?;
    let (m1, s1) = moments(&fs, n_samples, d);
    let (m2, s2) = moments(&fr, n_real, d);
    let fid = frechet_distance(&m1, &s1, &m2, &s2);
    if !fid.is_finite() {
        return Err(Error::NonFinite("the Fréchet distance (the features' covariance)".into()));
    }
    let (confidence, class_entropy, predicted) = match logits {
        Some(l) => {
            let (c, e, p) = class_stats(&l, n_samples);
            (Some(c), Some(e), Some(p))
        }
        None => (None, None, None),
    };
    Ok(Report { n_samples, n_real, fid, confidence, class_entropy, predicted })
}

/// A set of real images [N, C, H, W] in [-1, 1], with their class labels when the set has
/// them.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    pub data: Vec<f32>,
    pub shape: [usize; 4],
    /// From the IDX label file beside the images, a CIFAR-10 batch, or class sub-folders
    /// of PNGs (their sorted names are labels 0, 1, ...).
    pub labels: Option<Vec<i64>>,
    /// Where the labels come from, for messages ("test-labels-idx1-ubyte.gz").
    pub labels_source: Option<String>,
}

/// Loads an image set as [n, C, H, W] in [-1, 1]: a float32 .npy (values as the sampler
/// left them), a folder of PNGs, or an MNIST IDX images file (plain or .gz).
pub fn load_images(path: &Path) -> Result<(Vec<f32>, [usize; 4])> {
    let set = load_image_set(path)?;
    Ok((set.data, set.shape))
}

fn bytes_to_unit(bytes: &[u8]) -> Vec<f32> {
    bytes.iter().map(|&p| p as f32 / 127.5 - 1.0).collect()
}

/// The PNGs of a folder, sorted.
fn pngs_in(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
        .collect();
    files.sort();
    Ok(files)
}

/// Loads an image set with its labels: what [`load_images`] reads, plus class sub-folders
/// of PNGs and CIFAR-10 batches (a `.bin` file, or a folder of `data_batch_*.bin` or
/// `test_batch.bin`).
///
/// ```no_run
/// let set = ddpm_eval::load_image_set(std::path::Path::new("data/mnist/test-images-idx3-ubyte.gz"))?;
/// assert_eq!(set.labels.as_ref().map(Vec::len), Some(set.shape[0]));
/// # Ok::<(), ddpm_runtime::Error>(())
/// ```
pub fn load_image_set(path: &Path) -> Result<ImageSet> {
    let unlabeled = |data, shape| ImageSet { data, shape, labels: None, labels_source: None };
    if path.is_dir() {
        let cifar = ddpm_io::cifar::batches_in(path);
        if !cifar.is_empty() {
            return cifar_set(&cifar);
        }
        let flat = pngs_in(path)?;
        let mut classes: Vec<std::path::PathBuf> =
            std::fs::read_dir(path).map_err(|e| Error::io(path, e))?.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
        classes.sort();
        let (files, labels): (Vec<std::path::PathBuf>, Option<Vec<i64>>) = if flat.is_empty() && !classes.is_empty() {
            let mut files = Vec::new();
            let mut labels = Vec::new();
            for (k, dir) in classes.iter().enumerate() {
                for f in pngs_in(dir)? {
                    files.push(f);
                    labels.push(k as i64);
                }
            }
            (files, Some(labels))
        } else {
            (flat, None)
        };
        if files.is_empty() {
            return Err(Error::bad_file(path, "no .png files in this folder (nor in class sub-folders)"));
        }
        let mut data = Vec::new();
        let mut dims: Option<[usize; 3]> = None;
        for f in &files {
            let (pixels, c, h, w) = ddpm_io::png::read_png(f)?;
            if let Some(d) = dims {
                if d != [c, h, w] {
                    return Err(Error::Shape {
                        name: f.display().to_string(),
                        found: format!("{c}x{h}x{w}"),
                        expected: format!("{}x{}x{}", d[0], d[1], d[2]),
                    });
                }
            }
            dims = Some([c, h, w]);
            data.extend(pixels);
        }
        let [c, h, w] = dims.unwrap_or([0, 0, 0]);
        let labels_source = labels.as_ref().map(|_| format!("the class sub-folders of {}", path.display()));
        return Ok(ImageSet { data, shape: [files.len(), c, h, w], labels, labels_source });
    }
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    if name.ends_with(".npy") {
        let (data, shape) = ddpm_io::npy::read_npy(path)?;
        if shape.len() != 4 {
            return Err(Error::Shape { name: path.display().to_string(), found: format!("{shape:?}"), expected: "[N, C, H, W]".into() });
        }
        return Ok(unlabeled(data, [shape[0], shape[1], shape[2], shape[3]]));
    }
    if name.ends_with(".bin") {
        return cifar_set(&[path.to_path_buf()]);
    }
    if name.contains("idx3") {
        // Decompressed no further than the memory limit allows (a gzip bomb stops there).
        let (limit, _) = ddpm_io::limits::memory_limit();
        let max = (4u64 << 30).min(limit / 5);
        let idx = ddpm_io::idx::read_idx(path, 3, max, "IDX images file")?;
        let [n, h, w] = [idx.dims[0], idx.dims[1], idx.dims[2]];
        ddpm_io::limits::check_memory(
            &format!("{}: {n} images of {h}x{w} as float32", path.display()),
            ddpm_io::limits::bytes_of(&[n, h, w], 4),
        )?;
        let (labels, labels_source) = match ddpm_io::idx::labels_beside(path) {
            Some(lp) => {
                let l = ddpm_io::idx::read_idx(&lp, 1, max, "IDX labels file")?;
                if l.dims[0] != n {
                    return Err(Error::bad_file(&lp, format!("{} labels, expected {n} (one per image of {})", l.dims[0], path.display())));
                }
                (Some(l.data.iter().map(|&v| v as i64).collect()), Some(lp.display().to_string()))
            }
            None => (None, None),
        };
        return Ok(ImageSet { data: bytes_to_unit(&idx.data), shape: [n, 1, h, w], labels, labels_source });
    }
    Err(Error::bad_file(path, "expected a .npy file, a folder of PNGs, an IDX images file, or CIFAR-10 batches"))
}

fn cifar_set(files: &[std::path::PathBuf]) -> Result<ImageSet> {
    let (limit, _) = ddpm_io::limits::memory_limit();
    let (pixels, labels) = ddpm_io::cifar::read_batches(files, limit / 5)?;
    let n = labels.len();
    ddpm_io::limits::check_memory(&format!("{n} CIFAR-10 images as float32"), ddpm_io::limits::bytes_of(&[n, 3, 32, 32], 4))?;
    let source = files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
    Ok(ImageSet { data: bytes_to_unit(&pixels), shape: [n, 3, 32, 32], labels: Some(labels), labels_source: Some(source) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frechet_distance_of_gaussians_is_closed_form() {
        // N(0, I) vs N(m, 4 I) in 3-D: |m|^2 + tr(I + 4I - 2*2I) = |m|^2 + 3.
        let (m1, s1) = (DVector::zeros(3), DMatrix::identity(3, 3));
        let (m2, s2) = (DVector::from_vec(vec![1.0, 2.0, 0.0]), DMatrix::identity(3, 3) * 4.0);
        assert!((frechet_distance(&m1, &s1, &m2, &s2) - 8.0).abs() < 1e-9);
        assert!(frechet_distance(&m2, &s2, &m2, &s2).abs() < 1e-9);
    }

    #[test]
    fn class_stats_of_certain_uniform_predictions() {
        let logits: Vec<f32> = (0..4).flat_map(|i| (0..4).map(move |j| if i == j { 50.0 } else { 0.0 })).collect();
        let (conf, ent, pred) = class_stats(&logits, 4);
        assert!((conf - 1.0).abs() < 1e-9);
        assert!((ent - 4f64.ln()).abs() < 1e-12);
        assert_eq!(pred, vec![0, 1, 2, 3]);
    }
}
