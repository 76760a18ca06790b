//! The forward process of Ho et al. 2020, "Denoising Diffusion Probabilistic Models"
//! (<https://arxiv.org/abs/2006.11239>): betas, alpha-bar and the posterior
//! q(x_{t-1} | x_t, x_0), in f64 on plain slices. The trainer's forward noising and the
//! samplers' reverse chain both use this one implementation.

use crate::config::{BetaSchedule, PredictionType, SchedulerConfig, VarianceType};
use crate::error::{Error, Result};

/// Betas and their cumulative products for `num_train_timesteps` steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    betas: Vec<f64>,
    alphas_cumprod: Vec<f64>,
}

/// `betas_for_alpha_bar` of improved DDPM (Nichol & Dhariwal 2021), cosine alpha-bar,
/// each beta capped at `max_beta`.
fn betas_for_cosine_alpha_bar(n: usize, max_beta: f64) -> Vec<f64> {
    let alpha_bar = |t: f64| ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
    (0..n)
        .map(|i| {
            // Float division on purpose: integer division here gives all-zero betas
            // (a bug several ports carry).
            let t1 = i as f64 / n as f64;
            let t2 = (i + 1) as f64 / n as f64;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(max_beta)
        })
        .collect()
}

/// The betas of a named schedule over `n` training timesteps.
pub(crate) fn betas(kind: BetaSchedule, start: f64, end: f64, n: usize) -> Vec<f64> {
    match kind {
        BetaSchedule::Linear => linspace(start, end, n),
        BetaSchedule::ScaledLinear => linspace(start.sqrt(), end.sqrt(), n).into_iter().map(|b| b * b).collect(),
        BetaSchedule::SquaredcosCapV2 => betas_for_cosine_alpha_bar(n, 0.999),
        BetaSchedule::Sigmoid => linspace(-6.0, 6.0, n).into_iter().map(|x| 1.0 / (1.0 + (-x).exp()) * (end - start) + start).collect(),
    }
}

fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f64;
    (0..n).map(|i| start + step * i as f64).collect()
}

/// Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed"
/// (<https://arxiv.org/abs/2305.08891>), Algorithm 1: shift and scale sqrt(alpha-bar) so
/// that the last timestep has zero SNR, keeping the first one.
pub fn rescale_betas_zero_snr(betas: &[f64]) -> Vec<f64> {
    let mut ab_sqrt: Vec<f64> = Vec::with_capacity(betas.len());
    let mut prod = 1.0;
    for b in betas {
        prod *= 1.0 - b;
        ab_sqrt.push(prod.sqrt());
    }
    let (first, last) = (ab_sqrt[0], ab_sqrt[ab_sqrt.len() - 1]);
    for a in &mut ab_sqrt {
        *a = (*a - last) * first / (first - last);
    }
    let ab: Vec<f64> = ab_sqrt.iter().map(|a| a * a).collect();
    let mut out = Vec::with_capacity(ab.len());
    out.push(1.0 - ab[0]);
    for i in 1..ab.len() {
        out.push(1.0 - ab[i] / ab[i - 1]);
    }
    out
}

impl Schedule {
    /// Builds the schedule a scheduler config describes (diffusers' defaults for absent
    /// keys), after checking the config ([`crate::params::check`]).
    ///
    /// ```
    /// use ddpm_runtime::{Schedule, SchedulerConfig};
    /// let s = Schedule::from_config(&SchedulerConfig::paper())?;
    /// assert_eq!(s.num_train_timesteps(), 1000);
    /// assert!((s.betas()[0] - 1e-4).abs() < 1e-12);
    /// # Ok::<(), ddpm_runtime::Error>(())
    /// ```
    pub fn from_config(config: &SchedulerConfig) -> Result<Self> {
        crate::params::check(config)?;
        Ok(crate::params::schedule(config)?)
    }

    /// A schedule from explicit betas.
    ///
    /// ```
    /// let s = ddpm_runtime::Schedule::from_betas(vec![0.5, 0.5]);
    /// assert_eq!(s.alphas_cumprod(), &[0.5, 0.25]);
    /// ```
    pub fn from_betas(betas: Vec<f64>) -> Self {
        let mut prod = 1.0;
        let alphas_cumprod = betas
            .iter()
            .map(|b| {
                prod *= 1.0 - b;
                prod
            })
            .collect();
        Self { betas, alphas_cumprod }
    }

