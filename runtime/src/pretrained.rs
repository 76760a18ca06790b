//! The models the project ships (models/pretrained/), embedded at build time so that the
//! CLI needs no path.

/// The digit classifier of `trainer classifier`: input `images` [B, 1, 28, 28] in [-1, 1],
/// outputs `logits` [B, 10] and `features` [B, 128]. The default extractor of `runtime eval`.
pub const DIGIT_CLASSIFIER: &[u8] = include_bytes!("../../models/pretrained/digits/classifier.onnx");
