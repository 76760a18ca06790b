//! Training hyper-parameters and the presets.

use ddpm_models::UNetConfig;
use ddpm_runtime::{BetaSchedule, PredictionType, SchedulerConfig, TimestepSpacing, VarianceType};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

ddpm_runtime::named_enum! {
    /// The training objective (`--loss`).
    #[derive(Default)]
    pub enum Loss {
        /// L_simple: || target - model(x_t, t) ||^2 (Ho et al. 2020, eq. 14).
        #[default]
        Simple => "simple",
        /// L_hybrid = L_simple + lambda L_vlb, lambda = 0.001, the mean's gradient stopped
        /// inside L_vlb so that L_vlb trains the variance (Nichol & Dhariwal 2021, eq. 16).
        Hybrid => "hybrid",
        /// L_vlb alone (mean and variance).
        Vlb => "vlb",
    }
}

ddpm_runtime::named_enum! {
    /// How the timestep of each training image is drawn (`--timestep-sampling`).
    #[derive(Default)]
    pub enum TimestepSampling {
        /// Uniform over 0..T.
        #[default]
        Uniform => "uniform",
        /// Importance sampling for L_vlb: p_t proportional to sqrt(E[L_t^2]) over the last 10
        /// losses at each t, uniform until every t has 10 (Nichol & Dhariwal 2021, eq. 17).
        Importance => "importance",
    }
}

impl std::str::FromStr for Loss {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        Self::from_name(s).ok_or_else(|| TrainError::Usage(format!("--loss {s}: expected {}", Self::expected())))
    }
}

impl std::str::FromStr for TimestepSampling {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        Self::from_name(s).ok_or_else(|| TrainError::Usage(format!("--timestep-sampling {s}: expected {}", Self::expected())))
    }
}

/// What a run was started with (saved in train_state; resumed runs keep it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub steps: u64,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup: u64,
    pub ema_decay: f64,
    pub grad_clip: f64,
    pub weight_decay: f64,
    pub seed: u64,
    pub flip: bool,
    pub save_every: u64,
    pub sample_every: u64,
    /// DDIM steps of the preview grids.
    pub preview_steps: usize,
    /// The objective (runs saved before it existed trained with L_simple).
    #[serde(default)]
    pub loss: Loss,
    #[serde(default)]
    pub timestep_sampling: TimestepSampling,
    /// Label dropout for classifier-free guidance: each training label is replaced by the
    /// null label (the class embedding's last row) with this probability.
    #[serde(default)]
    pub cond_drop_prob: f64,
}

/// A preset: the network, the schedule and the hyper-parameters of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    pub config: UNetConfig,
    pub scheduler: SchedulerConfig,
    pub options: TrainOptions,
}

/// The DDPM paper's schedule as the DDPMScheduler config a new run writes: with the keys
/// diffusers writes for that class (clip_sample_range, timestep_spacing, steps_offset).
pub fn paper_scheduler() -> SchedulerConfig {
    SchedulerConfig {
        clip_sample_range: Some(1.0),
        timestep_spacing: Some(TimestepSpacing::Leading),
        steps_offset: Some(0),
        ..SchedulerConfig::paper()
    }
}

/// A preset by name: `digits`, `digits-hybrid` or `cifar10`.
pub fn preset(name: &str) -> Result<Preset> {
    match name {
        // Ho et al. 2020, Appendix B: lr 2e-4, batch 128, 5000 warm-up steps, EMA 0.9999,
        // dropout 0.1, random horizontal flips, gradient clipping at 1.
        "cifar10" => Ok(Preset {
            config: UNetConfig::ddpm_cifar10(),
            scheduler: paper_scheduler(),
            options: TrainOptions {
                steps: 800_000,
                batch_size: 128,
                lr: 2e-4,
                warmup: 5000,
                ema_decay: 0.9999,
                grad_clip: 1.0,
                weight_decay: 0.0,
                seed: 0,
                flip: true,
                save_every: 1000,
                sample_every: 5000,
                preview_steps: 50,
                loss: Loss::Simple,
                timestep_sampling: TimestepSampling::Uniform,
                cond_drop_prob: 0.0,
            },
        }),
        // A small class-conditional network for 28x28 digits, sized for a CPU.
        // Class-conditional with label dropout for classifier-free guidance: 10 classes and a
        // null label (the 11th row of the class embedding), dropped 10% of the time.
        "digits" => Ok(Preset {
            config: UNetConfig { num_class_embeds: Some(11), ..UNetConfig::digits() },
            scheduler: paper_scheduler(),
            options: TrainOptions { cond_drop_prob: 0.1, ..digits_options() },
        }),
        // The same network with improved DDPM's learned variances (Nichol & Dhariwal 2021):
        // 2 output channels (eps and the learned_range interpolation v), the cosine
        // schedule, L_hybrid.
        "digits-hybrid" => Ok(Preset {
            config: UNetConfig { out_channels: 2, ..UNetConfig::digits() },
            scheduler: SchedulerConfig {
                beta_schedule: Some(BetaSchedule::SquaredcosCapV2),
                variance_type: Some(VarianceType::LearnedRange),
                prediction_type: Some(PredictionType::Epsilon),
                ..paper_scheduler()
            },
            options: TrainOptions { loss: Loss::Hybrid, ..digits_options() },
        }),
        _ => Err(TrainError::Usage(format!("--preset {name}: unknown preset, expected digits, digits-hybrid or cifar10"))),
    }
}

/// The digits presets' hyper-parameters.
fn digits_options() -> TrainOptions {
    TrainOptions {
        steps: 15_000,
        batch_size: 64,
        lr: 5e-4,
        warmup: 500,
        ema_decay: 0.999,
        grad_clip: 1.0,
        weight_decay: 0.0,
        seed: 0,
        flip: false,
        save_every: 500,
        sample_every: 1000,
        preview_steps: 50,
        loss: Loss::Simple,
        timestep_sampling: TimestepSampling::Uniform,
        cond_drop_prob: 0.0,
    }
}
