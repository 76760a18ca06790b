//! The models the project ships (models/pretrained/), embedded at build time so that the
//! CLI needs no path.

/// The digit classifier of `trainer classifier`: input `images` [B, 1, 28, 28] in [-1, 1],
/// outputs `logits` [B, 10] and `features` [B, 128]. The default extractor of `runtime eval`.
pub const DIGIT_CLASSIFIER: &[u8] = include_bytes!("../../models/pretrained/digits/classifier.onnx");

include!(concat!(env!("OUT_DIR"), "/pretrained_models.rs"));

/// The default model of `runtime sample`.
pub const DEFAULT: &str = "digits";

/// A built-in model's bytes by name; the error lists the ones this build has.
pub fn model(name: &str) -> Result<&'static [u8], String> {
    MODELS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b).ok_or_else(|| {
        let names: Vec<&str> = MODELS.iter().map(|(n, _)| *n).collect();
        format!(
            "--model-name {name}: not a built-in model of this build (built in: {}); pass --model FILE.onnx",
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        )
    })
}
