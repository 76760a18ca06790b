//! Reverse-chain samplers over model outputs. Each is a small state machine built for one
//! chain: [`Sampler::timesteps`] says which timesteps to evaluate the model at, and
//! [`Sampler::step`] turns (model output, x_t) into x_{t_prev} in place, with the
//! semantics of the diffusers scheduler of the same name.

mod ddim;
mod ddpm;
mod dpm_solver;

pub use ddim::Ddim;
pub use ddpm::Ddpm;
pub use dpm_solver::DpmSolverPP;

use crate::config::{PredictionType, SchedulerConfig, TimestepSpacing};
use crate::error::{Error, Result};
use crate::params::{DdimParams, DdpmParams, DpmSolverParams};
use crate::prediction::X0Clamp;

/// The layout of a batch: `batch` items of `channels` x `pixels` values, and a model
/// output of `out_channels` (C, or 2C for learned variance) x `pixels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub batch: usize,
    pub channels: usize,
    pub out_channels: usize,
    pub pixels: usize,
}

impl Layout {
    pub fn item_len(&self) -> usize {
        self.channels * self.pixels
    }
    pub fn out_item_len(&self) -> usize {
        self.out_channels * self.pixels
    }
    fn check(&self, model_output: &[f32], sample: &[f32], noise: Option<&[f32]>) -> Result<()> {
        let shape_err = |name: &str, found: usize, expected: usize| Error::Shape {
            name: name.into(),
            found: format!("{found} values"),
            expected: format!("{expected} values"),
        };
        if self.out_channels != self.channels && self.out_channels != 2 * self.channels {
            return Err(Error::Shape {
                name: "model output".into(),
                found: format!("{} channels", self.out_channels),
                expected: format!("{} (or {} with a learned variance)", self.channels, 2 * self.channels),
            });
        }
        if sample.len() != self.batch * self.item_len() {
            return Err(shape_err("sample", sample.len(), self.batch * self.item_len()));
        }
        if model_output.len() != self.batch * self.out_item_len() {
            return Err(shape_err("model output", model_output.len(), self.batch * self.out_item_len()));
        }
        if let Some(n) = noise {
            if n.len() != sample.len() {
                return Err(shape_err("noise", n.len(), sample.len()));
            }
        }
        Ok(())
    }
}

/// One reverse chain.
pub trait Sampler: Send {
    /// The timesteps at which the model is evaluated, in order.
    fn timesteps(&self) -> &[i64];
    /// Whether step `i` adds fresh Gaussian noise (then [`Sampler::step`] needs `noise`).
    fn needs_noise(&self, i: usize) -> bool;
    /// Step `i`: `sample` holds x_t (t = `timesteps()[i]`) and becomes x_{t_prev}.
    /// `pred_x0`, when given, receives the predicted x_0 (same layout as `sample`).
    fn step(
        &mut self,
        i: usize,
        model_output: &[f32],
        sample: &mut [f32],
        layout: Layout,
        noise: Option<&[f32]>,
        pred_x0: Option<&mut [f32]>,
    ) -> Result<()>;

    /// Forgets the state of a chain (DPM-Solver++'s previous data prediction), so that the
    /// sampler runs the next batch from its start. A no-op for the one-step samplers.
    fn reset(&mut self) {}

    /// Step `i` as an [`AffineStep`]: what a fused-step graph (`exporter onnx
    /// --fused-step`) computes. None when the step is not of that form (DPM-Solver++'s
    /// multistep update, dynamic thresholding, a learned variance): the pipeline then runs
    /// [`Sampler::step`].
    fn affine_step(&self, _i: usize) -> Option<AffineStep> {
        None
    }
}

/// One sampler update that is affine in (x, out, noise) up to a clamp of the predicted
/// x_0, written with x = x_t, out = the model output:
///
/// ```text
/// x0     = x0[0] * x + x0[1] * out,            clamped to [-clip, clip]
/// eps    = eps[0] * x + eps[1] * out
/// x_prev = prev[0] * x0 + prev[1] * eps + prev[2] * x + prev[3] * noise
/// ```
///
/// DDPM's and DDIM's steps are this form (their `step` applies it); a graph exported with
/// `--fused-step` takes it as its `coefficients` input ([`AffineStep::to_f32`], layout
/// [`AffineStep::LAYOUT`]) and runs the same update after the network.
///
/// ```
/// use ddpm_runtime::sampler::AffineStep;
/// // x0 = x - out, eps = out, x_prev = 0.5 x0 + 0.5 eps
/// let step = AffineStep { x0: [1.0, -1.0], eps: [0.0, 1.0], prev: [0.5, 0.5, 0.0, 0.0], clip: None };
/// assert_eq!(step.apply(3.0, 1.0, 0.0), (1.5, 2.0));
/// assert_eq!(step.to_f32()[8], f32::MAX);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AffineStep {
    /// x0 from (x, out).
    pub x0: [f64; 2],
    /// eps from (x, out).
    pub eps: [f64; 2],
    /// x_prev from (clamped x0, eps, x, noise).
    pub prev: [f64; 4],
    /// The clamp of x0 (clip_sample_range), None for none.
    pub clip: Option<f64>,
}