    /// T, the number of training timesteps.
    pub fn num_train_timesteps(&self) -> usize {
        self.betas.len()
    }
    pub fn betas(&self) -> &[f64] {
        &self.betas
    }
    /// alpha-bar_t = prod_{s <= t} (1 - beta_s), indexed by timestep.
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }

    /// alpha-bar at `t`, with alpha-bar_{-1} = 1 (the convention of diffusers' DDPMScheduler).
    pub fn alpha_bar(&self, t: i64) -> f64 {
        if t < 0 {
            1.0
        } else {
            self.alphas_cumprod[t as usize]
        }
    }

    /// Checks that `t` is a training timestep.
    pub fn check_timestep(&self, t: i64) -> Result<()> {
        if t < 0 || t as usize >= self.betas.len() {
            return Err(Error::InvalidArgument(format!("timestep {t} is outside the training range 0..{}", self.betas.len())));
        }
        Ok(())
    }

    /// The variance of the reverse step from `t` to `prev_t` for a fixed variance type
    /// (diffusers' `DDPMScheduler._get_variance`), returned as a standard deviation.
    /// For `learned` / `learned_range` the model's output enters per element: see
    /// [`Schedule::learned_std`].
    pub fn posterior_std(&self, t: i64, prev_t: i64, variance_type: VarianceType) -> f64 {
        let (ab_t, ab_prev) = (self.alpha_bar(t), self.alpha_bar(prev_t));
        let beta_t = 1.0 - ab_t / ab_prev;
        let posterior = ((1.0 - ab_prev) / (1.0 - ab_t) * beta_t).max(1e-20);
        match variance_type {
            VarianceType::FixedSmall | VarianceType::FixedSmallLog => posterior.sqrt(),
            // fixed_large_log is GLIDE's "max_log": log(beta_t) as a log-variance. diffusers'
            // step takes the square root of that log (NaN); we use its meaning, sqrt(beta_t).
            VarianceType::FixedLarge | VarianceType::FixedLargeLog => beta_t.sqrt(),
            VarianceType::Learned | VarianceType::LearnedRange => posterior.sqrt(),
        }
    }

    /// Standard deviation from a learned variance output `v` (the model's second C channels).
    /// `learned`: v is the variance. `learned_range`: v in [-1, 1] interpolates the
    /// log-variance between the posterior variance and beta_t (Nichol & Dhariwal 2021).
    pub fn learned_std(&self, t: i64, prev_t: i64, variance_type: VarianceType, v: f64) -> f64 {
        let (ab_t, ab_prev) = (self.alpha_bar(t), self.alpha_bar(prev_t));
        let beta_t = 1.0 - ab_t / ab_prev;
        match variance_type {
            VarianceType::LearnedRange => {
                let min_log = ((1.0 - ab_prev) / (1.0 - ab_t) * beta_t).max(1e-20).ln();
                let max_log = beta_t.ln();
                let frac = (v + 1.0) / 2.0;
                (0.5 * (frac * max_log + (1.0 - frac) * min_log)).exp()
            }
            _ => v.sqrt(),
        }
    }

    /// Coefficients (on x_0, on x_t) of the posterior mean mu~_t(x_t, x_0) for a step from
    /// `t` to `prev_t` (Ho et al., eq. 7).
    pub fn posterior_mean_coefficients(&self, t: i64, prev_t: i64) -> (f64, f64) {
        let (ab_t, ab_prev) = (self.alpha_bar(t), self.alpha_bar(prev_t));
        let alpha_t = ab_t / ab_prev;
        let beta_t = 1.0 - alpha_t;
        ((ab_prev.sqrt() * beta_t) / (1.0 - ab_t), alpha_t.sqrt() * (1.0 - ab_prev) / (1.0 - ab_t))
    }

    /// beta~_t = (1 - ab_{t-1}) / (1 - ab_t) beta_t, the variance of q(x_{t-1} | x_t, x_0)
    /// (Ho et al., eq. 7); 0 at t = 0.
    pub fn posterior_variance(&self, t: i64) -> f64 {
        let (ab_t, ab_prev) = (self.alpha_bar(t), self.alpha_bar(t - 1));
        (1.0 - ab_prev) / (1.0 - ab_t) * (1.0 - ab_t / ab_prev)
    }

    /// log beta~_t with the first entry replaced by the second (log 0 is not a
    /// log-variance): improved-diffusion's `posterior_log_variance_clipped`, the convention
    /// the variational bound follows here.
    ///
    /// ```
    /// let s = ddpm_runtime::Schedule::from_config(&ddpm_runtime::SchedulerConfig::paper())?;
    /// assert_eq!(s.posterior_log_variance_clipped(0), s.posterior_log_variance_clipped(1));
    /// assert!((s.posterior_log_variance_clipped(1) - s.posterior_variance(1).ln()).abs() < 1e-12);
    /// # Ok::<(), ddpm_runtime::Error>(())
    /// ```
    pub fn posterior_log_variance_clipped(&self, t: i64) -> f64 {
        let t = if t == 0 && self.betas.len() > 1 { 1 } else { t };
        self.posterior_variance(t).ln()
    }

    /// The log-variance of p(x_{t-1} | x_t) for a fixed variance type, as the bound uses it
    /// (improved-diffusion): fixed_small the clipped posterior log-variance; fixed_large
    /// log beta_t, with beta~_1 at t = 0. None for a learned variance (the model's output
    /// gives it: [`Schedule::learned_log_variance`]).
    pub fn fixed_log_variance(&self, t: i64, variance_type: VarianceType) -> Option<f64> {
        match variance_type {
            VarianceType::FixedSmall | VarianceType::FixedSmallLog => Some(self.posterior_log_variance_clipped(t)),
            VarianceType::FixedLarge | VarianceType::FixedLargeLog => {
                Some(if t == 0 && self.betas.len() > 1 { self.posterior_variance(1).ln() } else { self.betas[t as usize].ln() })
            }
            VarianceType::Learned | VarianceType::LearnedRange => None,
        }
    }

    /// The log-variance of p(x_{t-1} | x_t) from the model's variance output `v`:
    /// `learned_range`, frac = (v + 1) / 2 interpolates between the clipped posterior
    /// log-variance and log beta_t (Nichol & Dhariwal 2021, eq. 15); `learned`, v is the
    /// variance itself, as diffusers' DDPMScheduler reads it (floored at 1e-20).
    pub fn learned_log_variance(&self, t: i64, variance_type: VarianceType, v: f64) -> f64 {
        match variance_type {
            VarianceType::LearnedRange => {
                let (min_log, max_log) = self.learned_range_bounds(t);
                let frac = (v + 1.0) / 2.0;
                frac * max_log + (1.0 - frac) * min_log
            }
            _ => v.max(1e-20).ln(),
        }
    }

    /// (min, max) log-variance of `learned_range` at `t`: the clipped posterior
    /// log-variance and log beta_t.
    pub fn learned_range_bounds(&self, t: i64) -> (f64, f64) {
        (self.posterior_log_variance_clipped(t), self.betas[t as usize].ln())
    }

    /// q(x_t | x_0): x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) noise, with one timestep per
    /// batch item. `x0` and `noise` are [B, ...] flattened, `t` has B entries.
    pub fn add_noise(&self, x0: &[f32], noise: &[f32], t: &[i64]) -> Result<Vec<f32>> {
        self.per_item(x0, noise, t, "noise", |ab, x, n| ab.sqrt() * x + (1.0 - ab).sqrt() * n)
    }

    /// The velocity v = sqrt(ab_t) noise - sqrt(1 - ab_t) x_0 (Salimans & Ho 2022).
    pub fn velocity(&self, x0: &[f32], noise: &[f32], t: &[i64]) -> Result<Vec<f32>> {
        self.per_item(x0, noise, t, "noise", |ab, x, n| ab.sqrt() * n - (1.0 - ab).sqrt() * x)
    }

    /// The regression target of L_simple for a prediction type: the noise, the velocity or x_0.
    pub fn training_target(&self, prediction: PredictionType, x0: &[f32], noise: &[f32], t: &[i64]) -> Result<Vec<f32>> {
        match prediction {
            PredictionType::Epsilon => Ok(noise.to_vec()),
            PredictionType::Sample => Ok(x0.to_vec()),
            PredictionType::VPrediction => self.velocity(x0, noise, t),
        }
    }

    fn per_item(&self, a: &[f32], b: &[f32], t: &[i64], b_name: &str, f: impl Fn(f64, f64, f64) -> f64) -> Result<Vec<f32>> {
        if a.len() != b.len() {
            return Err(Error::Shape {
                name: b_name.into(),
                found: format!("{} values", b.len()),
                expected: format!("{} values (as x0)", a.len()),
            });
        }
        if t.is_empty() || !a.len().is_multiple_of(t.len()) {
            return Err(Error::Shape {
                name: "timesteps".into(),
                found: format!("{} values", t.len()),
                expected: format!("a divisor of the {} values of x0 (one per batch item)", a.len()),
            });
        }
        let per = a.len() / t.len();
        let mut out = Vec::with_capacity(a.len());
        for (i, &ti) in t.iter().enumerate() {
            self.check_timestep(ti)?;
            let ab = self.alpha_bar(ti);
            let range = i * per..(i + 1) * per;
            out.extend(a[range.clone()].iter().zip(&b[range]).map(|(&x, &n)| f(ab, x as f64, n as f64) as f32));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cosine_schedule_is_not_all_zero() {
        let s =
            Schedule::from_config(&SchedulerConfig { beta_schedule: Some(BetaSchedule::SquaredcosCapV2), ..Default::default() }).unwrap();
        assert!(s.betas()[0] > 0.0 && s.betas()[0] < 1e-4, "{}", s.betas()[0]);
        assert!((s.betas()[999] - 0.999).abs() < 1e-12);
    }

    #[test]
    fn zero_snr_ends_at_zero() {
        let s = Schedule::from_config(&SchedulerConfig { rescale_betas_zero_snr: Some(true), ..Default::default() }).unwrap();
        assert_eq!(*s.alphas_cumprod().last().unwrap(), 0.0);
        let plain = Schedule::from_config(&SchedulerConfig::default()).unwrap();
        assert!((s.alphas_cumprod()[0] - plain.alphas_cumprod()[0]).abs() < 1e-12);
    }

    #[test]
    fn add_noise_rejects_mismatched_lengths() {
        let s = Schedule::from_config(&SchedulerConfig::default()).unwrap();
        assert!(matches!(s.add_noise(&[0.0; 4], &[0.0; 3], &[1]), Err(Error::Shape { .. })));
        assert!(matches!(s.add_noise(&[0.0; 4], &[0.0; 4], &[1000]), Err(Error::InvalidArgument(_))));
    }

    proptest! {
        #[test]
        fn alpha_bar_strictly_decreasing_in_unit_interval(
            start in 1e-5f64..1e-3, span in 1e-3f64..0.05, n in 2usize..2000,
            kind in 0usize..4,
        ) {
            let schedule = [BetaSchedule::Linear, BetaSchedule::ScaledLinear,
                            BetaSchedule::SquaredcosCapV2, BetaSchedule::Sigmoid][kind];
            let s = Schedule::from_config(&SchedulerConfig {
                num_train_timesteps: Some(n), beta_start: Some(start), beta_end: Some(start + span),
                beta_schedule: Some(schedule), ..Default::default()
            }).unwrap();
            let ab = s.alphas_cumprod();
            prop_assert!(ab[0] <= 1.0 && ab[0] > 0.0);
            for w in ab.windows(2) {
                prop_assert!(w[1] < w[0] && w[1] >= 0.0);
            }
        }

        #[test]
        fn v_and_eps_recover_x0(x in -3.0f64..3.0, n in -3.0f64..3.0, t in 0i64..1000) {
            let s = Schedule::from_config(&SchedulerConfig::default()).unwrap();
            let xt = s.add_noise(&[x as f32], &[n as f32], &[t]).unwrap()[0] as f64;
            let v = s.velocity(&[x as f32], &[n as f32], &[t]).unwrap()[0] as f64;
            let ab = s.alpha_bar(t);
            // x0 = sqrt(ab) x_t - sqrt(1 - ab) v
            prop_assert!((ab.sqrt() * xt - (1.0 - ab).sqrt() * v - x).abs() < 1e-5);
        }
    }
}
