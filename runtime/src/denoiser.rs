//! The one thing a sampler knows about a model: given x_t and t, return the model output.

use crate::error::Result;
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
    fn predict_into(
        &mut self,
        sample: &[f32],
        batch: usize,
        t: i64,
        class_labels: Option<&[i64]>,
        out: &mut [f32],
    ) -> Result<()> {
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

    /// Whether [`Denoiser::fused_step`] is there (a graph exported with `--fused-step`).
    fn supports_fused_step(&self) -> bool {
        false
    }

    /// One model evaluation and one sampler update in the model (see
    /// [`crate::sampler::Sampler::affine_step`]): writes x_prev to `prev` and the clamped
    /// predicted x_0 to `pred_x0`.
    #[allow(clippy::too_many_arguments)]
    fn fused_step(
        &mut self,
        _sample: &[f32],
        _batch: usize,
        _t: i64,
        _class_labels: Option<&[i64]>,
        _coefficients: &crate::sampler::AffineStep,
        _noise: Option<&[f32]>,
        _prev: &mut [f32],
        _pred_x0: &mut [f32],
    ) -> Result<()> {
        Err(crate::error::Error::InvalidArgument("this denoiser has no fused step".into()))
    }
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
            fn supports_fused_step(&self) -> bool {
                (**self).supports_fused_step()
            }
            fn fused_step(
                &mut self,
                sample: &[f32],
                batch: usize,
                t: i64,
                class_labels: Option<&[i64]>,
                coefficients: &crate::sampler::AffineStep,
                noise: Option<&[f32]>,
                prev: &mut [f32],
                pred_x0: &mut [f32],
            ) -> Result<()> {
                (**self).fused_step(sample, batch, t, class_labels, coefficients, noise, prev, pred_x0)
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
