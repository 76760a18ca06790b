//! Training hyper-parameters and the presets.

use ddpm_models::UNetConfig;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

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
}

/// A preset: network and hyper-parameters.
pub fn preset(name: &str) -> Result<(UNetConfig, TrainOptions)> {
    match name {
        // Ho et al. 2020, Appendix B: lr 2e-4, batch 128, 5000 warm-up steps, EMA 0.9999,
        // dropout 0.1, random horizontal flips, gradient clipping at 1.
        "cifar10" => Ok((
            UNetConfig::ddpm_cifar10(),
            TrainOptions {
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
            },
        )),
        // A small class-conditional network for 28x28 digits, sized for a CPU.
        "digits" => Ok((
            UNetConfig::digits(),
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
            },
        )),
        other => Err(TrainError::Usage(format!("--preset {other}: unknown preset, expected digits or cifar10"))),
    }
}
