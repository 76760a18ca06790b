//! # ddpm-exporter
//!
//! Writes the U-Net of a checkpoint as one self-describing `.onnx` file: the ONNX
//! implementation of `ddpm_models::ops::Backend` records the same forward pass that
//! training runs, and the result is checked in ONNX Runtime against libtorch.
#![warn(clippy::unwrap_used)]

pub mod error;
pub mod export;
pub mod onnx;
pub mod triton;

pub use error::{ExportError, Result};
pub use export::{export_checkpoint, Checkpoint, ExportReport};
pub use onnx::model::{export_classifier, export_model, ExportOptions, ExportPrecision};
pub use onnx::recorder::Value;
