//! # ddpm-runtime
//!
//! Sampling from denoising diffusion models (Ho et al. 2020, "Denoising Diffusion
//! Probabilistic Models", <https://arxiv.org/abs/2006.11239>) in pure Rust: the noise
//! schedule, the DDPM / DDIM / DPM-Solver++ samplers over any [`Denoiser`], and an ONNX
//! Runtime backend for `.onnx` U-Nets (feature `onnx`, on by default). Names and
//! semantics follow diffusers (`scheduler_config.json` keys, `set_timesteps`, `step`).
//!
//! ```no_run
//! use ddpm_runtime::{OnnxDenoiser, SamplerKind};
//! # fn main() -> ddpm_runtime::Result<()> {
//! let mut model = OnnxDenoiser::builder().from_file("model.onnx")?;
//! // The model's own scheduler config (its .onnx metadata) drives the chain.
//! let samples = model.pipeline().sampler(SamplerKind::DpmSolverPP).n(8).seed(1).run()?;
//! println!("{:?}", samples.shape);
//! # Ok(()) }
//! ```
#![warn(clippy::unwrap_used)]

pub mod config;
pub mod denoiser;
pub mod error;
pub mod likelihood;
mod names;
pub mod noise;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod params;
pub mod pipeline;
pub mod prediction;
pub mod sampler;
pub mod schedule;
pub mod spacing;
pub mod sys;
#[cfg(feature = "triton")]
pub mod triton;

pub use config::{BetaSchedule, PredictionType, SchedulerConfig, TimestepSpacing, VarianceType};
/// Memory and thread limits every request is checked against (from `ddpm-io`).
pub use ddpm_io::limits;
pub use denoiser::{Denoiser, FusedDenoiser, FusedInput, GaussianDenoiser, ModelShape};
pub use error::{Error, RemoteErrorKind, Result};
#[cfg(feature = "onnx")]
pub use onnx::{ExecutionProvider, OnnxDenoiser, Precision};
pub use pipeline::{ClassLabels, GuidanceBatching, Pipeline, Plan, Progress, Samples};
pub use sampler::{Sampler, SamplerKind, SamplerOptions};
pub use schedule::Schedule;
pub use sys::CpuFeatures;
