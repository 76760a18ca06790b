//! The models the project ships (models/pretrained/), embedded at build time so that the
//! CLI needs no path.

/// The digit classifier of `trainer classifier`: input `images` [B, 1, 28, 28] in [-1, 1],
/// outputs `logits` [B, 10] and `features` [B, 128]. The default extractor of `runtime eval`.
pub const DIGIT_CLASSIFIER: &[u8] = include_bytes!("../../models/pretrained/digits/classifier.onnx");

/// The default model of `runtime sample`: the class-conditional 28x28 digits U-Net of
/// models/pretrained/digits (see its MODEL_CARD.md), None in a build without one.
#[cfg(default_model)]
pub const DIGITS_MODEL: Option<&[u8]> = Some(include_bytes!("../../models/pretrained/digits/digits.onnx"));
#[cfg(not(default_model))]
pub const DIGITS_MODEL: Option<&[u8]> = None;
