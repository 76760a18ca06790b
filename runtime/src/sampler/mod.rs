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

use crate::config::{SchedulerConfig, TimestepSpacing};
use crate::error::{Error, Result};

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

    /// Step `i` as the coefficients of a fused-step graph (`exporter onnx --fused-step`):
    /// [p0, p1, p2, p3, k0, k1, k2, k3, r] with x0 = p0 x + p1 out, eps = p2 x + p3 out and
    /// x_prev = k0 clamp(x0, -r, r) + k1 eps + k2 x + k3 noise. None when the step is not
    /// of that form (DPM-Solver++'s multistep update, dynamic thresholding, a learned
    /// variance): the pipeline then runs [`Sampler::step`].
    fn affine_step(&self, _i: usize) -> Option<AffineStep> {
        None
    }
}

/// The nine coefficients of one fused step (see [`Sampler::affine_step`]).
pub type AffineStep = [f32; 9];

/// (p0, p1, p2, p3) of x0 = p0 x + p1 out and eps = p2 x + p3 out at sqrt(alpha-bar) = `a`,
/// sqrt(1 - alpha-bar) = `s` (the linear form of [`crate::prediction::to_x0_eps`]).
pub(crate) fn prediction_coefficients(prediction: crate::config::PredictionType, a: f64, s: f64) -> [f64; 4] {
    use crate::config::PredictionType as P;
    match prediction {
        P::Epsilon => [1.0 / a, -s / a, 0.0, 1.0],
        P::Sample => [0.0, 1.0, 1.0 / s, -a / s],
        P::VPrediction => [a, -s, s, a],
    }
}

/// The clamp range r of a fused step (f32::MAX: none); None for dynamic thresholding.
pub(crate) fn clamp_range(clamp: crate::prediction::X0Clamp) -> Option<f32> {
    use crate::prediction::X0Clamp;
    match clamp {
        X0Clamp::None => Some(f32::MAX),
        X0Clamp::Clip(r) => Some(r as f32),
        X0Clamp::Threshold { .. } => None,
    }
}

/// Packs a fused step.
pub(crate) fn affine(p: [f64; 4], k: [f64; 4], r: f32) -> AffineStep {
    [p[0] as f32, p[1] as f32, p[2] as f32, p[3] as f32, k[0] as f32, k[1] as f32, k[2] as f32, k[3] as f32, r]
}

/// Which sampler to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerKind {
    /// Ancestral sampling (Ho et al. 2020).
    Ddpm,
    /// DDIM (Song et al. 2020), stochastic for eta > 0.
    Ddim,
    /// DPM-Solver++ 2M (Lu et al. 2022).
    DpmSolverPP,
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
    pub fn name(self) -> &'static str {
        match self {
            SamplerKind::Ddpm => "ddpm",
            SamplerKind::Ddim => "ddim",
            SamplerKind::DpmSolverPP => "dpm-solver++",
        }
    }
}

impl std::str::FromStr for SamplerKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ddpm" => Ok(Self::Ddpm),
            "ddim" => Ok(Self::Ddim),
            "dpm-solver++" | "dpmsolver++" | "dpm" => Ok(Self::DpmSolverPP),
            other => Err(Error::InvalidArgument(format!(
                "sampler: found \"{other}\", expected one of ddpm, ddim, dpm-solver++"
            ))),
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
    if !(options.eta.is_finite() && options.eta >= 0.0) {
        return Err(Error::InvalidArgument(format!("eta: found {}, expected a number >= 0", options.eta)));
    }
    Ok(match options.kind {
        SamplerKind::Ddpm => Box::new(Ddpm::new(&config, steps)?),
        SamplerKind::Ddim => Box::new(Ddim::new(&config, steps, options.eta)?),
        SamplerKind::DpmSolverPP => Box::new(DpmSolverPP::new(&config, steps)?),
    })
}
