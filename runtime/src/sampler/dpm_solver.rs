//! Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
//! Probabilistic Models" (<https://arxiv.org/abs/2211.01095>): the multistep second-order
//! data-prediction solver (2M, midpoint), as diffusers' `DPMSolverMultistepScheduler` runs
//! it with algorithm_type dpmsolver++, solver_order 2 and final_sigmas_type zero.

use super::{Layout, Sampler};
use crate::config::PredictionType;
use crate::error::Result;
use crate::params::DpmSolverParams;
use crate::prediction::{to_x0_eps, X0Clamp};
use crate::spacing::dpm_solver_timesteps;

/// DPM-Solver++ 2M over `steps` timesteps; its multistep state is held explicitly.
pub struct DpmSolverPP {
    timesteps: Vec<i64>,
    /// sigma_i = sqrt((1 - ab) / ab) at each timestep, then the final sigma (0).
    sigmas: Vec<f64>,
    prediction: PredictionType,
    clamp: X0Clamp,
    order: usize,
    /// This step's and the previous step's data prediction (x_0), for the second-order
    /// update; swapped, not reallocated, between steps.
    x0: Vec<f32>,
    prev_x0: Vec<f32>,
    has_prev: bool,
    /// x_0 of one batch item in float64.
    item: Vec<f64>,
    lower_order_nums: usize,
}

/// (alpha_t, sigma_t, lambda_t) of the VP process at noise level sigma.
fn alpha_sigma_lambda(sigma: f64) -> (f64, f64, f64) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    let sigma_t = sigma * alpha;
    (alpha, sigma_t, alpha.ln() - sigma_t.ln())
}

impl DpmSolverPP {
    /// The chain of `steps` timesteps that `params` describe.
    ///
    /// ```
    /// use ddpm_runtime::params::DpmSolverParams;
    /// use ddpm_runtime::sampler::{DpmSolverPP, Sampler};
    /// use ddpm_runtime::SchedulerConfig;
    /// let dpm = DpmSolverPP::new(&DpmSolverParams::from_config(&SchedulerConfig::paper())?, 5)?;
    /// assert_eq!(dpm.timesteps(), &[999, 799, 599, 400, 200]);
    /// # Ok::<(), ddpm_runtime::Error>(())
    /// ```
    pub fn new(params: &DpmSolverParams, steps: usize) -> Result<Self> {
        let mut alphas_cumprod = params.chain.schedule.alphas_cumprod().to_vec();
        if params.zero_terminal_snr {
            // Zero terminal SNR makes sigma infinite; diffusers nudges it, so do we.
            if let Some(last) = alphas_cumprod.last_mut() {
                *last = 2f64.powi(-24);
            }
        }
        let timesteps = dpm_solver_timesteps(
            params.chain.timestep_spacing,
            params.chain.schedule.num_train_timesteps(),
            steps,
            params.chain.steps_offset,
        )?;
        let mut sigmas: Vec<f64> = timesteps
            .iter()
            .map(|&t| {
                let ab = alphas_cumprod[t as usize];
                ((1.0 - ab) / ab).sqrt()
            })
            .collect();
        sigmas.push(0.0);
        Ok(Self {
            timesteps,
            sigmas,
            prediction: params.chain.prediction_type,
            clamp: params.chain.clamp,
            order: params.solver_order,
            x0: Vec::new(),
            prev_x0: Vec::new(),
            has_prev: false,
            item: Vec::new(),
            lower_order_nums: 0,
        })
    }
}

impl Sampler for DpmSolverPP {
    fn timesteps(&self) -> &[i64] {
        &self.timesteps
    }

    fn needs_noise(&self, _i: usize) -> bool {
        false
    }

    fn reset(&mut self) {
        self.has_prev = false;
        self.lower_order_nums = 0;
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
        let steps = self.timesteps.len();
        // With final_sigmas_type zero the last step is always first order (what
        // lower_order_final asks of short schedules, so it changes nothing here).
        let last = i == steps - 1;
        let first_order = self.order == 1 || self.lower_order_nums < 1 || last;

        // 1. data prediction x_0 at sigma_i (diffusers' convert_model_output).
        let (alpha_s0, sigma_s0, lambda_s0) = alpha_sigma_lambda(self.sigmas[i]);
        let (n, on) = (layout.item_len(), layout.out_item_len());
        self.x0.resize(sample.len(), 0.0);
        self.item.resize(n, 0.0);
        let (x0, item) = (&mut self.x0, &mut self.item);
        for b in 0..layout.batch {
            let xs = &sample[b * n..(b + 1) * n];
            let out = &model_output[b * on..b * on + n];
            for j in 0..n {
                item[j] = to_x0_eps(self.prediction, alpha_s0, sigma_s0, xs[j] as f64, out[j] as f64).0;
            }
            self.clamp.apply(item);
            x0[b * n..(b + 1) * n].iter_mut().zip(item.iter()).for_each(|(d, &v)| *d = v as f32);
        }
        if let Some(p) = pred_x0 {
            p.copy_from_slice(x0);
        }

        // 2. the update to sigma_{i+1}.
        let (alpha_t, sigma_t, lambda_t) = alpha_sigma_lambda(self.sigmas[i + 1]);
        let h = lambda_t - lambda_s0;
        let ratio = sigma_t / sigma_s0;
        let phi = alpha_t * ((-h).exp() - 1.0);
        let prev = &self.prev_x0;
        match (self.has_prev && prev.len() == x0.len(), first_order) {
            (true, false) => {
                let (_, _, lambda_s1) = alpha_sigma_lambda(self.sigmas[i - 1]);
                let r0 = (lambda_s0 - lambda_s1) / h;
                for j in 0..sample.len() {
                    let (m0, m1) = (x0[j] as f64, prev[j] as f64);
                    let d1 = (m0 - m1) / r0;
                    sample[j] = (ratio * sample[j] as f64 - phi * m0 - 0.5 * phi * d1) as f32;
                }
            }
            _ => {
                for j in 0..sample.len() {
                    sample[j] = (ratio * sample[j] as f64 - phi * x0[j] as f64) as f32;
                }
            }
        }
        std::mem::swap(&mut self.x0, &mut self.prev_x0);
        self.has_prev = true;
        if self.lower_order_nums < self.order {
            self.lower_order_nums += 1;
        }
        Ok(())
    }
}