impl AffineStep {
    /// The order of the nine values of [`AffineStep::to_f32`], the fused graph's
    /// `coefficients` input.
    pub const LAYOUT: &'static str = "[x0[0], x0[1], eps[0], eps[1], prev[0], prev[1], prev[2], prev[3], clip]";

    /// The fused graph's `coefficients` input (see [`AffineStep::LAYOUT`]); no clamp is
    /// `f32::MAX`.
    pub fn to_f32(&self) -> [f32; 9] {
        let [p0, p1] = self.x0;
        let [p2, p3] = self.eps;
        let [k0, k1, k2, k3] = self.prev;
        let r = self.clip.map_or(f32::MAX, |r| r as f32);
        [p0 as f32, p1 as f32, p2 as f32, p3 as f32, k0 as f32, k1 as f32, k2 as f32, k3 as f32, r]
    }

    /// The predicted (x0, eps) of one value, before any clamp.
    #[inline]
    pub fn x0_eps(&self, x: f64, out: f64) -> (f64, f64) {
        (self.x0[0] * x + self.x0[1] * out, self.eps[0] * x + self.eps[1] * out)
    }

    /// x_prev from a (clamped) x0, eps, x and the noise value.
    #[inline]
    pub fn prev(&self, x0: f64, eps: f64, x: f64, noise: f64) -> f64 {
        self.prev[0] * x0 + self.prev[1] * eps + self.prev[2] * x + self.prev[3] * noise
    }

    /// The whole update of one value: (x_prev, clamped x0).
    pub fn apply(&self, x: f64, out: f64, noise: f64) -> (f64, f64) {
        let (x0, eps) = self.x0_eps(x, out);
        let x0 = self.clip.map_or(x0, |r| x0.clamp(-r, r));
        (self.prev(x0, eps, x, noise), x0)
    }

    /// Applies the update to a batch in place. `clamp` is the sampler's (dynamic
    /// thresholding needs a whole item, so it is applied here rather than through `clip`);
    /// `noise_std`, when given, replaces `prev[3]` per value from the model's variance
    /// channel (a learned variance). `scratch` is reused across steps.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply_batch(
        &self,
        clamp: X0Clamp,
        model_output: &[f32],
        sample: &mut [f32],
        layout: Layout,
        noise: Option<&[f32]>,
        mut pred_x0: Option<&mut [f32]>,
        scratch: &mut Vec<f64>,
        noise_std: Option<&dyn Fn(f64) -> f64>,
    ) {
        let (n, on) = (layout.item_len(), layout.out_item_len());
        scratch.resize(2 * n, 0.0);
        let (x0, eps) = scratch.split_at_mut(n);
        for b in 0..layout.batch {
            let xs = &mut sample[b * n..(b + 1) * n];
            let out = &model_output[b * on..b * on + on];
            for j in 0..n {
                (x0[j], eps[j]) = self.x0_eps(xs[j] as f64, out[j] as f64);
            }
            clamp.apply(x0);
            if let Some(p) = pred_x0.as_deref_mut() {
                p[b * n..(b + 1) * n].iter_mut().zip(x0.iter()).for_each(|(d, &v)| *d = v as f32);
            }
            for j in 0..n {
                let z = noise.map_or(0.0, |z| z[b * n + j] as f64);
                let mut v = self.prev(x0[j], eps[j], xs[j] as f64, 0.0);
                if noise.is_some() {
                    let std = noise_std.map_or(self.prev[3], |f| f(out[n + j] as f64));
                    v += std * z;
                }
                xs[j] = v as f32;
            }
        }
    }
}

/// (x0, eps) coefficients of (x, out) at sqrt(alpha-bar) = `a`, sqrt(1 - alpha-bar) = `s`
/// (the linear form of [`crate::prediction::to_x0_eps`]).
pub(crate) fn prediction_coefficients(prediction: PredictionType, a: f64, s: f64) -> ([f64; 2], [f64; 2]) {
    match prediction {
        PredictionType::Epsilon => ([1.0 / a, -s / a], [0.0, 1.0]),
        PredictionType::Sample => ([0.0, 1.0], [1.0 / s, -a / s]),
        PredictionType::VPrediction => ([a, -s], [s, a]),
    }
}

