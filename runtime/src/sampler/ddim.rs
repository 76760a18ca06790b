//! Song, Meng & Ermon 2020, "Denoising Diffusion Implicit Models"
//! (<https://arxiv.org/abs/2010.02502>), eq. 12, with diffusers' `DDIMScheduler.step`
//! conventions (previous timestep t - T / S, alpha-bar_{-1} from set_alpha_to_one).

use super::{Layout, Sampler};
use crate::config::{PredictionType, SchedulerConfig, TimestepSpacing};
use crate::error::{Error, Result};
use crate::prediction::{to_x0_eps, X0Clamp};
use crate::schedule::Schedule;
use crate::spacing::ddpm_timesteps;

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
    pub fn new(config: &SchedulerConfig, steps: usize, eta: f64) -> Result<Self> {
        let schedule = Schedule::from_config(config)?;
        let t_count = schedule.num_train_timesteps();
        let timesteps = ddpm_timesteps(
            config.timestep_spacing.unwrap_or(TimestepSpacing::Leading),
            t_count,
            steps,
            config.steps_offset.unwrap_or(0),
        )?;
        let final_alpha_cumprod =
            if config.set_alpha_to_one.unwrap_or(true) { 1.0 } else { schedule.alphas_cumprod()[0] };
        Ok(Self {
            step_ratio: (t_count / steps) as i64,
            schedule,
            timesteps,
            prediction: config.prediction(),
            clamp: X0Clamp::from_config(config, true),
            final_alpha_cumprod,
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
}

impl Sampler for Ddim {
    fn timesteps(&self) -> &[i64] {
        &self.timesteps
    }

    fn needs_noise(&self, _i: usize) -> bool {
        self.eta > 0.0
    }

    fn affine_step(&self, i: usize) -> Option<super::AffineStep> {
        let t = *self.timesteps.get(i)?;
        let (ab_t, ab_prev) = (self.alpha_bar(t), self.alpha_bar(t - self.step_ratio));
        let (a, s) = (ab_t.sqrt(), (1.0 - ab_t).sqrt());
        let variance = (1.0 - ab_prev) / (1.0 - ab_t) * (1.0 - ab_t / ab_prev);
        let std = self.eta * variance.sqrt();
        let dir = (1.0 - ab_prev - std * std).sqrt();
        let r = super::clamp_range(self.clamp)?;
        Some(super::affine(super::prediction_coefficients(self.prediction, a, s), [ab_prev.sqrt(), dir, 0.0, std], r))
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
        let noise = if self.eta > 0.0 {
            Some(noise.ok_or_else(|| Error::InvalidArgument("DDIM with eta > 0 needs noise".into()))?)
        } else {
            None
        };
        let t = self.timesteps[i];
        let prev_t = t - self.step_ratio;
        let (ab_t, ab_prev) = (self.alpha_bar(t), self.alpha_bar(prev_t));
        let (a, s) = (ab_t.sqrt(), (1.0 - ab_t).sqrt());
        let variance = (1.0 - ab_prev) / (1.0 - ab_t) * (1.0 - ab_t / ab_prev);
        let std = self.eta * variance.sqrt();
        let dir = (1.0 - ab_prev - std * std).sqrt();
        let a_prev = ab_prev.sqrt();
        let (n, on) = (layout.item_len(), layout.out_item_len());
        if self.scratch.len() < 2 * n {
            self.scratch.resize(2 * n, 0.0);
        }
        let (x0, eps) = self.scratch[..2 * n].split_at_mut(n);
        for b in 0..layout.batch {
            let xs = &mut sample[b * n..(b + 1) * n];
            let out = &model_output[b * on..b * on + n];
            for j in 0..n {
                (x0[j], eps[j]) = to_x0_eps(self.prediction, a, s, xs[j] as f64, out[j] as f64);
            }
            self.clamp.apply(x0);
            if let Some(p) = pred_x0.as_deref_mut() {
                p[b * n..(b + 1) * n].iter_mut().zip(x0.iter()).for_each(|(d, &v)| *d = v as f32);
            }
            for j in 0..n {
                let mut v = a_prev * x0[j] + dir * eps[j];
                if let Some(z) = noise {
                    v += std * z[b * n + j] as f64;
                }
                xs[j] = v as f32;
            }
        }
        Ok(())
    }
}
