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
