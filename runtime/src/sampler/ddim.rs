//! Song, Meng & Ermon 2020, "Denoising Diffusion Implicit Models"
//! (<https://arxiv.org/abs/2010.02502>), eq. 12, with diffusers' `DDIMScheduler.step`
//! conventions (previous timestep t - T / S, alpha-bar_{-1} from set_alpha_to_one).

use super::{affine_clip, prediction_coefficients, AffineStep, Layout, Sampler};
use crate::config::PredictionType;
use crate::error::{Error, Result};
use crate::params::DdimParams;
use crate::prediction::X0Clamp;
use crate::schedule::Schedule;
use crate::spacing::ddpm_timesteps;

/// DDIM's chain over `steps` timesteps; every step is an [`AffineStep`].
///
/// ```
/// use ddpm_runtime::params::DdimParams;
/// use ddpm_runtime::sampler::{Ddim, Sampler};
/// use ddpm_runtime::SchedulerConfig;
/// let ddim = Ddim::new(&DdimParams::from_config(&SchedulerConfig::paper())?, 4, 0.0)?;
/// assert_eq!(ddim.timesteps(), &[750, 500, 250, 0]);
/// assert!(!ddim.needs_noise(0)); // eta = 0: deterministic
/// # Ok::<(), ddpm_runtime::Error>(())
/// ```
pub struct Ddim {
    schedule: Schedule,
    timesteps: Vec<i64>,
    prediction: PredictionType,
    clamp: X0Clamp,
    final_alpha_cumprod: f64,
    step_ratio: i64,
    eta: f64,
    /// x_0 and epsilon of one batch item, reused across steps.
    scratch: Vec<f64>,
}

impl Ddim {
    /// The chain of `steps` timesteps that `params` describe, with DDIM's `eta` (0:
    /// deterministic, 1: DDPM-like noise).
    pub fn new(params: &DdimParams, steps: usize, eta: f64) -> Result<Self> {
        let t_count = params.chain.schedule.num_train_timesteps();
        let timesteps = ddpm_timesteps(params.chain.timestep_spacing, t_count, steps, params.chain.steps_offset)?;
        Ok(Self {
            step_ratio: (t_count / steps) as i64,
            schedule: params.chain.schedule.clone(),
            timesteps,
            prediction: params.chain.prediction_type,
            clamp: params.chain.clamp,
            final_alpha_cumprod: params.final_alpha_cumprod,
            eta,
            scratch: Vec::new(),
        })
    }

    fn alpha_bar(&self, t: i64) -> f64 {
        if t >= 0 {
            self.schedule.alphas_cumprod()[t as usize]
        } else {
            self.final_alpha_cumprod
        }
    }

    /// Step `i` (eq. 12 with sigma = eta * sqrt of eq. 16's variance) as an affine update.
    fn coefficients(&self, i: usize) -> AffineStep {
        let t = self.timesteps[i];
        let (ab_t, ab_prev) = (self.alpha_bar(t), self.alpha_bar(t - self.step_ratio));
        let (x0, eps) = prediction_coefficients(self.prediction, ab_t.sqrt(), (1.0 - ab_t).sqrt());
        let variance = (1.0 - ab_prev) / (1.0 - ab_t) * (1.0 - ab_t / ab_prev);
        let std = self.eta * variance.sqrt();
        let dir = (1.0 - ab_prev - std * std).sqrt();
        AffineStep { x0, eps, prev: [ab_prev.sqrt(), dir, 0.0, std], clip: affine_clip(self.clamp).flatten() }
    }
}

impl Sampler for Ddim {
    fn timesteps(&self) -> &[i64] {
        &self.timesteps
    }

    fn needs_noise(&self, _i: usize) -> bool {
        self.eta > 0.0
    }

    fn affine_step(&self, i: usize) -> Option<AffineStep> {
        if i >= self.timesteps.len() {
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
        let noise =
            if self.eta > 0.0 { Some(noise.ok_or_else(|| Error::InvalidArgument("DDIM with eta > 0 needs noise".into()))?) } else { None };
        let coefficients = self.coefficients(i);
        coefficients.apply_batch(self.clamp, model_output, sample, layout, noise, pred_x0, &mut self.scratch, None);
        Ok(())
    }
}
