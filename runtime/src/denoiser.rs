//! The one thing a sampler knows about a model: given x_t and t, return the model output.

use crate::error::Result;
use crate::sampler::AffineStep;
use crate::schedule::Schedule;

/// Shapes a denoiser works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelShape {
    /// Channels, height and width of a sample.
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Channels of the output: `channels`, or 2 x `channels` with a learned variance.
    pub out_channels: usize,
    /// Number of classes of a class-conditional model (labels 0..n), None otherwise.
    pub num_classes: Option<usize>,
}

impl ModelShape {
    pub fn pixels(&self) -> usize {
        self.height * self.width
    }
    pub fn sample_len(&self) -> usize {
        self.channels * self.pixels()
    }
}

/// A noise-prediction network eps_theta(x_t, t) (or any other prediction type).
///
/// ```
/// use ddpm_runtime::{Denoiser, ModelShape, Result};
/// /// Predicts zero noise everywhere.
/// struct Zero(ModelShape);
/// impl Denoiser for Zero {
///     fn shape(&self) -> ModelShape { self.0 }
///     fn predict(&mut self, sample: &[f32], _batch: usize, _t: i64, _labels: Option<&[i64]>) -> Result<Vec<f32>> {
///         Ok(vec![0.0; sample.len()])
///     }
/// }
/// let shape = ModelShape { channels: 1, height: 2, width: 2, out_channels: 1, num_classes: None };
/// let mut out = vec![1.0; 4];
/// Zero(shape).predict_into(&[0.5; 4], 1, 10, None, &mut out)?;
/// assert_eq!(out, vec![0.0; 4]);
/// # Ok::<(), ddpm_runtime::Error>(())
/// ```
///
/// # Shapes
/// `sample` is [batch, C, H, W] flattened; the result is [batch, C_out, H, W] flattened.
/// All items of a batch share the timestep `t`. `class_labels` has `batch` entries for a
/// class-conditional model and is None otherwise.
pub trait Denoiser {
    fn shape(&self) -> ModelShape;
    fn predict(&mut self, sample: &[f32], batch: usize, t: i64, class_labels: Option<&[i64]>) -> Result<Vec<f32>>;

    /// [`Denoiser::predict`] into a buffer of `batch * out_channels * H * W` values that the
    /// caller reuses across steps. The default calls `predict` and copies; backends that can
    /// write in place (the ONNX Runtime one) override it, so that a chain allocates nothing
    /// per step.
    fn predict_into(&mut self, sample: &[f32], batch: usize, t: i64, class_labels: Option<&[i64]>, out: &mut [f32]) -> Result<()> {
        let v = self.predict(sample, batch, t, class_labels)?;
        if v.len() != out.len() {
            return Err(crate::error::Error::Shape {
                name: "model output".into(),
                found: format!("{} values", v.len()),
                expected: format!("{} values", out.len()),
            });
        }
        out.copy_from_slice(&v);
        Ok(())
    }

    /// The fused-step view of this denoiser, when it has one (a graph exported with
    /// `--fused-step`); None by default.
    fn as_fused(&mut self) -> Option<&mut dyn FusedDenoiser> {
        None
    }
}

/// One model evaluation of a fused-step graph: the model's inputs and the step's
/// coefficients.
#[derive(Debug, Clone, Copy)]
pub struct FusedInput<'a> {
    /// x_t, [batch, C, H, W] flattened.
    pub sample: &'a [f32],
    pub batch: usize,
    pub t: i64,
    pub class_labels: Option<&'a [i64]>,
    /// The sampler's update at this step.
    pub step: &'a AffineStep,
    /// The step's Gaussian noise (same layout as `sample`), None for a deterministic step.
    pub noise: Option<&'a [f32]>,
}

/// A denoiser that also applies a sampler's [`AffineStep`] inside the model (a graph
/// exported with `exporter onnx --fused-step`), so that a step is one call.
pub trait FusedDenoiser {
    /// Evaluates the model and the update: writes x_prev to `prev` and the clamped predicted
    /// x_0 to `pred_x0` (both the layout of `input.sample`).
    fn fused_step(&mut self, input: FusedInput<'_>, prev: &mut [f32], pred_x0: &mut [f32]) -> Result<()>;
}

/// `&mut D` and `Box<D>` are denoisers when D is: every method forwards.
macro_rules! forward_denoiser {
    ($($ty:ty),*) => {$(
        impl<D: Denoiser + ?Sized> Denoiser for $ty {
            fn shape(&self) -> ModelShape {
                (**self).shape()
            }
            fn predict(&mut self, sample: &[f32], batch: usize, t: i64, class_labels: Option<&[i64]>) -> Result<Vec<f32>> {
                (**self).predict(sample, batch, t, class_labels)
            }
            fn predict_into(
                &mut self,
                sample: &[f32],
                batch: usize,
                t: i64,
                class_labels: Option<&[i64]>,
                out: &mut [f32],
            ) -> Result<()> {
                (**self).predict_into(sample, batch, t, class_labels, out)
            }
            fn as_fused(&mut self) -> Option<&mut dyn FusedDenoiser> {
                (**self).as_fused()
            }
        }
    )*};
}

forward_denoiser!(&mut D, Box<D>);

/// The exact noise predictor for data x_0 ~ N(mean, std^2), each value independent.
///
/// With x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps, x_t is Gaussian and
/// E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) mean) / (ab std^2 + 1 - ab).
/// A correct sampler driven by it turns N(0, I) into N(mean, std^2): a test of the whole
/// chain that needs no trained network.
#[derive(Debug, Clone)]
pub struct GaussianDenoiser {
    pub mean: f64,
    pub std: f64,
    pub schedule: Schedule,
    pub shape: ModelShape,
}

impl Denoiser for GaussianDenoiser {
    fn shape(&self) -> ModelShape {
        self.shape
    }
    fn predict(&mut self, sample: &[f32], batch: usize, t: i64, labels: Option<&[i64]>) -> Result<Vec<f32>> {
        let mut out = vec![0.0; sample.len()];
        self.predict_into(sample, batch, t, labels, &mut out)?;
        Ok(out)
    }
    fn predict_into(&mut self, sample: &[f32], _batch: usize, t: i64, _labels: Option<&[i64]>, out: &mut [f32]) -> Result<()> {
        self.schedule.check_timestep(t)?;
        if out.len() != sample.len() {
            return Err(crate::error::Error::Shape {
                name: "model output".into(),
                found: format!("{} values", out.len()),
                expected: format!("{} values", sample.len()),
            });
        }
        let ab = self.schedule.alpha_bar(t);
        let s = (1.0 - ab).sqrt();
        let var = ab * self.std * self.std + 1.0 - ab;
        let shift = ab.sqrt() * self.mean;
        out.iter_mut().zip(sample).for_each(|(o, &x)| *o = (s * (x as f64 - shift) / var) as f32);
        Ok(())
    }
}