/// The clip of an [`AffineStep`] for a sampler's clamp; None (not affine) for dynamic
/// thresholding.
pub(crate) fn affine_clip(clamp: X0Clamp) -> Option<Option<f64>> {
    match clamp {
        X0Clamp::None => Some(None),
        X0Clamp::Clip(r) => Some(Some(r)),
        X0Clamp::Threshold { .. } => None,
    }
}

crate::named_enum! {
    /// Which sampler to run.
    ///
    /// ```
    /// use ddpm_runtime::SamplerKind;
    /// assert_eq!("dpm-solver++".parse::<SamplerKind>()?, SamplerKind::DpmSolverPP);
    /// assert_eq!(SamplerKind::NAMES, ["ddpm", "ddim", "dpm-solver++"]);
    /// assert_eq!(SamplerKind::Ddpm.default_steps(1000), 1000);
    /// # Ok::<(), ddpm_runtime::Error>(())
    /// ```
    pub enum SamplerKind {
        /// Ancestral sampling (Ho et al. 2020).
        Ddpm => "ddpm",
        /// DDIM (Song et al. 2020), stochastic for eta > 0.
        Ddim => "ddim",
        /// DPM-Solver++ 2M (Lu et al. 2022).
        DpmSolverPP => "dpm-solver++",
    }
}

impl SamplerKind {
    /// The number of steps when none is given: the full chain for DDPM, 50 for DDIM,
    /// 20 for DPM-Solver++.
    pub fn default_steps(self, num_train_timesteps: usize) -> usize {
        match self {
            SamplerKind::Ddpm => num_train_timesteps,
            SamplerKind::Ddim => 50,
            SamplerKind::DpmSolverPP => 20,
        }
    }
}

impl std::str::FromStr for SamplerKind {
    type Err = Error;
    /// A name of [`SamplerKind::NAMES`], or diffusers' spelling `dpmsolver++`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "dpmsolver++" | "dpm" => Ok(Self::DpmSolverPP),
            other => Self::from_name(other)
                .ok_or_else(|| Error::InvalidArgument(format!("sampler: found \"{other}\", expected {}", Self::expected()))),
        }
    }
}

/// Everything that chooses a chain besides the scheduler config.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerOptions {
    pub kind: SamplerKind,
    /// None: [`SamplerKind::default_steps`].
    pub steps: Option<usize>,
    /// DDIM's eta (0 = deterministic). Ignored by the other samplers.
    pub eta: f64,
    /// Overrides the config's timestep_spacing.
    pub timestep_spacing: Option<TimestepSpacing>,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        Self { kind: SamplerKind::Ddim, steps: None, eta: 0.0, timestep_spacing: None }
    }
}

/// Builds the sampler for a scheduler config and options.
pub fn build(config: &SchedulerConfig, options: &SamplerOptions) -> Result<Box<dyn Sampler>> {
    let mut config = config.clone();
    if let Some(spacing) = options.timestep_spacing {
        config.timestep_spacing = Some(spacing);
    }
    let steps = options.steps.unwrap_or_else(|| options.kind.default_steps(config.num_train_timesteps()));
    // Above 1, DDIM's sigma_t^2 can exceed 1 - alpha_bar_prev and the direction term's square
    // root is NaN (diffusers returns NaN samples there); within [0, 1] it never does.
    if !(options.eta.is_finite() && (0.0..=1.0).contains(&options.eta)) {
        return Err(Error::InvalidArgument(format!(
            "eta: found {}, expected a number in [0, 1] (0: deterministic DDIM, 1: DDPM's variance)",
            options.eta
        )));
    }
    Ok(match options.kind {
        SamplerKind::Ddpm => Box::new(Ddpm::new(&DdpmParams::from_config(&config)?, steps)?),
        SamplerKind::Ddim => Box::new(Ddim::new(&DdimParams::from_config(&config)?, steps, options.eta)?),
        SamplerKind::DpmSolverPP => Box::new(DpmSolverPP::new(&DpmSolverParams::from_config(&config)?, steps)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// eta in [0, 1] builds a DDIM sampler; above 1 (where DDIM's direction term can be the
    /// square root of a negative number), below 0 or NaN is refused naming eta.
    #[test]
    fn eta_outside_0_to_1_is_refused() {
        let config = SchedulerConfig::paper();
        for eta in [0.0, 0.5, 1.0] {
            assert!(build(&config, &SamplerOptions { eta, ..Default::default() }).is_ok(), "eta {eta}");
        }
        for eta in [1.5, -0.1, f64::NAN] {
            let err = build(&config, &SamplerOptions { eta, ..Default::default() }).err().expect("refused").to_string();
            assert!(err.contains("eta") && err.contains("[0, 1]"), "eta {eta}: {err}");
        }
    }
}
