//! Ancestral sampling of Ho et al. 2020, "Denoising Diffusion Probabilistic Models"
//! (<https://arxiv.org/abs/2006.11239>), Algorithm 2, over any subsequence of the training
//! timesteps, as diffusers' `DDPMScheduler.step` does it.

use super::{Layout, Sampler};
use crate::config::{PredictionType, SchedulerConfig, TimestepSpacing, VarianceType};
use crate::error::{Error, Result};
use crate::prediction::{to_x0_eps, X0Clamp};
use crate::schedule::Schedule;
use crate::spacing::ddpm_timesteps;

pub struct Ddpm {
    schedule: Schedule,
    timesteps: Vec<i64>,
    prediction: PredictionType,
    clamp: X0Clamp,
    variance_type: VarianceType,
    /// x_0 of one batch item, reused across steps.
    scratch: Vec<f64>,
}

impl Ddpm {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        let schedule = Schedule::from_config(config)?;
        let timesteps = ddpm_timesteps(
            config.timestep_spacing.unwrap_or(TimestepSpacing::Leading),
            schedule.num_train_timesteps(),
            steps,
            config.steps_offset.unwrap_or(0),
        )?;
        Ok(Self {
            schedule,
            timesteps,
            prediction: config.prediction(),
            clamp: X0Clamp::from_config(config, true),
            variance_type: config.variance_type.unwrap_or(VarianceType::FixedSmall),
            scratch: Vec::new(),
        })
    }
}

impl Sampler for Ddpm {
    fn timesteps(&self) -> &[i64] {
        &self.timesteps
    }

    fn needs_noise(&self, i: usize) -> bool {
        self.timesteps.get(i).is_some_and(|&t| t > 0)
    }

    fn affine_step(&self, i: usize) -> Option<super::AffineStep> {
        if self.variance_type.is_learned() {
            return None;
        }
        let t = *self.timesteps.get(i)?;
        let prev_t = self.timesteps.get(i + 1).copied().unwrap_or(-1);
        let ab = self.schedule.alpha_bar(t);
        let (a, s) = (ab.sqrt(), (1.0 - ab).sqrt());
        let (c_x0, c_xt) = self.schedule.posterior_mean_coefficients(t, prev_t);
        let std = if t > 0 { self.schedule.posterior_std(t, prev_t, self.variance_type) } else { 0.0 };
        let r = super::clamp_range(self.clamp)?;
        Some(super::affine(super::prediction_coefficients(self.prediction, a, s), [c_x0, 0.0, c_xt, std], r))
    }

    fn step(
        &mut self,
        i: usize,
        model_output: &[f32],
        sample: &mut [f32],
        layout: Layout,
        noise: Option<&[f32]>,
        mut pred_x0: Option<&mut [f32]>,
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
        let ab = self.schedule.alpha_bar(t);
        let (a, s) = (ab.sqrt(), (1.0 - ab).sqrt());
        let (c_x0, c_xt) = self.schedule.posterior_mean_coefficients(t, prev_t);
        let fixed_std = self.schedule.posterior_std(t, prev_t, self.variance_type);
        let (n, on) = (layout.item_len(), layout.out_item_len());
        if self.scratch.len() < n {
            self.scratch.resize(n, 0.0);
        }
        let x0 = &mut self.scratch[..n];
        for b in 0..layout.batch {
            let xs = &mut sample[b * n..(b + 1) * n];
            let out = &model_output[b * on..b * on + on];
            for j in 0..n {
                x0[j] = to_x0_eps(self.prediction, a, s, xs[j] as f64, out[j] as f64).0;
            }
            self.clamp.apply(x0);
            if let Some(p) = pred_x0.as_deref_mut() {
                p[b * n..(b + 1) * n].iter_mut().zip(x0.iter()).for_each(|(d, &v)| *d = v as f32);
            }
            for j in 0..n {
                let mut v = c_x0 * x0[j] + c_xt * xs[j] as f64;
                if let Some(z) = noise {
                    let std = if learned {
                        self.schedule.learned_std(t, prev_t, self.variance_type, out[n + j] as f64)
                    } else {
                        fixed_std
                    };
                    v += std * z[b * n + j] as f64;
                }
                xs[j] = v as f32;
            }
        }
        Ok(())
    }
}
