//! # ddpm-trainer
//!
//! Learns eps_theta of Ho et al. 2020 with libtorch: data sets, L_simple with the runtime's
//! forward noising, AdamW, EMA, resumable checkpoints in diffusers' layout, previews.
#![warn(clippy::unwrap_used)]

pub mod classify;
pub mod data;
pub mod error;
pub mod optim;
pub mod options;
pub mod plot;
pub mod preview;
pub mod train;

pub use error::{Result, TrainError};
