//! Ancestral sampling of Ho et al. 2020, "Denoising Diffusion Probabilistic Models"
//! (<https://arxiv.org/abs/2006.11239>), Algorithm 2, over any subsequence of the training
//! timesteps, as diffusers' `DDPMScheduler.step` does it.

use super::{affine_clip, prediction_coefficients, AffineStep, Layout, Sampler};
use crate::config::{PredictionType, VarianceType};
use crate::error::{Error, Result};
use crate::params::DdpmParams;
use crate::prediction::X0Clamp;
use crate::schedule::Schedule;
use crate::spacing::ddpm_timesteps;

/// DDPM's reverse chain over `steps` timesteps. Each step is an [`AffineStep`] (with a
/// learned variance, its noise scale is read per value from the model's second C
/// channels).
///
/// ```
/// use ddpm_runtime::params::DdpmParams;
/// use ddpm_runtime::sampler::{Ddpm, Sampler};
/// use ddpm_runtime::SchedulerConfig;
/// let ddpm = Ddpm::new(&DdpmParams::from_config(&SchedulerConfig::paper())?, 10)?;
/// assert_eq!(ddpm.timesteps(), &[900, 800, 700, 600, 500, 400, 300, 200, 100, 0]);
/// assert!(ddpm.needs_noise(0) && !ddpm.needs_noise(9));
/// # Ok::<(), ddpm_runtime::Error>(())
/// ```
pub struct Ddpm {
    schedule: Schedule,
    timesteps: Vec<i64>,
    prediction: PredictionType,
    clamp: X0Clamp,
    variance_type: VarianceType,
    /// x_0 and eps of one batch item, reused across steps.
    scratch: Vec<f64>,
}

impl Ddpm {
    /// The chain of `steps` timesteps that `params` describe.
    pub fn new(params: &DdpmParams, steps: usize) -> Result<Self> {
        let timesteps =
            ddpm_timesteps(params.chain.timestep_spacing, params.chain.schedule.num_train_timesteps(), steps, params.chain.steps_offset)?;
        Ok(Self {
            schedule: params.chain.schedule.clone(),
            timesteps,
            prediction: params.chain.prediction_type,
            clamp: params.chain.clamp,
            variance_type: params.variance_type,
            scratch: Vec::new(),
        })
    }

    /// Step `i` as an affine update, with the fixed variance (ignored for a learned one).
    fn coefficients(&self, i: usize) -> AffineStep {
        let t = self.timesteps[i];
        let prev_t = self.timesteps.get(i + 1).copied().unwrap_or(-1);
        let ab = self.schedule.alpha_bar(t);
        let (x0, eps) = prediction_coefficients(self.prediction, ab.sqrt(), (1.0 - ab).sqrt());
        let (c_x0, c_xt) = self.schedule.posterior_mean_coefficients(t, prev_t);
        let std = if t > 0 && !self.variance_type.is_learned() { self.schedule.posterior_std(t, prev_t, self.variance_type) } else { 0.0 };
        AffineStep { x0, eps, prev: [c_x0, 0.0, c_xt, std], clip: affine_clip(self.clamp).flatten() }
    }
}

impl Sampler for Ddpm {
    fn timesteps(&self) -> &[i64] {
        &self.timesteps
    }

    fn needs_noise(&self, i: usize) -> bool {
        self.timesteps.get(i).is_some_and(|&t| t > 0)
    }

    fn affine_step(&self, i: usize) -> Option<AffineStep> {
        if self.variance_type.is_learned() || i >= self.timesteps.len() {
            return None;
        }
        affine_clip(self.clamp)?;
        Some(self.coefficients(i))
    }

    fn step(
        &mut self,
        i: usize,
        model_output: &[f32],
        sample: &mut [f32],
        layout: Layout,
        noise: Option<&[f32]>,
        pred_x0: Option<&mut [f32]>,
    ) -> Result<()> {
        layout.check(model_output, sample, noise)?;
        let t = self.timesteps[i];
        let prev_t = self.timesteps.get(i + 1).copied().unwrap_or(-1);
        let learned = layout.out_channels == 2 * layout.channels && self.variance_type.is_learned();
        if self.variance_type.is_learned() && !learned {
            return Err(Error::Shape {
                name: "model output".into(),
                found: format!("{} channels", layout.out_channels),
                expected: format!("{} (variance_type {:?} needs a learned variance)", 2 * layout.channels, self.variance_type),
            });
        }
        let noise = match (t > 0, noise) {
            (true, Some(n)) => Some(n),
            (true, None) => return Err(Error::InvalidArgument(format!("DDPM step at t = {t} needs noise"))),
            (false, _) => None,
        };
        let coefficients = self.coefficients(i);
        let (schedule, variance_type) = (&self.schedule, self.variance_type);
        let learned_std = |v: f64| schedule.learned_std(t, prev_t, variance_type, v);
        let noise_std: Option<&dyn Fn(f64) -> f64> = if learned { Some(&learned_std) } else { None };
        coefficients.apply_batch(self.clamp, model_output, sample, layout, noise, pred_x0, &mut self.scratch, noise_std);
        Ok(())
    }
}
