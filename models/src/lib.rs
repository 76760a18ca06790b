//! # ddpm-models
//!
//! The U-Net of Ho et al. 2020 in the configuration space of diffusers' UNet2DModel, with
//! diffusers' parameter names, written once over the [`ops::Backend`] trait. The libtorch
//! backend (feature `tch`) trains and checks it; ddpm-exporter records it as ONNX.
#![warn(clippy::unwrap_used)]

pub mod classifier;
pub mod compare;
pub mod config;
pub mod error;
pub mod init;
pub mod ops;
pub mod shape;
#[cfg(feature = "tch")]
pub mod tch_backend;
pub mod unet;
pub mod weights;

pub use config::{DownBlock, UNetConfig, UpBlock};
pub use error::{Error, Result};
pub use ops::Backend;
pub use shape::{parameter_count, parameter_list, random_weights};
pub use unet::UNet2DModel;
pub use weights::{UNetCheckpoint, Weight, Weights};
